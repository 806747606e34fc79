"""Score reports as validators make them: bound to a challenge's active version and to
a file the miner submitted (for tests whose subject is what happens to the scores)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from platform_cli import registry, scores
from platform_cli.core.aggregation import ScoreReport
from platform_cli.core.scores import EvaluationReport
from platform_cli.core.submission import Submission
from platform_cli.state.db import State


def miner_file(miner: str) -> bytes:
    return f"the submission of {miner}".encode()


def record_bound(state: State, epoch: int, reports: Iterable[ScoreReport], seq: int = 1) -> None:
    """Record ``reports`` as each validator's signed report (sequence number ``seq``) of
    its miner's submitted file, evaluated under the challenge's active version."""
    committed = registry.registry_state(state)
    for report in reports:
        active = committed.active(report.challenge)
        assert active is not None, f"{report.challenge} has no active version"
        submission = Submission.of(report.challenge, miner_file(report.miner))
        scores.record_submission(
            state,
            report.miner,
            submission,
            msg_id=hashlib.sha256(report.miner.encode()).hexdigest(),
            seq=1,
            ts_ms=1,
        )
        body = EvaluationReport(
            challenge=report.challenge,
            version=active.spec.version,
            module_sha256=active.spec.module_sha256,
            spec_sha256=active.spec.spec_sha256(),
            submission_sha256=submission.sha256,
            miner=report.miner,
            epoch=epoch,
            outcome="ok",
            score=report.score,
            output_sha256="",
            fuel=0,
        )
        scores.record_report(state, report.validator, body, seq)
