"""Helpers for the chain and weights tests: a dev chain, keys, an active challenge."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

from tests.conftest import FIXTURES

Run = Callable[..., Result]
SEED = json.loads((FIXTURES / "metagraph" / "devnet.json").read_text())
NETUID = SEED["netuid"]
WALLETS = str(FIXTURES / "wallets")


def hotkey(name: str) -> str:
    return next(n["hotkey"] for n in SEED["neurons"] if n["hotkey_name"] == name)


def uid(name: str) -> int:
    return next(i for i, n in enumerate(SEED["neurons"]) if n["hotkey_name"] == name)


MINERS = [n["hotkey_name"] for n in SEED["neurons"] if n["hotkey_name"].startswith("miner-")]
VALIDATORS = [n["hotkey_name"] for n in SEED["neurons"] if n["hotkey_name"].startswith("validator-")]


def sdk_read(db: Path, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(client)`` with the real SDK client on the dev chain file ``db``."""
    import asyncio

    import bittensor as bt

    from platform_cli.chain.dev.chain import DevChain
    from platform_cli.chain.dev.substrate import DevSubstrate

    chain = DevChain(db)

    async def go() -> Any:
        async with bt.Subtensor("local", substrate=DevSubstrate(chain)) as client:
            return await fn(client)

    try:
        return asyncio.run(go())
    finally:
        chain.release()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def import_args(name: str, wallet_hotkey: str) -> tuple[str, ...]:
    """`platform keys import` of a devnet wallet hotkey under ``name``."""
    return (
        "keys",
        "import",
        "--name",
        name,
        "--wallet",
        "devnet",
        "--hotkey",
        wallet_hotkey,
        "--wallet-path",
        WALLETS,
    )


def import_key(run: Run, name: str, wallet_hotkey: str) -> None:
    ok(run(*import_args(name, wallet_hotkey)))


def activate_challenge(
    run: Run, challenge_dir: Path, data_dir: Path, emission_ppm: int, min_validators: int
) -> str:
    """Sign, propose and commit the sample challenge with the given scoring."""
    from platform_cli import registry as reg
    from platform_cli.config import load_config
    from platform_cli.state import open_state

    toml = challenge_dir / "challenge.toml"
    text = toml.read_text()
    text = re.sub(r"emission_ppm = [0-9_]+", f"emission_ppm = {emission_ppm}", text)
    text = re.sub(r"min_validators = [0-9]+", f"min_validators = {min_validators}", text)
    toml.write_text(text)
    import_key(run, "sudo", "sudo")
    signed = challenge_dir / "update.json"
    ok(run("registry", "sign", str(toml), "--key", "sudo", "--action", "add", "-o", str(signed)))
    update_id = as_json(run("--json", "registry", "propose", str(signed)))["update_id"]
    with open_state(data_dir) as state:
        reg.commit_update(state, load_config(data_dir), update_id)
    return "hello"
