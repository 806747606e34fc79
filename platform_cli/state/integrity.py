"""Is the state database intact? SQLite's own checks, in three sizes.

Every open checks what it can afford: a database of up to :data:`WHOLE_CHECK_MAX_BYTES`
gets ``PRAGMA quick_check`` over the whole file (about 0.75 ms per MB here); a bigger
one gets it over the small tables whose damage would silently break a guarantee (replay
windows, our own sequence numbers, the audit head, the registry), which costs
milliseconds whatever the size of the rest. ``full_check`` is ``PRAGMA integrity_check``
over everything (about 5 ms per MB): ``platform state check``, ``platform audit verify``
and ``platform state backup`` run it; a node runs ``quick_check`` over the whole file
before it starts. Damage anywhere else is still refused the moment SQLite reads it
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
WHOLE_CHECK_MAX_BYTES = 16 * 1024 * 1024


def on_open_check(conn: sqlite3.Connection, size: int) -> list[str]:
    """The check every open runs: the whole file when it is small, else the critical tables."""
    if size <= WHOLE_CHECK_MAX_BYTES:
        return _problems(conn, f"PRAGMA quick_check({MAX_PROBLEMS})")
    return quick_check(conn)


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
    try:
        rows = [row[0] for row in conn.execute(pragma)]
    except sqlite3.DatabaseError as exc:  # damage bad enough to stop the check itself
        if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
            raise
        return [str(exc)]
    if rows == ["ok"]:
        return []
    lines = (line.strip() for row in rows for line in str(row).splitlines())
    return [line for line in lines if line and not line.startswith("*** in database")]


def require_intact(conn: sqlite3.Connection, path: object, *, quick: bool = False) -> None:
    """Raise :class:`StateDamaged` unless the whole database passes :func:`full_check`.

    ``quick``: ``PRAGMA quick_check`` over the whole file instead (b-tree structure, not
    index contents), about 7 times faster: what a node runs before it starts.
    """
    problems = _problems(conn, f"PRAGMA quick_check({MAX_PROBLEMS})") if quick else full_check(conn)
    if problems:
        raise StateDamaged(
            f"the state database {path} is damaged ({problems[0]}): see 'platform state check'; "
            "restore a backup ('platform state backup')"
        )
