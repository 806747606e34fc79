"""``platform audit``: the hash-chained log of state changes."""

from __future__ import annotations

import click

from platform_cli import output
from platform_cli.context import AppContext
from platform_cli.errors import VerificationFailed
from platform_cli.state import audit as audit_log

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def audit() -> None:
    """Inspect and verify the audit log."""


@audit.command("verify")
@pass_app
def verify(app: AppContext) -> None:
    """Check the database (SQLite's integrity check), then every link of the chain; exit 1 if broken."""
    from platform_cli.state import integrity

    integrity.require_intact(app.state.conn, app.state.path)
    report = audit_log.verify(app.state)
    if not report.ok:
        raise VerificationFailed(f"audit log is broken: {report.problem}")
    output.record({"ok": True, "entries": report.entries}, as_json=app.json)


@audit.command("log")
@click.option("--limit", type=click.IntRange(1, 2**63 - 1), default=50, show_default=True)
@pass_app
def log(app: AppContext, limit: int) -> None:
    """Show the most recent entries."""
    rows = [
        {"seq": e.seq, "ts_ms": e.ts_ms, "actor": e.actor, "action": e.action, "detail": e.detail}
        for e in audit_log.entries(app.state, last=limit)
    ]
    output.table(
        rows, ("seq", "ts_ms", "actor", "action", "detail"), as_json=app.json, empty="audit log is empty"
    )
