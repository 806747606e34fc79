"""Fail-closed sudo: the devnet's public sudo key is trusted on the devnet only.

The attack: an operator of a production subnet forgets ``network.sudo``; the config used
to fall back to the devnet sudo, whose secret ships in ``fixtures/wallets``, so anyone
could sign challenge updates that verify, are proposed and admitted by gossip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_cli.config import DEVNET_SUDO, load_config
from tests.conftest import FIXTURES

PRODUCTION = '[chain]\nnetwork = "finney"\n[network]\nnetuid = 7\ngenesis = "bittensor-finney-7"\n'


def sign_with_devnet_sudo(run, toml: Path, out: Path) -> Path:
    """What an attacker does with the public devnet key: sign an update for subnet 7."""
    result = run("registry", "sign", str(toml), "--key", "sudo", "--action", "add", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    return out


def one_line(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    assert text in result.stderr, result.stderr


@pytest.fixture
def production(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "platform.toml"
    config.write_text(PRODUCTION)
    return config


def test_a_production_config_without_sudo_trusts_no_one(
    run, sudo_key: str, production: Path, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    update = sign_with_devnet_sudo(run, challenge_dir / "challenge.toml", tmp_path / "update.json")
    assert json.loads(update.read_text())["envelope"]["netuid"] == 7
    expected = f"network.sudo is not set in {production}: outside the devnet"
    one_line(run("registry", "verify", str(update)), expected)
    one_line(run("registry", "propose", str(update)), expected)
    one_line(run("peer", "run", "--listen", "/ip4/127.0.0.1/tcp/0"), expected)  # refuses to start
    assert run("registry", "list").stdout == ""
    assert "registry.propose" not in run("--json", "audit", "log").stdout


@pytest.mark.parametrize(
    ("text", "default"),
    [
        ("", True),
        ('[chain]\nnetwork = "dev"\n[network]\nnetuid = 100\ngenesis = "platform-devnet"\n', True),
        ('[chain]\nnetwork = "dev"\n[network]\nnetuid = 7\n', False),
        ('[network]\ngenesis = "mainnet"\n', False),
        ('[chain]\nnetwork = "test"\n', False),
        ('[chain]\nnetwork = "ws://127.0.0.1:9944"\n', False),
    ],
)
def test_the_devnet_default_applies_to_the_devnet_only(data_dir: Path, text: str, default: bool) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "platform.toml").write_text(text)
    network = load_config(data_dir).network
    assert (network.sudo_key == DEVNET_SUDO) is default
    assert network.sudo_source.startswith("the devnet default" if default else "not set in")


def test_an_explicit_sudo_is_trusted_and_its_source_shown(
    run, sudo_key: str, production: Path, challenge_dir: Path, tmp_path: Path
) -> None:
    production.write_text(PRODUCTION + f'sudo = "{DEVNET_SUDO}"\n')
    update = sign_with_devnet_sudo(run, challenge_dir / "challenge.toml", tmp_path / "update.json")
    result = run("--json", "registry", "verify", str(update))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sudo"] == DEVNET_SUDO and report["sudo_source"] == f"network.sudo in {production}"
    assert report["sudo_owner_check"] == "no subnet owner known (run 'platform chain sync')"
    override = run("--json", "registry", "verify", str(update), "--sudo", DEVNET_SUDO)
    assert json.loads(override.stdout)["sudo_source"] == "the --sudo option"
    one_line(
        run("registry", "verify", str(update), "--sudo", "not-an-address"),
        "--sudo 'not-an-address' is not an ss58",
    )


def test_the_sudo_key_is_checked_against_the_subnet_owner(run, sudo_key: str, data_dir: Path) -> None:
    """On the dev chain the subnet owner is the devnet sudo; a different sudo is called out."""
    for args in (("chain", "dev", "init"), ("chain", "sync")):
        assert run(*args).exit_code == 0
    update = FIXTURES / "challenge" / "update-add.json"
    agreed = run("--json", "registry", "verify", str(update))
    assert agreed.exit_code == 0 and agreed.stderr == ""
    assert json.loads(agreed.stdout)["sudo_owner_check"].startswith(
        "the subnet owner's hotkey (chain sync at block"
    )
    status = json.loads(run("--json", "chain", "status", "--offline").stdout)
    assert status["sudo"] == DEVNET_SUDO and status["sudo_source"].startswith("the devnet default")
    assert status["sudo_owner_check"].startswith("the subnet owner's hotkey")

    other = json.loads(run("--json", "keys", "new", "--name", "other").stdout)["ss58"]
    (data_dir / "platform.toml").write_text(f'[network]\nsudo = "{other}"\n')
    status = run("--json", "chain", "status", "--offline")
    assert status.exit_code == 0
    assert json.loads(status.stdout)["sudo_owner_check"].startswith(
        f"DIFFERS from the subnet owner's hotkey {DEVNET_SUDO}"
    )
    assert status.stderr == (
        f"warning: the sudo key {other} DIFFERS from the subnet owner's hotkey {DEVNET_SUDO} "
        f"(chain sync at block {json.loads(status.stdout)['snapshot_block']})\n"
    )


def test_chain_status_says_when_no_sudo_is_set(run, production: Path) -> None:
    status = run("--json", "chain", "status", "--offline")
    assert status.exit_code == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["sudo"] is None and info["sudo_source"] == f"not set in {production}"
