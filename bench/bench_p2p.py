"""P2P benchmark: `platform peer run` processes on 127.0.0.1, 1 KiB messages.

Mesh (4 nodes): delivery latency (p50/p99, from queueing in the publisher's outbox and
from the moment it was published, to the row in each receiver's inbox), the highest
sustained rate tried that delivered every message to every node, and CPU per message
(all four node processes together, from /proc).

Flood (one peer publishing 2,000 messages as fast as it can, then staying connected
``--linger`` seconds): the zero-loss rate of plain py-libp2p (``p2p_rogue.py --sink``:
the node's queue settings, no admission) and of a node (every message admitted and
stored), measured alternately in the same run after one uncounted warm-up round each,
and their ratio; then the same flood at a
node with the default limits, where received = admitted + refused + dropped.

    python bench/bench_p2p.py [--rates 50,100,200,400] [--seconds 5] [--flood-rounds 3] [--skip-mesh]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from platform_cli.core import gossip
from platform_cli.identity import KeyStore, Signer
from platform_cli.p2p import outgoing, store
from platform_cli.state.db import open_state
from platform_cli.state.metagraph import Neuron, Snapshot, latest_snapshot, save_snapshot
from tests.p2p_helpers import (
    NETWORK,
    NodeProc,
    Sink,
    flood,
    mesh_ready,
    prepare_node_dirs,
    queue,
    start_mesh,
    traffic_totals,
    wait_for,
)

PAYLOAD = "x" * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GRACE_S = 2.0
"""A rate is sustained when every message is at every node this long after the last send."""
# Per-signer and per-peer limits are policy, not capacity: raise them so that they do not cap the run.
CONFIG = (
    "[p2p]\nrate_per_signer = 100000\nburst_per_signer = 100000\n"
    "rate_per_peer = 100000\nburst_per_peer = 100000\n"
)


def cpu_seconds(node: NodeProc) -> float:
    assert node.proc is not None
    return pid_cpu_seconds(node.proc.pid)


def publish_at(node: NodeProc, rate: float, count: int, tag: str) -> list[str]:
    ids = []
    start = time.monotonic()
    for i in range(count):
        ids.append(queue(node, "submissions", "submission", {"bench": tag, "i": i, "pad": PAYLOAD}))
        time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    return ids


def latencies(publisher: NodeProc, receivers: list[NodeProc], ids: list[str]) -> tuple[list[int], list[int]]:
    marks = ",".join("?" * len(ids))
    sent = {
        msg_id: (created, published)
        for msg_id, created, published in publisher.state.execute(
            f"SELECT msg_id, created_ms, published_ms FROM p2p_outbox WHERE msg_id IN ({marks})", ids
        )
    }
    from_queue, from_publish = [], []
    for node in receivers:
        rows = node.state.execute(f"SELECT msg_id, received_ms FROM p2p_inbox WHERE msg_id IN ({marks})", ids)
        for msg_id, received in rows:
            created, published = sent[msg_id]
            from_queue.append(received - created)
            from_publish.append(received - published)
    return from_queue, from_publish


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def admission_cost_ms(root: Path, count: int = 500) -> float:
    """Our share of a delivery: Admission.receive (decode, verify, windows, inbox write)."""
    from platform_cli.config import NetworkConfig
    from platform_cli.core import gossip
    from platform_cli.p2p.admission import Admission
    from platform_cli.state.db import open_state
    from tests.p2p_helpers import NETWORK, prepare_node_dirs, signer_of

    (sender_dir, receiver_dir) = prepare_node_dirs(root / "admission", 2)
    sender = NodeProc(sender_dir, root / "unused.log")
    signer = signer_of(sender)
    topic = gossip.topic_name(NETWORK.netuid, "submissions")
    wires = []
    for i in range(count):
        envelope = outgoing.seal_for(sender.state, NETWORK, signer, "submission", {"i": i, "pad": PAYLOAD})
        wires.append(envelope.to_wire())
    with open_state(receiver_dir) as state:
        net = NetworkConfig()
        admission = Admission(state, net.network, net.sudo, rate=10**6, burst=10**6)
        t0 = time.process_time()
        accepted = sum(admission.receive(topic, wire, "bench-peer") for wire in wires)
        spent = time.process_time() - t0
    sender.stop()
    assert accepted == count
    return 1e3 * spent / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="50,100,150,200,300,400")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flood-rounds", type=int, default=5)
    parser.add_argument("--linger", type=float, default=10.0)
    parser.add_argument("--skip-mesh", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_mesh:
            nodes = start_mesh(Path(tmp), 4, config=CONFIG)
            try:
                mesh_ready(nodes)
                per_delivery = run(nodes, [float(r) for r in args.rates.split(",")], args.seconds)
            finally:
                for node in nodes:
                    node.stop()
            admission = admission_cost_ms(Path(tmp))
            print(f"admission (decode, verify, replay window, inbox write): {admission:.2f} ms per message")
            if per_delivery:
                print(f"ratio admission / total CPU per delivery: {admission / per_delivery:.2f}")
        flood_capacity(Path(tmp) / "capacity", args.flood_rounds, args.linger)
        flood_policy(Path(tmp) / "policy", args.linger)


FLOOD = 2000
TOPIC = gossip.topic_name(NETWORK.netuid, "submissions")


def flood_node(root: Path, config: str) -> tuple[NodeProc, Signer]:
    """A running node, and a registered miner whose messages it admits."""
    (node_dir,) = prepare_node_dirs(root, 1, config)
    keys = KeyStore(root / "miner")
    keys.new("miner", "ed25519")
    miner = keys.signer("miner")
    with open_state(node_dir) as state:
        old = latest_snapshot(state, NETWORK.netuid)
        assert old is not None
        neuron = Neuron(len(old.neurons), miner.ss58, miner.ss58, 0, False)
        save_snapshot(state, Snapshot(NETWORK.netuid, old.block + 1, old.tempo, (*old.neurons, neuron)))
    node = NodeProc(node_dir, root / "node.log")
    node.start()
    return node, miner


def flood_messages(root: Path, miner: Signer, tag: str) -> list[bytes]:
    with open_state(root / "miner") as state:
        return [
            outgoing.seal_for(
                state, NETWORK, miner, "submission", {"flood": tag, "i": i, "pad": PAYLOAD}
            ).to_wire()
            for i in range(FLOOD)
        ]


def settled(node: NodeProc, before: dict[str, int], count: int) -> dict[str, int]:
    """The node's counters for this flood once every message received is accounted for."""

    def delta() -> dict[str, int]:
        now = traffic_totals(node.state)
        return {k: now.get(k, 0) - before.get(k, 0) for k in ("received", "admitted", "refused", "dropped")}

    def balanced() -> dict[str, int] | None:
        d = delta()
        return (
            d
            if d["received"] >= count and d["received"] == d["admitted"] + d["refused"] + d["dropped"]
            else None
        )

    try:
        return wait_for(balanced, 30, 0.2, what="the node's counters")
    except AssertionError:
        return delta()


