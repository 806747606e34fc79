"""Consensus benchmark, simulated part: CPU, signatures and messages per committed height.

N validators run the real machine, application, guard and ledger over the in-process
network with no faults; every validator verifies every signature it receives itself
(no shared cache), as real validators do. Figures are per committed height, for the
whole network and per validator; the message count is compared with n^2.

Run: python bench/bench_consensus.py [N ...]   (default 16 32 64)
"""

from __future__ import annotations

import sys
import time

from platform_cli.consensus.simulator import SimConfig, simulate

HEIGHTS = 6
TARGET_CPU_S = 1.0


def measure(validators: int) -> dict[str, float]:
    config = SimConfig(seed=1, validators=validators, heights=HEIGHTS, faults=False, memo_signatures=False)
    started = time.process_time()
    result = simulate(config)
    cpu = time.process_time() - started
    summary = result.summary
    if not summary["ok"] or summary["committed"] != HEIGHTS:
        raise SystemExit(f"the {validators}-validator run failed: {summary['invariants']}")
    heights = summary["committed"]
    kinds = summary["messages"]["by_kind"]
    votes = sum(kinds.get(k, 0) for k in ("consensus.proposal", "consensus.prevote", "consensus.precommit"))
    return {
        "consensus_messages_per_height": votes / heights,
        "cpu_per_height_s": cpu / heights,
        "cpu_per_validator_ms": cpu / heights / validators * 1000,
        "verified_per_height": summary["signatures"]["verified"] / heights,
        "messages_per_height": summary["messages"]["sent"] / heights,
        "rounds_max": summary["rounds"]["max"],
    }


def main(sizes: list[int]) -> None:
    print(f"consensus simulation, {HEIGHTS} heights, no faults, every signature verified by every receiver")
    for n in sizes:
        figures = measure(n)
        per_n2 = figures["consensus_messages_per_height"] / (n * n)
        print(
            f"{n:3d} validators: {figures['cpu_per_height_s']:.3f} s CPU per height "
            f"({figures['cpu_per_validator_ms']:.1f} ms per validator; target {TARGET_CPU_S:.0f} s -> "
            f"{figures['cpu_per_height_s'] / TARGET_CPU_S:.2f}x of budget), "
            f"{figures['verified_per_height']:.0f} signatures verified, "
            f"{figures['consensus_messages_per_height']:.0f} proposal/vote messages ({per_n2:.2f} n^2; "
            f"{figures['messages_per_height']:.0f} with bundles and catch-up), max round {figures['rounds_max']}"
        )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [16, 32, 64])
