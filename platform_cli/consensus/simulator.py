"""The consensus simulator: N validators, a faulty network, Byzantine validators, invariants.

One schedule is a pure function of its :class:`SimConfig`: the seed chooses the stakes
(unless a spread is given), which validators are Byzantine and how, and the fault plan
(loss, duplication, delay and so reordering, a partition, crashes with restarts from
the durable logs), all of which heal at the global stabilisation time. The validators
run the real machine, application, guard and ledger. The run ends when every honest
validator has committed ``heights`` entries or at ``max_time_ms``; then the invariants
(``sim_invariants.py``) are checked. The same seed replays the same run, message for
message: ``platform consensus simulate --seed S`` reproduces a failing CI schedule.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platform_cli.consensus import sim_invariants as inv
from platform_cli.consensus.sim_byzantine import STRATEGIES, ByzantineNode
from platform_cli.consensus.sim_network import FaultPlan, Network, Scheduler, plan_faults
from platform_cli.consensus.sim_node import SimNode, Trace
from platform_cli.consensus.sim_world import NETWORK, WORK_START_MS, World, parse_spread
from platform_cli.core.consensus.ports import Commit
from platform_cli.errors import PlatformError, UsageError

MAX_VALIDATORS = 128
STALL_WATCH_MS = 5_000
"""When the honest validators are no quorum, how long past healing safety is watched."""


class SimulationError(ValueError):
    """A configuration the simulator cannot run."""


@dataclass(frozen=True)
class SimConfig:
    seed: int
    validators: int = 4
    byzantine: int = 0
    heights: int = 3
    stake_spread: float | None = None
    """None: stakes from the seed; 0.0: equal; else validator 0's share of the stake."""
    faults: bool = True
    strategies: tuple[str, ...] = ()
    """Byzantine strategies, in order (default: chosen by the seed)."""
    byzantine_top: bool = False
    """Make validator 0 (the one a spread favours) one of the Byzantine validators."""
    amnesia: bool = False
    """Restart crashed validators without their signing log (the trap the log prevents)."""
    memo_signatures: bool = True
    max_time_ms: int = 120_000

    def check(self) -> None:
        if not 1 <= self.validators <= MAX_VALIDATORS:
            raise SimulationError(f"--validators {self.validators} must be in 1..{MAX_VALIDATORS}")
        f = (self.validators - 1) // 3
        if not 0 <= self.byzantine <= f:
            raise SimulationError(
                f"--byzantine {self.byzantine} exceeds f = {f} for {self.validators} validators: "
                "the protocol tolerates at most floor((N - 1) / 3) faulty validators"
            )
        if self.byzantine_top and self.byzantine < 1:
            raise SimulationError("a Byzantine top validator needs --byzantine of at least 1")
        if not 1 <= self.heights <= 1000:
            raise SimulationError(f"--heights {self.heights} must be in 1..1000")
        unknown = sorted(set(self.strategies) - set(STRATEGIES))
        if unknown:
            raise SimulationError(f"unknown strategy {unknown[0]!r}: one of {', '.join(STRATEGIES)}")


@dataclass
class SimResult:
    config: SimConfig
    summary: dict[str, Any]
    world: World
    nodes: list[SimNode] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.summary["ok"])

    def log(self) -> list[Commit]:
        """The longest log among the honest validators."""
        return max((n.store.stored for n in self.nodes if n.honest), key=len, default=[])


def simulate(config: SimConfig) -> SimResult:
    config.check()
    world = World(
        config.seed, config.validators, config.heights, config.stake_spread, memo=config.memo_signatures
    )
    rng = random.Random(f"schedule/{config.seed}")
    count = config.validators
    others = list(range(1, count)) if config.byzantine_top else list(range(count))
    byzantine = sorted(
        ([0] if config.byzantine_top else []) + rng.sample(others, config.byzantine - config.byzantine_top)
    )
    strategies = {
        index: config.strategies[i % len(config.strategies)] if config.strategies else rng.choice(STRATEGIES)
        for i, index in enumerate(byzantine)
    }
    honest = [i for i in range(count) if i not in strategies]
    plan = plan_faults(rng, count, honest) if config.faults else FaultPlan()
    scheduler = Scheduler()
    trace = Trace(honest=frozenset(world.keys[i].ss58 for i in honest))
    nodes: list[SimNode] = []
    network = Network(
        scheduler, random.Random(f"links/{config.seed}"), plan, lambda s, d, p: nodes[d].deliver(s, p)
    )
    honest_keys = [world.keys[i].ss58 for i in honest]
    for index, key in enumerate(world.keys):
        if index in strategies:
            node: SimNode = ByzantineNode(
                index,
                key,
                world,
                scheduler,
                network,
                trace,
                strategy=strategies[index],
                honest_keys=honest_keys,
            )
        else:
            node = SimNode(index, key, world, scheduler, network, trace, amnesia=config.amnesia)
        nodes.append(node)
    _schedule(world, nodes, scheduler, plan, rng)
    healed_at = max([plan.gst_ms, *(restart for _, _, restart in plan.crashes)])
    healed: dict[int, tuple[int, int]] = {}

    def snapshot() -> None:
        for node in nodes:
            if node.honest and node.machine is not None:
                healed[node.index] = (node.machine.height, node.machine.round)

    scheduler.at(healed_at, snapshot)
    live = inv.oracle_quorum(world.stakes, [world.keys[i].ss58 for i in honest])
    scheduler.run(
        config.max_time_ms if live else min(config.max_time_ms, healed_at + STALL_WATCH_MS),
        lambda: all(n.height >= world.heights for n in nodes if n.honest) and scheduler.now >= healed_at,
    )
    return SimResult(
        config,
        _summary(config, world, nodes, trace, plan, strategies, healed, healed_at, scheduler, network),
        world,
        nodes,
    )


