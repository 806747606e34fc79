"""Sybils (fresh peer ids) hold every slot and quota meant for unknown peers; a validator,
bound to its peer id by its announcement, still syncs both ways and puts a record."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import multiaddr
import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.peer.peerinfo import info_from_p2p_addr

from platform_cli.clock import now_ms
from platform_cli.core import dhtrec, gossip
from platform_cli.core import envelope as env
from platform_cli.identity import KeyStore
from platform_cli.p2p import dht as dht_adapter
from platform_cli.p2p import store, sync
from tests.p2p_helpers import NETWORK, await_until, bare_host, node_in_process, prepare_node_dirs

pytestmark = pytest.mark.slow
SUBMISSIONS = gossip.topic_name(NETWORK.netuid, "submissions")
SYBILS = 6


class _Anything:
    def validate(self, key: str, value: bytes) -> None:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


def _signed(dir_: Path, kind: str, body: Any, seq: int) -> env.Envelope:
    signer = KeyStore(dir_).signer("validator")
    return env.seal(
        network=NETWORK, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=now_ms(),
        body=body, sign=signer.sign,
    )  # fmt: skip


async def _hold_streams(host: Any, target: Any, protocol: str, streams: int) -> None:
    """Keep ``streams`` silent streams open to ``target`` on ``protocol``, reopening each
    one as soon as the target gives up on it."""

    async def one() -> None:
        while True:
            try:
                stream = await host.new_stream(target, [TProtocol(protocol)])
                await stream.read(1)  # returns or raises when the target closes it
            except Exception:
                await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(one)


async def _answer_never(stream: Any) -> None:
    """A sync responder that reads the request and never answers."""
    await sync.read_frame(stream)
    await trio.sleep_forever()


def test_sybils_holding_every_unknown_slot_do_not_lock_a_validator_out(tmp_path: Path) -> None:
    n_dir, v_dir = prepare_node_dirs(tmp_path, 2)
    submission = _signed(v_dir, "submission", {"held by": "N"}, 1)
    later = _signed(v_dir, "submission", {"held by": "V"}, 2)
    human = f"/eval/{KeyStore(v_dir).signer('validator').ss58}/epoch-3"
    record = _signed(v_dir, "dht.evaluation", {"key": human, "data": b"scores"}, 3).to_wire()
    key = dhtrec.dht_key(human)

    async def scenario() -> None:
        async with (
            node_in_process(n_dir, key="validator") as n,
            node_in_process(v_dir, key="validator") as v,
            trio.open_nursery() as sybil_tasks,
        ):
            # Scaled down so that a test can exhaust it with real puts: 2 sybils x 4 puts.
            n.dht.validator.quota = dhtrec.PutQuota(per_peer_puts=4, unknown_total_puts=8)
            await v.dial(n.addrs[0])
            await await_until(
                lambda: n.is_validator_peer(v.peer_id) and v.is_validator_peer(n.peer_id),
                30,
                "the announcements binding each validator's hotkey to its peer id",
            )
            sybils = []
            for i in range(SYBILS):  # fresh keys: nothing binds them to anyone
                host, dht = await sybil_tasks.start(_sybil, n.addrs[0], i)
                sybils.append((host, dht))
            await await_until(lambda: n._sync_pools[False].value == 0, 20, "N pulling from a slow sybil")
            for i, (_, dht) in enumerate(sybils[:2]):
                for j in range(4):
                    value = f"sybil {i} put {j}".encode()
                    await dht.put_value(dhtrec.dht_key(dhtrec.content_key(value)), value)
            refused = b"one put too many"
            await sybils[2][1].put_value(dhtrec.dht_key(dhtrec.content_key(refused)), refused)
            assert n.dht.value_store.get(dhtrec.dht_key(dhtrec.content_key(refused)).encode()) is None
            for host, _ in sybils:
                sybil_tasks.start_soon(_hold_streams, host, n.host.get_id(), sync.PROTOCOL, 1)
                sybil_tasks.start_soon(_hold_streams, host, n.host.get_id(), KAD_PROTOCOL, 2)
            await await_until(
                lambda: (
                    n.sync_server.slots.held(False) == sync.SERVE_UNKNOWN
                    and n.dht.stream_slots.held(False) == dht_adapter.UNKNOWN_STREAMS
                ),
                20,
                "sybils holding every unknown-peer slot of N",
            )

            store.store_received(n.state, SUBMISSIONS, submission, submission.to_wire(), "elsewhere")
            assert await v.sync_from(n.host.get_id()) >= 1  # N serves the validator
            assert store.inbox_has(v.state, submission.message_id())
            await v.dht.put_value(key, record)  # FIND_NODE, then PUT_VALUE at N
            await await_until(lambda: n.dht.value_store.get(key.encode()), 20, "the validator's record at N")
            store.store_received(v.state, SUBMISSIONS, later, later.to_wire(), "elsewhere")
            assert n._sync_pools[False].value == 0  # still held by a slow sybil
            assert await n.sync_from(v.host.get_id()) >= 1  # N pulls from the validator
            assert store.inbox_has(n.state, later.message_id())
            assert n.sync_server.slots.held(False) + n.dht.stream_slots.held(False) > 0  # sybils still there
            sybil_tasks.cancel_scope.cancel()

    trio.run(scenario)


async def _sybil(addr: str, index: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A bare host with a fresh key, connected to ``addr``, answering sync never."""
    async with bare_host(sub=_Anything(), eval=_Anything()) as (host, dht):
        host.set_stream_handler(TProtocol(sync.PROTOCOL), _answer_never)
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await host.connect(info)
        await dht.add_peer(info.peer_id)
        task_status.started((host, dht))
        await trio.sleep(math.inf)
