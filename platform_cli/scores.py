"""Score reports, the aggregation's input: where they come from, where they are kept, and
which of them count.

Two sources feed the ``score_reports`` table:

- this validator's own evaluations, when it publishes them (``platform eval publish``):
  each becomes a signed ``evaluation`` message queued for gossip, and our own report;
- other validators' ``evaluation`` messages, which the P2P node admitted to the inbox
  (signature, network, replay and validator role already checked there): ``ingest``
  reads them past a persisted cursor and records each as that validator's report.

``ingest`` also records the miners' admitted ``submission`` messages
(``miner_submissions``): which hotkey submitted which file for which challenge. A body
that does not follow its schema is counted (``score_ingest_refusals``) and skipped.

A validator's report for an (epoch, challenge, miner) replaces its earlier one only when
its envelope was signed later (a higher sequence number), so a replayed old report can
never roll a score back.

Which reports count for epoch E is decided when the epoch's reports are read, not when
they arrive (``tally``): the registry's committed history as of E's first block and the
submissions recorded so far go into the pure ``core.scores.tally``, which refuses every
report not bound to the version active then or to a file its miner submitted, with the
reason. A registry change committed or a submission received later is therefore taken
into account, and validators holding the same inputs count the same reports.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from platform_cli import registry
from platform_cli.clock import now_ms
from platform_cli.config import Config
from platform_cli.core import aggregation
from platform_cli.core import scores as core
from platform_cli.core.challenge import SpecError, spec_from_canonical
from platform_cli.core.registry import RegistryState
from platform_cli.core.submission import (
    MAX_SUBMISSION_BYTES,
    SUBMISSION_KIND,
    Intake,
    Submission,
    SubmissionError,
    parse_submission,
    refusal,
)
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer
from platform_cli.state import audit, schedules
from platform_cli.state.db import State, write_transaction
from platform_cli.state.metagraph import latest_snapshot

if TYPE_CHECKING:
    from platform_cli.p2p.store import InboxMessage

log = logging.getLogger("platform.scores")
INGEST_BATCH = 1000
_CURSORS = {core.EVALUATION_KIND: "evaluations", SUBMISSION_KIND: "submissions"}


# ---------------------------------------------------------------- storing


def record_report(state: State, validator: str, report: core.EvaluationReport, seq: int) -> None:
    """Store ``validator``'s report signed with sequence number ``seq``; an existing
    report of the same validator is replaced only by one with an equal or higher ``seq``."""
    with write_transaction(state):
        state.execute(
            "INSERT INTO score_reports (validator, challenge_id, miner, epoch, score, received_ms, seq, "
            "version, module_sha256, spec_sha256, submission_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (epoch, challenge_id, miner, validator) DO UPDATE SET score = excluded.score, "
            "received_ms = excluded.received_ms, seq = excluded.seq, version = excluded.version, "
            "module_sha256 = excluded.module_sha256, spec_sha256 = excluded.spec_sha256, "
            "submission_sha256 = excluded.submission_sha256 WHERE excluded.seq >= score_reports.seq",
            [
                validator,
                report.challenge,
                report.miner,
                report.epoch,
                report.score,
                now_ms(),
                seq,
                report.version,
                report.module_sha256,
                report.spec_sha256,
                report.submission_sha256,
            ],
        )


def record_submission(
    state: State, miner: str, submission: Submission, *, msg_id: str, seq: int, ts_ms: int, epoch: int = -1
) -> bool:
    """Record that ``miner`` submitted the file for the challenge (accepted in ``epoch``);
    False if already known (the first admitted message stays on record)."""
    with write_transaction(state):
        cursor = state.execute(
            "INSERT OR IGNORE INTO miner_submissions (miner, challenge_id, sha256, size, msg_id, seq, ts_ms, "
            "received_ms, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                miner,
                submission.challenge,
                submission.sha256,
                submission.size,
                msg_id,
                seq,
                ts_ms,
                now_ms(),
                epoch,
            ],
        )
    return cursor.rowcount == 1


def submission_intake(state: State) -> tuple[Intake, int]:
    """Who may submit what now, by the newest sync and the registry at its block; and the
    current epoch (-1 before any sync: then nobody is registered and nothing is taken)."""
    row = state.execute("SELECT netuid FROM chain_schedules ORDER BY block DESC LIMIT 1").fetchone()
    schedule = schedules.latest_schedule(state, row[0]) if row else None
    if schedule is None:
        return Intake(frozenset(), {}), -1
    snapshot = latest_snapshot(state, schedule.netuid)
    registered = frozenset(n.hotkey for n in snapshot.neurons) if snapshot else frozenset()
    limits = {
        challenge: (
            min(record.spec.resources.max_input_bytes, MAX_SUBMISSION_BYTES),
            record.spec.submissions_per_epoch,
        )
        for challenge, record in registry.active_at(state, schedule.block).items()
    }
    return Intake(registered, limits), schedule.index


def _accepted_this_epoch(state: State, miner: str, challenge: str, epoch: int) -> int:
    return state.execute(
        "SELECT count(*) FROM miner_submissions WHERE miner = ? AND challenge_id = ? AND epoch = ?",
        [miner, challenge, epoch],
    ).fetchone()[0]


def _known_submission(state: State, miner: str, submission: Submission) -> bool:
    return (
        state.execute(
            "SELECT 1 FROM miner_submissions WHERE miner = ? AND challenge_id = ? AND sha256 = ?",
            [miner, submission.challenge, submission.sha256],
        ).fetchone()
        is not None
    )


def stored_reports(state: State, epoch: int) -> list[core.StoredReport]:
    cursor = state.execute(
        "SELECT validator, challenge_id, version, module_sha256, spec_sha256, submission_sha256, miner, score "
        "FROM score_reports WHERE epoch = ? ORDER BY challenge_id, miner, validator",
        [epoch],
    )
    return [core.StoredReport(*row) for row in cursor]


# ---------------------------------------------------------------- counting


def _netuid(state: State, netuid: int | None) -> int:
    """``netuid``, or the subnet of the newest schedule (a data dir follows one subnet)."""
    if netuid is not None:
        return netuid
    row = state.execute("SELECT netuid FROM chain_schedules ORDER BY block DESC LIMIT 1").fetchone()
    if row is None:
        raise PlatformError("no epoch schedule: run `platform chain sync` first")
    return int(row[0])


def epoch_first_block(state: State, epoch: int, *, netuid: int | None = None) -> int:
    """The first block of ``epoch`` as the chain's schedule has it: the registry as of
    this block decides what counts."""
    netuid = _netuid(state, netuid)
    start = schedules.epoch_start(state, netuid, epoch)
    if start is None:
        raise PlatformError(
            f"no sync during epoch {epoch} of netuid {netuid} recorded where it began: "
            "what counts for it is decided by the registry at that block"
        )
    return start


def current_epoch(state: State, netuid: int) -> int:
    newest = schedules.latest_schedule(state, netuid)
    if newest is None:
        raise PlatformError("no epoch schedule, so no current epoch: run `platform chain sync` first")
    return newest.index


def _lifecycle_labels(registry_state: RegistryState, block: int) -> dict[tuple[str, str], str]:
    """How each known version stood at ``block``, worded for a refusal's detail."""
    in_effect = registry_state.lifecycle_at(block)
    committed = {(change.challenge, change.version) for change in registry_state.history}
    labels = {}
    for key in registry_state.versions:
        if key in in_effect:
            labels[key] = in_effect[key].value
        elif key in committed:
            labels[key] = "not yet in effect"
        else:
            labels[key] = "a draft"
    return labels


