"""The SQLite bridge between the running host and everything else.

Inbox rows are written in the same transaction that advances the signer's replay window
(write-ahead: a message is on record before the host forwards it). Outbox rows and
requests are queued by commands and claimed by the host. Nothing here imports libp2p.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from platform_cli.clock import now_ms
from platform_cli.core import envelope as env
from platform_cli.core.gossip import OUTCOMES, TallyRow
from platform_cli.core.replay import BitWindow
from platform_cli.p2p import wake
from platform_cli.state.db import State, write_transaction

NODE_STALE_MS = 5_000


# ---------------------------------------------------------------- inbox


def window(state: State, signer: str, kind: str) -> BitWindow:
    """The gossip layer's replay window for ``signer``'s messages of ``kind``.

    It is kept apart from the consumers' windows (the registry, consensus), which act on
    the same messages later with their own rules."""
    row = state.execute("SELECT high, bits FROM p2p_windows WHERE signer = ? AND kind = ?", [signer, kind])
    found = row.fetchone()
    return BitWindow.from_bytes(found[0], found[1]) if found else BitWindow()


def _save_window(state: State, signer: str, kind: str, updated: BitWindow) -> None:
    state.execute(
        "INSERT INTO p2p_windows (signer, kind, high, bits) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (signer, kind) DO UPDATE SET high = excluded.high, bits = excluded.bits",
        [signer, kind, updated.high, updated.to_bytes()],
    )


@dataclass(frozen=True)
class Received:
    """A message admission accepted, to be stored: ``wire`` is the envelope's canonical
    wire form (what it was decoded from), ``counted_as`` the path a replay is counted
    under (``via`` by default)."""

    topic: str
    envelope: env.Envelope
    wire: bytes
    from_peer: str
    via: str = "gossip"
    counted_as: str | None = None


def store_received(
    state: State,
    topic: str,
    envelope: env.Envelope,
    wire: bytes,
    from_peer: str,
    via: str = "gossip",
    *,
    counted_as: str | None = None,
) -> bool:
    """Record an admitted message and advance its signer's window, in one write
    transaction; False if already held, or refused (counted) as a replay.

    Gossip is fresh by nature: its replay check is the signer's window (another process
    may have taken the number since admission looked). Sync carries what a node missed,
    possibly far below the window by now: its replay check is the set of message ids
    seen within the retention period (sync refuses anything older), and it advances the
    window only when the number is inside it."""
    (stored,) = store_received_batch(state, [Received(topic, envelope, wire, from_peer, via, counted_as)])
    return stored


def store_received_batch(state: State, batch: Sequence[Received]) -> list[bool]:
    """:func:`store_received` for each message in order, all in one write transaction
    (a group commit: a flood costs one commit per batch, not one per message)."""
    with write_transaction(state):
        return [_store_one(state, item) for item in batch]


def _store_one(state: State, item: Received) -> bool:
    envelope = item.envelope
    msg_id = hashlib.sha256(item.wire).hexdigest()
    inserted = state.execute(
        "INSERT OR IGNORE INTO p2p_seen (msg_id, ts_ms) VALUES (?, ?)", [msg_id, envelope.ts_ms]
    ).rowcount
    if not inserted:
        return False  # held already
    current = window(state, envelope.signer, envelope.kind)
    problem = current.check(envelope.seq)
    if problem is not None and item.via != "sync":
        state.execute("DELETE FROM p2p_seen WHERE msg_id = ?", [msg_id])
        detail = f"{envelope.signer} seq {envelope.seq}: {problem}"
        add_traffic(
            state,
            [TallyRow(item.topic, item.counted_as or item.via, "refused", "replay", 1, now_ms(), detail)],
        )
        return False
    if problem is None:
        _save_window(state, envelope.signer, envelope.kind, current.accept(envelope.seq))
    state.execute(
        "INSERT INTO p2p_inbox (msg_id, topic, kind, signer, seq, ts_ms, from_peer, via, envelope, received_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            msg_id,
            item.topic,
            envelope.kind,
            envelope.signer,
            envelope.seq,
            envelope.ts_ms,
            item.from_peer,
            item.via,
            item.wire,
            now_ms(),
        ],
    )
    return True


@dataclass(frozen=True)
class InboxMessage:
    row: int
    topic: str
    envelope: env.Envelope
    from_peer: str
    via: str
    received_ms: int


def read_inbox(
    state: State, *, after_row: int = 0, kinds: list[str] | None = None, limit: int = 1000
) -> list[InboxMessage]:
    """Admitted messages in arrival order after ``after_row``: how components consume
    gossip (keep the last ``row`` seen as a cursor). Envelopes were verified on admission."""
    sql = "SELECT rowid, topic, envelope, from_peer, via, received_ms FROM p2p_inbox WHERE rowid > ?"
    params: list[Any] = [after_row]
    if kinds:
        sql += f" AND kind IN ({','.join('?' * len(kinds))})"
        params += kinds
    rows = state.execute(sql + " ORDER BY rowid LIMIT ?", [*params, limit])
    return [
        InboxMessage(row, topic, env.from_wire(wire, max_size=len(wire)), peer, via, received)
        for row, topic, wire, peer, via, received in rows
    ]


def seen(state: State, msg_id: str) -> bool:
    """Whether the message was stored within the retention period (even if pruned since)."""
    return state.execute("SELECT 1 FROM p2p_seen WHERE msg_id = ?", [msg_id]).fetchone() is not None


def prune_inbox(
    state: State, *, max_rows: int, max_age_ms: int, now: int, max_bytes: int | None = None
) -> int:
    """Apply the inbox retention: age, then the newest ``max_rows`` of each topic (a flood
    of submissions cannot evict evaluations), then the newest ``max_bytes`` in all.

    Message ids stay in ``p2p_seen`` while their signing time is within ``max_age_ms``,
    the oldest sync admits, so a pruned message stays refused."""
    with write_transaction(state):
        state.execute("DELETE FROM p2p_seen WHERE ts_ms < ?", [now - max_age_ms])
        removed = state.execute("DELETE FROM p2p_inbox WHERE received_ms < ?", [now - max_age_ms]).rowcount
        topics = [row[0] for row in state.execute("SELECT DISTINCT topic FROM p2p_inbox")]
        for topic in topics:
            removed += state.execute(
                "DELETE FROM p2p_inbox WHERE topic = ? AND rowid <= (SELECT rowid FROM p2p_inbox "
                "WHERE topic = ? ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                [topic, topic, max_rows],
            ).rowcount
        if max_bytes is not None:
            removed += state.execute(
                "DELETE FROM p2p_inbox WHERE rowid IN (SELECT rowid FROM (SELECT rowid, "
                "SUM(length(envelope)) OVER (ORDER BY rowid DESC) AS newer FROM p2p_inbox) WHERE newer > ?)",
                [max_bytes],
            ).rowcount
    return removed


def inbox_has(state: State, msg_id: str) -> bool:
    return state.execute("SELECT 1 FROM p2p_inbox WHERE msg_id = ?", [msg_id]).fetchone() is not None


def inbox_rows(state: State, *, topic: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    sql = "SELECT msg_id, topic, kind, signer, seq, ts_ms, from_peer, via, received_ms FROM p2p_inbox"
    params: list[Any] = []
    if topic:
        sql += " WHERE topic = ?"
        params.append(topic)
    sql += " ORDER BY received_ms DESC, msg_id"
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    cursor = state.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def inbox_since(
    state: State, since_ms: int, after_row: int, max_bytes: int, max_items: int
) -> tuple[list[tuple[str, bytes]], int]:
    """(topic, wire) of messages received after ``since_ms``, in arrival order, from row
    ``after_row`` on, up to ``max_bytes`` (at least one) and ``max_items``; and the row
    cursor to go on from."""
    out: list[tuple[str, bytes]] = []
    size = 0
    rows = state.execute(
        "SELECT rowid, topic, envelope FROM p2p_inbox WHERE rowid > ? AND received_ms > ? ORDER BY rowid "
        "LIMIT ?",
        [after_row, since_ms, max_items],
    )
    for rowid, topic, wire in rows:
        if out and size + len(wire) > max_bytes:
            break
        out.append((topic, wire))
        size += len(wire)
        after_row = rowid
    return out, after_row


def sync_cursor(state: State, peer_id: str) -> int:
    """The peer's inbox row up to which we have synced from it (0: never)."""
    row = state.execute("SELECT sync_row FROM p2p_peers WHERE peer_id = ?", [peer_id]).fetchone()
    return row[0] if row else 0


