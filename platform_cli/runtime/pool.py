"""A pool of sandbox worker processes (spawn context, one engine each).

Fork is never used: a forked child of a process that has touched wasmtime can deadlock.
Each worker announces itself once its engine is up, then serves one job at a time over a
pipe. The parent watches every worker's pipe and process sentinel. A worker that runs
past its job's documented bound (``compile_cost.evaluation_bound_ms``) plus a grace
period is killed and replaced, and its job comes back as a ``timeout``: a wall-clock
overrun like any other. A worker that dies on its own is replaced too, and its job comes
back ``failed``: the platform, not the submission, could not evaluate it. No job is lost.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from platform_cli.core.challenge import ResourcePolicy
from platform_cli.errors import PlatformError
from platform_cli.runtime.compile_cost import evaluation_bound_ms

log = logging.getLogger("platform.runtime.pool")

START_TIMEOUT_S = 60.0
MAX_START_FAILURES = 3
IDLE = float("inf")


@dataclass(frozen=True)
class Job:
    module: bytes
    module_sha256: str
    entrypoint: str
    data: bytes
    limits: ResourcePolicy
    seed: bytes
    nested: tuple[bytes, ...] = ()


def run_job(sandbox: Any, job: Job) -> Any:
    return sandbox.evaluate(
        job.module, job.module_sha256, job.entrypoint, job.data, job.limits, job.seed, job.nested
    )


def _worker_main(conn: Connection, cache_dir: Path | None) -> None:
    from platform_cli.runtime.sandbox import Sandbox

    sandbox = Sandbox(cache_dir)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if job is None:
            break
        conn.send(run_job(sandbox, job))
    sandbox.close()


def lost_result(outcome: str, message: str, wall_ms: int = 0) -> Any:
    """The result of a job whose worker was killed (``timeout``) or died (``failed``)."""
    from platform_cli.runtime.sandbox import RunResult

    return RunResult(outcome=outcome, message=message, fuel_used=None, wall_ms=wall_ms, peak_memory=0)


class _Worker:
    def __init__(self, ctx: Any, cache_dir: Path | None) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, cache_dir), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.job: int | None = None
        self.deadline = self.started + START_TIMEOUT_S

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class WorkerPool:
    def __init__(self, workers: int, cache_dir: Path | None = None, grace_s: float = 10.0) -> None:
        if workers < 1:
            raise PlatformError(f"--jobs must be at least 1, got {workers}")
        self._ctx = multiprocessing.get_context("spawn")
        self.cache_dir = cache_dir
        self.grace_s = grace_s
        self.start_failures = 0
        self.workers = [_Worker(self._ctx, cache_dir) for _ in range(workers)]

    def allowance_s(self, job: Job) -> float:
        """How long a job may take before its worker is killed: its bound plus the grace."""
        return evaluation_bound_ms(job.limits.wall_ms) / 1000 + self.grace_s

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.pid is not None]

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self.workers[self.workers.index(worker)] = _Worker(self._ctx, self.cache_dir)

    def map(self, jobs: list[Job]) -> list[Any]:
        """Run every job; results in job order. Failed workers yield ``failed`` results."""
        results: list[Any] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        done = 0
        while done < len(jobs):
            for worker in self.workers:
                if worker.ready and worker.job is None and pending:
                    index = pending.pop(0)
                    worker.job = index
                    worker.started = time.monotonic()
                    worker.deadline = worker.started + self.allowance_s(jobs[index])
                    if not self._send(worker, jobs[index]):
                        # died while idle: the job never reached it, so it runs elsewhere
                        pending.insert(0, index)
                        self._lost(worker, "worker connection broken")
            nearest = min(w.deadline for w in self.workers)
            timeout = None if nearest == IDLE else max(0.0, nearest - time.monotonic())
            ready = set(
                wait([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers], timeout)
            )
            for worker in list(self.workers):
                done += self._service(worker, ready, results)
        return results

    def _service(self, worker: _Worker, ready: set[Any], results: list[Any]) -> int:
        if worker.conn in ready:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                message = None
            if message == "ready":
                worker.ready, worker.deadline = True, IDLE
                return 0
            if message is not None and worker.job is not None:
                results[worker.job] = message
                worker.job, worker.deadline = None, IDLE
                return 1
        alive = worker.process.is_alive()
        if alive and time.monotonic() < worker.deadline:
            return 0
        index = worker.job
        elapsed_ms = int((time.monotonic() - worker.started) * 1000)
        reason = f"worker exited with code {worker.process.exitcode}" if not alive else "worker hung"
        self._lost(worker, reason)
        if index is None:
            return 0
        if alive:
            results[index] = lost_result(
                "timeout", f"killed after {elapsed_ms} ms, past the evaluation's bound and grace", elapsed_ms
            )
        else:
            results[index] = lost_result("failed", f"{reason} while evaluating")
        return 1

    @staticmethod
    def _send(worker: _Worker, job: Job) -> bool:
        try:
            worker.conn.send(job)
        except (BrokenPipeError, EOFError, OSError) as exc:
            log.warning("event=worker_send_failed pid=%s error=%r", worker.process.pid, exc)
            worker.job = None
            return False
        return True

    def _lost(self, worker: _Worker, reason: str) -> None:
        """Replace a dead or hung worker (too many failed starts end the batch)."""
        log.warning("event=worker_replaced pid=%s reason=%r job=%s", worker.process.pid, reason, worker.job)
        if not worker.ready:
            self.start_failures += 1
            if self.start_failures >= MAX_START_FAILURES:
                raise PlatformError(f"sandbox workers fail to start ({reason})")
        self._replace(worker)

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(timeout=5)
            worker.kill()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
