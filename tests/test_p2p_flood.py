"""Every gossip message a node receives is admitted, refused or dropped with a reason;
floods cost bounded writes and end in a ban."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.utils import encode_varint_prefixed

from platform_cli.clock import now_ms
from platform_cli.core import envelope as env
from platform_cli.core import gossip
from platform_cli.identity import KeyStore, Signer
from platform_cli.p2p import store
from platform_cli.state.db import open_state
from platform_cli.state.metagraph import Neuron, Snapshot, save_snapshot
from tests.p2p_helpers import (
    NETWORK,
    NodeProc,
    await_until,
    flood,
    node_in_process,
    prepare_node_dirs,
    rogue_pubsub,
    traffic_totals,
    wait_for,
)

pytestmark = pytest.mark.slow
SUBMISSIONS = gossip.topic_name(NETWORK.netuid, "submissions")
EVALUATIONS = gossip.topic_name(NETWORK.netuid, "evaluations")


def _signer(root: Path, name: str) -> Signer:
    KeyStore(root).new(name, "ed25519")
    return KeyStore(root).signer(name)


def _register(data_dir: Path, *hotkeys: str, block: int = 1) -> None:
    neurons = tuple(Neuron(uid, h, h, 0, False) for uid, h in enumerate(hotkeys))
    with open_state(data_dir) as state:
        save_snapshot(state, Snapshot(NETWORK.netuid, block, 360, neurons))


def _seal(signer: Signer, seq: int, *, kind: str = "submission", forged: bool = False) -> bytes:
    return env.seal(
        network=NETWORK, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=now_ms(),
        body={"seq": seq}, sign=(lambda payload: bytes(64)) if forged else signer.sign,
    ).to_wire()  # fmt: skip


def _balanced(counts: dict[str, int], received: int) -> bool:
    return (
        counts.get("received", 0)
        == received
        == sum(counts.get(k, 0) for k in ("admitted", "refused", "dropped"))
    )


def _reasons(state: Any) -> dict[tuple[str, str], int]:
    return {(r["outcome"], r["reason"]): r["count"] for r in store.rejections(state) if r["via"] == "gossip"}


class RawPeer:
    """A bare libp2p host that writes hand-made pubsub RPCs to a node's meshsub stream."""

    def __init__(self, host: Any, stream: Any) -> None:
        self.host = host
        self.stream = stream
        self.seqno = 0

    def message(self, data: bytes, topics: list[str], *, sign: bool = True) -> rpc_pb2.Message:
        self.seqno += 1
        msg = rpc_pb2.Message(
            from_id=self.host.get_id().to_bytes(),
            data=data,
            seqno=self.seqno.to_bytes(8, "big"),
            topicIDs=topics,
        )
        signature = self.host.get_private_key().sign(PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString())
        msg.key = self.host.get_public_key().serialize()
        msg.signature = signature if sign else bytes(len(signature))
        return msg

    async def send(self, *messages: rpc_pb2.Message, sender_record: bytes | None = None) -> None:
        rpc = rpc_pb2.RPC(publish=list(messages))
        if sender_record is not None:
            rpc.senderRecord = sender_record
        await self.stream.write(encode_varint_prefixed(rpc.SerializeToString()))


