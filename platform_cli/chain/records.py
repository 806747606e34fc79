"""What ``platform weights`` keeps: computed vectors and the submission rows that refer to them.

A submission row is written ahead of the SDK call (``pending``) together with an audit
entry that carries the exact vector sent (hash, snapshot block, u16 row), and the
epoch's stored vector is fixed from then on: a later compute never replaces a vector
that may have reached the chain. A row stays ``pending`` while the outcome is unknown (a
crash, or a transport failure after the extrinsic may have left); only the chain
settles it, as ``submitted`` or ``confirmed``. A ``failed`` row is known not to have
changed the chain (refused before sending, or refused by the chain): it fixes nothing,
and the epoch's vector may still be recomputed. ``missed`` rows record epochs whose
deadline passed without our weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from platform_cli.clock import now_ms
from platform_cli.core.consensus import weights as consensus_weights
from platform_cli.errors import PlatformError
from platform_cli.state import audit
from platform_cli.state.db import State, write_transaction

log = logging.getLogger("platform.weights")
HISTORY_KEYS = ("id", "epoch", "mechid", "hotkey", "outcome", "path", "block", "vector_hash", "message")


@dataclass(frozen=True)
class Vector:
    netuid: int
    mechid: int
    epoch: int
    snapshot_block: int
    weights: dict[int, int]
    u16: dict[int, int]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def vector_hash(self) -> str:
        """The hash consensus agrees on for the same vector."""
        return consensus_weights.vector_hash(
            self.netuid, self.mechid, self.epoch, self.snapshot_block, self.weights
        )

    def summary(self) -> dict[str, Any]:
        """What identifies the vector, for people and the audit log."""
        return {
            "netuid": self.netuid,
            "mechid": self.mechid,
            "epoch": self.epoch,
            "snapshot_block": self.snapshot_block,
            "vector_hash": self.vector_hash,
            "uids": len(self.weights),
        }


REACHED_CHAIN = ("pending", "submitted", "confirmed")


def fixed_by(state: State, netuid: int, mechid: int, epoch: int) -> tuple[int, str, str] | None:
    """The oldest submission (id, outcome, hash) of the epoch's stored vector that may have
    reached the chain (``pending``, ``submitted`` or ``confirmed``), if any."""
    row = state.execute(
        "SELECT s.id, s.outcome, s.vector_hash FROM weight_submissions s JOIN weight_vectors v "
        "ON v.netuid = s.netuid AND v.mechid = s.mechid AND v.epoch = s.epoch AND v.vector_hash = s.vector_hash "
        "WHERE s.netuid = ? AND s.mechid = ? AND s.epoch = ? AND s.outcome IN (?, ?, ?) ORDER BY s.id LIMIT 1",
        [netuid, mechid, epoch, *REACHED_CHAIN],
    ).fetchone()
    return (int(row[0]), str(row[1]), str(row[2])) if row else None


def store(state: State, vector: Vector) -> None:
    """Store the epoch's vector (and audit it); refused once the stored one may have reached the chain."""
    with write_transaction(state):
        used = fixed_by(state, vector.netuid, vector.mechid, vector.epoch)
        if used is not None and used[2] != vector.vector_hash:
            sub_id, outcome, vector_hash = used
            how = (
                "may have sent it (its outcome is unknown)"
                if outcome == "pending"
                else f"({outcome}) sent it"
            )
            raise PlatformError(
                f"epoch {vector.epoch}'s vector {vector_hash[:16]}… is fixed: submission #{sub_id} "
                f"{how}; see `platform weights show --epoch {vector.epoch}`"
            )
        state.execute(
            "INSERT OR REPLACE INTO weight_vectors VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                vector.netuid,
                vector.mechid,
                vector.epoch,
                vector.snapshot_block,
                vector.vector_hash,
                json.dumps(sorted(vector.weights.items())),
                json.dumps(sorted(vector.u16.items())),
                json.dumps(vector.detail, sort_keys=True),
                now_ms(),
            ],
        )
        audit.append(
            state,
            "weights",
            "weights.compute",
            vector.summary(),
        )


@dataclass(frozen=True)
class Committed:
    """The vector consensus committed for an epoch (units per uid, before chain padding)."""

    height: int
    vector_hash: str
    weights: tuple[tuple[int, int], ...]


def committed(state: State, netuid: int, mechid: int, epoch: int) -> Committed | None:
    row = state.execute(
        "SELECT height, vector_hash, weights FROM consensus_vectors WHERE netuid = ? AND mechid = ? AND epoch = ?",
        [netuid, mechid, epoch],
    ).fetchone()
    if row is None:
        return None
    return Committed(row[0], row[1], tuple((u, w) for u, w in json.loads(row[2])))


def load(state: State, netuid: int, mechid: int, epoch: int | None = None) -> Vector | None:
    sql = "SELECT epoch, snapshot_block, weights, u16, detail FROM weight_vectors WHERE netuid = ? AND mechid = ?"
    params: list[int] = [netuid, mechid]
    if epoch is not None:
        sql += " AND epoch = ?"
        params.append(epoch)
    row = state.execute(sql + " ORDER BY epoch DESC LIMIT 1", params).fetchone()
    if row is None:
        return None
    ep, block, weights, u16, detail = row
    return Vector(
        netuid,
        mechid,
        ep,
        block,
        {u: w for u, w in json.loads(weights)},
        {u: w for u, w in json.loads(u16)},
        json.loads(detail),
    )


