"""Miners' submissions carry the epoch in which they were accepted (the per-epoch limit)."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE miner_submissions ADD COLUMN epoch INTEGER NOT NULL DEFAULT -1")
    db.execute("CREATE INDEX miner_submissions_epoch ON miner_submissions (miner, challenge_id, epoch)")