def test_every_message_is_admitted_refused_or_dropped_with_a_reason(tmp_path: Path) -> None:
    miner = _signer(tmp_path / "keys", "miner")
    stranger = _signer(tmp_path / "keys", "stranger")
    _register(tmp_path / "node", miner.ss58)

    async def scenario() -> None:
        async with node_in_process(tmp_path / "node") as node:
            host, other = new_host(), new_host()
            async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
                stream = await host.new_stream(node.host.get_id(), [TProtocol("/meshsub/1.1.0")])
                peer = RawPeer(host, stream)
                good = peer.message(_seal(miner, 1), [SUBMISSIONS])
                refused = peer.message(_seal(stranger, 1), [SUBMISSIONS])
                await peer.send(good, good)  # the second copy: a duplicate
                await peer.send(peer.message(_seal(miner, 2), ["/someone/elses/topic"]))
                await peer.send(peer.message(_seal(miner, 3), [SUBMISSIONS], sign=False))
                await peer.send(peer.message(_seal(miner, 4), [SUBMISSIONS, EVALUATIONS]))
                await peer.send(refused)
                await peer.send(peer.message(_seal(stranger, 2, forged=True), [SUBMISSIONS]))
                await peer.send(
                    peer.message(_seal(miner, 5), [SUBMISSIONS]),
                    peer.message(_seal(miner, 6), [SUBMISSIONS]),
                    sender_record=env_to_send_in_RPC(other)[0],  # another peer's record
                )
                await await_until(
                    lambda: _reasons(node.state).get(("refused", "bad_signature")),
                    10,
                    "the forgery's refusal",
                )
                await peer.send(refused)  # a copy refused from py-libp2p's cache, unseen by admission
                await await_until(
                    lambda: _balanced(traffic_totals(node.state), 10), 10, "every message accounted for"
                )
            assert _reasons(node.state) == {
                ("dropped", "duplicate"): 1,
                ("dropped", "unsubscribed_topic"): 1,
                ("dropped", "bad_pubsub_signature"): 1,
                ("refused", "malformed"): 1,
                ("refused", "wrong_role"): 2,
                ("refused", "bad_signature"): 1,
                ("dropped", "bad_sender_record"): 2,
            }
            assert traffic_totals(node.state)["admitted"] == 1
            totals = {r["topic"]: r for r in store.traffic(node.state) if r["via"] == "gossip"}
            assert totals[gossip.OTHER_TOPIC]["received"] == 1  # a stranger's topic: one label for all
            points = node.admission.standing.points(host.get_id().to_base58(), now_ms())
            expected = 4 * gossip.FAULT_POINTS + 3 * gossip.VIEW_POINTS
            assert expected * 0.8 < points <= expected  # faults weigh much, views little; decaying

    trio.run(scenario)