def _submitted(state: State, epoch: int) -> set[tuple[str, str, str]]:
    """(miner, challenge, sha256) of the admitted submissions the epoch's reports name."""
    cursor = state.execute(
        "SELECT DISTINCT r.miner, r.challenge_id, r.submission_sha256 FROM score_reports r "
        "JOIN miner_submissions s ON s.miner = r.miner AND s.challenge_id = r.challenge_id "
        "AND s.sha256 = r.submission_sha256 WHERE r.epoch = ?",
        [epoch],
    )
    return {tuple(row) for row in cursor}


def tally(
    state: State, epoch: int, *, netuid: int | None = None, first_block: int | None = None
) -> core.Tally:
    """The epoch's reports, split into counted and refused (with reasons)."""
    block = epoch_first_block(state, epoch, netuid=netuid) if first_block is None else first_block
    registry_state = registry.registry_state(state)
    active = {
        challenge: core.CountingVersion(
            record.spec.version, record.spec.module_sha256, record.spec.spec_sha256()
        )
        for challenge, record in registry_state.active_at(block).items()
    }
    return core.tally(
        stored_reports(state, epoch),
        active,
        _lifecycle_labels(registry_state, block),
        _submitted(state, epoch),
        block,
    )


def reports_for(state: State, epoch: int, *, first_block: int | None = None) -> list[aggregation.ScoreReport]:
    """The score reports that count for ``epoch`` (refusals are logged by reason): the
    aggregation's input. ``first_block`` defaults to the epoch's first block by the newest
    snapshot's schedule."""
    result = tally(state, epoch, first_block=first_block)
    for reason, count in result.reasons().items():
        log.warning("scores.refused epoch=%d block=%d reason=%s count=%d", epoch, result.block, reason, count)
    return result.score_reports()


