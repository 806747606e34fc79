"""The newest (timestamp, sequence) seen for each signed DHT record key.

A signed record that leaves the value store (evicted, expired, forgotten) leaves its
mark behind, so an older record of the same key is refused even when the newer one is
gone: eviction cannot roll a key back.
"""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE p2p_dht_marks (
            key TEXT PRIMARY KEY,
            signer TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            seen_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX p2p_dht_marks_signer ON p2p_dht_marks (signer, seen_ms)")
