"""Every command that reads a file, fed every kind of hostile file.

Each case must end in exactly one ``error:`` line on stderr that names the file, exit
code 1, and no change to the state: row counts of every table, the audit head, our
own sequence numbers and the key files are the same before and after. This is what the
README's "errors are one line" promises for input files.

The table is checked against the click tree: every parameter of every command is either
a file the table feeds (``Row.reads``), an output path, or declared not a file, so a new
command or option that takes a file fails the test until it has a row.
"""

from __future__ import annotations

import faulthandler
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from platform_cli.cli import cli
from platform_cli.commands.params import DirPath, FilePath
from tests.conftest import FIXTURES
from tests.hostile import CONTENT_KINDS, FILE_KINDS, fingerprint, make_hostile

ALL_KINDS = CONTENT_KINDS + FILE_KINDS
GOOD_TOML = FIXTURES / "challenge" / "challenge.toml"
GOOD_MODULE = FIXTURES / "challenge" / "hello.wasm"
GOOD_UPDATE = FIXTURES / "challenge" / "update-add.json"
SUBMISSION = FIXTURES / "submissions" / "sort" / "good_insertion.wasm"
CERTIFICATE = Path("set by the certificate fixture")
NUL = "nul"
"""A path with a NUL byte in it (a shell cannot pass one; a script's argv list can)."""


@dataclass(frozen=True)
class Row:
    """One command reading one file: where the hostile file goes and the command line."""

    name: str
    place: Callable[[Path, Path], Path]  # (work dir, data dir) -> where the file goes
    args: Callable[[str], list[str]]  # the file's path -> the command line
    kinds: tuple[str, ...]
    reads: tuple[str, str]  # (command path, parameter name) whose file this row feeds


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
        "--config",
        in_dir("platform.toml"),
        lambda p: ["--config", p, "audit", "log"],
        (*ALL_KINDS[1:], NUL),
        ("", "config_path"),
    ),
    Row(
        "registry sign CHALLENGE",
        in_dir("challenge.toml"),
        lambda p: ["registry", "sign", p, "--key", "sudo", "--action", "add"],
        (*ALL_KINDS, NUL),
        ("registry sign", "challenge_toml"),
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
        ("registry sign", "challenge_toml"),
    ),
    Row(
        "registry verify UPDATE",
        in_dir("update.json"),
        lambda p: ["registry", "verify", p],
        (*ALL_KINDS, NUL),
        ("registry verify", "update_json"),
    ),
    Row(
        "registry propose UPDATE",
        in_dir("update.json"),
        lambda p: ["registry", "propose", p],
        (*ALL_KINDS, NUL),
        ("registry propose", "update_json"),
    ),
    Row(
        "eval run CHALLENGE",
        in_dir("challenge.toml"),
        lambda p: ["eval", "run", p, str(SUBMISSION)],
        (*ALL_KINDS, NUL),
        ("eval run", "challenge"),
    ),
    Row(
        "eval run SUBMISSION",
        in_dir("submission.wasm"),
        lambda p: ["eval", "run", str(GOOD_TOML), p],
        (*FILE_KINDS, NUL),
        ("eval run", "submissions"),
    ),
    Row(
        "eval conformance MODULE",
        in_dir("module.wasm"),
        lambda p: ["eval", "conformance", p],
        (*FILE_KINDS, "empty", "binary", NUL),
        ("eval conformance", "module"),
    ),
    Row(
        "eval conformance --challenge",
        in_dir("challenge.toml"),
        lambda p: ["eval", "conformance", str(GOOD_MODULE), "--challenge", p],
        (*ALL_KINDS, NUL),
        ("eval conformance", "challenge_toml"),
    ),
    Row(
        "peer publish FILE",
        in_dir("message.json"),
        lambda p: ["peer", "publish", "submissions", p],
        (*ALL_KINDS, NUL),
        ("peer publish", "source"),
    ),
    Row(
        "chain dev init --seed",
        in_dir("seed.json"),
        lambda p: ["chain", "dev", "init", "--seed", p],
        (*ALL_KINDS, NUL),
        ("chain dev init", "seed"),
    ),
    Row(
        "dht put FILE",
        in_dir("value.bin"),
        lambda p: ["dht", "put", "/sub/", p],
        (*FILE_KINDS, NUL),
        ("dht put", "source"),
    ),
    Row(
        "consensus verify CERT",
        in_dir("cert.json"),
        lambda p: ["consensus", "verify", p],
        (*ALL_KINDS, NUL),
        ("consensus verify", "cert_json"),
    ),
    Row(
        "consensus verify --snapshot",
        in_dir("validators.json"),
        lambda p: ["consensus", "verify", str(CERTIFICATE), "--snapshot", p],
        (*ALL_KINDS, NUL),
        ("consensus verify", "snapshot"),
    ),
    Row(
        "submit FILE",
        in_dir("submission.bin"),
        lambda p: ["submit", "predict", p, "--key", "miner"],
        (*FILE_KINDS, NUL),
        ("submit", "path"),
    ),
    Row(
        "up --config",
        in_dir("platform.toml"),
        lambda p: ["up", "--config", p],
        (*ALL_KINDS[1:], NUL),
        ("up", "config_path"),
    ),
    Row(
        "consensus propose UPDATE",
        in_dir("update.json"),
        lambda p: ["consensus", "propose", p],
        (*ALL_KINDS, NUL),
        ("consensus propose", "action_json"),
    ),
    Row(
        "key file: keys show",
        key_file,
        lambda p: ["keys", "show", "hostile"],
        ALL_KINDS,
        ("keys show", "name"),
    ),
    Row(
        "key file: registry sign --key",
        key_file,
        lambda p: ["registry", "sign", str(GOOD_TOML), "--key", "hostile", "--action", "add"],
        ALL_KINDS,
        ("registry sign", "key_name"),
    ),
    Row(
        "key file: eval publish --key",
        key_file,
        lambda p: ["eval", "publish", "1", "--key", "hostile"],
        ALL_KINDS,
        ("eval publish", "key_name"),
    ),
    Row(
        "key file: weights submit --key",
        key_file,
        lambda p: ["weights", "submit", "--dry-run", "--key", "hostile"],
        ALL_KINDS,
        ("weights submit", "key_name"),
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
        ("keys import", "wallet_path"),
    ),
]