def _schedule(
    world: World, nodes: list[SimNode], scheduler: Scheduler, plan: FaultPlan, rng: random.Random
) -> None:
    for node in nodes:
        scheduler.at(0, node.boot)
    for i, update in enumerate(world.updates):
        at = WORK_START_MS + i * 60 + rng.randrange(40)
        for node in nodes:
            scheduler.at(at + rng.randrange(20), lambda n=node, u=update: n.add_update(u))
    for node in nodes:
        scheduler.at(rng.randrange(50), lambda n=node: n.add_update(world.forged_update))
    for epoch in world.epochs:
        for node in nodes:
            scheduler.at(
                epoch.start_ms + rng.randrange(50), lambda n=node, e=epoch.number: n.publish_bundle(e)
            )
    for index, crash_at, restart_at in plan.crashes:
        scheduler.at(crash_at, nodes[index].crash)
        scheduler.at(restart_at, nodes[index].boot)


def _summary(
    config: SimConfig,
    world: World,
    nodes: list[SimNode],
    trace: Trace,
    plan: FaultPlan,
    strategies: dict[int, str],
    healed: dict[int, tuple[int, int]],
    healed_at: int,
    scheduler: Scheduler,
    network: Network,
) -> dict[str, Any]:
    honest = [n for n in nodes if n.honest]
    logs = {n.index: list(n.store.stored) for n in honest}
    longest = max(logs.values(), key=len, default=[])
    report_sets = {root: rs for n in nodes for root, rs in n.view.report_sets.items()}
    live = inv.oracle_quorum(world.stakes, [n.key.ss58 for n in honest])
    invariants = {
        "agreement": inv.agreement(logs),
        "validity": inv.validity(world, longest, report_sets),
        "certificates": inv.certificates(world, logs),
        "no_double_vote": inv.no_double_vote(trace),
        "no_censorship": inv.no_censorship(world, nodes, longest),
        "liveness": inv.liveness(world, logs, trace, healed, healed_at) if live else None,
    }
    total = sum(world.stakes.values())
    rounds = [c.certificate.round for c in longest]
    return {
        "seed": config.seed,
        "validators": config.validators,
        "heights": config.heights,
        "stake_ppm": [world.stakes[k.ss58] * 1_000_000 // total for k in world.keys],
        "byzantine": [{"validator": i, "strategy": s} for i, s in sorted(strategies.items())],
        "amnesia": config.amnesia,
        "faults": plan.summary(),
        "liveness_expected": live,
        "committed": min((len(log) for log in logs.values()), default=0),
        "rounds": {"max": max(rounds, default=0), "per_height": rounds},
        "time_ms": scheduler.now,
        "messages": vars(network.counters),
        "signatures": {"checked": world.verifier.checked, "verified": world.verifier.computed},
        "evidence": len(trace.evidence),
        "refused": dict(sorted(trace.refused.items())),
        "values_rejected": trace.rejections,
        "invariants": {
            name: problem or "ok"
            for name, problem in invariants.items()
            if problem or name != "liveness" or live
        },
        "ok": all(problem is None for problem in invariants.values()),
    }


def write_out(result: SimResult, directory: Path) -> None:
    """The committed log with certificates, the validator set file and the summary."""
    directory.mkdir(parents=True, exist_ok=True)
    certificates = directory / "certificates"
    certificates.mkdir(exist_ok=True)
    lines = []
    for commit in result.log():
        cert = commit.certificate
        lines.append(
            json.dumps(
                {
                    "height": commit.height,
                    "value_id": cert.value_id,
                    "value": commit.value,
                    "certificate": cert.to_json(),
                },
                sort_keys=True,
            )
        )
        (certificates / f"{commit.height}.json").write_text(
            json.dumps(cert.to_json(commit.value), indent=2, sort_keys=True) + "\n"
        )
    (directory / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    validators = {
        "network": {"netuid": NETWORK.netuid, "genesis": NETWORK.genesis},
        "block": result.world.validators.block,
        "validators": [{"hotkey": h, "stake": s} for h, s in result.world.validators.members],
    }
    (directory / "validators.json").write_text(json.dumps(validators, indent=2) + "\n")
    (directory / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")


def run_cli(
    *,
    seed: int,
    validators: int,
    byzantine: int,
    heights: int,
    stake_spread: str,
    strategies: tuple[str, ...],
    byzantine_top: bool,
    faults: bool,
    out: Path | None,
) -> dict[str, Any]:
    """``platform consensus simulate``: one schedule, its summary, optionally its files."""
    try:
        spread = parse_spread(stake_spread)
    except ValueError as exc:
        raise UsageError(f"--stake-spread: {exc}") from None
    config = SimConfig(
        seed=seed,
        validators=validators,
        byzantine=byzantine,
        heights=heights,
        stake_spread=spread,
        faults=faults,
        strategies=strategies,
        byzantine_top=byzantine_top,
    )
    try:
        config.check()
    except SimulationError as exc:
        raise UsageError(str(exc)) from None
    result = simulate(config)
    if out is not None:
        try:
            write_out(result, out)
        except OSError as exc:
            raise PlatformError(f"cannot write the simulation to {out}: {exc.strerror}") from None
    return result.summary
