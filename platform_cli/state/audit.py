"""Appending to and reading the hash-chained audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from platform_cli.clock import now_ms
from platform_cli.core.audit import AuditEntry, ChainReport, next_entry, verify_chain
from platform_cli.state.db import State, write_transaction


def _detail_text(detail: Any) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def head(state: State) -> tuple[int, str] | None:
    row = state.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    return (row[0], row[1]) if row else None


def append(state: State, actor: str, action: str, detail: dict[str, Any]) -> AuditEntry:
    """Record a state-changing action; joins the caller's transaction when there is one."""
    with write_transaction(state):
        entry = next_entry(head(state), ts_ms=now_ms(), actor=actor, action=action, detail=detail)
        state.execute(
            "INSERT INTO audit_log (seq, ts_ms, actor, action, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                entry.seq,
                entry.ts_ms,
                entry.actor,
                entry.action,
                _detail_text(detail),
                entry.prev_hash,
                entry.hash,
            ],
        )
        state.execute(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            [entry.seq, entry.hash],
        )
    return entry


def has_action(state: State, actor: str, actions: tuple[str, ...]) -> bool:
    """Whether ``actor`` has an entry with one of ``actions``."""
    marks = ", ".join("?" for _ in actions)
    sql = f"SELECT 1 FROM audit_log WHERE actor = ? AND action IN ({marks}) LIMIT 1"
    return state.execute(sql, [actor, *actions]).fetchone() is not None


def entries(state: State, last: int | None = None) -> Iterator[AuditEntry]:
    """Entries in chain order; only the newest ``last`` when given."""
    sql = "SELECT seq, ts_ms, actor, action, detail, prev_hash, hash FROM audit_log ORDER BY seq"
    params: list[int] = []
    if last is not None:
        sql = f"SELECT * FROM ({sql} DESC LIMIT ?) ORDER BY seq"
        params.append(last)
    cursor = state.execute(sql, params)
    for seq, ts_ms, actor, action, detail, prev_hash, hash_ in cursor:
        try:
            parsed = json.loads(detail)
        except json.JSONDecodeError:
            parsed = detail
        yield AuditEntry(seq, ts_ms, actor, action, parsed, prev_hash, hash_)


def verify(state: State) -> ChainReport:
    return verify_chain(entries(state), head(state))
