"""Is the state database intact? SQLite's own checks, in two sizes.

``quick_check(table)`` walks the b-trees of the named tables (and their indexes) only: it
costs milliseconds for the small tables whose damage would silently break a guarantee
(replay windows, our own sequence numbers, the audit head, the registry), so every open
runs it on them. ``full_check`` is ``PRAGMA integrity_check`` over the whole file (about
5 ms per MB here): ``platform state check``, ``platform audit verify`` and the start of
a node run it. Anything damaged elsewhere is still refused the moment SQLite reads it
(``errors.storage_error`` turns "database disk image is malformed" into one line).
"""

from __future__ import annotations

import sqlite3

from platform_cli.errors import StateDamaged

CRITICAL_TABLES = (
    "_migrations",
    "state_meta",
    "audit_head",
    "own_sequences",
    "signer_windows",
    "registry_updates",
    "registry_versions",
)
MAX_PROBLEMS = 20


def quick_check(conn: sqlite3.Connection, tables: tuple[str, ...] = CRITICAL_TABLES) -> list[str]:
    """Problems SQLite finds in ``tables`` (those that exist); empty when they are intact."""
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    problems: list[str] = []
    for table in tables:
        if table in present:
            problems += _problems(conn, f"PRAGMA quick_check('{table}')")
    return problems


def full_check(conn: sqlite3.Connection) -> list[str]:
    """Every problem ``PRAGMA integrity_check`` finds (up to :data:`MAX_PROBLEMS`)."""
    problems = _problems(conn, f"PRAGMA integrity_check({MAX_PROBLEMS})")
    if not problems:
        problems = [f"foreign key violation in {row[0]}" for row in conn.execute("PRAGMA foreign_key_check")]
    return problems


def _problems(conn: sqlite3.Connection, pragma: str) -> list[str]:
    rows = [row[0] for row in conn.execute(pragma)]
    return [] if rows == ["ok"] else rows


def require_intact(conn: sqlite3.Connection, path: object) -> None:
    """Raise :class:`StateDamaged` unless the whole database passes :func:`full_check`."""
    problems = full_check(conn)
    if problems:
        raise StateDamaged(
            f"the state database {path} is damaged ({problems[0]}): see 'platform state check'; "
            "restore a backup ('platform state backup')"
        )
