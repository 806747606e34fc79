"""The registry's committed history: every version state change with the block from
which it takes effect, in commit order (``platform_cli.core.registry.Transition``).

Registries from before this migration have no record of when their versions changed
state: each committed (non-draft) version is recorded as activated, then moved to its
current state, in effect from block 0.
"""

from __future__ import annotations

import sqlite_utils

from platform_cli.core.challenge import version_key


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE registry_history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            update_id TEXT NOT NULL,
            challenge_id TEXT NOT NULL,
            version TEXT NOT NULL,
            previous TEXT NOT NULL CHECK (previous IN ('draft', 'active', 'deprecated', 'retired')),
            state TEXT NOT NULL CHECK (state IN ('active', 'deprecated', 'retired')),
            effective_block INTEGER NOT NULL CHECK (effective_block >= 0),
            committed_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX registry_history_version ON registry_history (challenge_id, version)")
    rows = db.execute(
        "SELECT challenge_id, version, state, update_id, updated_ms FROM registry_versions WHERE state != 'draft'"
    ).fetchall()
    for challenge_id, version, state, update_id, updated_ms in sorted(
        rows, key=lambda row: (row[0], version_key(row[1]))
    ):
        steps = [("draft", "active")] + ([("active", state)] if state != "active" else [])
        for previous, new in steps:
            db.execute(
                "INSERT INTO registry_history (update_id, challenge_id, version, previous, state, "
                "effective_block, committed_ms) VALUES (?, ?, ?, ?, ?, 0, ?)",
                [update_id, challenge_id, version, previous, new, updated_ms],
            )
