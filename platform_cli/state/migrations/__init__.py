"""Versioned schema migrations.

Each migration is a module ``mNNNN_name.py`` in this package defining
``migrate(db: sqlite_utils.Database) -> None``. They run in name order, each in its own
transaction together with the row that records it in ``_migrations``, so a crash never
leaves half a migration applied. Each module owns its tables: one component, one module.
"""

from __future__ import annotations

import importlib
import pkgutil
import sqlite3
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

_TABLE = "_migrations"


def available() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name.startswith("m"))


def applied(conn: sqlite3.Connection) -> set[str]:
    try:
        return {row[0] for row in conn.execute(f"SELECT name FROM {_TABLE}")}
    except sqlite3.OperationalError:
        return set()


def pending(conn: sqlite3.Connection) -> list[str]:
    done = applied(conn)
    return [name for name in available() if name not in done]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet recorded; return the names applied."""
    conn = db.conn
    conn.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (name TEXT PRIMARY KEY, applied_ms INTEGER NOT NULL)")
    done: list[str] = []
    for name in pending(conn):
        module = importlib.import_module(f"{__name__}.{name}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute(f"SELECT 1 FROM {_TABLE} WHERE name = ?", [name]).fetchone():
                conn.execute("ROLLBACK")  # another process applied it while we waited
                continue
            module.migrate(db)
            conn.execute(f"INSERT INTO {_TABLE} VALUES (?, ?)", [name, time.time_ns() // 1_000_000])
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        done.append(name)
    return done
