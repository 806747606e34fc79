"""Errors meant for the person at the terminal.

The library raises :class:`PlatformError` (or a subclass) with a message that names the
file, field or value at fault; the CLI root prints it as one line on stderr and exits
non-zero. Any other exception is a bug and is reported as such.
"""

from __future__ import annotations


class PlatformError(Exception):
    """A user-facing error: bad input, missing file, refused operation."""

    exit_code = 1


class UsageError(PlatformError):
    """The command was called wrongly (exit code 2, like click's usage errors)."""

    exit_code = 2


class VerificationFailed(PlatformError):
    """Something signed did not verify; the message says why."""
