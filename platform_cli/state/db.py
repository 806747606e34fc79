"""Opening the state database: WAL, busy timeout, migrations.

A running node and one-shot commands use the same file at the same time. WAL mode lets
readers proceed while one writer writes; the busy timeout makes a second writer wait for
the lock instead of failing. ``synchronous=NORMAL`` in WAL mode survives a killed process
at any instant (a power cut may lose the last transactions, never corrupt the file).

:class:`State` holds the ``sqlite3`` connection in autocommit mode; every write goes
through :func:`write_transaction`. ``State.db`` wraps the same connection in a
``sqlite_utils.Database`` on first use: sqlite-utils costs ~50 ms to import, which
start-up-sensitive commands such as ``registry verify`` do not pay.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_cli.errors import PlatformError, StateDamaged, storage_error
from platform_cli.state import integrity, marker
from platform_cli.state.migrations import migrate, pending

if TYPE_CHECKING:
    import sqlite_utils

DB_FILENAME = "state.db"
BUSY_TIMEOUT_S = 30.0


class State:
    """One open state database."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @cached_property
    def db(self) -> sqlite_utils.Database:
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def state_exists(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a state, or held one (its ``state.id`` remains)."""
    return (Path(data_dir) / DB_FILENAME).exists() or marker.marker_path(data_dir).exists()


def open_state(
    data_dir: Path, *, readonly: bool = False, full_check: bool = False, any_thread: bool = False
) -> State:
    """Open (creating if needed) the state under ``data_dir`` and bring its schema up to date.

    ``any_thread``: the connection may be used from one thread after another (never two at
    once), so a service that hands its reads to worker threads opens, and checks, the
    state once instead of once a read.

    Refuses, with what to do, a database that is damaged (``integrity.on_open_check``;
    everything with ``full_check``) and one that is missing, empty or another state where
    ``state.id`` shows this data dir held a state before.
    """
    data_dir = Path(data_dir)
    path = data_dir / DB_FILENAME
    previous = marker.read_marker(data_dir)
    if previous is not None and not path.exists():
        raise StateDamaged(_lost(path, previous, "is missing"))
    try:
        if readonly:
            if not path.exists():
                raise PlatformError(f"no state at {path}: nothing has been recorded yet")
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=not any_thread
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=not any_thread)
    except (OSError, sqlite3.Error) as exc:
        raise storage_error(exc, data_dir, path) or PlatformError(
            f"cannot open state database {path}: {exc}"
        ) from None
    conn.isolation_level = None
    state = State(conn, path)
    try:
        _prepare(state, data_dir, previous, readonly=readonly, full_check=full_check)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise storage_error(exc, data_dir, path) or PlatformError(
            f"state database {path} is unusable: {exc}"
        ) from None
    except BaseException:
        conn.close()
        raise
    return state


def _prepare(
    state: State, data_dir: Path, previous: marker.Marker | None, *, readonly: bool, full_check: bool
) -> None:
    conn = state.conn
    if previous is not None and not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StateDamaged(_lost(state.path, previous, "is empty"))
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        if pending(conn):
            migrate(state.db)
    if full_check:
        problems = integrity.full_check(conn)
    else:
        size = _size(state.path) + _size(Path(f"{state.path}-wal"))
        problems = integrity.on_open_check(conn, size)
    if problems:
        raise StateDamaged(
            f"the state database {state.path} is damaged ({problems[0]}): "
            "see 'platform state check'; restore a backup ('platform state backup')"
        )
    recorded = state_identity(state)
    if recorded is None:
        return
    if previous is not None and previous.state_id != recorded.state_id:
        raise StateDamaged(
            f"{state.path} holds state {recorded.state_id}, but {marker.marker_path(data_dir)} says this "
            f"data dir held state {previous.state_id}: the database was replaced. Put the right one back, "
            f"or remove {marker.MARKER_FILENAME} to adopt this one"
        )
    if previous is None and not readonly:
        marker.write_marker(data_dir, recorded)


def state_identity(state: State) -> marker.Marker | None:
    """The id and creation time the database holds (``None`` before migration m0013)."""
    meta = state.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'state_meta'")
    if meta.fetchone() is None:
        return None
    values = dict(state.execute("SELECT key, value FROM state_meta").fetchall())
    if "state_id" not in values:
        return None
    return marker.Marker(values["state_id"], int(values.get("created_ms", 0)))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _lost(path: Path, previous: marker.Marker, what: str) -> str:
    return (
        f"the state database {path} {what}, but this data dir held state {previous.state_id} "
        f"({marker.MARKER_FILENAME}): restore it from a backup ('platform state backup' makes one); "
        f"to start a new state on purpose, remove {path.parent / marker.MARKER_FILENAME}"
    )


@contextlib.contextmanager
def write_transaction(state: State) -> Iterator[State]:
    """A transaction that takes the write lock up front (``BEGIN IMMEDIATE``).

    Read-then-write sequences (the audit chain's head, sequence windows) must not race
    with another process; a deferred transaction would fail on lock upgrade instead of
    waiting. A nested call joins the outer transaction through a savepoint.
    """
    conn = state.conn
    if conn.in_transaction:
        conn.execute("SAVEPOINT nested")
        try:
            yield state
        except BaseException:
            conn.execute("ROLLBACK TO SAVEPOINT nested")
            conn.execute("RELEASE SAVEPOINT nested")
            raise
        conn.execute("RELEASE SAVEPOINT nested")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield state
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
