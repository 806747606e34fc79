"""The worker pool: spawn context; a crashed worker is replaced and its job comes back
``failed``, a hung one is killed past the evaluation's bound and its job comes back a
``timeout``; the pool keeps serving."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from platform_cli.runtime.pool import Job, WorkerPool
from tests.eval_helpers import good_job, hostile_cases, make_input

pytestmark = pytest.mark.slow


def spin_job(wall_ms: int) -> Job:
    """An infinite loop with ample fuel: only the wall clock stops it."""
    case = next(c for c in hostile_cases() if c.name == "infinite_loop")
    data, seed, sha = make_input(case.module, case.submission)
    limits = case.limits.__class__(**{**case.limits.__dict__, "wall_ms": wall_ms})
    return Job(case.module, sha, "evaluate", data, limits, seed)


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def busy_pid(pool: WorkerPool) -> int | None:
    for worker in pool.workers:
        if worker.job is not None:
            return worker.process.pid
    return None


def map_in_thread(pool: WorkerPool, jobs: list[Job]) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(pool.map(jobs)))
    thread.start()
    return thread, out


def test_pool_uses_spawned_workers_and_runs_jobs_in_order():
    with WorkerPool(2) as pool:
        results = pool.map([good_job(), spin_job(100), good_job()])
    assert [r.outcome for r in results] == ["ok", "timeout", "ok"]


def test_crashed_worker_is_replaced_and_its_job_failed():
    with WorkerPool(1) as pool:
        thread, out = map_in_thread(pool, [spin_job(30_000)])
        wait_for(lambda: busy_pid(pool) is not None)
        victim = busy_pid(pool)
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert out[0].outcome == "failed" and "exited with code -9" in out[0].message
        assert out[0].fuel_used is None
        assert victim not in pool.pids()
        assert pool.map([good_job()])[0].outcome == "ok"


def test_hung_worker_is_killed_past_the_bound_and_its_job_timed_out():
    with WorkerPool(1, grace_s=0.5) as pool:
        job = spin_job(100)
        thread, out = map_in_thread(pool, [job])
        wait_for(lambda: busy_pid(pool) is not None)
        victim = busy_pid(pool)
        os.kill(victim, signal.SIGSTOP)
        thread.join(timeout=60)
        assert out[0].outcome == "timeout" and "killed after" in out[0].message
        assert out[0].fuel_used is None
        assert out[0].wall_ms >= pool.allowance_s(job) * 1000 - 50
        assert victim not in pool.pids()
        assert pool.map([good_job()])[0].outcome == "ok"


def test_worker_that_died_idle_is_replaced_and_the_batch_completes():
    with WorkerPool(2) as pool:
        assert [r.outcome for r in pool.map([good_job(), good_job()])] == ["ok", "ok"]
        victim = pool.workers[0]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.join(timeout=30)
        assert not victim.process.is_alive()
        # the next job is sent to the dead worker first: its pipe is broken
        results = pool.map([good_job(), good_job(), good_job()])
        assert [r.outcome for r in results] == ["ok", "ok", "ok"]
        assert victim.process.pid not in pool.pids()
