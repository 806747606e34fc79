"""The root command: lazy loading, help everywhere, one-line errors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from platform_cli.cli import COMMAND_GROUPS, cli
from tests.conftest import FIXTURES, REPO

SIGNED = FIXTURES / "challenge" / "update-add.json"
HEAVY = ("libp2p", "wasmtime", "bittensor", "textual", "trio")


def imported_modules(*args: str) -> set[str]:
    """Top-level packages loaded by running ``platform ARGS`` in a fresh interpreter."""
    code = (
        "import sys\n"
        "from platform_cli.cli import cli\n"
        f"try:\n    cli({list(args)!r}, prog_name='platform')\n"
        "except SystemExit:\n    pass\n"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    return set(result.stderr.split())


def test_help_imports_nothing_heavy() -> None:
    loaded = imported_modules("--help")
    assert "platform_cli" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_registry_verify_imports_nothing_heavy(tmp_path: Path) -> None:
    loaded = imported_modules("--data-dir", str(tmp_path), "registry", "verify", str(SIGNED))
    assert "platform_cli" in loaded and "bittensor_core" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_every_command_has_help(run) -> None:
    ctx = click.Context(cli)
    for name in COMMAND_GROUPS:
        group = cli.get_command(ctx, name)
        assert group is not None and group.help, name
        assert run(name, "--help").exit_code == 0
        for sub_name, command in getattr(group, "commands", {}).items():
            assert command.help, f"{name} {sub_name} has no help"
            assert run(name, sub_name, "--help").exit_code == 0


def test_command_listing_matches_the_groups(run) -> None:
    out = run("--help").stdout
    for name, (_, _, summary) in COMMAND_GROUPS.items():
        assert f"{name}" in out and summary.split(":")[0] in out


def test_unknown_command_is_a_usage_error(run) -> None:
    result = run("frobnicate")
    assert result.exit_code == 2 and "No such command 'frobnicate'" in result.stderr


def test_bad_config_names_file_and_field(run, data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    config = data_dir / "platform.toml"
    config.write_text('[network]\nnetuid = "seven"\n')
    result = run("registry", "verify", str(SIGNED))
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == f"error: {config}: network.netuid = 'seven' must be an integer in 0..65535"
    )
    config.write_text("[network\n")
    assert "invalid TOML" in run("registry", "verify", str(SIGNED)).stderr


def test_explicit_missing_config_is_an_error(run, tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "nope.toml"), "registry", "verify", str(SIGNED))
    assert (
        result.exit_code == 1 and "cannot read config file" in result.stderr and "nope.toml" in result.stderr
    )


def test_json_lists_are_one_object_per_line(run) -> None:
    run("keys", "new", "--name", "a")
    run("keys", "new", "--name", "b", "--scheme", "ed25519")
    lines = run("--json", "keys", "list").stdout.splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["a", "b"]


def test_the_console_script_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "platform_cli", "--data-dir", str(tmp_path), "--json", "keys", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout == ""


def test_core_imports_only_the_standard_library_and_cbor2() -> None:
    allowed = set(sys.stdlib_module_names) | {"cbor2", "platform_cli", "__future__"}
    for path in (REPO / "platform_cli" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in allowed, f"{path.name} imports {name}"
                if top == "platform_cli":
                    assert name.startswith("platform_cli.core"), f"{path.name} imports {name} outside core"


@pytest.mark.parametrize("args", [("--version",), ("-h",)])
def test_version_and_short_help(run, args: tuple[str, ...]) -> None:
    assert run(*args).exit_code == 0


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`platform keys list | head -0`: the reader is gone before the first write."""
    from platform_cli.identity import KeyStore

    KeyStore(tmp_path).new("k", "ed25519")
    listing = subprocess.Popen(
        [sys.executable, "-m", "platform_cli", "--data-dir", str(tmp_path), "keys", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()
    stderr = listing.stderr.read().decode()
    assert listing.wait(30) == 141
    assert stderr == ""


def _leaf_commands() -> list[tuple[str, ...]]:
    """Every runnable command path, e.g. ('chain', 'dev', 'init')."""
    ctx = click.Context(cli)
    found: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), (*path, name))
        else:
            found.append(path)

    walk(cli, ())
    return found


def test_every_usage_error_is_one_line(run) -> None:
    """click prints usage, a hint and the error on three lines; the README promises one."""
    leaves = _leaf_commands()
    assert ("state", "backup") in leaves and len(leaves) > 30
    for path in leaves:
        result = run(*path, "--no-such-option")
        lines = result.stderr.splitlines()
        assert result.exit_code == 2, (path, result.output)
        assert len(lines) == 1 and lines[0].startswith("error: "), (path, result.stderr)
        assert f"'platform {' '.join(path)} --help'" in lines[0], lines[0]
    for args in (
        ("frobnicate",),
        ("--data-dir",),
        ("keys", "new"),
        ("keys", "show", "a", "b"),
        ("audit", "log", "--limit", "0"),
        ("registry", "sign", "x.toml", "--key", "k", "--action", "explode"),
    ):
        result = run(*args)
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ")


@pytest.mark.parametrize("limit", ["-1", "0", "99999999999999999999"])
def test_peer_inbox_limit_is_range_checked(run, limit: str) -> None:
    result = run("peer", "inbox", "--limit", limit)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "Invalid value for '--limit'" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read config file"),
        ("[network\n", "invalid TOML"),
        ("[netwrok]\nnetuid = 1\n", r"\[netwrok\] is not a known table"),
        ('[chain]\nnetwork = "mainnet"\n', "chain.network = 'mainnet' must be one of"),
        ("[weights]\nmechid = 999\n", "weights.mechid = 999 must be an integer in 0..255"),
        ("[p2p]\nrate_per_signer = -5\n", "p2p.rate_per_signer"),
        ("[runtime]\njobs = 0\n", "runtime.jobs = 0"),
    ],
)
def test_an_explicit_config_is_always_loaded_and_checked(run, tmp_path: Path, text, message) -> None:
    """Even commands that never read the config refuse a broken one named with --config."""
    import re

    config = tmp_path / "platform.toml"
    if text is not None:
        config.write_text(text)
    for args in (("keys", "list"), ("audit", "log"), ("registry", "list")):
        result = run("--config", str(config), *args)
        assert result.exit_code == 1, (args, result.output)
        assert len(result.stderr.splitlines()) == 1 and re.search(message, result.stderr), result.stderr


def test_log_lines_only_with_verbose(tmp_path: Path) -> None:
    """A refusal is one line; -v adds the log lines that explain it."""
    argv = [sys.executable, "-m", "platform_cli", "--data-dir", str(tmp_path), "keys", "show", "nope"]
    quiet = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (
        quiet.returncode == 1
        and quiet.stderr
        == f"error: no key named 'nope' (looked for {tmp_path}/keys/nope.json); see 'platform keys list'\n"
    )
    verbose = subprocess.run([*argv[:3], "-vv", *argv[3:]], capture_output=True, text=True, check=False)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and verbose.stderr.endswith(quiet.stderr)