OUTPUTS = {
    ("registry sign", "out"): "tests/test_storage_faults.py, tests/test_registry*.py (-o)",
    ("dht get", "out"): "written only after a record is found on the network",
    ("consensus simulate", "out"): "tests/test_consensus_cli.py",
    ("state backup", "out"): "tests/test_state.py",
    ("consensus show", "out"): "written whole through files.output_file, as registry sign -o",
}
"""Paths a command writes, not reads: their hostile cases are tested where noted."""

NOT_FILES = {
    ("", "data_dir"): "a directory (DirPath), checked by tests/test_storage_faults.py",
    ("up", "data_dir"): "a directory (DirPath), as the root --data-dir",
    ("up", "listen"): "an address",
    ("up", "bootstrap"): "an address",
    ("up", "key_name"): "long-running: its key is read as in peer run --key (same loader)",
    ("up", "metrics"): "HOST:PORT",
    ("consensus run", "listen"): "an address",
    ("consensus run", "bootstrap"): "an address",
    ("consensus run", "key_name"): "long-running: its key is read as in peer run --key (same loader)",
    ("consensus run", "metrics"): "HOST:PORT",
    ("monitor", "devnet_dir"): "a devnet directory: devnet.json is read bounded by its JSON reader",
    ("devnet up", "directory"): "a directory the devnet creates (its files are written, not read)",
    ("devnet status", "directory"): "a devnet directory: devnet.json is read bounded by its JSON reader",
    ("devnet logs", "directory"): "a devnet directory",
    ("devnet logs", "name"): "a process name of the devnet",
    ("devnet down", "directory"): "a devnet directory",
    ("submissions list", "challenge"): "a challenge id",
    ("submissions list", "miner"): "an ss58 address",
    ("submissions show", "sha256"): "a file hash",
    ("submit", "challenge"): "a challenge id",
    ("submit", "key_name"): "a key name: key files are fed by the key file rows (same loader)",
    ("chain dev register", "hotkey"): "an ss58 address",
    ("chain dev register", "coldkey"): "an ss58 address",
    ("consensus simulate", "stake_spread"): "a number list",
    ("consensus simulate", "strategies"): "names",
    ("dht forget", "key"): "a DHT key",
    ("dht get", "key"): "a DHT key",
    ("dht provide", "key"): "a DHT key",
    ("dht providers", "key"): "a DHT key",
    ("dht put", "key"): "a DHT key",
    ("eval list", "challenge"): "a challenge id",
    ("eval run", "miner"): "an ss58 address",
    ("keys import", "name"): "a key name (the new file is written, not read)",
    ("keys import", "wallet"): "a name inside --wallet-path (fed by the wallet hotkey row)",
    ("keys import", "hotkey"): "a name inside --wallet-path (fed by the wallet hotkey row)",
    ("keys new", "name"): "a key name (the new file is written, not read)",
    ("peer connect", "multiaddr"): "an address",
    ("peer inbox", "topic"): "a topic",
    ("peer publish", "topic"): "a topic",
    ("peer publish", "kind"): "a message kind",
    ("peer run", "listen"): "an address",
    ("peer run", "bootstrap"): "an address",
    ("peer run", "key_name"): "long-running: its key is read as in peer publish --key (same loader)",
    ("registry history", "challenge_id"): "a challenge id",
    ("registry show", "challenge_id"): "a challenge id",
    ("registry show", "version"): "a version",
    ("registry verify", "sudo"): "an ss58 address",
    ("peer publish", "key_name"): "read only with a node running, by KeyStore.signer as in the key rows",
    ("dht put", "key_name"): "read only with a node running, by KeyStore.signer as in the key rows",
    ("weights run", "key_name"): "long-running: its key is read as in weights submit --key (same loader)",
}
"""Every other text parameter, and why it is not a file this table must feed."""


