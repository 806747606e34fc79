"""Evaluation records and the submission bytes they were computed from."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE submissions (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            content BLOB NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_ms INTEGER NOT NULL,
            challenge_id TEXT NOT NULL,
            challenge_version TEXT NOT NULL,
            module_sha256 TEXT NOT NULL,
            spec TEXT NOT NULL,
            submission_sha256 TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            seed TEXT NOT NULL,
            input_sha256 TEXT NOT NULL,
            output_sha256 TEXT,
            outcome TEXT NOT NULL,
            message TEXT NOT NULL,
            score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 1000000000),
            valid INTEGER NOT NULL,
            metrics TEXT NOT NULL,
            fuel_used INTEGER NOT NULL,
            wall_ms INTEGER NOT NULL,
            peak_memory INTEGER NOT NULL,
            host_calls TEXT NOT NULL,
            engine TEXT NOT NULL,
            engine_fingerprint TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX evaluations_challenge ON evaluations (challenge_id, challenge_version)")
    db.execute("CREATE INDEX evaluations_submission ON evaluations (submission_sha256)")
