"""Score reports, the aggregation's input: where they come from and where they are kept.

Two sources feed the ``score_reports`` table:

- this validator's own evaluations, when it publishes them (``platform eval publish``):
  each becomes a signed ``evaluation`` message queued for gossip, and our own report;
- other validators' ``evaluation`` messages, which the P2P node admitted to the inbox
  (signature, network, replay and validator role already checked there): ``ingest``
  reads them past a persisted cursor and records each as that validator's report.

A validator's report for an (epoch, challenge, miner) replaces its earlier one only when
its envelope was signed later (a higher sequence number), so a replayed old report can
never roll a score back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from platform_cli.clock import now_ms
from platform_cli.config import Config
from platform_cli.core import aggregation
from platform_cli.core.scores import EVALUATION_KIND, EvaluationReport, ReportError, parse_report
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer
from platform_cli.state import audit
from platform_cli.state.db import State, write_transaction

log = logging.getLogger("platform.scores")
INGEST_BATCH = 1000
_CURSOR = "evaluations"


def record_reports(state: State, epoch: int, reports: Iterable[aggregation.ScoreReport], seq: int = 0) -> int:
    """Store score reports signed with sequence number ``seq``; an existing report of the
    same validator is replaced only by one with an equal or higher ``seq``."""
    rows = [(r.validator, r.challenge, r.miner, epoch, r.score, now_ms(), seq) for r in reports]
    for validator, _, miner, _, score, _, _ in rows:
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= aggregation.SCORE_MAX:
            raise PlatformError(f"score {score!r} of {validator} for {miner} must be an integer in 0..10**9")
    with write_transaction(state):
        state.conn.executemany(
            "INSERT INTO score_reports (validator, challenge_id, miner, epoch, score, received_ms, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (epoch, challenge_id, miner, validator) DO UPDATE SET "
            "score = excluded.score, received_ms = excluded.received_ms, seq = excluded.seq "
            "WHERE excluded.seq >= score_reports.seq",
            rows,
        )
    return len(rows)


def reports_for(state: State, epoch: int) -> list[aggregation.ScoreReport]:
    cursor = state.execute(
        "SELECT validator, challenge_id, miner, score FROM score_reports WHERE epoch = ?", [epoch]
    )
    return [aggregation.ScoreReport(*row) for row in cursor]


def report_of(evaluation: dict[str, Any]) -> EvaluationReport:
    """The report of a recorded evaluation; refuses what cannot be reported."""
    eval_id = evaluation["id"]
    if not evaluation.get("miner"):
        raise PlatformError(
            f"evaluation {eval_id} is not attributed to a miner: evaluate with `eval run --miner HOTKEY`"
        )
    try:
        return parse_report(
            {
                "challenge": evaluation["challenge_id"],
                "version": evaluation["challenge_version"],
                "module_sha256": evaluation["module_sha256"],
                "submission_sha256": evaluation["submission_sha256"],
                "miner": evaluation["miner"],
                "epoch": evaluation["epoch"],
                "outcome": evaluation["outcome"],
                "score": evaluation["score"],
                "output_sha256": evaluation["output_sha256"] or "",
                "fuel": evaluation["fuel_used"],
            }
        )
    except ReportError as exc:
        raise PlatformError(f"evaluation {eval_id} cannot be reported: {exc}") from None


def publish(
    state: State, config: Config, signer: Signer, evaluations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Queue each evaluation's signed report for gossip and record it as our own report."""
    from platform_cli.p2p import outgoing

    reports = [report_of(e) for e in evaluations]
    network = config.network
    queued = []
    for evaluation, report in zip(evaluations, reports, strict=True):
        envelope = outgoing.seal_for(state, network.network, signer, EVALUATION_KIND, report.to_body())
        with write_transaction(state):
            row = outgoing.queue_publish(state, network.network, network.sudo, "evaluations", envelope)
            record_reports(
                state,
                report.epoch,
                [aggregation.ScoreReport(signer.ss58, report.challenge, report.miner, report.score)],
                envelope.seq,
            )
            audit.append(
                state, signer.ss58, "eval.publish", {"id": evaluation["id"], "msg_id": row["msg_id"]}
            )
        queued.append({"id": evaluation["id"], "miner": report.miner, "score": report.score, **row})
    return queued


def ingest(state: State) -> int:
    """Turn admitted ``evaluation`` messages into score reports; returns how many."""
    from platform_cli.p2p.store import read_inbox

    total = 0
    while True:
        row = state.execute("SELECT last_row FROM score_ingest WHERE name = ?", [_CURSOR]).fetchone()
        cursor = row[0] if row else 0
        batch = read_inbox(state, after_row=cursor, kinds=[EVALUATION_KIND], limit=INGEST_BATCH)
        if not batch:
            return total
        with write_transaction(state):
            for message in batch:
                try:
                    report = parse_report(message.envelope.body)
                except ReportError as exc:
                    log.warning("scores.bad_report signer=%s reason=%r", message.envelope.signer, str(exc))
                    continue
                record_reports(
                    state,
                    report.epoch,
                    [
                        aggregation.ScoreReport(
                            message.envelope.signer, report.challenge, report.miner, report.score
                        )
                    ],
                    message.envelope.seq,
                )
                total += 1
            state.execute(
                "INSERT INTO score_ingest (name, last_row) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_row = excluded.last_row",
                [_CURSOR, batch[-1].row],
            )