def set_sync_cursor(state: State, peer_id: str, row: int) -> None:
    with write_transaction(state):
        state.execute("UPDATE p2p_peers SET sync_row = ? WHERE peer_id = ?", [row, peer_id])


# ---------------------------------------------------------------- traffic counters


def add_traffic(state: State, rows: Iterable[TallyRow]) -> None:
    """Add counters (a batch drained from the node's tally) in one write transaction."""
    values = [(r.topic, r.via, r.outcome, r.reason, r.count, r.last_ms, r.last_detail[:300]) for r in rows]
    if not values:
        return
    with write_transaction(state):
        state.conn.executemany(
            "INSERT INTO p2p_traffic (topic, via, outcome, reason, count, last_ms, last_detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, via, outcome, reason) DO UPDATE SET "
            "count = count + excluded.count, last_ms = max(last_ms, excluded.last_ms), "
            "last_detail = CASE WHEN excluded.last_detail = '' THEN last_detail ELSE excluded.last_detail END",
            values,
        )


def rejections(state: State) -> list[dict[str, Any]]:
    """Refused and dropped messages (and failed forwards), per topic, path and reason."""
    cursor = state.execute(
        "SELECT topic, via, outcome, reason, count, last_ms, last_detail FROM p2p_traffic "
        "WHERE outcome NOT IN ('received', 'admitted') ORDER BY topic, via, outcome, reason"
    )
    names = ("topic", "via", "outcome", "reason", "count", "last_ms", "last_detail")
    return [dict(zip(names, row, strict=True)) for row in cursor]


