"""P2P bridge: inbox, outbox, peers, rejection counters, DHT mirror, node status, requests.

The running host (``platform peer run``) and one-shot commands meet here: commands queue
rows in ``p2p_outbox`` and ``p2p_requests``; the host publishes, answers and records
what it receives in ``p2p_inbox``.
"""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE p2p_inbox (
            msg_id TEXT PRIMARY KEY,
            topic TEXT NOT NULL,
            kind TEXT NOT NULL,
            signer TEXT NOT NULL,
            seq INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            from_peer TEXT NOT NULL,
            via TEXT NOT NULL CHECK (via IN ('gossip', 'sync')),
            envelope BLOB NOT NULL,
            received_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX p2p_inbox_received ON p2p_inbox (received_ms)")
    db.execute(
        """CREATE TABLE p2p_seen (
            msg_id TEXT PRIMARY KEY,
            ts_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX p2p_seen_ts ON p2p_seen (ts_ms)")
    db.execute("CREATE INDEX p2p_inbox_kind ON p2p_inbox (kind, received_ms)")
    db.execute(
        """CREATE TABLE p2p_outbox (
            id INTEGER PRIMARY KEY,
            topic TEXT NOT NULL,
            msg_id TEXT NOT NULL,
            envelope BLOB NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'published', 'failed')),
            error TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL,
            published_ms INTEGER
        )"""
    )
    db.execute("CREATE INDEX p2p_outbox_status ON p2p_outbox (status, id)")
    db.execute(
        """CREATE TABLE p2p_peers (
            peer_id TEXT PRIMARY KEY,
            hotkey TEXT,
            addr TEXT NOT NULL DEFAULT '',
            latency_us INTEGER,
            connected INTEGER NOT NULL DEFAULT 0,
            sync_row INTEGER NOT NULL DEFAULT 0,
            banned_ms INTEGER,
            last_seen_ms INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE p2p_rejections (
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            last_ms INTEGER NOT NULL,
            last_detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (topic, reason)
        )"""
    )
    db.execute(
        """CREATE TABLE p2p_dht_records (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL,
            stored_ms INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE p2p_node (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            peer_id TEXT NOT NULL,
            addrs TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_ms INTEGER NOT NULL,
            heartbeat_ms INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE p2p_requests (
            id INTEGER PRIMARY KEY,
            op TEXT NOT NULL,
            arg BLOB NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
            result TEXT NOT NULL DEFAULT '',
            created_ms INTEGER NOT NULL,
            done_ms INTEGER
        )"""
    )
    db.execute("CREATE INDEX p2p_requests_status ON p2p_requests (status, id)")