# ---------------------------------------------------------------- publishing


def report_of(evaluation: dict[str, Any]) -> core.EvaluationReport:
    """The report of a recorded evaluation; refuses what cannot be reported."""
    eval_id = evaluation["id"]
    if not evaluation.get("miner"):
        raise PlatformError(
            f"evaluation {eval_id} is not attributed to a miner: evaluate with `eval run --miner HOTKEY`"
        )
    try:
        spec = spec_from_canonical(evaluation["spec"])
        return core.parse_report(
            {
                "challenge": evaluation["challenge_id"],
                "version": evaluation["challenge_version"],
                "module_sha256": evaluation["module_sha256"],
                "spec_sha256": spec.spec_sha256(),
                "submission_sha256": evaluation["submission_sha256"],
                "miner": evaluation["miner"],
                "epoch": evaluation["epoch"],
                "outcome": evaluation["outcome"],
                "score": evaluation["score"],
                "output_sha256": evaluation["output_sha256"] or "",
                "fuel": evaluation["fuel_used"],
            }
        )
    except (core.ReportError, SpecError) as exc:
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
        envelope = outgoing.seal_for(state, network.network, signer, core.EVALUATION_KIND, report.to_body())
        with write_transaction(state):
            row = outgoing.queue_publish(state, network.network, network.sudo, "evaluations", envelope)
            record_report(state, signer.ss58, report, envelope.seq)
            audit.append(
                state, signer.ss58, "eval.publish", {"id": evaluation["id"], "msg_id": row["msg_id"]}
            )
        queued.append({"id": evaluation["id"], "miner": report.miner, "score": report.score, **row})
    return queued


# ---------------------------------------------------------------- ingesting


def _count_refusal(state: State, kind: str, reason: str, signer: str, detail: str) -> None:
    log.warning("scores.bad_%s signer=%s reason=%s detail=%r", kind, signer, reason, detail)
    state.execute(
        "INSERT INTO score_ingest_refusals (kind, reason, count, last_signer, last_detail, last_ms) "
        "VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (kind, reason) DO UPDATE SET count = count + 1, "
        "last_signer = excluded.last_signer, last_detail = excluded.last_detail, last_ms = excluded.last_ms",
        [kind, reason, signer, detail, now_ms()],
    )


