"""The composed validator (``platform up``): its process and each service's health."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE node_process (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER NOT NULL,
            started_ms INTEGER NOT NULL,
            heartbeat_ms INTEGER NOT NULL,
            services TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE node_services (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL CHECK (state IN ('starting', 'up', 'failed', 'stopped')),
            restarts INTEGER NOT NULL,
            since_ms INTEGER NOT NULL,
            last_error TEXT NOT NULL,
            updated_ms INTEGER NOT NULL
        )"""
    )
