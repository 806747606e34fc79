"""The state's identity: a random id minted when the database is created.

The same id is kept beside the database in ``<data-dir>/state.id`` (``state/marker.py``):
a data dir whose marker names a state that is missing, empty or another one refuses to
open, so a wiped or swapped ``state.db`` is never taken for a new node's state (its
replay windows and sequence numbers would be forgotten)."""

from __future__ import annotations

import secrets
import time

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE state_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "INSERT INTO state_meta (key, value) VALUES ('state_id', ?), ('created_ms', ?)",
        [secrets.token_hex(16), str(time.time_ns() // 1_000_000)],
    )
