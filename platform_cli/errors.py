"""Errors meant for the person at the terminal.

The library raises :class:`PlatformError` (or a subclass) with a message that names the
file, field or value at fault; the CLI root prints it as one line on stderr and exits
non-zero. Any other exception is a bug and is reported as such.
"""

from __future__ import annotations

import errno
import os


class PlatformError(Exception):
    """A user-facing error: bad input, missing file, refused operation."""

    exit_code = 1


class UsageError(PlatformError):
    """The command was called wrongly (exit code 2, like click's usage errors)."""

    exit_code = 2


class VerificationFailed(PlatformError):
    """Something signed did not verify; the message says why."""


class StateDamaged(PlatformError):
    """The state database is corrupt, or gone where it existed before."""


def storage_error(exc: BaseException, data_dir: object, database: object = None) -> PlatformError | None:
    """The user-facing form of an I/O or SQLite fault of the machine, else ``None``.

    A read-only or full disk, a file size limit or a damaged database is the operator's
    to fix, not a bug: say which, in one line. Anything else stays an internal error.
    ``database`` names the SQLite file when the caller knows it.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if type(exc).__module__ == "sqlite3":
        db = f"the database {database}" if database else f"a database in {data_dir}"
        if name.startswith("SQLITE_READONLY") or "readonly database" in text:
            return PlatformError(f"the data dir {data_dir} is read-only: {db} cannot be written ({text})")
        if (
            name == "SQLITE_FULL"
            or "database or disk is full" in text
            or ((name.startswith("SQLITE_IOERR") or "disk I/O error" in text) and _disk_full(data_dir))
        ):
            return PlatformError(f"the disk is full: {db} cannot grow ({text})")
        if name.startswith("SQLITE_IOERR") or "disk I/O error" in text:
            return PlatformError(f"cannot write {db}: {text}{_io_hint()}")
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in text or "not a database" in text:
            return StateDamaged(
                f"{db} is damaged ({text}): see 'platform state check'; "
                "restore a backup ('platform state backup')"
            )
        if name.startswith("SQLITE_CANTOPEN") or "unable to open database" in text:
            if not os.access(str(data_dir), os.W_OK):
                return PlatformError(f"the data dir {data_dir} is read-only: {db} cannot be opened ({text})")
            return PlatformError(f"cannot open {db}: {text}")
        return None
    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        if _within(exc.filename, data_dir):
            how = "read-only" if exc.errno == errno.EROFS else "not writable by this user"
            return PlatformError(f"the data dir {data_dir} is {how}{where}: {exc.strerror}")
        return PlatformError(f"cannot access{where}: {exc.strerror}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PlatformError(f"the disk is full{where}: {exc.strerror}")
    if exc.errno == errno.EFBIG:
        return PlatformError(f"file too large{where}: {exc.strerror}{_io_hint()}")
    if exc.errno == errno.EIO:
        return PlatformError(f"I/O error{where}: {exc.strerror}")
    return None


def _disk_full(data_dir: object) -> bool:
    """SQLite reports a full disk as an I/O error when the WAL index cannot grow: look."""
    try:
        info = os.statvfs(str(data_dir))
    except (OSError, ValueError):
        return False
    return info.f_bavail * info.f_frsize < 64 * 1024


def _io_hint() -> str:
    """SQLite reports a file size limit as a plain I/O error: name the limit when one is set."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        return f" (this process may write files of at most {soft} bytes: ulimit -f)"
    return " (failing storage?)"


def _within(filename: object, data_dir: object) -> bool:
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    path, root = os.path.abspath(os.fsdecode(filename)), os.path.abspath(os.fsdecode(str(data_dir)))
    return path == root or path.startswith(root + os.sep)
