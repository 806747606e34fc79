"""Evaluations behind ``platform eval``: resolve, check, run, record, replay.

What is wrong before anything runs (an unknown challenge, a module whose hash differs
from its metadata, an unreadable file) raises a :class:`PlatformError` and records
nothing. A submission that cannot be evaluated (empty, malformed, importing outside the
whitelist, too slow to compile, too large for the challenge's input) is refused with its
reason and recorded nowhere, so it never counts as a score; the other submissions of the
batch are still evaluated and recorded. An evaluation that ran is recorded whatever its
outcome, with the engine that produced it. A ``timeout`` is an outcome like any other
(recorded, exit 0); a ``failed`` one (the platform could not evaluate: a worker crashed)
is recorded and makes the command exit 1. Neither is machine-independent, so neither is
reported to the network, and replay says so instead of comparing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli import registry as reg
from platform_cli.clock import now_ms
from platform_cli.config import Config
from platform_cli.core import abi
from platform_cli.core.challenge import ChallengeSpec, SpecError, spec_from_canonical
from platform_cli.core.scores import NON_DETERMINISTIC_OUTCOMES
from platform_cli.errors import PlatformError
from platform_cli.files import read_limited
from platform_cli.state import audit
from platform_cli.state.db import State, write_transaction

log = logging.getLogger("platform.eval")

SUBMISSION_FORMATS = ("bytes", "wasm")
CACHE_DIRNAME = "module-cache"
MAX_SUBMISSION_FILE_BYTES = 64 * 1024 * 1024


class SubmissionRefused(PlatformError):
    """The submission itself is unacceptable: recorded as an ``invalid`` evaluation."""


@dataclass(frozen=True)
class Prepared:
    spec: ChallengeSpec
    module: bytes
    submission: bytes
    submission_sha256: str
    epoch: int
    seed: bytes
    data: bytes
    refused: str | None = None

    def job(self) -> Any:
        from platform_cli.runtime.pool import Job

        # A WASM submission is compiled before the evaluation's clock starts.
        wasm = self.spec.params.get("submission_format") == "wasm"
        return Job(
            self.module,
            self.spec.module_sha256,
            self.spec.entrypoint,
            self.data,
            self.spec.resources,
            self.seed,
            (self.submission,) if wasm else (),
        )


def cache_dir(data_dir: Path) -> Path:
    return Path(data_dir) / CACHE_DIRNAME


def default_jobs(config: Config) -> int:
    """``[runtime] jobs`` from the config file (1 when absent)."""
    table = config.section("runtime")
    unknown = sorted(set(table) - {"jobs"})
    if unknown:
        raise PlatformError(f"{config.path}: runtime.{unknown[0]} is not a known setting")
    jobs = table.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 64:
        raise PlatformError(f"{config.path}: runtime.jobs = {jobs!r} must be an integer in 1..64")
    return jobs


def resolve_challenge(state: State, ref: str) -> tuple[ChallengeSpec, bytes, str]:
    """A challenge.toml path (or its directory), or a registry id as ``ID`` or ``ID@VERSION``.

    Returns the spec, the module and where it came from: ``file`` or the registry state.
    A bare ``ID`` means its active version only; a draft or deprecated version runs only
    when named as ``ID@VERSION`` (and says so in the log and the output). A retired
    version is refused: its scores can no longer count for anything.
    """
    path = Path(ref)
    if path.is_dir() and (path / "challenge.toml").is_file():
        path = path / "challenge.toml"
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise PlatformError(f"challenge file {path} does not exist")
        return (*reg.load_challenge(path), "file")
    challenge_id, _, version = ref.partition("@")
    shown = reg.show_version(state, challenge_id, version or None)
    if not version and shown["state"] != "active":
        raise PlatformError(
            f"challenge {challenge_id!r} has no active version (latest {shown['version']} is "
            f"{shown['state']}); name a version explicitly as {challenge_id}@VERSION"
        )
    if shown["state"] == "retired":
        raise PlatformError(f"challenge {ref} is retired and is no longer evaluated")
    if shown["state"] != "active":
        log.warning("event=non_active_challenge challenge=%s state=%s", ref, shown["state"])
    body = {k: v for k, v in shown.items() if k not in ("state", "update_id")}
    try:
        spec = spec_from_canonical(body)
    except SpecError as exc:
        raise PlatformError(f"registry entry {ref}: {exc}") from None
    row = state.execute("SELECT content FROM modules WHERE sha256 = ?", [spec.module_sha256]).fetchone()
    if row is None:
        raise PlatformError(f"challenge {ref}: module {spec.module_sha256[:16]} is not stored")
    actual = hashlib.sha256(row[0]).hexdigest()
    if actual != spec.module_sha256:
        raise PlatformError(
            f"challenge {ref}: stored module hashes to {actual}, metadata says {spec.module_sha256}"
        )
    return spec, bytes(row[0]), shown["state"]


def check_submission(spec: ChallengeSpec, submission: bytes, source: str) -> None:
    fmt = spec.params.get("submission_format", "bytes")
    if fmt not in SUBMISSION_FORMATS:
        raise PlatformError(
            f"challenge {spec.id}: params.submission_format {fmt!r} is not one of {SUBMISSION_FORMATS}"
        )
    if not submission:
        raise SubmissionRefused("submission is empty")
    if fmt == "wasm":
        import wasmtime

        from platform_cli.runtime import compile_cost, host
        from platform_cli.runtime.diagnostics import one_line
        from platform_cli.runtime.engine import validation_engine
        from platform_cli.runtime.validate import MAX_SUBMISSION_MODULE_BYTES, ModuleRefused, validate

        try:
            validate(
                submission,
                max_bytes=MAX_SUBMISSION_MODULE_BYTES,
                max_memory_bytes=host.NESTED_MEMORY_CAP,
                allowed_imports=frozenset(),
                submission=True,
                max_compile_ms=compile_cost.nested_budget_ms(spec.resources.wall_ms),
            )
            wasmtime.Module.validate(validation_engine(), submission)
        except (ModuleRefused, wasmtime.WasmtimeError) as exc:
            raise SubmissionRefused(f"not an acceptable WASM submission: {one_line(exc)}") from None


def prepare(spec: ChallengeSpec, module: bytes, submission: bytes, epoch: int, source: str) -> Prepared:
    if not 0 <= epoch < 2**63:
        raise PlatformError(f"epoch {epoch} is outside 0..2**63-1")
    refused = None
    try:
        check_submission(spec, submission, source)
    except SubmissionRefused as exc:
        refused = str(exc)
    digest = hashlib.sha256(submission).digest()
    seed = abi.derive_seed(epoch, digest, bytes.fromhex(spec.module_sha256))
    data = abi.encode_input(
        challenge_id=spec.id,
        version=spec.version,
        module_sha256=bytes.fromhex(spec.module_sha256),
        submission=submission,
        seed=seed,
        params=spec.params,
    )
    if refused is None and len(data) > spec.resources.max_input_bytes:
        refused = (
            f"submission of {len(submission)} bytes makes an input of {len(data)} bytes, "
            f"over the challenge's max_input_bytes {spec.resources.max_input_bytes}"
        )
    if refused is not None:
        log.info("event=submission_refused source=%s reason=%r", source, refused)
        refused = f"{source}: {refused}"
    return Prepared(spec, module, submission, digest.hex(), epoch, seed, data, refused)


def read_submission(path: Path) -> bytes:
    """A regular file of at most MAX_SUBMISSION_FILE_BYTES (never a FIFO or a device)."""
    return read_limited(path, MAX_SUBMISSION_FILE_BYTES, "submission")


def execute(prepared: list[Prepared], jobs: int, data_dir: Path) -> list[Any]:
    """Run the evaluations in-process (jobs=1) or on a worker pool."""
    if jobs == 1:
        from platform_cli.runtime.pool import run_job
        from platform_cli.runtime.sandbox import Sandbox

        sandbox = Sandbox(cache_dir(data_dir))
        try:
            return [run_job(sandbox, p.job()) for p in prepared]
        finally:
            sandbox.close()
    from platform_cli.runtime.pool import WorkerPool

    with WorkerPool(jobs, cache_dir(data_dir)) as pool:
        return pool.map([p.job() for p in prepared])


def record(state: State, prepared: Prepared, run: Any, miner: str = "") -> int:
    from platform_cli.runtime.engine import engine_fingerprint, engine_info

    result = run.result
    score = result.score if result is not None and run.outcome == "ok" else 0
    with write_transaction(state):
        state.execute(
            "INSERT OR IGNORE INTO submissions (sha256, size, content) VALUES (?, ?, ?)",
            [prepared.submission_sha256, len(prepared.submission), prepared.submission],
        )
        state.execute(
            "INSERT OR IGNORE INTO modules (sha256, size, content) VALUES (?, ?, ?)",
            [prepared.spec.module_sha256, len(prepared.module), prepared.module],
        )
        cursor = state.execute(
            "INSERT INTO evaluations (created_ms, challenge_id, challenge_version, module_sha256, spec, "
            "submission_sha256, epoch, seed, input_sha256, output_sha256, outcome, message, score, valid, "
            "metrics, fuel_used, wall_ms, peak_memory, host_calls, engine, engine_fingerprint, miner, "
            "compile_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                now_ms(),
                prepared.spec.id,
                prepared.spec.version,
                prepared.spec.module_sha256,
                json.dumps(prepared.spec.to_canonical(), sort_keys=True),
                prepared.submission_sha256,
                prepared.epoch,
                prepared.seed.hex(),
                hashlib.sha256(prepared.data).hexdigest(),
                run.output_sha256,
                run.outcome,
                run.message,
                score,
                int(bool(result and result.valid)),
                json.dumps(result.metrics if result else {}, sort_keys=True),
                run.fuel_used,
                run.wall_ms,
                run.peak_memory,
                json.dumps(run.host_calls, sort_keys=True),
                json.dumps(engine_info(), sort_keys=True),
                engine_fingerprint(),
                miner,
                run.compile_ms,
            ],
        )
        eval_id = int(cursor.lastrowid or 0)
        log.info(
            "event=evaluation id=%d challenge=%s outcome=%s score=%d fuel=%s wall_ms=%d compile_ms=%d",
            eval_id,
            prepared.spec.id,
            run.outcome,
            score,
            run.fuel_used,
            run.wall_ms,
            run.compile_ms,
        )
        audit.append(
            state,
            "local",
            "eval.run",
            {"id": eval_id, "challenge": prepared.spec.id, "outcome": run.outcome, "score": score},
        )
    return eval_id


@dataclass(frozen=True)
class Batch:
    records: list[dict[str, Any]]
    refused: list[str]
    """One line per submission that was not evaluated: its source and the reason."""

    @property
    def failed(self) -> list[str]:
        """One line per evaluation the platform could not carry out (recorded as ``failed``)."""
        return [
            f"evaluation {r['id']} failed: {r['message']}" for r in self.records if r["outcome"] == "failed"
        ]


def run_evaluations(
    state: State,
    data_dir: Path,
    challenge: str,
    submissions: list[Path],
    *,
    epoch: int,
    jobs: int,
    miner: str = "",
) -> Batch:
    """Evaluate and record each acceptable submission; ``miner`` is the hotkey they come from."""
    if miner:
        from platform_cli.identity import is_ss58

        if not is_ss58(miner):
            raise PlatformError(f"--miner {miner!r} is not an ss58 address")
    spec, module, source = resolve_challenge(state, challenge)
    prepared = [prepare(spec, module, read_submission(p), epoch, str(p)) for p in submissions]
    runnable = [p for p in prepared if p.refused is None]
    runs = execute(runnable, jobs, data_dir) if runnable else []
    ids = [record(state, p, r, miner) for p, r in zip(runnable, runs, strict=True)]
    records = [{**show_evaluation(state, i), "challenge_state": source} for i in ids]
    return Batch(records, [p.refused for p in prepared if p.refused is not None])


_SUMMARY = (
    "id, challenge_id, challenge_version, submission_sha256, outcome, score, fuel_used, wall_ms, "
    "compile_ms, created_ms"
)


def list_evaluations(state: State, challenge: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    sql = f"SELECT {_SUMMARY} FROM evaluations"
    params: list[Any] = []
    if challenge:
        sql += " WHERE challenge_id = ?"
        params.append(challenge)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    cursor = state.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def show_evaluation(state: State, eval_id: int) -> dict[str, Any]:
    cursor = state.execute("SELECT * FROM evaluations WHERE id = ?", [eval_id])
    row = cursor.fetchone()
    if row is None:
        raise PlatformError(f"no evaluation {eval_id}")
    record_ = dict(zip([c[0] for c in cursor.description], row, strict=True))
    for key in ("metrics", "host_calls", "engine", "spec"):
        record_[key] = json.loads(record_[key])
    record_["valid"] = bool(record_["valid"])
    return record_


def engine_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The engine facts (version, target, CPU features, settings, limits) that differ."""
    differ = []
    for key in sorted(set(recorded) | set(current)):
        before, now = recorded.get(key), current.get(key)
        if isinstance(before, dict) and isinstance(now, dict):
            differ += [
                f"{key}.{name}: {before.get(name)!r} -> {now.get(name)!r}"
                for name in sorted(set(before) | set(now))
                if before.get(name) != now.get(name)
            ]
        elif before != now:
            differ.append(f"{key}: {before!r} -> {now!r}")
    return differ


