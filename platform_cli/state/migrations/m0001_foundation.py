"""Foundation tables: audit chain, signer sequences, the challenge registry, modules."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )"""
    )
    for event in ("UPDATE", "DELETE"):
        db.execute(
            f"""CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"""
        )
    db.execute(
        """CREATE TABLE audit_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE signer_windows (
            signer TEXT NOT NULL,
            kind TEXT NOT NULL,
            high INTEGER NOT NULL,
            seen TEXT NOT NULL,
            PRIMARY KEY (signer, kind)
        )"""
    )
    db.execute(
        """CREATE TABLE own_sequences (
            signer TEXT PRIMARY KEY,
            last_seq INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE modules (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            content BLOB NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE registry_updates (
            update_id TEXT PRIMARY KEY,
            action TEXT NOT NULL,
            challenge_id TEXT NOT NULL,
            version TEXT NOT NULL,
            signer TEXT NOT NULL,
            seq INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'rejected')),
            reason TEXT NOT NULL DEFAULT '',
            envelope TEXT NOT NULL,
            received_ms INTEGER NOT NULL,
            decided_ms INTEGER
        )"""
    )
    db.execute("CREATE INDEX registry_updates_status ON registry_updates (status)")
    db.execute(
        """CREATE TABLE registry_versions (
            challenge_id TEXT NOT NULL,
            version TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('draft', 'active', 'deprecated', 'retired')),
            spec TEXT NOT NULL,
            module_sha256 TEXT NOT NULL,
            update_id TEXT NOT NULL,
            updated_ms INTEGER NOT NULL,
            PRIMARY KEY (challenge_id, version)
        )"""
    )
