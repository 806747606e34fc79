"""Sync and admission inside real nodes (in process): cursors, periodic sync, retries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import ValidationError

from platform_cli.clock import now_ms
from platform_cli.core import envelope as env
from platform_cli.core import gossip
from platform_cli.identity import KeyStore, Signer
from platform_cli.p2p import store
from platform_cli.p2p.group_commit import GroupCommit
from platform_cli.state.db import open_state
from platform_cli.state.metagraph import Neuron, Snapshot, save_snapshot
from tests.p2p_helpers import NETWORK, await_until, node_in_process

pytestmark = pytest.mark.slow


def _signer(root: Path, name: str) -> Signer:
    KeyStore(root).new(name, "ed25519")
    return KeyStore(root).signer(name)


def _snapshot(data_dir: Path, block: int, *hotkeys: str) -> None:
    neurons = tuple(Neuron(uid, h, h, 10**12, True) for uid, h in enumerate(hotkeys))
    with open_state(data_dir) as state:
        save_snapshot(state, Snapshot(NETWORK.netuid, block, 360, neurons))


def _seal(signer: Signer, kind: str, seq: int) -> env.Envelope:
    return env.seal(
        network=NETWORK, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=now_ms(),
        body={"seq": seq}, sign=signer.sign,
    )  # fmt: skip


def test_a_local_failure_in_admission_is_not_cached_as_invalid(tmp_path: Path) -> None:
    miner = _signer(tmp_path / "keys", "miner")
    _snapshot(tmp_path / "node", 1, miner.ss58)
    topic = gossip.topic_name(NETWORK.netuid, "submissions")
    envelope = _seal(miner, "submission", 1)

    async def scenario() -> None:
        async with node_in_process(tmp_path / "node") as node:
            msg = rpc_pb2.Message(
                from_id=node.host.get_id().to_bytes(), data=envelope.to_wire(), seqno=b"\0" * 7 + b"\1",
                topicIDs=[topic],
            )  # fmt: skip

            def locked(*args, **kwargs):
                raise sqlite3.OperationalError("database is locked")

            real_check, real_inbox = node.admission.check, node.pubsub.inbox
            node.admission.check = locked  # failing before the write
            with pytest.raises(ValidationError):
                await node.pubsub.validate_msg(node.host.get_id(), msg)
            node.admission.check = real_check
            node.pubsub.inbox = GroupCommit(locked)  # failing in the batched write
            with pytest.raises(ValidationError):
                await node.pubsub.validate_msg(node.host.get_id(), msg)
            assert not store.inbox_rows(node.state)
            node.pubsub.inbox = real_inbox
            await node.pubsub.validate_msg(node.host.get_id(), msg)  # validated afresh: accepted
            assert envelope.message_id() in {r["msg_id"] for r in store.inbox_rows(node.state)}

    trio.run(scenario)


def test_sync_cursor_waits_for_local_view_refusals_and_sync_repeats(tmp_path: Path) -> None:
    miner = _signer(tmp_path / "keys", "miner")
    newcomer = _signer(tmp_path / "keys", "newcomer")
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    _snapshot(a_dir, 1, miner.ss58, newcomer.ss58)
    _snapshot(b_dir, 1, miner.ss58)  # B has not seen the newcomer's registration yet
    submission = _seal(miner, "submission", 1)
    evaluation = _seal(newcomer, "evaluation", 1)
    later = _seal(miner, "submission", 2)

    async def scenario() -> None:
        async with (
            node_in_process(a_dir) as a,
            node_in_process(b_dir, sync_interval_s=1) as b,
        ):
            for short, envelope in (("submissions", submission), ("evaluations", evaluation)):
                topic = gossip.topic_name(NETWORK.netuid, short)
                assert store.store_received(a.state, topic, envelope, envelope.to_wire(), "elsewhere")
            await b.dial(a.addrs[0])

            def held(envelope: env.Envelope) -> bool:
                return store.inbox_has(b.state, envelope.message_id())

            await await_until(lambda: held(submission), 20, "sync on connection")
            assert not held(evaluation)
            assert store.sync_cursor(b.state, a.peer_id) == 0  # not past the wrong_role refusal
            topic = gossip.topic_name(NETWORK.netuid, "submissions")
            store.store_received(a.state, topic, later, later.to_wire(), "elsewhere")  # not gossiped
            await await_until(lambda: held(later), 20, "a periodic sync")
            assert not held(evaluation) and store.sync_cursor(b.state, a.peer_id) == 0
            _snapshot(b_dir, 2, miner.ss58, newcomer.ss58)
            await await_until(lambda: held(evaluation), 20, "the evaluation once B's view has it")
            await await_until(lambda: store.sync_cursor(b.state, a.peer_id) == 3, 20, "the cursor to move on")

    trio.run(scenario)


def test_out_of_range_numbers_from_a_sync_peer_cannot_crash_the_node(tmp_path: Path) -> None:
    """A hostile requester asks with cursors past SQLite's integers, and a hostile responder
    answers our pull with one: the node refuses both and goes on serving."""
    import multiaddr
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from platform_cli.p2p import sync
    from tests.p2p_helpers import bare_host

    async def scenario() -> None:
        async with node_in_process(tmp_path / "node") as node, bare_host() as (host, _dht):

            async def lying_answer(stream) -> None:
                await sync.read_frame(stream)
                await sync.write_frame(stream, {"items": [], "row": 2**64 - 1, "more": False})
                await stream.close()

            host.set_stream_handler(TProtocol(sync.PROTOCOL), lying_answer)
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
            for request in ({"op": "since", "since_ms": 2**64 - 1}, {"op": "since", "after_row": 2**63}):
                stream = await host.new_stream(node.host.get_id(), [TProtocol(sync.PROTOCOL)])
                await sync.write_frame(stream, request)
                answer = await sync.read_frame(stream)
                assert "must be an integer" in answer["error"]
                await stream.close()
            assert await node.sync_from(host.get_id()) == 0
            assert store.sync_cursor(node.state, host.get_id().to_base58()) == 0
            stream = await host.new_stream(node.host.get_id(), [TProtocol(sync.PROTOCOL)])
            await sync.write_frame(stream, {"op": "since", "since_ms": 0})
            assert (await sync.read_frame(stream))["more"] is False  # still serving

    trio.run(scenario)


def test_an_old_message_refused_by_our_view_does_not_pin_the_cursor(tmp_path: Path) -> None:
    outsider = _signer(tmp_path / "keys", "outsider")
    miner = _signer(tmp_path / "keys", "miner")
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    _snapshot(a_dir, 1, outsider.ss58, miner.ss58)
    _snapshot(b_dir, 1, miner.ss58)  # B's view: the outsider is no validator (any more)
    old = env.seal(
        network=NETWORK, kind="evaluation", signer=outsider.ss58, scheme=outsider.scheme, seq=1,
        ts_ms=now_ms() - 3_600_000, body={"old": True}, sign=outsider.sign,
    )  # fmt: skip
    fresh = _seal(miner, "submission", 1)

    async def scenario() -> None:
        async with node_in_process(a_dir) as a, node_in_process(b_dir) as b:
            for short, envelope in (("evaluations", old), ("submissions", fresh)):
                topic = gossip.topic_name(NETWORK.netuid, short)
                assert store.store_received(a.state, topic, envelope, envelope.to_wire(), "elsewhere")
            await b.dial(a.addrs[0])
            await await_until(lambda: store.inbox_has(b.state, fresh.message_id()), 20, "sync on connection")
            await await_until(lambda: store.sync_cursor(b.state, a.peer_id) == 2, 20, "the cursor past both")
            assert not store.inbox_has(b.state, old.message_id())

    trio.run(scenario)