def replay(state: State, data_dir: Path, eval_id: int) -> dict[str, Any]:
    """Re-run a recorded evaluation; raise unless output hash, fuel and outcome match.

    A ``timeout`` or ``failed`` record is re-run too, but not compared: neither says
    anything that another machine, or this one later, must reproduce.
    """
    from platform_cli.runtime.engine import engine_info

    original = show_evaluation(state, eval_id)
    spec = spec_from_canonical(original["spec"])
    module = state.execute("SELECT content FROM modules WHERE sha256 = ?", [spec.module_sha256]).fetchone()
    submission = state.execute(
        "SELECT content FROM submissions WHERE sha256 = ?", [original["submission_sha256"]]
    ).fetchone()
    if module is None or submission is None:
        raise PlatformError(f"evaluation {eval_id}: its module or submission is no longer stored")
    prepared = prepare(
        spec, bytes(module[0]), bytes(submission[0]), original["epoch"], f"evaluation {eval_id}"
    )
    if prepared.refused is not None:
        raise PlatformError(
            f"replay of evaluation {eval_id} DIFFERS: the submission is now refused: {prepared.refused}"
        )
    (run,) = execute([prepared], 1, data_dir)
    differences = engine_differences(original["engine"], engine_info())
    report = {
        "id": eval_id,
        "outcome": [original["outcome"], run.outcome],
        "output_sha256": [original["output_sha256"], run.output_sha256],
        "fuel_used": [original["fuel_used"], run.fuel_used],
    }
    summary: dict[str, Any] = {
        "id": eval_id,
        "identical": True,
        "outcome": run.outcome,
        "output_sha256": run.output_sha256,
        "fuel_used": run.fuel_used,
        "same_engine": not differences,
        "engine_differences": "; ".join(differences) or "none",
    }
    if original["outcome"] in NON_DETERMINISTIC_OUTCOMES:
        return {
            **summary,
            "identical": f"n/a ({original['outcome']})",
            "recorded_outcome": original["outcome"],
        }
    mismatched = [
        key for key in ("outcome", "output_sha256", "fuel_used") if report[key][0] != report[key][1]
    ]
    if mismatched:
        details = "; ".join(f"{k}: recorded {report[k][0]}, replayed {report[k][1]}" for k in mismatched)
        if differences:
            details += f" (recorded under another engine: {'; '.join(differences)})"
        raise PlatformError(f"replay of evaluation {eval_id} DIFFERS: {details}")
    return summary
