"""Shared fixtures: every test gets its own data dir and never touches ~/.bittensor."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from platform_cli.cli import cli

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "token_symbols.json"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return data_dir


@pytest.fixture
def data_dir(isolated_env: Path) -> Path:
    return isolated_env


@pytest.fixture
def run() -> Callable[..., Result]:
    """Invoke the CLI as a user would; returns click's Result (stdout, stderr, exit_code)."""
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None) -> Result:
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def sudo_key(run: Callable[..., Result]) -> str:
    """The devnet sudo hotkey, imported from the fixture wallet under the name 'sudo'."""
    result = run(
        "keys",
        "import",
        "--name",
        "sudo",
        "--wallet",
        "devnet",
        "--hotkey",
        "sudo",
        "--wallet-path",
        str(FIXTURES / "wallets"),
    )
    assert result.exit_code == 0, result.output
    return "sudo"


@pytest.fixture
def challenge_dir(tmp_path: Path) -> Path:
    """A private copy of the sample challenge that a test may tamper with."""
    target = tmp_path / "challenge"
    shutil.copytree(FIXTURES / "challenge", target)
    return target