def traffic(state: State) -> list[dict[str, Any]]:
    """Per topic and path: how many messages were received, admitted, refused, dropped."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for topic, via, outcome, count in state.execute(
        "SELECT topic, via, outcome, sum(count) FROM p2p_traffic GROUP BY topic, via, outcome ORDER BY topic, via"
    ):
        row = totals.setdefault((topic, via), {"topic": topic, "via": via, **dict.fromkeys(OUTCOMES, 0)})
        row[outcome] = count
    return list(totals.values())


# ---------------------------------------------------------------- outbox


def queue_outgoing(state: State, topic: str, envelope: env.Envelope) -> int:
    with write_transaction(state):
        cursor = state.execute(
            "INSERT INTO p2p_outbox (topic, msg_id, envelope, status, created_ms) VALUES (?, ?, ?, 'queued', ?)",
            [topic, envelope.message_id(), envelope.to_wire(), now_ms()],
        )
    _poke_node(state)
    return int(cursor.lastrowid or 0)


def queued_outgoing(state: State, limit: int = 100) -> list[tuple[int, str, bytes]]:
    return list(
        state.execute(
            "SELECT id, topic, envelope FROM p2p_outbox WHERE status = 'queued' ORDER BY id LIMIT ?", [limit]
        )
    )


def mark_outgoing(state: State, row_id: int, error: str = "") -> None:
    status = "failed" if error else "published"
    with write_transaction(state):
        state.execute(
            "UPDATE p2p_outbox SET status = ?, error = ?, published_ms = ? WHERE id = ?",
            [status, error, now_ms(), row_id],
        )


# ---------------------------------------------------------------- node status and peers


@dataclass(frozen=True)
class NodeStatus:
    peer_id: str
    addrs: list[str]
    pid: int
    started_ms: int
    heartbeat_ms: int

    def alive(self, now: int) -> bool:
        if now - self.heartbeat_ms > NODE_STALE_MS:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def write_node(state: State, peer_id: str, addrs: list[str], started_ms: int) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT INTO p2p_node (id, peer_id, addrs, pid, started_ms, heartbeat_ms) VALUES (1, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET peer_id = excluded.peer_id, addrs = excluded.addrs, "
            "pid = excluded.pid, started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms",
            [peer_id, json.dumps(addrs), os.getpid(), started_ms, now_ms()],
        )


def heartbeat(state: State) -> None:
    with write_transaction(state):
        state.execute(
            "UPDATE p2p_node SET heartbeat_ms = ? WHERE id = 1 AND pid = ?", [now_ms(), os.getpid()]
        )


def clear_node(state: State) -> None:
    with write_transaction(state):
        state.execute("DELETE FROM p2p_node WHERE id = 1 AND pid = ?", [os.getpid()])


def read_node(state: State) -> NodeStatus | None:
    row = state.execute(
        "SELECT peer_id, addrs, pid, started_ms, heartbeat_ms FROM p2p_node WHERE id = 1"
    ).fetchone()
    if not row:
        return None
    return NodeStatus(row[0], json.loads(row[1]), row[2], row[3], row[4])


def running_node(state: State) -> NodeStatus | None:
    node = read_node(state)
    return node if node and node.alive(now_ms()) else None


def upsert_peer(
    state: State, peer_id: str, *, addr: str | None = None, latency_us: int | None = None, connected: bool
) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT INTO p2p_peers (peer_id, addr, latency_us, connected, last_seen_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (peer_id) DO UPDATE SET addr = CASE WHEN excluded.addr = '' THEN addr "
            "ELSE excluded.addr END, latency_us = COALESCE(excluded.latency_us, latency_us), "
            "connected = excluded.connected, last_seen_ms = excluded.last_seen_ms",
            [peer_id, addr or "", latency_us, int(connected), now_ms()],
        )


def bound_peers(state: State, hotkeys: Collection[str]) -> dict[str, str]:
    """Peer id -> hotkey of the peers whose announced hotkey is one of ``hotkeys``."""
    rows = state.execute("SELECT peer_id, hotkey FROM p2p_peers WHERE hotkey IS NOT NULL")
    return {peer: hotkey for peer, hotkey in rows if hotkey in hotkeys}


def bind_hotkey(state: State, peer_id: str, hotkey: str, addr: str) -> None:
    """Record a validator's signed announcement: its hotkey runs ``peer_id``."""
    with write_transaction(state):
        state.execute(
            "UPDATE p2p_peers SET hotkey = NULL WHERE hotkey = ? AND peer_id != ?", [hotkey, peer_id]
        )
        state.execute(
            "INSERT INTO p2p_peers (peer_id, hotkey, addr, connected, last_seen_ms) VALUES (?, ?, ?, 0, ?) "
            "ON CONFLICT (peer_id) DO UPDATE SET hotkey = excluded.hotkey, addr = CASE WHEN addr = '' "
            "THEN excluded.addr ELSE addr END",
            [peer_id, hotkey, addr, now_ms()],
        )


