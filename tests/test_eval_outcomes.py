"""Outcomes an operator can trust: a timeout records no made-up fuel and replays as
``n/a``, a worker killed past the bound is a timeout, a crashed one fails the command,
and a guest's overrun of its wall-clock budget is a tick, not a third of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils

from platform_cli import evaluation
from platform_cli.runtime import compile_cost
from platform_cli.runtime.engine import TICK_MS
from platform_cli.runtime.pool import WorkerPool
from platform_cli.state import migrations, open_state
from platform_cli.state.db import DB_FILENAME
from tests.eval_helpers import HOSTILE, REPO, write_challenge


def spin_challenge(folder: Path, wall_ms: int) -> tuple[Path, Path]:
    toml = write_challenge(
        folder, (HOSTILE / "infinite_loop.wasm").read_bytes(), wall_ms=wall_ms, fuel=10**12
    )
    submission = folder / "submission.bin"
    submission.write_bytes(b"spin")
    return toml, submission


def test_a_timeout_records_no_fuel_and_replays_as_not_applicable(run, tmp_path):
    toml, submission = spin_challenge(tmp_path / "spin", 200)
    result = run("--json", "eval", "run", str(toml), str(submission))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["outcome"] == "timeout" and record["fuel_used"] is None
    assert "fuel used until the interruption is not observable" in record["message"]
    replay = run("--json", "eval", "replay", str(record["id"]))
    assert replay.exit_code == 0, replay.output
    replayed = json.loads(replay.stdout)
    assert replayed["identical"] == "n/a (timeout)" and replayed["outcome"] == "timeout"
    assert "identical           n/a (timeout)" in run("eval", "replay", str(record["id"])).stdout


def test_a_table_bomb_overruns_its_budget_by_a_tick(tmp_path):
    """Each epoch tick was counted per wake-up of the ticker thread, so every late wake-up
    stretched the deadline (735-811 ms recorded for 500 ms). The ticker now counts the
    time that passed: a guest stops within its deadline's margin plus the ticker's
    lateness, whatever the load. The exact figure is in bench/bench_eval.py."""
    wall_ms = 1_000
    toml = write_challenge(
        tmp_path / "bomb", (HOSTILE / "table_bomb.wasm").read_bytes(), wall_ms=wall_ms, fuel=10**12
    )
    (tmp_path / "s").write_bytes(b"s")
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "platform_cli",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            "eval",
            "run",
            str(toml),
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    elapsed = (time.perf_counter() - started) * 1000
    record = json.loads(done.stdout)
    assert record["outcome"] == "timeout"
    assert wall_ms <= record["wall_ms"] <= wall_ms + 2 * TICK_MS + 150, record["wall_ms"]
    assert elapsed <= compile_cost.evaluation_bound_ms(wall_ms) * 3


@pytest.mark.slow
def test_a_worker_killed_past_the_bound_is_a_recorded_timeout_that_replays_as_not_applicable(
    data_dir, tmp_path
):
    toml, submission = spin_challenge(tmp_path / "spin", 100)
    with open_state(data_dir) as state:
        spec, module, _ = evaluation.resolve_challenge(state, str(toml))
        prepared = evaluation.prepare(spec, module, submission.read_bytes(), 0, str(submission))
        with WorkerPool(1, grace_s=0.2) as pool:
            out: list = []
            thread = threading.Thread(target=lambda: out.extend(pool.map([prepared.job()])))
            thread.start()
            deadline = time.monotonic() + 60
            while not any(w.job is not None for w in pool.workers):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            os.kill(pool.workers[0].process.pid, signal.SIGSTOP)  # hung: past its bound it is killed
            thread.join(timeout=60)
        (run,) = out
        assert run.outcome == "timeout" and run.fuel_used is None and "killed after" in run.message
        eval_id = evaluation.record(state, prepared, run)
        assert evaluation.show_evaluation(state, eval_id)["fuel_used"] is None
        replayed = evaluation.replay(state, data_dir, eval_id)
    assert replayed["identical"] == "n/a (timeout)" and replayed["outcome"] == "timeout"


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_a_crashed_worker_fails_the_command_and_is_recorded(tmp_path):
    toml, submission = spin_challenge(tmp_path / "spin", 8_000)
    data = tmp_path / "data"
    command = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "platform_cli",
            "--data-dir",
            str(data),
            "--json",
            "eval",
            "run",
            "--jobs",
            "2",
            str(toml),
            str(submission),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while len(workers) < 2:
            assert time.monotonic() < deadline, "the workers never started"
            workers = [
                p for p in children(command.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
            ]
            time.sleep(0.1)
        time.sleep(1.0)  # the job reaches a worker once both are ready
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = command.communicate(timeout=120)
    finally:
        command.kill()
    assert command.returncode == 1
    record = json.loads(stdout)
    assert record["outcome"] == "failed" and record["fuel_used"] is None
    (line,) = [line for line in stderr.splitlines() if line.split()[2:3] != ["WARNING"]]
    assert line == f"error: evaluation {record['id']} failed: worker exited with code -9 while evaluating"
    with open_state(data) as state:
        replayed = evaluation.replay(state, data, record["id"])
    assert replayed["identical"] == "n/a (failed)"


def test_the_migration_forgets_made_up_fuel_and_keeps_ids(tmp_path, monkeypatch):
    db = sqlite_utils.Database(tmp_path / DB_FILENAME)
    earlier = [name for name in migrations.available() if name < "m0007"]
    monkeypatch.setattr(migrations, "available", lambda: earlier)
    migrations.migrate(db)
    monkeypatch.undo()

    def insert(outcome: str, fuel: int) -> None:
        db.execute(
            "INSERT INTO evaluations (created_ms, challenge_id, challenge_version, module_sha256, spec, "
            "submission_sha256, epoch, seed, input_sha256, outcome, message, score, valid, metrics, fuel_used, "
            "wall_ms, peak_memory, host_calls, engine, engine_fingerprint) "
            "VALUES (1, 'c', '1.0.0', 'm', '{}', 's', 0, 'x', 'i', ?, '', 0, 0, '{}', ?, 5, 0, '{}', '{}', 'f')",
            [outcome, fuel],
        )

    for outcome, fuel in [("timeout", 2), ("ok", 1234), ("failed", 0), ("ok", 99)]:
        insert(outcome, fuel)
    db.execute("DELETE FROM evaluations WHERE id = 4")
    db.conn.commit()
    migrations.migrate(db)
    rows = list(db.execute("SELECT id, fuel_used, compile_ms FROM evaluations ORDER BY id"))
    assert rows == [(1, None, 0), (2, 1234, 0), (3, None, 0)]
    insert("ok", 1)
    assert db.execute("SELECT max(id) FROM evaluations").fetchone()[0] == 5  # id 4 is never reused
