"""``platform status``: one screen on a data dir's validator, running or not."""

from __future__ import annotations

from typing import Any

import click

from platform_cli import output
from platform_cli.context import AppContext

pass_app = click.make_pass_decorator(AppContext)


@click.command("status")
@pass_app
def status(app: AppContext) -> None:
    """Health of the validator whose state is in the data dir.

    Whether the node runs (and each service's state), peers, the epoch and blocks left,
    consensus height and round, pending evaluations, the last weights and whether the
    chain confirmed them, recent errors. Reads the state only; --json for scripts.
    """
    from platform_cli.chain.settings import weight_settings
    from platform_cli.clock import now_ms
    from platform_cli.node.report import summary
    from platform_cli.state.db import DB_FILENAME, open_state

    # Read-only where a state exists: status works on a data dir its user cannot write.
    if (app.data_dir / DB_FILENAME).exists():
        with open_state(app.data_dir, readonly=True) as state:
            report = summary(state, app.config.network.netuid, weight_settings(app.config).mechid, now_ms())
    else:
        report = summary(app.state, app.config.network.netuid, weight_settings(app.config).mechid, now_ms())
    report = {"data_dir": str(app.data_dir), **report}
    if app.json:
        output.record(report, as_json=True)
        return
    click.echo("\n".join(render(report)))


def render(report: dict[str, Any]) -> list[str]:
    node, chain, consensus = report["node"], report["chain"], report["consensus"]
    peers, evaluations, weights = report["peers"], report["evaluations"], report["weights"]
    if node["running"]:
        lines = [f"node       running (pid {node['pid']}, up {node['uptime_s']} s)"]
    elif node["pid"] is not None:
        lines = [
            f"node       NOT running (pid {node['pid']} stopped; last heartbeat {node['heartbeat_age_s']} s ago)"
        ]
    else:
        lines = ["node       not running ('platform up' starts it)"]
    for service in report["services"]:
        error = f"  last error: {service['last_error']}" if service["last_error"] else ""
        lines.append(f"  {service['name']:<9} {service['state']:<8} restarts {service['restarts']}{error}")
    lines.append(
        f"peers      {peers['connected']} connected ({peers['validators_connected']} validators), "
        f"{peers['known']} known, {peers['banned']} banned"
    )
    if chain["synced"]:
        lines.append(
            f"chain      netuid {chain['netuid']} block {chain['block']}, epoch {chain['epoch']} "
            f"({chain['blocks_to_next_epoch']} blocks to the next, tempo {chain['tempo']})"
        )
    else:
        lines.append(f"chain      netuid {chain['netuid']}: not synced yet ('platform chain sync')")
    lines.append(
        f"consensus  committed height {consensus['committed_height']}, deciding height {consensus['height']} "
        f"round {consensus['round']}, {consensus['evidence']} evidence"
    )
    by_outcome = ", ".join(f"{k} {v}" for k, v in sorted(evaluations["by_outcome"].items())) or "none yet"
    lines.append(f"evals      {evaluations['pending']} pending; recorded: {by_outcome}")
    last = weights["last"]
    if last is None:
        lines.append("weights    none submitted yet")
    else:
        chain_says = "confirmed on chain" if last["confirmed"] else f"{last['outcome']}, not confirmed"
        lines.append(f"weights    epoch {last['epoch']}: {chain_says} (vector {last['vector_hash'][:16]})")
    for error in report["recent_errors"]:
        lines.append(f"error      {error['what']}: {error['error']}")
    return lines
