"""Where score reports come from: evaluations attributed to miners, the cursor over
admitted ``evaluation`` messages, and each report's envelope sequence number (a report
replaces an earlier one of the same validator only when it was signed later)."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE evaluations ADD COLUMN miner TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE score_reports ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    db.execute(
        """CREATE TABLE score_ingest (
            name TEXT PRIMARY KEY,
            last_row INTEGER NOT NULL
        )"""
    )
