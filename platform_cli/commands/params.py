"""Parameter types shared by the commands.

``click.Path`` calls ``os.stat`` while parsing, which raises ``ValueError`` (an internal
error) for a path with a NUL byte, and its own checks end in a usage error (exit 2) where
a bad input file deserves exit 1. File arguments are therefore plain paths here: the
reader (``platform_cli.files``) checks them when it opens them, and says what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


class FilePath(click.ParamType):
    """A path, unchecked until it is read (or written)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        return value if isinstance(value, Path) else Path(value)


class DirPath(FilePath):
    """A directory path: refused at once if it holds a NUL byte or names something else."""

    name = "directory"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = super().convert(value, param, ctx)
        if "\0" in str(path):
            self.fail(f"{str(path)!r} contains a NUL byte", param, ctx)
        if path.exists() and not path.is_dir():
            self.fail(f"{path} is not a directory", param, ctx)
        return path


FILE = FilePath()
DIRECTORY = DirPath()