def mark_all_disconnected(state: State) -> None:
    """At node start and stop; bans last one run of the node, so they are lifted too."""
    with write_transaction(state):
        state.execute("UPDATE p2p_peers SET connected = 0, banned_ms = NULL")


def ban_peer(state: State, peer_id: str) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT INTO p2p_peers (peer_id, connected, banned_ms, last_seen_ms) VALUES (?, 0, ?, ?) "
            "ON CONFLICT (peer_id) DO UPDATE SET connected = 0, banned_ms = excluded.banned_ms",
            [peer_id, now_ms(), now_ms()],
        )


def peers(state: State) -> list[dict[str, Any]]:
    cursor = state.execute(
        "SELECT peer_id, hotkey, addr, latency_us, connected, banned_ms, last_seen_ms FROM p2p_peers "
        "ORDER BY connected DESC, peer_id"
    )
    names = ("peer_id", "hotkey", "addr", "latency_us", "connected", "banned_ms", "last_seen_ms")
    return [dict(zip(names, row, strict=True)) for row in cursor]


def prune_peers(state: State, *, unseen_ms: int, now: int) -> int:
    """Forget peers that never announced a hotkey, are not connected nor banned, and were
    not seen for ``unseen_ms``: anyone can make peer ids, the table must not grow forever."""
    with write_transaction(state):
        return state.execute(
            "DELETE FROM p2p_peers WHERE hotkey IS NULL AND connected = 0 AND banned_ms IS NULL "
            "AND last_seen_ms < ?",
            [now - unseen_ms],
        ).rowcount


