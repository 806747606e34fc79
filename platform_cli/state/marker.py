"""``<data-dir>/state.id``: evidence that this data dir held a state, and which one.

Written (atomically, by rename) once the database exists; read before the database is
opened. It holds the id that migration ``m0013`` stored in the database, so
``open_state`` can tell a new data dir from one whose database was wiped, emptied or
replaced by another node's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from platform_cli.errors import PlatformError, StateDamaged
from platform_cli.files import read_limited

MARKER_FILENAME = "state.id"
_ID_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Marker:
    state_id: str
    created_ms: int


def marker_path(data_dir: Path) -> Path:
    return Path(data_dir) / MARKER_FILENAME


def read_marker(data_dir: Path) -> Marker | None:
    path = marker_path(data_dir)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        raw = read_limited(path, 4096, "state marker")
    except PlatformError as exc:
        raise StateDamaged(f"{exc}: it must be the regular file this data dir's state wrote") from None
    try:
        doc = json.loads(raw)
        state_id, created_ms = doc["state_id"], int(doc["created_ms"])
    except (ValueError, KeyError, TypeError):
        state_id, created_ms = None, 0
    if not isinstance(state_id, str) or not _ID_RE.fullmatch(state_id):
        raise StateDamaged(
            f"state marker {path} is garbled: restore it from a backup of this data dir, or move it "
            "aside only if this data dir never held a state"
        )
    return Marker(state_id, created_ms)


def write_marker(data_dir: Path, marker: Marker) -> None:
    """Create or replace the marker: a temporary file, fsync, rename, fsync the directory."""
    path = marker_path(data_dir)
    tmp = path.with_name(f".{MARKER_FILENAME}.{os.getpid()}.tmp")
    text = json.dumps({"state_id": marker.state_id, "created_ms": marker.created_ms}) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
