"""Hostile inputs on real files, and a fingerprint of the state to show nothing changed."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

HUGE_BYTES = 100 * 1024 * 1024
FILE_KINDS = ("fifo", "dev-zero", "huge", "directory", "dangling")
"""Kinds that are wrong whatever the file is for."""
CONTENT_KINDS = ("empty", "binary", "deep-json", "deep-toml")
"""Kinds that are wrong for structured (TOML, JSON, key) files only."""


def make_hostile(path: Path, kind: str) -> Path:
    """Create a real hostile file of ``kind`` at ``path`` (the huge one is sparse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate(HUGE_BYTES)
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(b"\x00\xff\xfe" + bytes(range(256)) * 8)
    elif kind == "deep-json":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "deep-toml":
        path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        raise ValueError(kind)
    return path


def fingerprint(data_dir: Path) -> dict[str, object]:
    """Row counts of every table, the audit head and our sequence numbers, the key files, and
    whether a dev chain exists."""
    keys = {
        "keys": sorted(os.listdir(data_dir / "keys")) if (data_dir / "keys").is_dir() else [],
        "dev_chain": (data_dir / "devchain.db").exists(),
    }
    path = data_dir / "state.db"
    if not path.exists():
        return {**keys, "state": None}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}
        head = conn.execute("SELECT seq, hash FROM audit_head").fetchall()
        own = conn.execute("SELECT signer, last_seq FROM own_sequences ORDER BY signer").fetchall()
    finally:
        conn.close()
    return {**keys, "counts": counts, "audit_head": head, "own_sequences": own}


def platform(
    data_dir: Path, *args: str, prefix: tuple[str, ...] = (), **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run ``platform --data-dir DATA_DIR ARGS`` as its own process (``prefix`` wraps it)."""
    argv = [*prefix, sys.executable, "-m", "platform_cli", "--data-dir", str(data_dir), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False, **kwargs)


def one_error_line(result: subprocess.CompletedProcess[str], pattern: str) -> str:
    """Assert exit 1 and exactly one ``error:`` line on stderr matching ``pattern``."""
    lines = result.stderr.splitlines()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def without_write_access() -> tuple[str, ...]:
    """A prefix that runs a command as a user without write access to files it does not own.

    As root (these machines) that is root without CAP_DAC_OVERRIDE: the permission bits
    apply to it as to anyone. As another user, no prefix is needed.
    """
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop the right to write anywhere")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--")