def _take(state: State, message: InboxMessage, intake: tuple[Intake, int]) -> bool:
    """Record one admitted message; False (counted with the reason) when it is not taken."""
    envelope = message.envelope
    try:
        if envelope.kind == SUBMISSION_KIND:
            submission = parse_submission(envelope.body)
            if _known_submission(state, envelope.signer, submission):
                return True
            rules, epoch = intake
            accepted = _accepted_this_epoch(state, envelope.signer, submission.challenge, epoch)
            reason = refusal(submission, envelope.signer, rules, accepted)
            if reason is not None:
                _count_refusal(
                    state,
                    envelope.kind,
                    reason,
                    envelope.signer,
                    f"{submission.challenge} {submission.sha256}",
                )
                return False
            record_submission(
                state,
                envelope.signer,
                submission,
                msg_id=envelope.message_id(),
                seq=envelope.seq,
                ts_ms=envelope.ts_ms,
                epoch=epoch,
            )
        else:
            record_report(state, envelope.signer, core.parse_report(envelope.body), envelope.seq)
    except (core.ReportError, SubmissionError) as exc:
        _count_refusal(state, envelope.kind, "malformed", envelope.signer, str(exc))
        return False
    return True


def ingest(state: State) -> int:
    """Record admitted ``evaluation`` and ``submission`` messages; returns how many."""
    from platform_cli.p2p.store import read_inbox

    total = 0
    intake = submission_intake(state)
    for kind, name in _CURSORS.items():
        while True:
            row = state.execute("SELECT last_row FROM score_ingest WHERE name = ?", [name]).fetchone()
            batch = read_inbox(state, after_row=row[0] if row else 0, kinds=[kind], limit=INGEST_BATCH)
            if not batch:
                break
            with write_transaction(state):
                total += sum(_take(state, message, intake) for message in batch)
                state.execute(
                    "INSERT INTO score_ingest (name, last_row) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET last_row = excluded.last_row",
                    [name, batch[-1].row],
                )
    return total


def ingest_refusals(state: State) -> list[dict[str, Any]]:
    cursor = state.execute(
        "SELECT kind, reason, count, last_signer, last_detail, last_ms FROM score_ingest_refusals "
        "ORDER BY kind, reason"
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def epoch_summary(state: State, netuid: int, epoch: int | None = None) -> dict[str, Any]:
    """What counts for an epoch (the current one by default), refusals by reason."""
    if epoch is None:
        epoch = current_epoch(state, netuid)
    result = tally(state, epoch, netuid=netuid)
    active = registry.active_at(state, result.block)
    return {
        "epoch": epoch,
        "first_block": result.block,
        "active": {cid: record.spec.version for cid, record in sorted(active.items())},
        "counted": len(result.counted),
        "refused": len(result.refused),
        "refused_by_reason": result.reasons(),
        "malformed_messages": {f"{r['kind']}/{r['reason']}": r["count"] for r in ingest_refusals(state)},
    }


def epoch_reports(
    state: State, netuid: int, epoch: int | None = None, *, refused_only: bool = False
) -> list[dict[str, Any]]:
    """One row per stored report of the epoch: counted, or refused with the reason."""
    if epoch is None:
        epoch = current_epoch(state, netuid)
    result = tally(state, epoch, netuid=netuid)
    rows = [] if refused_only else [{**_row(r), "status": "counted"} for r in result.counted]
    rows += [
        {**_row(r.report), "status": "refused", "reason": r.reason, "detail": r.detail}
        for r in result.refused
    ]
    return [
        {"epoch": epoch, **row}
        for row in sorted(rows, key=lambda r: (r["challenge"], r["miner"], r["validator"]))
    ]


def _row(report: core.StoredReport) -> dict[str, Any]:
    return {
        "validator": report.validator,
        "challenge": report.challenge,
        "version": report.version,
        "miner": report.miner,
        "submission_sha256": report.submission_sha256,
        "score": report.score,
    }
