"""``platform submit`` (a miner sends a file) and ``platform submissions`` (what was taken)."""

from __future__ import annotations

from pathlib import Path

import click

from platform_cli import output
from platform_cli.commands.params import FILE
from platform_cli.context import AppContext

pass_app = click.make_pass_decorator(AppContext)


@click.command("submit")
@click.argument("challenge")
@click.argument("path", metavar="FILE", type=FILE)
@click.option("--key", "key_name", required=True, help="The miner's hotkey (platform keys list).")
@pass_app
def submit(app: AppContext, challenge: str, path: Path, key_name: str) -> None:
    """Submit FILE to CHALLENGE as the miner KEY; prints the file's sha256.

    The running node on the data dir ('platform peer run' or 'platform up') puts the
    file in the DHT and gossips the signed submission. Validators take it only from a
    registered miner, for an active challenge, within its size and per-epoch limit.
    """
    from platform_cli.evaluation import read_submission
    from platform_cli.identity import KeyStore
    from platform_cli.submissions import submit as send

    content = read_submission(path)
    signer = KeyStore(app.data_dir).signer(key_name)
    output.record(send(app.state, app.config, signer, challenge, content), as_json=app.json)


@click.group("submissions")
def submissions() -> None:
    """Miners' submissions this validator took (registered miner, active challenge, within limits)."""


@submissions.command("list")
@click.option("--challenge", help="Only this challenge.")
@click.option("--miner", help="Only this miner's hotkey.")
@click.option("--limit", type=click.IntRange(1, 10**6), default=50, show_default=True)
@pass_app
def list_(app: AppContext, challenge: str | None, miner: str | None, limit: int) -> None:
    """Newest first: miner, challenge, file hash, size, epoch, whether the file is held here."""
    from platform_cli.submissions import list_submissions

    rows = list_submissions(app.state, challenge=challenge, miner=miner, limit=limit)
    output.table(
        rows,
        ("miner", "challenge_id", "sha256", "size", "epoch", "held", "evaluations"),
        as_json=app.json,
        empty="no submissions taken yet",
    )


@submissions.command("show")
@click.argument("sha256")
@pass_app
def show(app: AppContext, sha256: str) -> None:
    """Who submitted the file with this sha256, and its evaluations here."""
    from platform_cli.submissions import show as show_one

    output.record(show_one(app.state, sha256.lower()), as_json=app.json)
