"""P2P benchmark: 4 `platform peer run` processes on 127.0.0.1, 1 KiB messages.

Prints delivery latency (p50/p99, from queueing in the publisher's outbox and from the
moment it was published, to the row in each receiver's inbox), the highest sustained
rate tried that delivered every message to every node, and CPU per message (all four
node processes together, from /proc).

    python bench/bench_p2p.py [--rates 50,100,200,400] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from platform_cli.p2p import outgoing
from tests.p2p_helpers import NodeProc, mesh_ready, queue, start_mesh, wait_for

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
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
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
