"""``platform state``: check the state database thoroughly; back it up while the node runs."""

from __future__ import annotations

from pathlib import Path

import click

from platform_cli import output
from platform_cli.commands.params import FILE
from platform_cli.context import AppContext
from platform_cli.errors import StateDamaged

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def state() -> None:
    """The state database: integrity check and online backup."""


@state.command("check")
@pass_app
def check(app: AppContext) -> None:
    """Run every check (SQLite integrity, state identity, schema, audit chain); exit 1 if one fails.

    Changes nothing. Each command already checks the critical tables when it opens the
    state; this reads every page.
    """
    from platform_cli.state import maintenance

    checks = maintenance.check(app.data_dir)
    rows = [{"check": c.name, "result": "ok" if c.passed else "FAIL", "detail": c.detail} for c in checks]
    output.table(rows, ("check", "result", "detail"), as_json=app.json)
    failed = [c.name for c in checks if not c.passed]
    if failed:
        raise StateDamaged(
            f"the state in {app.data_dir} failed {', '.join(failed)}: restore a backup "
            "(stop the node, copy it over state.db, remove state.db-wal and state.db-shm)"
        )


@state.command("backup")
@click.argument("out", type=FILE)
@pass_app
def backup(app: AppContext, out: Path) -> None:
    """Copy the state to OUT, consistently, while other commands and the node keep running.

    OUT is a new file or a regular file it replaces whole once the copy verified (a
    symlink or special file there is refused). Restore: stop the node, copy OUT over
    <data-dir>/state.db and remove state.db-wal and state.db-shm beside it.
    """
    from platform_cli import files
    from platform_cli.state import maintenance

    with files.output_file(out, "backup") as target:
        result = maintenance.backup(app.state, target)
    output.record(result, as_json=app.json)
