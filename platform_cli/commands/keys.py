"""``platform keys``: identities."""

from __future__ import annotations

import click

from platform_cli import output
from platform_cli.context import AppContext
from platform_cli.errors import PlatformError
from platform_cli.identity import SCHEMES, KeyStore
from platform_cli.state import audit

pass_app = click.make_pass_decorator(AppContext)
COLUMNS = ("name", "scheme", "ss58", "source")


@click.group()
def keys() -> None:
    """Create, import and show identities (secrets stay in <data-dir>/keys, mode 0600)."""


KEY_ACTIONS = ("keys.new", "keys.import")
"""The audit actions that record a key file."""


@keys.command("new")
@click.option("--name", required=True, help="Local name of the key.")
@click.option("--scheme", type=click.Choice(SCHEMES), default="sr25519", show_default=True)
@pass_app
def new(app: AppContext, name: str, scheme: str) -> None:
    """Generate a new key (recorded in the audit log; a key that cannot be recorded is not kept)."""
    state = app.state
    identity = KeyStore(app.data_dir).new(
        name,
        scheme,
        record=lambda made: audit.append(state, made.ss58, "keys.new", made.to_json()),
        recorded=lambda ss58: audit.has_action(state, ss58, KEY_ACTIONS),
    )
    output.record(identity.to_json(), as_json=app.json)


@keys.command("import")
@click.option("--name", required=True, help="Local name of the key.")
@click.option("--wallet", required=True, help="Bittensor wallet name.")
@click.option("--hotkey", required=True, help="Hotkey name inside the wallet.")
@click.option("--wallet-path", help="Wallets directory [default: ~/.bittensor/wallets].")
@pass_app
def import_(app: AppContext, name: str, wallet: str, hotkey: str, wallet_path: str | None) -> None:
    """Import a Bittensor wallet hotkey."""
    state = app.state
    identity = KeyStore(app.data_dir).import_wallet(
        name,
        wallet,
        hotkey,
        wallet_path,
        record=lambda made: audit.append(state, made.ss58, "keys.import", made.to_json()),
        recorded=lambda ss58: audit.has_action(state, ss58, KEY_ACTIONS),
    )
    output.record(identity.to_json(), as_json=app.json)


@keys.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """List keys; a broken key file is listed with its problem (and the exit code is 1)."""
    found, broken = KeyStore(app.data_dir).scan()
    rows = [identity.to_json() for identity in found]
    rows += [{"name": name, "problem": str(problem)} for name, problem in broken]
    rows.sort(key=lambda row: row["name"])
    columns = (*COLUMNS, "problem") if broken else COLUMNS
    output.table(rows, columns, as_json=app.json, empty="no keys yet: see 'platform keys new --help'")
    if broken:
        names = ", ".join(name for name, _ in broken)
        raise PlatformError(f"{len(broken)} key file(s) cannot be used: {names} (see the problem column)")


@keys.command("show")
@click.argument("name")
@pass_app
def show(app: AppContext, name: str) -> None:
    """Show a key's address and scheme (never its secret)."""
    output.record(KeyStore(app.data_dir).show(name).to_json(), as_json=app.json)