def known_addrs(state: State) -> list[str]:
    return [row[0] for row in state.execute("SELECT addr FROM p2p_peers WHERE addr != ''")]


# ---------------------------------------------------------------- requests (commands -> host)


def queue_request(state: State, op: str, arg: dict[str, Any]) -> int:
    from platform_cli.core import canonical

    with write_transaction(state):
        cursor = state.execute(
            "INSERT INTO p2p_requests (op, arg, status, created_ms) VALUES (?, ?, 'queued', ?)",
            [op, canonical.encode(arg), now_ms()],
        )
    _poke_node(state)
    return int(cursor.lastrowid or 0)


def _poke_node(state: State) -> None:
    """Wake the node once the queued row is committed (inside a caller's transaction the
    row is not visible yet: the node finds it at its next look instead)."""
    if not state.conn.in_transaction:
        wake.poke(state.path)


def claim_requests(state: State) -> list[tuple[int, str, bytes]]:
    """Queued requests, marked running so that they are served once (the node polls this:
    the write lock is taken only when something is queued)."""
    if state.execute("SELECT 1 FROM p2p_requests WHERE status = 'queued' LIMIT 1").fetchone() is None:
        return []
    with write_transaction(state):
        rows = state.execute(
            "SELECT id, op, arg FROM p2p_requests WHERE status = 'queued' ORDER BY id"
        ).fetchall()
        state.conn.executemany(
            "UPDATE p2p_requests SET status = 'running' WHERE id = ?", [(r[0],) for r in rows]
        )
    return rows


def finish_request(state: State, request_id: int, result: Any, error: str = "") -> None:
    with write_transaction(state):
        state.execute(
            "UPDATE p2p_requests SET status = ?, result = ?, done_ms = ? WHERE id = ?",
            ["failed" if error else "done", error or json.dumps(result), now_ms(), request_id],
        )


def request_result(state: State, request_id: int) -> tuple[str, str] | None:
    row = state.execute("SELECT status, result FROM p2p_requests WHERE id = ?", [request_id]).fetchone()
    return (row[0], row[1]) if row and row[0] in ("done", "failed") else None


# ---------------------------------------------------------------- DHT mirror


def mirror_record(state: State, key: str, value: bytes) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT INTO p2p_dht_records (key, value, stored_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, stored_ms = excluded.stored_ms",
            [key, value, now_ms()],
        )


def mirrored(state: State) -> list[tuple[str, bytes]]:
    return list(state.execute("SELECT key, value FROM p2p_dht_records ORDER BY key"))


def forget_record(state: State, key: str) -> None:
    with write_transaction(state):
        state.execute("DELETE FROM p2p_dht_records WHERE key = ?", [key])


# ---------------------------------------------------------------- signed DHT record marks


def dht_marks(state: State) -> dict[str, tuple[str, int, int]]:
    """Signed record key -> (signer, ts_ms, seq) of the newest record seen for it."""
    rows = state.execute("SELECT key, signer, ts_ms, seq FROM p2p_dht_marks")
    return {key: (signer, ts, seq) for key, signer, ts, seq in rows}


def dht_mark(state: State, key: str) -> tuple[int, int] | None:
    row = state.execute("SELECT ts_ms, seq FROM p2p_dht_marks WHERE key = ?", [key]).fetchone()
    return (row[0], row[1]) if row else None


def save_dht_mark(state: State, key: str, signer: str, ts_ms: int, seq: int) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT INTO p2p_dht_marks (key, signer, ts_ms, seq, seen_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET signer = excluded.signer, ts_ms = excluded.ts_ms, "
            "seq = excluded.seq, seen_ms = excluded.seen_ms",
            [key, signer, ts_ms, seq, now_ms()],
        )


def forget_dht_marks(state: State, keys: Iterable[str]) -> None:
    with write_transaction(state):
        state.conn.executemany("DELETE FROM p2p_dht_marks WHERE key = ?", [(k,) for k in keys])
