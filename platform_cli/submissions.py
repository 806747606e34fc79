"""Miners' submissions: sending one (``platform submit``) and what validators took.

A miner's file travels content-addressed in the DHT (``/sub/<sha256>``), put there
before the signed ``submission`` message is gossiped, so a validator that admits the
message can fetch the file. Validators take a submission only from a registered miner,
for an active challenge, within its size and its per-epoch limit
(``core.submission.refusal``); what they took is ``miner_submissions``, and only a file
listed there can earn its miner a score.
"""

from __future__ import annotations

from typing import Any

from platform_cli import scores
from platform_cli.config import Config
from platform_cli.core import dhtrec
from platform_cli.core.challenge import is_challenge_id
from platform_cli.core.submission import SUBMISSION_KIND, Submission
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer
from platform_cli.state import audit
from platform_cli.state.db import State, write_transaction

FETCH_TIMEOUT_S = 20.0


def submit(state: State, config: Config, signer: Signer, challenge: str, content: bytes) -> dict[str, Any]:
    """Put the file in the DHT through the running node, then queue the signed message."""
    from platform_cli.p2p import client, outgoing

    if not is_challenge_id(challenge):
        raise PlatformError(f"{challenge!r} is not a challenge id (a-z, 0-9, '-')")
    if not content:
        raise PlatformError("the submission file is empty")
    if len(content) > dhtrec.MAX_RECORD_BYTES:
        raise PlatformError(
            f"the submission is {len(content)} bytes; a DHT record holds at most {dhtrec.MAX_RECORD_BYTES}"
        )
    submission = Submission.of(challenge, content)
    network = config.network
    envelope = outgoing.seal_for(state, network.network, signer, SUBMISSION_KIND, submission.to_body())
    outgoing.check_publishable(state, network.network, network.sudo, "submissions", envelope)
    client.require_node(state)
    store_content(state, submission.sha256, content)
    key = dhtrec.content_key(content)
    client.call(state, "dht.put", {"key": dhtrec.dht_key(key), "value": content})
    with write_transaction(state):
        row = outgoing.queue_publish(state, network.network, network.sudo, "submissions", envelope)
        audit.append(
            state,
            signer.ss58,
            "submission.send",
            {"challenge": challenge, "sha256": submission.sha256, **row},
        )
    return {"challenge": challenge, "sha256": submission.sha256, "size": len(content), "dht_key": key, **row}


def store_content(state: State, sha256: str, content: bytes) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT OR IGNORE INTO submissions (sha256, size, content) VALUES (?, ?, ?)",
            [sha256, len(content), content],
        )


def content(state: State, sha256: str) -> bytes | None:
    row = state.execute("SELECT content FROM submissions WHERE sha256 = ?", [sha256]).fetchone()
    return bytes(row[0]) if row else None


_COLUMNS = "miner, challenge_id, sha256, size, epoch, received_ms, msg_id"


def _row(state: State, values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip([c.strip() for c in _COLUMNS.split(",")], values, strict=True))
    row["held"] = content(state, row["sha256"]) is not None
    row["evaluations"] = state.execute(
        "SELECT count(*) FROM evaluations WHERE submission_sha256 = ? AND challenge_id = ? AND miner = ?",
        [row["sha256"], row["challenge_id"], row["miner"]],
    ).fetchone()[0]
    return row


def list_submissions(
    state: State, *, challenge: str | None = None, miner: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Submissions this validator took, newest first (admitted messages ingested first)."""
    scores.ingest(state)
    where, params = [], []
    if challenge:
        where.append("challenge_id = ?")
        params.append(challenge)
    if miner:
        where.append("miner = ?")
        params.append(miner)
    sql = f"SELECT {_COLUMNS} FROM miner_submissions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = state.execute(sql + " ORDER BY received_ms DESC, rowid DESC LIMIT ?", [*params, limit]).fetchall()
    return [_row(state, r) for r in rows]


def show(state: State, sha256: str) -> dict[str, Any]:
    """Every miner that submitted the file, and the evaluations of it."""
    scores.ingest(state)
    rows = state.execute(f"SELECT {_COLUMNS} FROM miner_submissions WHERE sha256 = ?", [sha256]).fetchall()
    if not rows:
        raise PlatformError(
            f"no submission {sha256!r} was taken here ('platform submissions list' shows them)"
        )
    evaluations = state.execute(
        "SELECT id, challenge_id, challenge_version, miner, epoch, outcome, score FROM evaluations "
        "WHERE submission_sha256 = ? ORDER BY id",
        [sha256],
    ).fetchall()
    names = ("id", "challenge", "version", "miner", "epoch", "outcome", "score")
    return {
        "sha256": sha256,
        "submitted_by": [_row(state, r) for r in rows],
        "evaluations": [dict(zip(names, e, strict=True)) for e in evaluations],
    }
