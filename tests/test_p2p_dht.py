"""The node's DHT against a hostile peer, in process: our namespaces only, put quotas."""

from __future__ import annotations

from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.records.validator import Validator

from platform_cli.clock import now_ms
from platform_cli.core import dhtrec
from platform_cli.core import envelope as env
from platform_cli.identity import KeyStore
from platform_cli.p2p import dht as dht_adapter
from platform_cli.p2p import store
from tests.p2p_helpers import NETWORK, await_until, bare_host, node_in_process, prepare_node_dirs

pytestmark = pytest.mark.slow


def content_key(value: bytes) -> str:
    """The compact key the DHT stores ``value`` under."""
    return dhtrec.dht_key(dhtrec.content_key(value))


class Anything(Validator):
    def validate(self, key: str, value: bytes) -> None:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


def test_remote_puts_outside_our_namespaces_and_over_quota_are_refused(tmp_path: Path) -> None:
    public = create_new_key_pair().public_key
    pk_key = "/pk/" + ID.from_pubkey(public).to_bytes().hex()  # a valid libp2p public key record
    values = [f"record {i}".encode() for i in range(4)]

    async def scenario() -> None:
        async with (
            node_in_process(tmp_path / "node") as node,
            bare_host(pk=Anything(), ipns=Anything(), sub=Anything()) as (host, dht),
        ):
            assert {"pk", "ipns"}.isdisjoint(node.dht.validator._validators)
            node.dht.validator.quota = dhtrec.PutQuota(per_peer_puts=3)  # invalid puts cost nothing
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
            await dht.add_peer(node.host.get_id())

            def held(key: str) -> bool:
                return node.dht.value_store.get(key.encode()) is not None

            await dht.put_value(content_key(values[0]), values[0])
            await await_until(lambda: held(content_key(values[0])), 20, "a valid remote put")
            await dht.put_value(pk_key, public.serialize())
            await dht.put_value("/ipns/" + "cd" * 20, b"whatever the peer likes")
            await dht.put_value(content_key(values[1]), values[1])
            await await_until(lambda: held(content_key(values[1])), 20, "the next valid put")
            assert not held(pk_key) and not held("/ipns/" + "cd" * 20)
            await dht.put_value(content_key(values[2]), values[2])  # the 3rd valid put: the last allowed
            await await_until(lambda: held(content_key(values[2])), 20, "the 3rd valid put")
            await dht.put_value(content_key(values[3]), values[3])
            await trio.sleep(0.5)
            assert not held(content_key(values[3]))  # over the peer's quota
            await trio.sleep(1.2)  # a status tick: peers' records must not reach the SQLite mirror
            assert store.mirrored(node.state) == []
            own = b"our own record"
            store.mirror_record(node.state, content_key(own), own)  # as `dht put` leaves it
            node.dht.value_store.put(content_key(own).encode(), own)
            store.mirror_record(node.state, content_key(b"evicted"), b"evicted")
            assert dht_adapter.prune_mirror(node.dht, node.admission) == 1
            assert store.mirrored(node.state) == [(content_key(own), own)]

    trio.run(scenario)


def _record(signer, human: str, ts_ms: int, seq: int, data: bytes = b"scores") -> bytes:
    return env.seal(
        network=NETWORK, kind="dht.evaluation", signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=ts_ms,
        body={"key": human, "data": data}, sign=signer.sign,
    ).to_wire()  # fmt: skip


def test_eviction_cannot_roll_a_validators_record_back(tmp_path: Path) -> None:
    """Sybils (fresh peer ids) flood content to evict a validator's newest signed record,
    then replay its older one: content only evicts content, and the newest (ts, seq) of
    the key outlives the record itself, across a restart."""
    node_dir, v_dir = prepare_node_dirs(tmp_path, 2)
    validator = KeyStore(v_dir).signer("validator")
    human = f"/eval/{validator.ss58}/epoch-1"
    key = dhtrec.dht_key(human)
    now = now_ms()
    older, newer = _record(validator, human, now - 60_000, 1), _record(validator, human, now, 2)
    budget = dhtrec.StoreBudget(content_records=8, content_bytes=8 * 1024, signer_records=2)

    def held(node, k: str) -> bytes | None:
        record = node.dht.value_store.get(k.encode())
        return record.value if record is not None else None

    async def put_from_a_fresh_peer(node, puts: list[tuple[str, bytes]]) -> None:
        async with bare_host(sub=Anything(), eval=Anything()) as (host, dht):
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
            await dht.add_peer(node.host.get_id())
            for k, value in puts:
                await dht.put_value(k, value)

    async def scenario() -> None:
        async with node_in_process(node_dir) as node:
            node.dht.value_store.budget = budget
            await put_from_a_fresh_peer(node, [(key, newer)])
            await await_until(lambda: held(node, key) == newer, 20, "the newest record at the node")
            sybil_content = [f"sybil {i} filler {j}".encode() * 40 for i in range(4) for j in range(4)]
            for i in range(4):
                await put_from_a_fresh_peer(
                    node, [(content_key(v), v) for v in sybil_content[4 * i : 4 * i + 4]]
                )
            await put_from_a_fresh_peer(node, [(key, older)])
            await trio.sleep(0.5)
            assert held(node, key) == newer  # never evicted by unsigned records
            kept = [v for v in sybil_content if held(node, content_key(v))]
            assert (
                0 < len(kept) <= 8 and sum(map(len, kept)) <= 8 * 1024
            )  # content: bounded by count and bytes
            others = [f"/eval/{validator.ss58}/epoch-{n}" for n in (2, 3)]
            await put_from_a_fresh_peer(
                node,
                [(dhtrec.dht_key(h), _record(validator, h, now + n, 3 + n)) for n, h in enumerate(others)],
            )
            await await_until(
                lambda: held(node, key) is None, 20, "the signer's own records evicting its oldest"
            )
            await put_from_a_fresh_peer(node, [(key, older)])
            await trio.sleep(0.5)
            assert held(node, key) is None  # its newer one is gone, its mark is not
        async with node_in_process(node_dir) as node:  # the marks survive a restart
            await put_from_a_fresh_peer(node, [(key, older)])
            await trio.sleep(0.5)
            assert held(node, key) is None
            await put_from_a_fresh_peer(node, [(key, newer)])
            await await_until(lambda: held(node, key) == newer, 20, "the newest record is still welcome")

    trio.run(scenario)
