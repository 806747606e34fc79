"""Consensus: what this validator signed, where it stood, the committed log, evidence."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE consensus_signed (
            signer TEXT NOT NULL,
            height INTEGER NOT NULL,
            round INTEGER NOT NULL,
            step INTEGER NOT NULL,
            body BLOB NOT NULL,
            envelope BLOB NOT NULL,
            signed_ms INTEGER NOT NULL,
            PRIMARY KEY (signer, height, round, step)
        )"""
    )
    db.execute(
        """CREATE TABLE consensus_signed_once (
            signer TEXT NOT NULL,
            key TEXT NOT NULL,
            body BLOB NOT NULL,
            envelope BLOB NOT NULL,
            signed_ms INTEGER NOT NULL,
            PRIMARY KEY (signer, key)
        )"""
    )
    for table in ("consensus_signed", "consensus_signed_once"):
        for event in ("UPDATE", "DELETE"):
            db.execute(
                f"""CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table}
                BEGIN SELECT RAISE(ABORT, 'signed consensus messages are never changed or forgotten'); END"""
            )
    db.execute(
        """CREATE TABLE consensus_resume (
            signer TEXT PRIMARY KEY,
            height INTEGER NOT NULL,
            round INTEGER NOT NULL,
            step INTEGER NOT NULL,
            locked_round INTEGER NOT NULL,
            locked_value BLOB,
            valid_round INTEGER NOT NULL,
            valid_value BLOB,
            updated_ms INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE consensus_log (
            height INTEGER PRIMARY KEY,
            value_id TEXT NOT NULL UNIQUE,
            prev TEXT NOT NULL,
            value BLOB NOT NULL,
            certificate BLOB NOT NULL,
            committed_ms INTEGER NOT NULL
        )"""
    )
    for event in ("UPDATE", "DELETE"):
        db.execute(
            f"""CREATE TRIGGER consensus_log_no_{event.lower()} BEFORE {event} ON consensus_log
            BEGIN SELECT RAISE(ABORT, 'committed consensus entries are immutable'); END"""
        )
    db.execute(
        """CREATE TRIGGER consensus_log_chain BEFORE INSERT ON consensus_log
        WHEN NEW.height != COALESCE((SELECT MAX(height) FROM consensus_log), 0) + 1
          OR (NEW.height > 1 AND NEW.prev != (SELECT value_id FROM consensus_log WHERE height = NEW.height - 1))
        BEGIN SELECT RAISE(ABORT, 'a consensus entry must extend the log'); END"""
    )
    db.execute(
        """CREATE TABLE consensus_evidence (
            evidence_id TEXT PRIMARY KEY,
            signer TEXT NOT NULL,
            height INTEGER NOT NULL,
            round INTEGER NOT NULL,
            step INTEGER NOT NULL,
            evidence BLOB NOT NULL,
            received_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX consensus_evidence_signer ON consensus_evidence (signer, height)")