def flood_capacity(root: Path, rounds: int, linger: float) -> None:
    print(f"flood: one peer publishes {FLOOD} x 1 KiB as fast as it can (same run, alternating)")
    node, miner = flood_node(root, CONFIG)
    raw_rates, our_rates, raw_cpu, our_cpu = [], [], [], []
    try:
        idle = idle_cpu_ms_per_s(node)
        for i in range(
            rounds + 1
        ):  # round 0 warms both up (the node's first flood is slow) and is not counted
            sink = Sink(TOPIC)
            cpu0 = pid_cpu_seconds(sink.proc.pid)
            sent = flood(
                sink.addrs, TOPIC, flood_messages(root, miner, f"raw{i}"), root / "raw.bin", linger=linger
            )
            sink_cpu = 1e3 * (pid_cpu_seconds(sink.proc.pid) - cpu0) / FLOOD
            delivered, last_ms = sink.finish()
            sink_rate = rate_or_zero(delivered, last_ms - sent.start_ms)
            messages = flood_messages(root, miner, f"ours{i}")
            before = traffic_totals(node.state)
            cpu0 = cpu_seconds(node)
            sent = flood(node.addrs, TOPIC, messages, root / "ours.bin", linger=linger)
            node_cpu = 1e3 * (cpu_seconds(node) - cpu0) / FLOOD
            counts = settled(node, before, FLOOD)
            ids = [hashlib.sha256(m).hexdigest() for m in messages]
            marks = ",".join("?" * len(ids))
            stored, last = node.state.execute(
                f"SELECT count(*), max(received_ms) FROM p2p_inbox WHERE msg_id IN ({marks})", ids
            ).fetchone()
            node_rate = rate_or_zero(stored, (last or 0) - sent.start_ms)
            print(
                f"  {f'round {i}' if i else 'warm-up'}: plain py-libp2p delivered {delivered}/{FLOOD} "
                f"({sink_rate:.0f}/s, {sink_cpu:.2f} ms CPU a message); node admitted {stored}/{FLOOD} "
                f"({node_rate:.0f}/s, {node_cpu:.2f} ms CPU a message), counters {counts}"
            )
            if i:
                raw_rates.append(sink_rate)
                raw_cpu.append(sink_cpu)
                our_rates.append(node_rate)
                our_cpu.append(node_cpu)
    finally:
        node.stop()
    raw, ours = statistics.median(raw_rates), statistics.median(our_rates)
    print(
        f"zero-loss rate, plain py-libp2p: {raw:.0f} msg/s; node with admission: {ours:.0f} msg/s (medians)"
    )
    print(f"ratio node / plain py-libp2p zero-loss rate: {ours / raw if raw else 0:.2f}")
    paired = [o / r if r else 0.0 for o, r in zip(our_rates, raw_rates, strict=True)]
    print(f"  per round (each node flood right after its plain one): {', '.join(f'{p:.2f}' for p in paired)}")
    cpu_ratio = statistics.median(raw_cpu) / statistics.median(our_cpu)
    print(
        f"ratio plain py-libp2p / node CPU per message (the rate each could sustain alone): {cpu_ratio:.2f}"
    )
    # Where the node's extra CPU goes: admission, measured in process, and its idle loops
    # (which run through each round and its linger).
    print(
        f"node idle: {idle:.1f} ms CPU a second; admission in process (decode, signature, "
        f"window, durable write): {admission_cost_ms(root / 'in-process', 1000):.2f} ms a message"
    )