def test_a_peers_sender_record_is_checked_once_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same signed record from the same peer is verified once; any other bytes (here
    another peer's record) are verified afresh and dropped when they do not hold."""
    from platform_cli.p2p import pubsub as accounted

    checked: list[bytes] = []
    real = accounted._consume_sender_record

    def counting(rpc: Any, host: Any, peer_id: Any) -> bool:
        checked.append(rpc.senderRecord)
        return bool(real(rpc, host, peer_id))

    monkeypatch.setattr(accounted, "_consume_sender_record", counting)
    miner = _signer(tmp_path / "keys", "miner")
    _register(tmp_path / "node", miner.ss58)

    async def scenario() -> None:
        async with node_in_process(tmp_path / "node") as node:
            host, other = new_host(), new_host()
            async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
                stream = await host.new_stream(node.host.get_id(), [TProtocol("/meshsub/1.1.0")])
                peer = RawPeer(host, stream)
                own, foreign = env_to_send_in_RPC(host)[0], env_to_send_in_RPC(other)[0]
                for seq in range(1, 6):
                    await peer.send(peer.message(_seal(miner, seq), [SUBMISSIONS]), sender_record=own)
                await peer.send(peer.message(_seal(miner, 6), [SUBMISSIONS]), sender_record=foreign)
                await peer.send(peer.message(_seal(miner, 7), [SUBMISSIONS]), sender_record=own)
                await await_until(
                    lambda: _balanced(traffic_totals(node.state), 7), 10, "every message accounted for"
                )
            assert traffic_totals(node.state)["admitted"] == 6
            assert _reasons(node.state) == {("dropped", "bad_sender_record"): 1}
            assert checked == [own, foreign]

    trio.run(scenario)


def test_messages_admitted_together_are_stored_in_one_commit(tmp_path: Path) -> None:
    """Forty messages in one RPC are validated side by side: one write transaction holds
    them all (a group commit), and none is forwarded before it is in the inbox."""
    miner = _signer(tmp_path / "keys", "miner")
    _register(tmp_path / "node", miner.ss58)

    async def scenario() -> None:
        async with node_in_process(tmp_path / "node") as node:
            forwarded: list[bool] = []  # whether each was stored when it went to the router
            forward = node.gossipsub.publish

            async def checked_forward(forwarder: Any, msg: Any) -> None:
                forwarded.append(store.inbox_has(node.state, hashlib.sha256(msg.data).hexdigest()))
                await forward(forwarder, msg)

            node.gossipsub.publish = checked_forward
            host = new_host()
            async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
                stream = await host.new_stream(node.host.get_id(), [TProtocol("/meshsub/1.1.0")])
                peer = RawPeer(host, stream)
                batch = [peer.message(_seal(miner, seq), [SUBMISSIONS]) for seq in range(1, 41)]
                before = node.pubsub.inbox.batches
                await peer.send(*batch)
                await await_until(
                    lambda: traffic_totals(node.state).get("admitted", 0) == 40, 10, "forty admitted"
                )
            assert node.pubsub.inbox.items == 40
            assert node.pubsub.inbox.batches - before == 1
            assert len(store.inbox_rows(node.state)) == 40
            assert forwarded == [True] * 40

    trio.run(scenario)


class WriteCounter:
    """Counts the write transactions a connection begins (sqlite's trace callback)."""

    def __init__(self, conn: Any) -> None:
        self.count = 0
        conn.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        if statement.startswith("BEGIN"):
            self.count += 1


def test_a_flood_costs_bounded_writes_and_ends_in_a_ban(tmp_path: Path) -> None:
    """8,000 messages of an unregistered signer with a zero signature, then validly signed
    ones of a fresh key: refusals cost no write each, and both peers are banned."""
    miner = _signer(tmp_path / "keys", "miner")
    fresh = _signer(tmp_path / "keys", "fresh")
    _register(tmp_path / "node", miner.ss58)
    forgeries = [_seal(fresh, i, forged=True) for i in range(8000)]
    valid_strangers = [_seal(fresh, 10_000 + i) for i in range(2000)]

    async def flood_from_a_rogue(node: Any, messages: list[bytes]) -> tuple[str, float, int]:
        writes = WriteCounter(node.state.conn)
        before = traffic_totals(node.state).get("refused", 0)
        started = time.monotonic()
        async with rogue_pubsub([SUBMISSIONS]) as (host, gossipsub, pubsub):
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
            await await_until(lambda: gossipsub.mesh.get(SUBMISSIONS), 20, "the rogue in the mesh")
            rogue = host.get_id()
            for i, data in enumerate(messages):
                if node.pubsub.is_peer_blacklisted(rogue):
                    break
                await pubsub.publish(SUBMISSIONS, data)
                if i % 50 == 49:
                    await trio.sleep(0)
            await await_until(lambda: node.pubsub.is_peer_blacklisted(rogue), 30, "the ban")
        await trio.sleep(1.5)  # the last flush of counters
        elapsed = time.monotonic() - started
        refusals = traffic_totals(node.state).get("refused", 0) - before
        node.state.conn.set_trace_callback(None)
        return rogue.to_base58(), elapsed, writes.count, refusals

    async def scenario() -> None:
        async with node_in_process(tmp_path / "node") as node:
            forger, elapsed, writes, refusals = await flood_from_a_rogue(node, forgeries)
            assert refusals >= gossip.BAN_POINTS / gossip.FAULT_POINTS
            assert (
                _reasons(node.state)[("refused", "bad_signature")] == refusals
            )  # the forgery behind the role
            assert writes <= 4 * elapsed + 10, (writes, elapsed)
            spammer, elapsed, writes, refusals = await flood_from_a_rogue(node, valid_strangers)
            assert refusals >= 0.9 * gossip.BAN_POINTS / gossip.VIEW_POINTS  # about a thousand view refusals
            assert writes <= 4 * elapsed + 10 and writes * 50 < refusals, (writes, elapsed, refusals)
            banned = {r["peer_id"] for r in store.peers(node.state) if r["banned_ms"]}
            assert {forger, spammer} <= banned
            totals = traffic_totals(node.state)
            assert _balanced(totals, totals["received"])

    trio.run(scenario)


def test_a_flood_of_2000_from_a_peer_process_is_accounted_for(tmp_path: Path) -> None:
    """A foreign process floods a node process with 2,000 well-formed messages: the
    signer's burst is admitted, the rest refused for its rate until the peer's standing
    ends in a ban; received = admitted + refused + dropped. The limits are tighter than
    the defaults (``bench/bench_p2p.py`` floods those) so that the ban does not depend on
    how fast a loaded machine delivers the flood: at most 100 + 10 a second are admitted."""
    (node_dir,) = prepare_node_dirs(tmp_path, 1, "[p2p]\nrate_per_signer = 10\nburst_per_signer = 100\n")
    miner = _signer(tmp_path / "keys", "miner")
    _register_with_validators(node_dir, miner.ss58)
    node = NodeProc(node_dir, tmp_path / "node.log")
    node.start()
    try:
        messages = [_seal(miner, i) for i in range(1, 2001)]
        sent = flood(node.addrs, SUBMISSIONS, messages, tmp_path / "flood.bin", linger=6)
        wait_for(
            lambda: (
                (t := traffic_totals(node.state)).get("received")
                and t["received"] == t.get("admitted", 0) + t.get("refused", 0) + t.get("dropped", 0)
            ),
            20,
            what="every received message accounted for",
        )
        totals = traffic_totals(node.state)
        assert 100 <= totals["admitted"] < 1000  # the signer's burst, and what its rate refilled
        assert set(_reasons(node.state)) <= {("refused", "rate_limited"), ("dropped", "banned_peer")}
        assert any(r["peer_id"] == sent.peer_id and r["banned_ms"] for r in store.peers(node.state))
    finally:
        node.stop()


def _register_with_validators(data_dir: Path, hotkey: str) -> None:
    """Add ``hotkey`` as a registered miner to the node's snapshot (its validator stays)."""
    from platform_cli.state.metagraph import latest_snapshot

    with open_state(data_dir) as state:
        old = latest_snapshot(state, NETWORK.netuid)
        assert old is not None
        miner = Neuron(len(old.neurons), hotkey, hotkey, 0, False)
        save_snapshot(state, Snapshot(NETWORK.netuid, old.block + 1, old.tempo, (*old.neurons, miner)))


def test_messages_an_outbound_queue_drops_are_counted(tmp_path: Path) -> None:
    """py-libp2p drops what does not fit a peer's outbound queue: counted per topic."""
    miner = _signer(tmp_path / "keys", "miner")
    for name in ("a", "b"):
        _register(tmp_path / name, miner.ss58)

    async def scenario() -> None:
        from libp2p.pubsub.rpc_queue import RpcQueue

        async with node_in_process(tmp_path / "a") as a, node_in_process(tmp_path / "b") as b:
            await b.dial(a.addrs[0])
            await await_until(
                lambda: b.host.get_id() in a.gossipsub.mesh.get(SUBMISSIONS, ()), 20, "A-B mesh"
            )
            a.pubsub.peer_queues[b.host.get_id()] = RpcQueue(max_size=1)  # nobody drains this one
            for seq in range(1, 6):
                await a.pubsub.publish(SUBMISSIONS, _seal(miner, seq))
            await await_until(
                lambda: _reasons(a.state).get(("forward_dropped", "queue_full"), 0) >= 4,
                10,
                "the drops counted",
            )
            assert traffic_totals(a.state, "own")["admitted"] == 5  # stored here, not all forwarded

    trio.run(scenario)
