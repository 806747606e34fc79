"""``platform consensus``: verify commit certificates, simulate the protocol under faults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from platform_cli import output
from platform_cli.context import AppContext
from platform_cli.state.db import DB_FILENAME

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def consensus() -> None:
    """Tendermint consensus: the node's log, certificates, evidence, the fault simulator."""


@consensus.command("run")
@click.option("--listen", multiple=True, help="Multiaddr to listen on (repeatable) [default: p2p.listen].")
@click.option("--bootstrap", multiple=True, help="Multiaddr of a peer to dial (repeatable).")
@click.option("--key", "key_name", help="This validator's hotkey [default: weights.hotkey].")
@click.option("--metrics", metavar="HOST:PORT", help="Serve Prometheus /metrics and /healthz here.")
@pass_app
def run(
    app: AppContext,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    key_name: str | None,
    metrics: str | None,
) -> None:
    """A node that takes part in consensus only: P2P, chain sync, consensus, until SIGINT/SIGTERM.

    'platform up' runs the same services together with evaluations and the weights loop.
    """
    from platform_cli.commands.up import NO_CONFIG, validator_plan
    from platform_cli.errors import PlatformError
    from platform_cli.node.validator import run as run_node

    if app.config.path is None:
        raise PlatformError(NO_CONFIG.format(path=app.data_dir / "platform.toml"))
    app.validate_config()
    plan = validator_plan(app, listen, bootstrap, key_name, metrics, only_consensus=True)
    app.serving()
    run_node(plan, lambda line: click.echo(f"consensus: {line}", err=True))


@consensus.command("status")
@pass_app
def status(app: AppContext) -> None:
    """Committed height, the height/round/step this validator is at, evidence held."""
    from platform_cli.consensus.queries import status as read

    output.record(read(app.state), as_json=app.json)


@consensus.command("log")
@click.option("--from", "from_height", type=click.IntRange(1, 2**62), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(1, 10**6), default=50, show_default=True)
@pass_app
def log_(app: AppContext, from_height: int, limit: int) -> None:
    """The committed log: height, value id, round, signers, what each entry decided."""
    from platform_cli.consensus.queries import log as read

    output.table(
        read(app.state, from_height=from_height, limit=limit),
        ("height", "value_id", "round", "signers", "actions"),
        as_json=app.json,
        empty="nothing committed yet",
    )


