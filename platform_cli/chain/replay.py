"""``weights replay --epoch N``: re-derive an epoch's vector from what is stored, bit for bit.

Two derivations, each compared with the stored vector by its canonical hash:

1. from the score reports as received: the aggregation over the snapshot the epoch names
   must give the same vector (nothing in the inputs or the pure code changed);
2. from the sandbox: every counted report's evaluation (challenge version, module,
   submission, epoch) is run again here, and the vector is aggregated from those scores.
   A report whose score the sandbox does not reproduce is named with its validator;
   one whose submission file is not held here is listed as unverified and kept as reported.

Evaluations are deterministic (``docs/challenge-abi.md``), so honest reports replay
exactly; the second derivation is what makes a committed vector checkable by anyone
holding the submissions, not a matter of trust in the validators who reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli import evaluation, scores, submissions
from platform_cli.chain import records
from platform_cli.chain.settings import WeightSettings
from platform_cli.chain.weights import build, stored_epoch_snapshot
from platform_cli.core import aggregation
from platform_cli.core.challenge import spec_from_canonical
from platform_cli.core.scores import StoredReport
from platform_cli.errors import PlatformError
from platform_cli.state.db import State


@dataclass(frozen=True)
class _Run:
    outcome: str
    score: int


def replay_epoch(
    state: State,
    data_dir: Path,
    netuid: int,
    settings: WeightSettings,
    epoch: int,
    *,
    jobs: int,
    own: str | None,
) -> dict[str, Any]:
    stored = records.load(state, netuid, settings.mechid, epoch)
    if stored is None:
        raise PlatformError(
            f"no vector stored for epoch {epoch}: 'platform weights history' lists the epochs"
        )
    named = stored_epoch_snapshot(state, netuid, stored.snapshot_block)
    if named is None:
        raise PlatformError(
            f"the snapshot at block {stored.snapshot_block} that epoch {epoch} names is not stored"
        )
    snapshot, hyper = named
    tally = scores.tally(state, epoch, netuid=netuid, first_block=snapshot.block)
    from_reports = build(
        state, snapshot, hyper, settings, epoch=epoch, own=own, reports=tally.score_reports()
    )
    runs = _rerun(state, data_dir, tally.counted, epoch, jobs)
    checked, rederived = [], []
    for report in tally.counted:
        run = runs.get(_key(report))
        verdict = "unverified: submission not held" if run is None else "match"
        score = report.score
        if run is not None and run.score != report.score:
            verdict = f"differs: the sandbox gives {run.score} ({run.outcome})"
            score = run.score
        checked.append(
            {
                "validator": report.validator,
                "challenge": report.challenge,
                "miner": report.miner,
                "reported": report.score,
                "verdict": verdict,
            }
        )
        rederived.append(aggregation.ScoreReport(report.validator, report.challenge, report.miner, score))
    from_sandbox = build(state, snapshot, hyper, settings, epoch=epoch, own=own, reports=rederived)
    return {
        "epoch": epoch,
        "snapshot_block": snapshot.block,
        "stored_hash": stored.vector_hash,
        "from_reports_hash": from_reports.vector_hash,
        "from_sandbox_hash": from_sandbox.vector_hash,
        "matches": from_reports.vector_hash == stored.vector_hash == from_sandbox.vector_hash,
        "reports": len(checked),
        "evaluations_rerun": len(runs),
        "differing": [c for c in checked if c["verdict"].startswith("differs")],
        "unverified": [c for c in checked if c["verdict"].startswith("unverified")],
        "checked": checked,
    }


def _key(report: StoredReport) -> tuple[str, str, str]:
    return report.challenge, report.version, report.submission_sha256


def _rerun(
    state: State, data_dir: Path, reports: tuple[StoredReport, ...], epoch: int, jobs: int
) -> dict[tuple[str, str, str], _Run]:
    """Run each distinct (challenge version, submission) of the reports once, for ``epoch``."""
    prepared, keys = [], []
    for key in sorted({_key(r) for r in reports}):
        challenge, version, submission_sha256 = key
        content = submissions.content(state, submission_sha256)
        row = state.execute(
            "SELECT spec FROM registry_versions WHERE challenge_id = ? AND version = ?", [challenge, version]
        ).fetchone()
        if content is None or row is None:
            continue
        spec = spec_from_canonical(json.loads(row[0]))
        module = state.execute(
            "SELECT content FROM modules WHERE sha256 = ?", [spec.module_sha256]
        ).fetchone()
        if module is None:
            continue
        ready = evaluation.prepare(
            spec, bytes(module[0]), content, epoch, f"{challenge}/{submission_sha256[:16]}"
        )
        if ready.refused is not None:
            continue
        prepared.append(ready)
        keys.append(key)
    results = evaluation.execute(prepared, max(1, min(jobs, len(prepared))), data_dir) if prepared else []
    runs = {}
    for key, run in zip(keys, results, strict=True):
        score = run.result.score if run.result is not None and run.outcome == "ok" else 0
        runs[key] = _Run(run.outcome, score)
    return runs