def _insert(state: State, vector: Vector, hotkey: str, outcome: str, block: int | None, message: str) -> int:
    cursor = state.execute(
        "INSERT INTO weight_submissions (netuid, mechid, epoch, hotkey, vector_hash, outcome, path, block, "
        "message, created_ms) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?)",
        [
            vector.netuid,
            vector.mechid,
            vector.epoch,
            hotkey,
            vector.vector_hash,
            outcome,
            block,
            message,
            now_ms(),
        ],
    )
    return int(cursor.lastrowid or 0)


def _audit_row(state: State, row_id: int, action: str, path: str, block: int | None, message: str) -> None:
    row = state.execute(
        "SELECT netuid, mechid, epoch, hotkey, vector_hash FROM weight_submissions WHERE id = ?", [row_id]
    ).fetchone()
    keys = ("netuid", "mechid", "epoch", "hotkey", "vector_hash")
    audit.append(
        state,
        row[3],
        action,
        {**dict(zip(keys, row, strict=True)), "id": row_id, "path": path, "block": block, "message": message},
    )


def refused(state: State, vector: Vector, hotkey: str, reason: str) -> int:
    """A refusal known to have happened before anything was sent: one ``failed`` row."""
    message = f"refused before sending: {reason}"
    with write_transaction(state):
        row_id = _insert(state, vector, hotkey, "failed", None, message)
        _audit_row(state, row_id, "weights.refused", "", None, message)
    return row_id


def begin(state: State, vector: Vector, hotkey: str) -> int:
    """The write-ahead row; its audit entry records the exact vector about to be sent."""
    with write_transaction(state):
        row_id = _insert(state, vector, hotkey, "pending", None, "submitting")
        if vector.weights:
            audit.append(
                state,
                hotkey,
                "weights.pending",
                {
                    "id": row_id,
                    "netuid": vector.netuid,
                    "mechid": vector.mechid,
                    "epoch": vector.epoch,
                    "snapshot_block": vector.snapshot_block,
                    "vector_hash": vector.vector_hash,
                    "u16": [[uid, w] for uid, w in sorted(vector.u16.items())],
                },
            )
    return row_id


def finish(state: State, row_id: int, outcome: str, path: str, block: int | None, message: str) -> None:
    """Set the row's outcome (``pending`` again for an unknown one) and audit it."""
    with write_transaction(state):
        state.execute(
            "UPDATE weight_submissions SET outcome = ?, path = ?, block = ?, message = ? WHERE id = ?",
            [outcome, path, block, message, row_id],
        )
        action = "weights.unknown" if outcome == "pending" else f"weights.{outcome}"
        _audit_row(state, row_id, action, path, block, message)


def _settled(
    state: State, vector: Vector, hotkey: str, outcome: str, block: int | None, message: str
) -> None:
    with write_transaction(state):
        row_id = _insert(state, vector, hotkey, outcome, block, message)
        _audit_row(state, row_id, f"weights.{outcome}", "", block, message)


def record_missed(state: State, netuid: int, mechid: int, epoch: int, hotkey: str, reason: str) -> None:
    """A missed epoch is loud: an error in the log and a ``missed`` row in the history."""
    log.error("weights.missed netuid=%d epoch=%d hotkey=%s reason=%s", netuid, epoch, hotkey, reason)
    _settled(state, Vector(netuid, mechid, epoch, 0, {}, {}), hotkey, "missed", None, reason)


def resolve_pending(state: State, netuid: int, mechid: int, hotkey: str, epoch: int, block: int) -> None:
    """Settle write-ahead rows of ``epoch`` once the chain shows our weights (LastUpdate ``block``)."""
    rows = state.execute(
        "SELECT id FROM weight_submissions WHERE netuid = ? AND mechid = ? AND hotkey = ? AND epoch = ? "
        "AND outcome = 'pending'",
        [netuid, mechid, hotkey, epoch],
    ).fetchall()
    message = f"found on chain after an interrupted submission (last update {block})"
    for (row_id,) in rows:
        finish(state, row_id, "submitted", "", block, message)
    if not rows:
        vector = Vector(netuid, mechid, epoch, 0, {}, {})
        _settled(state, vector, hotkey, "submitted", block, "weights for this epoch found on chain")


def last_done_epoch(state: State, netuid: int, mechid: int, hotkey: str) -> int | None:
    """The newest epoch whose weights landed (or that was given up as missed)."""
    row = state.execute(
        "SELECT MAX(epoch) FROM weight_submissions WHERE netuid = ? AND mechid = ? AND hotkey = ? "
        "AND outcome IN ('submitted', 'confirmed', 'missed')",
        [netuid, mechid, hotkey],
    ).fetchone()
    return row[0] if row else None


def history(state: State, netuid: int, limit: int = 50) -> list[dict[str, Any]]:
    cursor = state.execute(
        f"SELECT {', '.join(HISTORY_KEYS)}, created_ms FROM weight_submissions WHERE netuid = ? "
        "ORDER BY id DESC LIMIT ?",
        [netuid, limit],
    )
    return [dict(zip((*HISTORY_KEYS, "created_ms"), row, strict=True)) for row in cursor]
