"""``platform monitor``: the Textual TUI on a node's state (see ``platform_cli.tui``)."""

from __future__ import annotations

from pathlib import Path

import click

from platform_cli.context import AppContext
from platform_cli.errors import PlatformError

pass_app = click.make_pass_decorator(AppContext)


@click.command("monitor")
@click.option(
    "--devnet",
    "devnet_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Watch a devnet's validators (switch with n/p) [default: the data dir's node].",
)
@pass_app
def monitor(app: AppContext, devnet_dir: Path | None) -> None:
    """Watch a validator live: status, consensus, weights, evaluations, commits, registry,
    peers and its log. Read-only; 'q' quits, '?' lists the keys."""
    from platform_cli.state.db import DB_FILENAME
    from platform_cli.tui.app import MonitorApp, devnet_dirs

    dirs = devnet_dirs(devnet_dir.absolute()) if devnet_dir is not None else [app.data_dir]
    missing = [d for d in dirs if not (d / DB_FILENAME).exists()]
    if missing:
        raise PlatformError(f"no state at {missing[0]}: start a node there ('platform up') or a devnet")
    MonitorApp(dirs).run()
