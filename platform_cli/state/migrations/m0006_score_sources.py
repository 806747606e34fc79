"""Where score reports come from: evaluations attributed to miners, and the cursor over
admitted ``evaluation`` messages."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE evaluations ADD COLUMN miner TEXT NOT NULL DEFAULT ''")
    db.execute(
        """CREATE TABLE score_ingest (
            name TEXT PRIMARY KEY,
            last_row INTEGER NOT NULL
        )"""
    )
