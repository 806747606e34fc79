"""P2P counters and replay windows of the gossip layer.

``p2p_traffic`` replaces ``p2p_rejections``: what happened to every message, counted per
topic, path (``gossip``, ``sync``, ``own``), outcome and reason. The node keeps the
counts in memory and adds them here in batches (a flood costs no write per message).

``p2p_windows`` holds the gossip layer's replay windows (until now rows ``p2p/<kind>``
of ``signer_windows``) as bitmaps: one is read and written for every admitted message.
"""

from __future__ import annotations

import json

import sqlite_utils

from platform_cli.core.replay import BitWindow


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE p2p_traffic (
            topic TEXT NOT NULL,
            via TEXT NOT NULL CHECK (via IN ('gossip', 'sync', 'own')),
            outcome TEXT NOT NULL
                CHECK (outcome IN ('received', 'admitted', 'refused', 'dropped', 'forward_dropped')),
            reason TEXT NOT NULL DEFAULT '',
            count INTEGER NOT NULL,
            last_ms INTEGER NOT NULL,
            last_detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (topic, via, outcome, reason)
        )"""
    )
    db.execute(
        "INSERT INTO p2p_traffic (topic, via, outcome, reason, count, last_ms, last_detail) "
        "SELECT topic, 'gossip', 'refused', reason, count, last_ms, last_detail FROM p2p_rejections"
    )
    db.execute("DROP TABLE p2p_rejections")
    db.execute(
        """CREATE TABLE p2p_windows (
            signer TEXT NOT NULL,
            kind TEXT NOT NULL,
            high INTEGER NOT NULL,
            bits BLOB NOT NULL,
            PRIMARY KEY (signer, kind)
        )"""
    )
    rows = db.execute(
        "SELECT signer, kind, high, seen FROM signer_windows WHERE kind LIKE 'p2p/%'"
    ).fetchall()
    for signer, kind, high, seen in rows:
        window = BitWindow(high)
        for seq in sorted(s for s in json.loads(seen) if s > high - window.size):
            if window.check(seq) is None:
                window = window.accept(seq)
        db.execute(
            "INSERT INTO p2p_windows (signer, kind, high, bits) VALUES (?, ?, ?, ?)",
            [signer, kind.removeprefix("p2p/"), window.high, window.to_bytes()],
        )
    db.execute("DELETE FROM signer_windows WHERE kind LIKE 'p2p/%'")