@consensus.command("show")
@click.argument("height", type=click.IntRange(1, 2**62))
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the certificate JSON here.",
)
@pass_app
def show(app: AppContext, height: int, out: Path | None) -> None:
    """The entry at HEIGHT with its certificate (the JSON 'consensus verify' checks)."""
    from platform_cli.consensus.queries import show as read

    doc = read(app.state, height)
    if out is not None:
        from platform_cli import files

        with files.output_file(out, "certificate") as written:
            written.write((json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        output.record({"height": height, "written": str(out)}, as_json=app.json)
        return
    click.echo(json.dumps(doc, indent=None if app.json else 2, sort_keys=True))


@consensus.command("evidence")
@click.option("--limit", type=click.IntRange(1, 10**6), default=50, show_default=True)
@pass_app
def evidence(app: AppContext, limit: int) -> None:
    """Equivocation evidence held: two conflicting signed messages of one validator."""
    from platform_cli.consensus.queries import evidence as read

    rows = read(app.state, limit)
    if app.json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
        return
    output.table(
        rows, ("signer", "height", "round", "step", "received_ms"), as_json=False, empty="no evidence"
    )


@consensus.command("propose")
@click.argument("action_json", metavar="ACTION.json")
@pass_app
def propose(app: AppContext, action_json: str) -> None:
    """Propose an action for consensus: a sudo-signed registry update file.

    It is verified and recorded as pending; this validator's running node includes it in
    the next entry it proposes, and every validator applies it once committed.
    """
    from platform_cli import registry

    update = registry.load_update(action_json)
    update_id = registry.propose(app.state, app.config, update)
    shared = _share_module(app, update.module)
    gossiped = _gossip_update(app, update)
    output.record(
        {
            "update_id": update_id,
            "status": "pending: consensus will decide it",
            "module_in_dht": shared,
            "gossiped": gossiped,
        },
        as_json=app.json,
    )


def _gossip_update(app: AppContext, update: Any) -> bool:  # a registry.SignedUpdate
    """Queue the sudo-signed update on the registry topic: every validator holds it
    pending, so whoever proposes next includes it."""
    from platform_cli.p2p import outgoing, store

    if store.running_node(app.state) is None:
        return False
    network = app.config.network
    outgoing.queue_publish(app.state, network.network, network.sudo, "registry", update.envelope)
    return True


def _share_module(app: AppContext, module: bytes | None) -> bool:
    """Put the update's module in the DHT through the running node, so that validators
    that commit the update without it can fetch it by its hash."""
    if module is None:
        return False
    from platform_cli.core import dhtrec
    from platform_cli.p2p import client, store

    if store.running_node(app.state) is None:
        click.echo("warning: no node runs on this data dir: the module was not put in the DHT", err=True)
        return False
    if len(module) > dhtrec.MAX_RECORD_BYTES:
        click.echo(
            f"warning: the module is over {dhtrec.MAX_RECORD_BYTES} bytes: not put in the DHT", err=True
        )
        return False
    key = dhtrec.dht_key(dhtrec.content_key(module))
    client.call(app.state, "dht.put", {"key": key, "value": module})
    return True


@consensus.command("verify")
@click.argument("cert_json")
@click.option(
    "--snapshot",
    "snapshot",
    help="Validator set file (JSON) [default: the state's metagraph snapshot of the certificate's block].",
)
@pass_app
def verify(app: AppContext, cert_json: str, snapshot: str | None) -> None:
    """Verify a commit certificate offline: exit 0, or 1 with exactly what is wrong."""
    from platform_cli.consensus.certfiles import verify_file

    state = app.state if snapshot is None and (app.data_dir / DB_FILENAME).exists() else None
    output.record(verify_file(cert_json, snapshot, app.config, state), as_json=app.json)


@consensus.command("simulate")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), required=True, help="Seed of the schedule.")
@click.option("--validators", type=click.IntRange(1, 128), default=4, show_default=True)
@click.option(
    "--byzantine", type=click.IntRange(0, 42), default=0, show_default=True, help="At most f = (N-1)//3."
)
@click.option("--heights", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option(
    "--stake-spread",
    default="random",
    show_default=True,
    help="random, equal, or the first validator's share (0.6 or 60%).",
)
@click.option(
    "--strategy", "strategies", multiple=True, help="Byzantine strategy (repeatable) [default: by seed]."
)
@click.option("--byzantine-top", is_flag=True, help="Make the first (largest) validator Byzantine.")
@click.option("--no-faults", is_flag=True, help="A perfect network: no loss, partition or crash.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the committed log, certificates, validator set and summary here.",
)
@pass_app
def simulate(
    app: AppContext,
    seed: int,
    validators: int,
    byzantine: int,
    heights: int,
    stake_spread: str,
    strategies: tuple[str, ...],
    byzantine_top: bool,
    no_faults: bool,
    out: Path | None,
) -> None:
    """Run one seeded schedule of N simulated validators; print a JSON summary.

    Exit 1 when an invariant is violated; the same options replay the run exactly.
    """
    from platform_cli.consensus.simulator import run_cli

    summary = run_cli(
        seed=seed,
        validators=validators,
        byzantine=byzantine,
        heights=heights,
        stake_spread=stake_spread,
        strategies=strategies,
        byzantine_top=byzantine_top,
        faults=not no_faults,
        out=out,
    )
    click.echo(json.dumps(summary, sort_keys=True))
    if not summary["ok"]:
        from platform_cli.errors import PlatformError

        broken = ", ".join(
            f"{name}: {problem}" for name, problem in summary["invariants"].items() if problem != "ok"
        )
        raise PlatformError(f"seed {seed} violates {broken}")
