"""A data dir that cannot be written: one clear line, exit 1, and the state untouched.

Four real faults, each on real processes: a user without write access (root without
CAP_DAC_OVERRIDE on these machines), a read-only mount, a full file system (a small
tmpfs) and a file size limit (``ulimit -f``). Mounts happen in a private mount namespace
(``unshare -m``), so nothing leaks to the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO
from tests.hostile import fingerprint, one_error_line, platform, without_write_access

CHALLENGE = FIXTURES / "challenge" / "challenge.toml"
SUBMISSION = FIXTURES / "submissions" / "sort" / "good_insertion.wasm"
COMMANDS = {
    "keys new": ("keys", "new", "--name", "fresh"),
    "registry sign": ("registry", "sign", str(CHALLENGE), "--key", "sudo", "--action", "add"),
    "registry propose": ("registry", "propose", str(FIXTURES / "challenge" / "update-add.json")),
    "eval run": ("eval", "run", str(CHALLENGE), str(SUBMISSION)),
    "chain sync": ("chain", "sync"),
    "weights compute": ("weights", "compute"),
    "peer id": ("peer", "id"),
}


def can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not can_mount(), reason="needs root and unshare(1) for a private mount namespace"
)


@pytest.fixture
def prepared(run, data_dir: Path) -> Path:
    """A data dir with keys, the dev chain and a metagraph snapshot: every command above can run."""
    wallets = str(FIXTURES / "wallets")
    for name, hotkey in (("sudo", "sudo"), ("validator", "validator-0")):
        imported = run(
            "keys",
            "import",
            "--name",
            name,
            "--wallet",
            "devnet",
            "--hotkey",
            hotkey,
            "--wallet-path",
            wallets,
        )
        assert imported.exit_code == 0, imported.stderr
    for args in (("chain", "dev", "init"), ("chain", "sync")):
        assert run(*args).exit_code == 0
    return data_dir


def check_every_command(
    data_dir: Path, attempt: Callable[[tuple[str, ...]], subprocess.CompletedProcess[str]], pattern: str
) -> None:
    for name, args in COMMANDS.items():
        before = fingerprint(data_dir)
        result = attempt(args)
        try:
            one_error_line(result, pattern)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
        assert fingerprint(data_dir) == before, name


@pytest.mark.slow
def test_a_user_without_write_access(prepared: Path) -> None:
    prefix = without_write_access()
    for path in [prepared, *prepared.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        check_every_command(
            prepared,
            lambda args: platform(prepared, *args, prefix=prefix),
            "the data dir .* is (read-only|not writable by this user)",
        )
    finally:
        for path in [prepared, *prepared.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.slow
@needs_mounts
def test_a_read_only_mount(prepared: Path) -> None:
    mount = f'mount --bind "{prepared}" "{prepared}" && mount -o remount,ro,bind "{prepared}" "{prepared}" && exec "$@"'
    prefix = ("unshare", "-m", "sh", "-c", mount, "sh")
    check_every_command(
        prepared, lambda args: platform(prepared, *args, prefix=prefix), "the data dir .* is read-only"
    )


@pytest.mark.slow
def test_a_file_size_limit(prepared: Path) -> None:
    prefix = ("sh", "-c", 'ulimit -f 4 && exec "$@"', "sh")
    check_every_command(prepared, lambda args: platform(prepared, *args, prefix=prefix), r"ulimit -f")


@pytest.mark.slow
@needs_mounts
def test_a_full_disk(prepared: Path, tmp_path: Path) -> None:
    """The data dir on a full tmpfs; what the command left behind is copied out to be compared."""
    mount_point, after = tmp_path / "mnt", tmp_path / "after"
    mount_point.mkdir()

    def attempt(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        shutil.rmtree(after, ignore_errors=True)
        script = (
            f'mount -t tmpfs -o size=2m tmpfs "{mount_point}" && cp -a "{prepared}" "{mount_point}/d" && '
            f'(dd if=/dev/zero of="{mount_point}/filler" bs=4096 2>/dev/null; true) && '
            f'env PYTHONPATH="{REPO}" "{sys.executable}" -m platform_cli --data-dir "{mount_point}/d" "$@"; '
            f'code=$?; rm "{mount_point}/filler"; cp -a "{mount_point}/d" "{after}"; exit $code'
        )
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script, "sh", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    for name, args in COMMANDS.items():
        before = fingerprint(prepared)
        result = attempt(args)
        try:
            one_error_line(result, "the disk is full")
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None
        assert fingerprint(after) == before, name
