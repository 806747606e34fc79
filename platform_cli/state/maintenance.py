"""Operator tools behind ``platform state``: check a state thoroughly, back it up online.

``check`` opens the database read-only (it changes nothing, not even the marker) and
reports every check rather than stopping at the first: SQLite's full integrity check,
the state id against ``state.id``, the schema version, and the audit chain.

``backup`` uses SQLite's online backup API: a consistent copy taken while the node keeps
running (WAL lets it write meanwhile), verified before it is put in place.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli.errors import PlatformError, StateDamaged, storage_error
from platform_cli.files import Output
from platform_cli.state import audit, integrity, marker
from platform_cli.state.db import BUSY_TIMEOUT_S, DB_FILENAME, State, state_identity
from platform_cli.state.migrations import available, pending


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def check(data_dir: Path) -> list[Check]:
    """Every check of the state under ``data_dir``, passed or not."""
    path = Path(data_dir) / DB_FILENAME
    checks: list[Check] = []
    try:
        previous = marker.read_marker(data_dir)
        checks.append(Check("marker", True, f"state {previous.state_id}" if previous else "none yet"))
    except StateDamaged as exc:
        previous = None
        checks.append(Check("marker", False, str(exc)))
    if not path.exists():
        detail = "missing, but this data dir held a state" if previous else "none yet: nothing recorded"
        return [*checks, Check("database", previous is None, detail)]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    conn.isolation_level = None
    try:
        checks += _database_checks(State(conn, path), previous)
    except sqlite3.DatabaseError as exc:
        problem = storage_error(exc, data_dir, path) or exc
        checks.append(Check("database", False, str(problem)))
    finally:
        conn.close()
    return checks


def _database_checks(state: State, previous: marker.Marker | None) -> list[Check]:
    problems = integrity.full_check(state.conn)
    checks = [Check("integrity", not problems, "; ".join(problems) or "ok (PRAGMA integrity_check)")]
    if problems:
        return checks
    todo = pending(state.conn)
    checks.append(
        Check("schema", True, f"{len(available()) - len(todo)} of {len(available())} migrations applied")
    )
    recorded = state_identity(state)
    if recorded is None:
        checks.append(Check("identity", True, "not recorded yet (the next command records it)"))
    elif previous is not None and previous.state_id != recorded.state_id:
        checks.append(
            Check("identity", False, f"holds state {recorded.state_id}, the marker says {previous.state_id}")
        )
    else:
        checks.append(Check("identity", True, f"state {recorded.state_id}"))
    if "audit_log" in {row[0] for row in state.execute("SELECT name FROM sqlite_master")}:
        report = audit.verify(state)
        checks.append(Check("audit", report.ok, report.problem or f"{report.entries} entries chained"))
    return checks


def backup(state: State, output: Output) -> dict[str, Any]:
    """Copy the state into ``output`` (a file) with SQLite's backup API, then verify the copy."""
    if output.temp is None:
        raise PlatformError("a backup is a database file: give an output path, not '-'")
    integrity.require_intact(state.conn, state.path)
    copy = sqlite3.connect(output.temp)
    try:
        state.conn.backup(copy)
        copy_problems = integrity.full_check(copy)
        if copy_problems:
            raise StateDamaged(f"the backup {output.path} did not verify ({copy_problems[0]})")
        copy_state = State(copy, output.temp)
        recorded = state_identity(copy_state)
        head = audit.head(copy_state)
    finally:
        copy.close()
    output.sync()
    return {
        "backup": str(output.path),
        "bytes": output.temp.stat().st_size,
        "state_id": recorded.state_id if recorded else None,
        "audit_entries": head[0] if head else 0,
        "audit_head": head[1] if head else None,
    }
