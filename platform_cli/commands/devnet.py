"""``platform devnet``: a whole network on this machine (see ``platform_cli.node.devnet``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from platform_cli import output
from platform_cli.context import AppContext

pass_app = click.make_pass_decorator(AppContext)
DIR_HELP = "The devnet's directory [default: devnet in the data dir]."


def _layout(app: AppContext, directory: Path | None):  # -> devnet.Layout
    from platform_cli.node.devnet import Layout

    return Layout((directory or app.data_dir / "devnet").absolute())


def _say(line: str) -> None:
    click.echo(f"devnet: {line}", err=True)


@click.group("devnet")
def devnet() -> None:
    """A local network: the dev chain, N validators ('platform up' each), simulated miners."""


@devnet.command("up")
@click.option("-n", "--validators", type=click.IntRange(1, 5), default=4, show_default=True)
@click.option("--miners", type=click.IntRange(0, 36), default=8, show_default=True, help="Simulated miners.")
@click.option("--block-time-ms", type=click.IntRange(50, 60_000), default=500, show_default=True)
@click.option(
    "--tempo", type=click.IntRange(10, 65535), default=30, show_default=True, help="Blocks per epoch."
)
@click.option(
    "--byzantine",
    type=click.IntRange(0, 1),
    default=0,
    show_default=True,
    help="Faulty validators (the last ones): wrong scores, conflicting votes, garbage.",
)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP)
@pass_app
def up(
    app: AppContext,
    validators: int,
    miners: int,
    block_time_ms: int,
    tempo: int,
    byzantine: int,
    directory: Path | None,
) -> None:
    """Start the devnet in the background and return once every node is up.

    The devnet sudo's signed updates of the shipped challenges (sort, predict, compress)
    are proposed on every validator and activated through consensus; each miner submits
    one sample file, good or bad. With --byzantine K the last K validators misbehave on
    purpose; the honest ones must still agree. 'devnet status' shows the validators' weights as they land on the dev chain;
    'devnet down' stops everything. On an existing directory, continues that devnet.
    """
    from platform_cli.node import devnet as dn

    layout = _layout(app, directory)
    settings = dn.Settings(
        validators, miners, block_time_ms, tempo, rate_limit=max(1, tempo // 3), byzantine=byzantine
    )
    context = click.get_current_context()
    explicit = any(
        context.get_parameter_source(name) is ParameterSource.COMMANDLINE
        for name in ("validators", "miners", "block_time_ms", "tempo", "byzantine")
    )
    began = time.monotonic()
    doc = dn.up(layout, settings, _say, explicit=explicit)
    _say(f"up in {time.monotonic() - began:.1f} s: 'platform devnet status --dir {layout.root}' to watch it")
    output.record(
        {
            "root": doc["root"],
            "validators": [v["name"] for v in doc["validators"]],
            "metrics": [v["metrics"] for v in doc["validators"]],
            "submissions": len(doc.get("submissions", [])),
        },
        as_json=app.json,
    )


@devnet.command("status")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP)
@pass_app
def status(app: AppContext, directory: Path | None) -> None:
    """Per validator: running, consensus height, epoch, peers, evaluations, last weights."""
    from platform_cli.node import devnet as dn

    report = dn.status(_layout(app, directory))
    if app.json:
        output.record(report, as_json=True)
        return
    rows = [{**row, "weights_hash": (row["weights_hash"] or "")[:16]} for row in report["validators"]]
    output.table(
        rows,
        (
            "name",
            "running",
            "services_up",
            "height",
            "epoch",
            "peers",
            "evaluations",
            "weights_epoch",
            "weights_scored",
            "weights_hash",
        ),
        as_json=False,
    )
    agreed = report["agreement"]
    if agreed["weights_set_by_all"]:
        verdict = (
            "one vector"
            if len(agreed["vector_hashes"]) == 1
            else f"{len(agreed['vector_hashes'])} different vectors"
        )
        click.echo(f"weights set on the dev chain by every validator for epoch {agreed['epoch']}: {verdict}")
    else:
        click.echo("weights not yet set on the dev chain by every validator")


@devnet.command("logs")
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option(
    "--lines", type=click.IntRange(1, 10**6), default=40, show_default=True, help="Last lines of each log."
)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP)
@pass_app
def logs(app: AppContext, name: str | None, follow: bool, lines: int, directory: Path | None) -> None:
    """The logs of NAME (validator-0, ..., miners) or of every process."""
    from platform_cli.node import devnet as dn

    paths = dn.log_paths(_layout(app, directory), name)
    offsets = {}
    for path in paths:
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines()[-lines:]:
            click.echo(f"{path.parent.name}| {line}" if len(paths) > 1 else line)
        offsets[path] = len(text.encode())
    while follow:
        time.sleep(0.5)
        for path in paths:
            with open(path, "rb") as handle:
                handle.seek(offsets[path])
                new = handle.read()
            offsets[path] += len(new)
            for line in new.decode(errors="replace").splitlines():
                click.echo(f"{path.parent.name}| {line}" if len(paths) > 1 else line)
        sys.stdout.flush()


@devnet.command("down")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP)
@pass_app
def down(app: AppContext, directory: Path | None) -> None:
    """Stop every process of the devnet (SIGTERM, then SIGKILL after 20 s); the state stays."""
    from platform_cli.node import devnet as dn

    stopped = dn.down(_layout(app, directory), _say)
    output.record({"stopped": stopped}, as_json=app.json)
