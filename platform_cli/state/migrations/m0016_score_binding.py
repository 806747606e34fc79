"""Score reports bound to what was evaluated: the challenge version, module and signed
metadata each report names, the submissions miners made (admitted ``submission``
messages), and the count of admitted messages whose body could not be used.

Reports stored before this migration name none of these: they are kept, and refused
as ``unbound`` (``platform_cli.core.scores``).
"""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    for column in ("version", "module_sha256", "spec_sha256", "submission_sha256"):
        db.execute(f"ALTER TABLE score_reports ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
    db.execute(
        """CREATE TABLE miner_submissions (
            miner TEXT NOT NULL,
            challenge_id TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            msg_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL,
            PRIMARY KEY (miner, challenge_id, sha256)
        )"""
    )
    db.execute(
        """CREATE TABLE score_ingest_refusals (
            kind TEXT NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            last_signer TEXT NOT NULL,
            last_detail TEXT NOT NULL,
            last_ms INTEGER NOT NULL,
            PRIMARY KEY (kind, reason)
        )"""
    )
