"""Reading user-supplied files safely: regular files only, never more than a cap.

``Path.read_bytes`` on a FIFO or ``/dev/zero`` blocks or reads forever, and a size check
with ``stat`` first is fooled by both (they report size 0). Here the file is opened once,
checked with ``fstat`` on the open descriptor, and read up to ``max_bytes + 1``.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from platform_cli.errors import PlatformError


def read_limited(path: Path | str, max_bytes: int, what: str = "file") -> bytes:
    """The contents of a regular file of at most ``max_bytes``; ``-`` reads stdin."""
    if str(path) == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PlatformError(f"{what} on stdin is larger than {max_bytes} bytes")
        return data
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise PlatformError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PlatformError(f"{what} {path} is not a regular file")
        if info.st_size > max_bytes:
            raise PlatformError(f"{what} {path} is {info.st_size} bytes, larger than {max_bytes}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise PlatformError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise PlatformError(f"{what} {path} grew past {max_bytes} bytes while being read")
    return data


def inside(base: Path, relative: str, what: str) -> Path:
    """``base / relative``, refusing a path (or symlink) that leads outside ``base``."""
    root = base.resolve()
    target = (base / relative).resolve()
    if target != root and root not in target.parents:
        raise PlatformError(f"{what} {relative!r} leads outside {base}")
    return target
