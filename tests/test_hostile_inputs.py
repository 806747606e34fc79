"""Every command that reads a file, fed every kind of hostile file.

Each case must end in exactly one ``error:`` line on stderr that names the file, exit
code 1, and no change to the state: row counts of every table, the audit head, our
own sequence numbers and the key files are the same before and after. This is what the
README's "errors are one line" promises for input files.

`chain dev init --seed` is not in the table: its seed reading belongs to the dev chain's
own branch (see the report of the hardening branch).
"""

from __future__ import annotations

import faulthandler
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.hostile import CONTENT_KINDS, FILE_KINDS, fingerprint, make_hostile

ALL_KINDS = CONTENT_KINDS + FILE_KINDS
GOOD_TOML = FIXTURES / "challenge" / "challenge.toml"
GOOD_MODULE = FIXTURES / "challenge" / "hello.wasm"
GOOD_UPDATE = FIXTURES / "challenge" / "update-add.json"
SUBMISSION = FIXTURES / "submissions" / "sort" / "good_insertion.wasm"
NUL = "nul"
"""A path with a NUL byte in it (a shell cannot pass one; a script's argv list can)."""


@dataclass(frozen=True)
class Row:
    """One command reading one file: where the hostile file goes and the command line."""

    name: str
    place: Callable[[Path, Path], Path]  # (work dir, data dir) -> where the file goes
    args: Callable[[str], list[str]]  # the file's path -> the command line
    kinds: tuple[str, ...]


def in_dir(name: str) -> Callable[[Path, Path], Path]:
    return lambda work, data_dir: work / name


def challenge_copy(work: Path, data_dir: Path) -> Path:
    """A copy of the sample challenge whose module is the hostile file."""
    copy = work / "challenge"
    shutil.copytree(FIXTURES / "challenge", copy)
    (copy / "hello.wasm").unlink()
    return copy / "hello.wasm"


def key_file(work: Path, data_dir: Path) -> Path:
    return data_dir / "keys" / "hostile.json"


def hotkey_file(work: Path, data_dir: Path) -> Path:
    return work / "wallets" / "w" / "hotkeys" / "h"


ROWS = [
    Row(
        "--config", in_dir("platform.toml"), lambda p: ["--config", p, "audit", "log"], (*ALL_KINDS[1:], NUL)
    ),
    Row(
        "registry sign CHALLENGE",
        in_dir("challenge.toml"),
        lambda p: ["registry", "sign", p, "--key", "sudo", "--action", "add"],
        (*ALL_KINDS, NUL),
    ),
    Row(
        "registry sign (the module)",
        challenge_copy,
        lambda p: [
            "registry",
            "sign",
            str(Path(p).parent / "challenge.toml"),
            "--key",
            "sudo",
            "--action",
            "add",
        ],
        (*FILE_KINDS, "empty", "binary"),
    ),
    Row(
        "registry verify UPDATE",
        in_dir("update.json"),
        lambda p: ["registry", "verify", p],
        (*ALL_KINDS, NUL),
    ),
    Row(
        "registry propose UPDATE",
        in_dir("update.json"),
        lambda p: ["registry", "propose", p],
        (*ALL_KINDS, NUL),
    ),
    Row(
        "eval run CHALLENGE",
        in_dir("challenge.toml"),
        lambda p: ["eval", "run", p, str(SUBMISSION)],
        (*ALL_KINDS, NUL),
    ),
    Row(
        "eval run SUBMISSION",
        in_dir("submission.wasm"),
        lambda p: ["eval", "run", str(GOOD_TOML), p],
        (*FILE_KINDS, NUL),
    ),
    Row(
        "eval conformance MODULE",
        in_dir("module.wasm"),
        lambda p: ["eval", "conformance", p],
        (*FILE_KINDS, "empty", "binary", NUL),
    ),
    Row(
        "eval conformance --challenge",
        in_dir("challenge.toml"),
        lambda p: ["eval", "conformance", str(GOOD_MODULE), "--challenge", p],
        (*ALL_KINDS, NUL),
    ),
    Row(
        "peer publish FILE",
        in_dir("message.json"),
        lambda p: ["peer", "publish", "submissions", p],
        (*ALL_KINDS, NUL),
    ),
    Row(
        "chain dev init --seed",
        in_dir("seed.json"),
        lambda p: ["chain", "dev", "init", "--seed", p],
        (*ALL_KINDS, NUL),
    ),
    Row("dht put FILE", in_dir("value.bin"), lambda p: ["dht", "put", "/sub/", p], (*FILE_KINDS, NUL)),
    Row("key file: keys show", key_file, lambda p: ["keys", "show", "hostile"], ALL_KINDS),
    Row(
        "key file: registry sign --key",
        key_file,
        lambda p: ["registry", "sign", str(GOOD_TOML), "--key", "hostile", "--action", "add"],
        ALL_KINDS,
    ),
    Row(
        "key file: eval publish --key",
        key_file,
        lambda p: ["eval", "publish", "1", "--key", "hostile"],
        ALL_KINDS,
    ),
    Row(
        "key file: weights submit --key",
        key_file,
        lambda p: ["weights", "submit", "--dry-run", "--key", "hostile"],
        ALL_KINDS,
    ),
    Row(
        "wallet hotkey: keys import",
        hotkey_file,
        lambda p: [
            "keys",
            "import",
            "--name",
            "imported",
            "--wallet",
            "w",
            "--hotkey",
            "h",
            "--wallet-path",
            str(Path(p).parents[2]),
        ],
        ALL_KINDS,
    ),
]


@pytest.fixture
def watchdog() -> Iterator[None]:
    """A read that blocks (a FIFO) or never ends (/dev/zero) fails the run instead of hanging it."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def populated(run, data_dir: Path, sudo_key: str) -> Path:
    """A state with keys, a proposed registry update and audit entries to keep unchanged."""
    assert run("keys", "new", "--name", "k", "--scheme", "ed25519").exit_code == 0
    assert run("registry", "propose", str(GOOD_UPDATE)).exit_code == 0
    return data_dir


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_a_hostile_file_is_one_error_line_and_changes_nothing(
    run, populated: Path, tmp_path: Path, watchdog: None, row: Row
) -> None:
    for kind in row.kinds:
        work = tmp_path / "cases" / kind
        work.mkdir(parents=True)
        if kind == NUL:
            path, shown = str(work / "in\0put"), "in\\x00put"
        else:
            target = row.place(work, populated)
            path, shown = str(make_hostile(target, kind)), target.name
        before = fingerprint(populated)
        result = run(*row.args(path))
        lines = result.stderr.splitlines()
        case = f"{row.name} <- {kind}: {result.stderr!r}"
        assert result.exit_code == 1, case
        assert len(lines) == 1 and lines[0].startswith("error: "), case
        assert shown in lines[0], case
        assert "internal error" not in lines[0] and "Traceback" not in result.output, case
        assert fingerprint(populated) == before, case
        if kind != NUL and row.place is key_file:
            _remove(target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    else:
        path.unlink()
