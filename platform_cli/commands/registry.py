"""``platform registry``: signed challenge metadata."""

from __future__ import annotations

import json
from pathlib import Path

import click

from platform_cli import output
from platform_cli import registry as reg
from platform_cli.commands.params import FILE
from platform_cli.commands.trust import trusted_sudo
from platform_cli.context import AppContext
from platform_cli.core.registry import Action, Lifecycle
from platform_cli.errors import PlatformError
from platform_cli.state.db import state_exists

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def registry() -> None:
    """Challenge registry: the sudo owner signs updates, validators verify and propose them."""


@registry.command("sign")
@click.argument("challenge_toml", type=FILE)
@click.option("--key", "key_name", required=True, help="Name of the sudo key (platform keys list).")
@click.option("--action", type=click.Choice([a.value for a in Action]), required=True)
@click.option(
    "-o",
    "--output",
    "out",
    type=FILE,
    help="Write the update to OUT, a new file or a regular file it replaces whole (a symlink or "
    "special file there is refused, never written through); '-' or no -o: stdout.",
)
@pass_app
def sign(app: AppContext, challenge_toml: Path, key_name: str, action: str, out: Path | None) -> None:
    """Sign a challenge update offline (covers the metadata and the module's hash).

    The signing is recorded in the audit log only once the update was written out.
    """
    from platform_cli import files
    from platform_cli.identity import KeyStore

    signer = KeyStore(app.data_dir).signer(key_name)

    def render(update: reg.SignedUpdate) -> bytes:
        return (json.dumps(update.to_json(), indent=2, sort_keys=True) + "\n").encode()

    with files.output_file(out, "output") as output:
        reg.sign_update(
            app.state, app.config, challenge_toml, signer, action, emit=lambda u: output.write(render(u))
        )
    if output.path is not None:
        click.echo(f"signed {action} of {challenge_toml} -> {output.path}", err=True)


@registry.command("verify")
@click.argument("update_json")
@click.option("--sudo", help="ss58 of the sudo owner [default: network.sudo from the config].")
@pass_app
def verify(app: AppContext, update_json: str, sudo: str | None) -> None:
    """Verify a signed update: exit 0 if valid, else exit 1 with the reason.

    The output says which sudo key was trusted and where it came from; after a
    'platform chain sync' it also says whether that key is the subnet owner's hotkey.
    """
    update = reg.load_update(update_json)
    state = app.state if state_exists(app.data_dir) else None  # verify needs no state; a wiped one is refused
    network = app.config.network
    if sudo is not None:
        from dataclasses import replace

        from platform_cli.identity import is_ss58

        if not is_ss58(sudo):
            raise PlatformError(f"--sudo {sudo!r} is not an ss58 address")
        network = replace(network, sudo_key=sudo, sudo_source="the --sudo option")
    parsed = reg.verify_update(update, app.config, sudo=network.sudo, state=state)
    output.record(
        {
            "valid": True,
            "action": parsed.action.value,
            "challenge": parsed.spec.id,
            "version": parsed.spec.version,
            "module_sha256": parsed.spec.module_sha256,
            "signer": update.envelope.signer,
            "seq": update.envelope.seq,
            **trusted_sudo(network, state),
        },
        as_json=app.json,
    )


@registry.command("propose")
@click.argument("update_json")
@pass_app
def propose(app: AppContext, update_json: str) -> None:
    """Verify an update and record it as pending for consensus."""
    update_id = reg.propose(app.state, app.config, reg.load_update(update_json))
    output.record(
        {"update_id": update_id, "status": "pending", **trusted_sudo(app.config.network, app.state)},
        as_json=app.json,
    )


@registry.command("list")
@click.option(
    "--state", "lifecycle", type=click.Choice([s.value for s in Lifecycle]), help="Only this state."
)
@pass_app
def list_(app: AppContext, lifecycle: str | None) -> None:
    """List challenge versions."""
    rows = reg.list_versions(app.state, lifecycle)
    output.table(
        rows, ("id", "version", "state", "module_sha256"), as_json=app.json, empty="registry is empty"
    )


@registry.command("show")
@click.argument("challenge_id")
@click.option("--version", help="A specific version [default: the active one, else the newest].")
@pass_app
def show(app: AppContext, challenge_id: str, version: str | None) -> None:
    """Show a challenge version's metadata."""
    output.record(reg.show_version(app.state, challenge_id, version), as_json=app.json)


@registry.command("history")
@click.argument("challenge_id", required=False)
@pass_app
def history(app: AppContext, challenge_id: str | None) -> None:
    """Committed changes in commit order, each with the block it takes effect from."""
    rows = reg.history(app.state, challenge_id)
    output.table(
        rows,
        ("seq", "id", "version", "previous", "state", "effective_block"),
        as_json=app.json,
        empty="no committed changes",
    )
