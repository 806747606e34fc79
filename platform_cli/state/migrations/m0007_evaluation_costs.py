"""Evaluation records say what they cannot know and what compiling cost.

``fuel_used`` becomes nullable: a timeout interrupts code that keeps its fuel counter in
a register, and a killed worker reports nothing, so their fuel is unknown; the records
that said ``2`` (or ``0``) for them are corrected to NULL. ``compile_ms`` is the time an
evaluation spent validating and compiling modules, outside its ``wall_ms``. SQLite
cannot drop a NOT NULL constraint in place, so the table is rebuilt (inside the
migration's transaction).
"""

from __future__ import annotations

import sqlite_utils

_COLUMNS = (
    "id, created_ms, challenge_id, challenge_version, module_sha256, spec, submission_sha256, epoch, "
    "seed, input_sha256, output_sha256, outcome, message, score, valid, metrics, fuel_used, wall_ms, "
    "peak_memory, host_calls, engine, engine_fingerprint, miner"
)


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE evaluations_new (
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
            fuel_used INTEGER,
            wall_ms INTEGER NOT NULL,
            peak_memory INTEGER NOT NULL,
            host_calls TEXT NOT NULL,
            engine TEXT NOT NULL,
            engine_fingerprint TEXT NOT NULL,
            miner TEXT NOT NULL DEFAULT '',
            compile_ms INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(f"INSERT INTO evaluations_new ({_COLUMNS}) SELECT {_COLUMNS} FROM evaluations")
    db.execute("UPDATE evaluations_new SET fuel_used = NULL WHERE outcome IN ('timeout', 'failed')")
    # Ids are never reused, even those of rows gone before the rebuild.
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'evaluations'").fetchone()
    db.execute("DROP TABLE evaluations")
    db.execute("ALTER TABLE evaluations_new RENAME TO evaluations")
    if row is not None:
        db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'evaluations'", [row[0]])
    db.execute("CREATE INDEX evaluations_challenge ON evaluations (challenge_id, challenge_version)")
    db.execute("CREATE INDEX evaluations_submission ON evaluations (submission_sha256)")
