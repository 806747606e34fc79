"""A line of nodes (rogue -> A -> B), in process: what A refuses never reaches B."""

from __future__ import annotations

from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from platform_cli.clock import now_ms
from platform_cli.core import envelope as env
from platform_cli.core import gossip
from platform_cli.identity import KeyStore, Signer
from platform_cli.p2p import store
from platform_cli.state.db import open_state
from platform_cli.state.metagraph import Neuron, Snapshot, save_snapshot
from tests.p2p_helpers import NETWORK, await_until, node_in_process, rogue_pubsub

pytestmark = pytest.mark.slow


def _signer(root: Path, name: str) -> Signer:
    KeyStore(root).new(name, "ed25519")
    return KeyStore(root).signer(name)


def _seal(signer: Signer, kind: str, body: dict, seq: int = 1) -> env.Envelope:
    return env.seal(
        network=NETWORK, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=now_ms(),
        body=body, sign=signer.sign,
    )  # fmt: skip


def test_b_never_receives_what_a_refused(tmp_path: Path) -> None:
    miner = _signer(tmp_path / "keys", "miner")
    stranger = _signer(tmp_path / "keys", "stranger")
    for name in ("a", "b"):
        with open_state(tmp_path / name) as state:
            save_snapshot(
                state, Snapshot(NETWORK.netuid, 1, 360, (Neuron(0, miner.ss58, miner.ss58, 0, False),))
            )
    submissions = gossip.topic_name(NETWORK.netuid, "submissions")
    evaluations = gossip.topic_name(NETWORK.netuid, "evaluations")
    refused = [
        (evaluations, _seal(stranger, "evaluation", {"score": 1})),  # wrong_role
        (submissions, _seal(stranger, "submission", {"fresh": "key"})),  # unregistered
        (submissions, _seal(miner, "submission", {"net": 1}, seq=3).to_wire()[:-1]),  # truncated
    ]
    good = _seal(miner, "submission", {"ok": 1}, seq=5)

    def inbox(node) -> set[str]:
        return {r["msg_id"] for r in store.inbox_rows(node.state)}

    async def scenario() -> None:
        async with (
            node_in_process(tmp_path / "a") as a,
            node_in_process(tmp_path / "b") as b,
            rogue_pubsub([submissions, evaluations]) as (host, gossipsub, pubsub),
        ):
            await b.dial(a.addrs[0])
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(a.addrs[0])))
            await await_until(
                lambda: all(a.host.get_id() in gossipsub.mesh.get(t, ()) for t in (submissions, evaluations)),
                20,
                "the rogue in A's mesh",
            )
            await await_until(
                lambda: b.host.get_id() in a.gossipsub.mesh.get(submissions, ()), 20, "A-B mesh"
            )
            for topic, message in refused:
                await pubsub.publish(topic, message if isinstance(message, bytes) else message.to_wire())
            await pubsub.publish(submissions, good.to_wire())
            await await_until(lambda: good.message_id() in inbox(b), 20, "the good message at B, through A")

            def refusals(node) -> dict[tuple[str, str], int]:
                rows = store.rejections(node.state)
                return {(r["topic"], r["reason"]): r["count"] for r in rows if r["outcome"] == "refused"}

            wanted = {
                (evaluations, "wrong_role"): 1,
                (submissions, "wrong_role"): 1,
                (submissions, "non_canonical"): 1,
            }
            await await_until(lambda: refusals(a) == wanted, 10, "A's counters, flushed every second")
            await trio.sleep(1.2)
            assert refusals(b) == {}  # B was never handed any of them
            assert inbox(b) == {good.message_id()}
            assert host.get_id() not in b.host.get_connected_peers()  # a line: rogue -> A -> B

    trio.run(scenario)