def idle_cpu_ms_per_s(node: NodeProc, seconds: float = 5.0) -> float:
    cpu0 = cpu_seconds(node)
    time.sleep(seconds)
    return 1e3 * (cpu_seconds(node) - cpu0) / seconds


def pid_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rate_or_zero(delivered: int, elapsed_ms: int) -> float:
    """Messages a second of a flood delivered whole; 0 when any message was lost."""
    return FLOOD / max(elapsed_ms, 1) * 1000 if delivered == FLOOD else 0.0


def flood_policy(root: Path, linger: float) -> None:
    node, miner = flood_node(root, "")
    try:
        sent = flood(
            node.addrs, TOPIC, flood_messages(root, miner, "policy"), root / "policy.bin", linger=linger
        )
        counts = settled(node, {}, 1)
        banned = any(r["peer_id"] == sent.peer_id and r["banned_ms"] for r in store.peers(node.state))
        reasons = {
            f"{r['outcome']}/{r['reason']}": r["count"]
            for r in store.rejections(node.state)
            if r["via"] == "gossip"
        }
    finally:
        node.stop()
    print(f"flood of {FLOOD} from one peer at the default limits (100 msg/s per signer, burst 500):")
    print(
        f"  received {counts['received']} = admitted {counts['admitted']} + refused {counts['refused']} "
        f"+ dropped {counts['dropped']}: "
        f"{'holds' if counts['received'] == counts['admitted'] + counts['refused'] + counts['dropped'] else 'FAILS'}"
    )
    print(f"  reasons {reasons}; the flooding peer {'was banned' if banned else 'was not banned'}")


def run(nodes: list[NodeProc], rates: list[float], seconds: float) -> float:
    """Print the figures; return CPU ms per delivery at the highest sustained rate."""
    publisher, receivers = nodes[0], nodes[1:]
    ids = publish_at(publisher, 20, 200, "latency")
    wait_for(lambda: all(set(ids) <= n.inbox_ids() for n in receivers), 60, 0.2, what="latency run")
    from_queue, from_publish = latencies(publisher, receivers, ids)
    print("p2p: 4 nodes on 127.0.0.1, 1 KiB messages, one publisher")
    print(
        f"latency from outbox queue: p50 {pct(from_queue, 0.5):.0f} ms, p99 {pct(from_queue, 0.99):.0f} ms "
        f"({len(from_queue)} deliveries at 20 msg/s)"
    )
    print(
        f"latency from publish:      p50 {pct(from_publish, 0.5):.0f} ms, p99 {pct(from_publish, 0.99):.0f} ms"
    )
    best = 0.0
    per_delivery = 0.0
    for rate in rates:
        count = int(rate * seconds)
        cpu0 = sum(cpu_seconds(n) for n in nodes)
        t0 = time.monotonic()
        ids = publish_at(publisher, rate, count, f"rate{rate}")
        wanted = set(ids)

        def delivered(wanted: set[str] = wanted) -> bool:
            return all(wanted <= n.inbox_ids() for n in receivers)

        try:
            wait_for(delivered, GRACE_S, 0.2, what=f"rate {rate}")
        except AssertionError:
            got = min(len(wanted & n.inbox_ids()) for n in receivers)
            print(
                f"rate {rate:.0f}/s: not sustained, worst receiver had {got}/{count} {GRACE_S:.0f} s after sending"
            )
            break
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(n) for n in nodes) - cpu0
        deliveries = count * len(receivers)
        best = rate
        per_delivery = 1e3 * cpu / deliveries
        print(
            f"rate {rate:.0f}/s: {count} msgs, zero loss, all delivered in {wall:.1f} s "
            f"({deliveries / wall:.0f} deliveries/s); CPU {1e3 * cpu / count:.1f} ms per message "
            f"(4 nodes), {1e3 * cpu / deliveries:.2f} ms per delivery"
        )
    print(f"highest sustained rate with zero loss: {best:.0f} msg/s")
    ratio = statistics.median(from_publish) / max(1, statistics.median(from_queue))
    print(f"ratio publish-latency / queue-latency (p50): {ratio:.2f}")
    return per_delivery


if __name__ == "__main__":
    main()
