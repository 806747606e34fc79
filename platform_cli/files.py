"""Reading user-supplied files safely: regular files only, never more than a cap.

``Path.read_bytes`` on a FIFO or ``/dev/zero`` blocks or reads forever, and a size check
with ``stat`` first is fooled by both (they report size 0). Here the file is opened once,
checked with ``fstat`` on the open descriptor, and read up to ``max_bytes + 1``.

Structured inputs (TOML, JSON) go through :func:`read_toml` and :func:`read_json`: the
same bounded read, then UTF-8 and the parser, then a depth check, so that binary junk,
integers of thousands of digits or nesting a thousand levels deep end in one
:class:`PlatformError` naming the file, never in a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from platform_cli.errors import PlatformError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TEXT_MAX_BYTES = 1024 * 1024
"""Cap of a TOML or JSON input written by hand (config, challenge.toml, seeds)."""
MAX_DEPTH = 32
"""Nesting (tables in tables, arrays in arrays) beyond this is refused."""


def read_limited(path: Path | str, max_bytes: int, what: str = "file") -> bytes:
    """The contents of a regular file of at most ``max_bytes``; ``-`` reads stdin."""
    if str(path) == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PlatformError(f"{what} on stdin is larger than {max_bytes} bytes")
        return data
    return read_regular(path, max_bytes, what)[0]


def read_regular(
    path: Path | str, max_bytes: int, what: str, *, dir_fd: int | None = None, shown: Path | str | None = None
) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes and ``fstat``; ``path`` is relative to ``dir_fd`` when given.

    ``shown`` is the name errors use (the full path, when ``path`` is relative).
    """
    shown = path if shown is None else shown
    if "\0" in str(path):
        raise PlatformError(f"{what} path {str(shown)!r} contains a NUL byte")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise PlatformError(f"cannot read {what} {shown}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise PlatformError(f"{what} {shown} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise PlatformError(f"{what} {shown} is not a regular file")
        if info.st_size > max_bytes:
            raise PlatformError(f"{what} {shown} is {info.st_size} bytes, larger than {max_bytes}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise PlatformError(f"cannot read {what} {shown}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise PlatformError(f"{what} {shown} grew past {max_bytes} bytes while being read")
    return data, info


def read_text(path: Path | str, max_bytes: int, what: str = "file") -> str:
    """A bounded regular file decoded as UTF-8."""
    data = read_limited(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlatformError(f"{what} {_name(path)} is not UTF-8 text (byte {exc.start})") from None


def read_toml(path: Path | str, what: str = "TOML file", max_bytes: int = TEXT_MAX_BYTES) -> dict[str, Any]:
    """A bounded TOML document, at most :data:`MAX_DEPTH` levels deep."""
    text = read_text(path, max_bytes, what)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlatformError(f"{_name(path)}: invalid TOML: {exc}") from None
    except RecursionError:
        raise PlatformError(f"{_name(path)}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise PlatformError(f"{_name(path)}: invalid TOML: {exc}") from None
    check_depth(doc, _name(path))
    return doc


def read_json(path: Path | str, what: str = "JSON file", max_bytes: int = TEXT_MAX_BYTES) -> Any:
    """A bounded JSON document (``-`` for stdin), at most :data:`MAX_DEPTH` levels deep."""
    text = read_text(path, max_bytes, what)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlatformError(f"{_name(path)}: invalid JSON: {exc}") from None
    except RecursionError:
        raise PlatformError(f"{_name(path)}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:
        raise PlatformError(f"{_name(path)}: invalid JSON: {exc}") from None
    check_depth(doc, _name(path))
    return doc


def check_depth(value: Any, where: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse containers nested deeper than ``max_depth`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise PlatformError(f"{where}: nested too deeply (at most {max_depth} levels)")
        stack.extend((child, depth + 1) for child in children)


def inside(base: Path, relative: str, what: str) -> Path:
    """``base / relative``, refusing a path (or symlink) that leads outside ``base``."""
    if "\0" in relative:
        raise PlatformError(f"{what} {relative!r} contains a NUL byte")
    root = base.resolve()
    target = (base / relative).resolve()
    if target != root and root not in target.parents:
        raise PlatformError(f"{what} {relative!r} leads outside {base}")
    return target


def _name(path: Path | str) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


class Output:
    """Where a command writes its result: stdout, or a file that appears whole or not at all."""

    def __init__(self, path: Path | None, temp: Path | None = None, fd: int | None = None) -> None:
        self.path = path
        self.temp = temp
        """The file being written, for writers that need a path (SQLite's backup)."""
        self._fd = fd

    def sync(self) -> None:
        """Make what others wrote to :attr:`temp` durable before it is put in place."""
        if self._fd is not None:
            os.fsync(self._fd)

    def write(self, data: bytes) -> None:
        """Write everything (and fsync it, for a file): once this returns, the output exists."""
        if self._fd is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        try:
            with os.fdopen(self._fd, "wb", closefd=False) as handle:
                handle.write(data)
            os.fsync(self._fd)
        except OSError as exc:
            raise PlatformError(f"cannot write {self.path}: {exc.strerror}") from None


@contextlib.contextmanager
def output_file(path: Path | str | None, what: str = "output") -> Iterator[Output]:
    """An :class:`Output` to ``path`` (``None`` or ``-``: stdout).

    A file goes to a temporary name beside ``path`` first, and is renamed over it only
    when the block ends without an exception; otherwise it is removed. ``path`` must be
    a new file or a regular file (which is replaced): a symlink, directory, device or
    FIFO there is refused rather than written through or replaced. Everything that can
    be checked before the work starts (the directory exists, the name is acceptable) is
    checked on entry, so a doomed output costs nothing.
    """
    if path is None or str(path) == "-":
        yield Output(None)
        return
    target = Path(path)
    if "\0" in str(target):
        raise PlatformError(f"{what} path {str(target)!r} contains a NUL byte")
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise PlatformError(f"cannot write {what} {target}: {exc.strerror}") from None
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = (
            "a symbolic link"
            if stat.S_ISLNK(info.st_mode)
            else "a directory"
            if stat.S_ISDIR(info.st_mode)
            else "a special file"
        )
        raise PlatformError(f"{what} {target} is {kind}: give a new file or a regular file to replace")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise PlatformError(f"cannot write {what} {target}: {exc.strerror}") from None
    output = Output(target, tmp, fd)
    try:
        try:
            yield output
        finally:
            os.close(fd)
        try:
            os.rename(tmp, target)
        except OSError as exc:
            raise PlatformError(f"cannot write {what} {target}: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
