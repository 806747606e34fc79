"""``platform scores``: which score reports count for an epoch's weights, and why not."""

from __future__ import annotations

import click

from platform_cli import output
from platform_cli.context import AppContext

pass_app = click.make_pass_decorator(AppContext)
EPOCH = click.IntRange(0, 2**63 - 1)


@click.group()
def scores() -> None:
    """Score reports: counted for an epoch, or refused with the reason."""


@scores.command("list")
@click.option("--epoch", type=EPOCH, help="Epoch [default: the snapshot's current epoch].")
@click.option("--refused", "refused_only", is_flag=True, help="Only the refused reports.")
@pass_app
def list_(app: AppContext, epoch: int | None, refused_only: bool) -> None:
    """The epoch's reports, one per validator, challenge and miner, counted or refused."""
    from platform_cli import scores as sc

    sc.ingest(app.state)
    rows = sc.epoch_reports(app.state, app.config.network.netuid, epoch, refused_only=refused_only)
    output.table(
        rows,
        ("challenge", "version", "miner", "validator", "score", "status", "reason"),
        as_json=app.json,
        empty="no score reports for this epoch",
    )


@scores.command("summary")
@click.option("--epoch", type=EPOCH, help="Epoch [default: the snapshot's current epoch].")
@pass_app
def summary(app: AppContext, epoch: int | None) -> None:
    """Reports counted and refused (by reason) for an epoch, and unusable messages."""
    from platform_cli import scores as sc

    sc.ingest(app.state)
    output.record(sc.epoch_summary(app.state, app.config.network.netuid, epoch), as_json=app.json)