@pytest.fixture
def watchdog() -> Iterator[None]:
    """A read that blocks (a FIFO) or never ends (/dev/zero) fails the run instead of hanging it."""
    faulthandler.dump_traceback_later(300, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module", autouse=True)
def certificate(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A real commit certificate (from a simulation) for the rows that need a good one."""
    global CERTIFICATE
    out = tmp_path_factory.mktemp("simulated") / "sim"
    argv = ["consensus", "simulate", "--seed", "3", "--validators", "4", "--out", str(out)]
    result = CliRunner().invoke(cli, ["--data-dir", str(out.parent / "data"), *argv], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    CERTIFICATE = out / "certificates" / "2.json"


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


def _parameters() -> Iterator[tuple[str, click.Parameter]]:
    ctx = click.Context(cli)

    def walk(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, click.Parameter]]:
        for param in command.params:
            yield " ".join(path), param
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), (*path, name))

    return walk(cli, ())


def test_the_table_feeds_every_file_any_command_takes() -> None:
    """A parameter that is not a flag, number or choice is a file this table feeds, an
    output, or declared not a file; a FilePath-typed one must be fed or an output."""
    fed = {row.reads for row in ROWS}
    unclassified, unfed = [], []
    for command, param in _parameters():
        key = (command, param.name or "")
        if isinstance(
            param.type, (click.types.BoolParamType, click.Choice, click.types._NumberParamTypeBase)
        ):
            continue
        if isinstance(param, click.Option) and (param.is_flag or param.count):
            continue
        if (
            isinstance(param.type, FilePath)
            and not isinstance(param.type, DirPath)
            and key not in fed | set(OUTPUTS)
        ):
            unfed.append(key)
        if key not in fed | set(OUTPUTS) | set(NOT_FILES):
            unclassified.append(key)
    assert not unfed, f"file parameters no row feeds: {unfed}"
    assert not unclassified, f"parameters to add to ROWS (a file) or NOT_FILES (why not): {unclassified}"
    assert not (fed & set(NOT_FILES)) and len(fed) >= 17
