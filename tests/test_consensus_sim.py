"""The simulator: a thousand seeded schedules under faults, and the traps it must catch."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from platform_cli.consensus.sim_byzantine import STRATEGIES
from platform_cli.consensus.simulator import SimConfig, SimulationError, simulate
from platform_cli.core.consensus.validators import ValidatorSet

SCHEDULES = 1000
SPREADS = (None, 0.0, 0.6, 0.334)


def schedule(i: int) -> SimConfig:
    """Schedule i of the CI matrix: N in {4, 7, 10}, random/equal/60%/33.4% stakes, 0..f faulty."""
    n = 4 if i % 20 < 9 else 7 if i % 20 < 16 else 10
    f = (n - 1) // 3
    spread = SPREADS[(i // 20) % 4]
    byzantine = i % (f + 1)
    top = spread in (0.6, 0.334) and byzantine >= 1 and (i // 80) % 2 == 0
    return SimConfig(
        seed=i, validators=n, byzantine=byzantine, heights=2, stake_spread=spread, byzantine_top=top
    )


def run_batch(indices: list[int]) -> list[tuple[int, dict]]:
    results = []
    for i in indices:
        summary = simulate(schedule(i)).summary
        results.append((i, {k: summary[k] for k in ("ok", "invariants", "committed", "validators")}))
    return results


def test_a_thousand_seeded_schedules_keep_every_invariant(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    workers = max(1, min(2, os.cpu_count() or 1))
    chunks = [list(range(w, SCHEDULES, workers * 10)) for w in range(workers * 10)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = [r for batch in pool.map(run_batch, chunks) for r in batch]
    failing = [(i, s["invariants"]) for i, s in results if not s["ok"]]
    by_size = {n: sum(1 for _, s in results if s["validators"] == n) for n in (4, 7, 10)}
    with capsys.disabled():
        print(
            f"\nconsensus simulator: {len(results)} schedules run (validators 4/7/10: {by_size[4]}/{by_size[7]}/"
            f"{by_size[10]}), {len(failing)} failing, {time.monotonic() - started:.1f} s on {workers} processes"
        )
    assert len(results) == SCHEDULES and all(by_size.values())
    replay = [
        f"platform consensus simulate --seed {i} --validators {schedule(i).validators} --byzantine "
        f"{schedule(i).byzantine} --heights 2 --stake-spread {schedule(i).stake_spread or 'random'}"
        f"{' --byzantine-top' if schedule(i).byzantine_top else ''}: {problems}"
        for i, problems in failing[:5]
    ]
    assert not failing, "\n".join(replay)


@pytest.mark.parametrize("seed", range(6))
def test_nothing_commits_without_the_sixty_percent_validator(seed: int) -> None:
    config = SimConfig(
        seed=seed,
        validators=(4, 7, 10)[seed % 3],
        byzantine=1,
        byzantine_top=True,
        strategies=("silent",),
        stake_spread=0.6,
        heights=2,
    )
    result = simulate(config)
    assert result.ok and result.summary["committed"] == 0 and not result.summary["liveness_expected"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_third_of_the_stake_can_stall_but_never_fork(strategy: str) -> None:
    for seed in range(3):
        config = SimConfig(
            seed=seed,
            validators=4,
            byzantine=1,
            byzantine_top=True,
            strategies=(strategy,),
            stake_spread=0.334,
            heights=2,
        )
        result = simulate(config)
        invariants = result.summary["invariants"]
        assert result.ok, invariants
        assert "liveness" not in invariants  # 66.6% of honest stake is no quorum: no liveness promised


def weaker_stake_only(self: ValidatorSet, stake: int, count: int) -> bool:
    return 2 * stake > self.total


def weaker_count_only(self: ValidatorSet, stake: int, count: int) -> bool:
    return count >= 2 * self.f + 1


@pytest.mark.parametrize("weaker", [weaker_stake_only, weaker_count_only])
def test_a_weakened_quorum_rule_is_caught_by_the_invariants(monkeypatch: pytest.MonkeyPatch, weaker) -> None:
    monkeypatch.setattr(ValidatorSet, "quorum", weaker)
    caught = []
    for seed in range(8):
        config = SimConfig(
            seed=seed,
            validators=(4, 7)[seed % 2],
            byzantine=1,
            stake_spread=0.6,
            byzantine_top=seed % 4 == 0,
            strategies=("silent",) if seed % 4 == 0 else ("equivocate",),
            heights=2,
        )
        summary = simulate(config).summary
        caught.append(not summary["ok"])
        broken = {k for k, v in summary["invariants"].items() if v != "ok"}
        assert not summary["ok"] and broken & {"certificates", "agreement", "validity"}, (
            seed,
            summary["invariants"],
        )
    assert all(caught)


def test_forgetting_the_signing_log_after_a_crash_is_caught_as_a_double_vote() -> None:
    """Amnesia: why votes are stored before they are sent."""
    caught = []
    for seed in range(60):
        config = SimConfig(seed=seed, validators=4, heights=2, amnesia=True)
        summary = simulate(config).summary
        if summary["faults"]["crashes"]:
            caught.append(summary["invariants"]["no_double_vote"] != "ok")
            without = simulate(SimConfig(seed=seed, validators=4, heights=2)).summary
            assert without["invariants"]["no_double_vote"] == "ok"
    assert any(caught), "no crash schedule showed what amnesia does"


def test_every_byzantine_strategy_runs_against_honest_validators() -> None:
    for strategy in STRATEGIES:
        result = simulate(SimConfig(seed=11, validators=7, byzantine=2, strategies=(strategy,), heights=3))
        assert result.ok, (strategy, result.summary["invariants"])
        assert {b["strategy"] for b in result.summary["byzantine"]} == {strategy}
        assert result.summary["committed"] == 3


def test_a_weights_vector_goes_through_and_censorship_is_refused() -> None:
    result = simulate(
        SimConfig(seed=4, validators=4, byzantine=1, strategies=("censor",), heights=3, faults=False)
    )
    vectors = [a for c in result.log() for a in c.value["actions"] if a["type"] == "weights"]
    assert result.ok and vectors
    assert len(vectors[0]["bundles"]) >= 3


def test_configurations_out_of_bounds_are_refused() -> None:
    with pytest.raises(SimulationError, match="exceeds f = 1"):
        simulate(SimConfig(seed=1, validators=4, byzantine=2))
    with pytest.raises(SimulationError, match="unknown strategy"):
        simulate(SimConfig(seed=1, validators=4, byzantine=1, strategies=("nice",)))


def cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "platform_cli", *args], capture_output=True, text=True, env=env, check=False
    )


def test_a_seed_replays_exactly_in_another_process(tmp_path: Path) -> None:
    runs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"run{hash_seed}"
        args = (
            "consensus",
            "simulate",
            "--seed",
            "17",
            "--validators",
            "7",
            "--byzantine",
            "2",
            "--out",
            str(out),
        )
        done = cli("--data-dir", str(tmp_path / "data"), *args, env_extra={"PYTHONHASHSEED": hash_seed})
        assert done.returncode == 0, done.stderr
        runs.append((done.stdout, (out / "log.jsonl").read_bytes(), (out / "summary.json").read_bytes()))
    assert runs[0] == runs[1]
    summary = json.loads(runs[0][0])
    assert summary == simulate(SimConfig(seed=17, validators=7, byzantine=2)).summary
    assert summary["committed"] == 3 and summary["ok"]
