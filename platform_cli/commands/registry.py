"""``platform registry``: signed challenge metadata."""

from __future__ import annotations

import json
from pathlib import Path

import click

from platform_cli import output
from platform_cli import registry as reg
from platform_cli.context import AppContext
from platform_cli.core.registry import Action, Lifecycle
from platform_cli.errors import PlatformError
from platform_cli.state.db import DB_FILENAME

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def registry() -> None:
    """Challenge registry: the sudo owner signs updates, validators verify and propose them."""


@registry.command("sign")
@click.argument("challenge_toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_name", required=True, help="Name of the sudo key (platform keys list).")
@click.option("--action", type=click.Choice([a.value for a in Action]), required=True)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@pass_app
def sign(app: AppContext, challenge_toml: Path, key_name: str, action: str, out: Path | None) -> None:
    """Sign a challenge update offline (covers the metadata and the module's hash)."""
    from platform_cli.identity import KeyStore

    signer = KeyStore(app.data_dir).signer(key_name)
    update = reg.sign_update(app.state, app.config, challenge_toml, signer, action)
    text = json.dumps(update.to_json(), indent=2, sort_keys=True) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(out)
    except OSError as exc:
        raise PlatformError(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"signed {action} of {challenge_toml} -> {out}", err=True)


@registry.command("verify")
@click.argument("update_json")
@click.option("--sudo", help="ss58 of the sudo owner [default: network.sudo from the config].")
@pass_app
def verify(app: AppContext, update_json: str, sudo: str | None) -> None:
    """Verify a signed update: exit 0 if valid, else exit 1 with the reason."""
    update = reg.load_update(update_json)
    state = app.state if (app.data_dir / DB_FILENAME).exists() else None
    parsed = reg.verify_update(update, app.config, sudo=sudo, state=state)
    output.record(
        {
            "valid": True,
            "action": parsed.action.value,
            "challenge": parsed.spec.id,
            "version": parsed.spec.version,
            "module_sha256": parsed.spec.module_sha256,
            "signer": update.envelope.signer,
            "seq": update.envelope.seq,
        },
        as_json=app.json,
    )


@registry.command("propose")
@click.argument("update_json")
@pass_app
def propose(app: AppContext, update_json: str) -> None:
    """Verify an update and record it as pending for consensus."""
    update_id = reg.propose(app.state, app.config, reg.load_update(update_json))
    output.record({"update_id": update_id, "status": "pending"}, as_json=app.json)


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
