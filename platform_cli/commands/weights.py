"""``platform weights``: aggregate score reports into a weight vector; show, submit, history."""

from __future__ import annotations

import click

from platform_cli import output
from platform_cli.chain.dev.chain import MAX_BLOCK
from platform_cli.context import AppContext

pass_app = click.make_pass_decorator(AppContext)
EPOCH = click.IntRange(0, MAX_BLOCK)  # an epoch never exceeds the (u32) block number


def _settings(app: AppContext):  # -> WeightSettings
    from platform_cli.chain.settings import weight_settings

    return weight_settings(app.config)


@click.group()
def weights() -> None:
    """Weight vectors: computed from the epoch's score reports over the metagraph snapshot."""


def _vector_rows(app: AppContext, vector) -> list[dict[str, object]]:  # vector: chain.weights.Vector
    from platform_cli.state.metagraph import latest_snapshot

    snapshot = latest_snapshot(app.state, vector.netuid, vector.snapshot_block)
    hotkeys = {n.uid: n.hotkey for n in snapshot.neurons} if snapshot else {}
    total = sum(vector.weights.values()) or 1
    return [
        {
            "uid": uid,
            "hotkey": hotkeys.get(uid),
            "units": units,
            "ppm": units * 1_000_000 // total,
            "u16": vector.u16.get(uid, 0),
        }
        for uid, units in sorted(vector.weights.items())
    ]


@weights.command("compute")
@click.option("--epoch", type=EPOCH, help="Epoch [default: the snapshot's current epoch].")
@pass_app
def compute(app: AppContext, epoch: int | None) -> None:
    """Compute (and store) the vector from local state; no chain access."""
    from platform_cli.chain import weights as w

    settings = _settings(app)
    vector = w.compute(
        app.state, app.config.network.netuid, settings, epoch=epoch, own=w.own_hotkey(app.data_dir, settings)
    )
    output.record({**vector.summary(), **vector.detail}, as_json=app.json)


@weights.command("show")
@click.option("--epoch", type=EPOCH, help="Epoch [default: the newest computed].")
@pass_app
def show(app: AppContext, epoch: int | None) -> None:
    """The stored vector, one row per uid (units of 10**9, ppm, u16 as submitted)."""
    from platform_cli.chain import records
    from platform_cli.errors import PlatformError

    settings = _settings(app)
    vector = records.load(app.state, app.config.network.netuid, settings.mechid, epoch)
    if vector is None:
        which = f"epoch {epoch}" if epoch is not None else "any epoch"
        raise PlatformError(f"no weight vector computed for {which}: run `platform weights compute`")
    if not app.json:
        output.record({**vector.summary(), **vector.detail}, as_json=False)
        click.echo()
    output.table(_vector_rows(app, vector), ("uid", "hotkey", "units", "ppm", "u16"), as_json=app.json)


@weights.command("submit")
@click.option("--epoch", type=EPOCH, help="Epoch [default: the current epoch].")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Plan only: read the chain, compute and preflight in memory; write nothing.",
)
@click.option("--key", "key_name", help="Signing hotkey (platform keys list) [default: weights.hotkey].")
@pass_app
def submit(app: AppContext, epoch: int | None, dry_run: bool, key_name: str | None) -> None:
    """Sync, compute, submit through the SDK's SetWeights and confirm by reading the chain back."""
    from platform_cli.chain import weights as w
    from platform_cli.chain.adapter import run
    from platform_cli.chain.settings import chain_settings
    from platform_cli.identity import KeyStore

    settings = _settings(app)
    signer = KeyStore(app.data_dir).signer(key_name or settings.hotkey)
    vector, submission, outcome = run(
        w.submit(
            app.state,
            chain_settings(app.config, app.data_dir),
            settings,
            signer,
            app.config.network.netuid,
            epoch=epoch,
            dry_run=dry_run,
        )
    )
    output.record(
        {
            "outcome": outcome,
            "epoch": vector.epoch,
            "path": submission.path,
            "block": submission.block,
            "uids": len(vector.u16),
            "vector_hash": vector.vector_hash,
            "message": submission.message,
            "effects": list(submission.effects),
        },
        as_json=app.json,
    )


@weights.command("run")
@click.option("--key", "key_name", help="Signing hotkey (platform keys list) [default: weights.hotkey].")
@pass_app
def run_(app: AppContext, key_name: str | None) -> None:
    """Submit every epoch's weights before its deadline, until SIGINT/SIGTERM."""
    from platform_cli.chain.runner import serve
    from platform_cli.chain.settings import chain_settings
    from platform_cli.identity import KeyStore

    settings = _settings(app)
    signer = KeyStore(app.data_dir).signer(key_name or settings.hotkey)
    app.serving()
    serve(app.state, chain_settings(app.config, app.data_dir), settings, signer, app.config.network.netuid)


@weights.command("replay")
@click.option("--epoch", type=click.IntRange(0, 2**63 - 1), required=True, help="The epoch to re-derive.")
@pass_app
def replay(app: AppContext, epoch: int) -> None:
    """Re-derive epoch N's vector from the stored reports and by re-running their
    evaluations in the sandbox; exit 1 unless both equal the stored vector bit for bit.

    Names every report the sandbox does not reproduce (and its validator), and every
    report whose submission file is not held here (kept as reported).
    """
    from platform_cli.chain.replay import replay_epoch
    from platform_cli.chain.weights import own_hotkey
    from platform_cli.errors import PlatformError
    from platform_cli.evaluation import default_jobs

    settings = _settings(app)
    result = replay_epoch(
        app.state,
        app.data_dir,
        app.config.network.netuid,
        settings,
        epoch,
        jobs=default_jobs(app.config),
        own=own_hotkey(app.data_dir, settings),
    )
    if app.json:
        output.record(result, as_json=True)
    else:
        output.table(
            result["checked"], ("validator", "challenge", "miner", "reported", "verdict"), as_json=False
        )
        summary = {k: v for k, v in result.items() if k not in ("checked", "differing", "unverified")}
        output.record({**summary, "unverified": len(result["unverified"])}, as_json=False)
    if not result["matches"]:
        raise PlatformError(
            f"epoch {epoch}'s vector does not replay: stored {result['stored_hash'][:16]}, from the reports "
            f"{result['from_reports_hash'][:16]}, from the sandbox {result['from_sandbox_hash'][:16]}"
        )


@weights.command("history")
@click.option("--limit", type=click.IntRange(1, 10**6), default=50, show_default=True)
@pass_app
def history(app: AppContext, limit: int) -> None:
    """Submission attempts, newest first; failures stay on record.

    A ``pending`` row's outcome is unknown (interrupted, or the answer was lost): the
    chain decides, and ``weights run`` settles it once the chain shows our weights.
    """
    from platform_cli.chain import records

    rows = records.history(app.state, app.config.network.netuid, limit)
    if not app.json:
        rows = [{**r, "outcome": "pending (unknown)"} if r["outcome"] == "pending" else r for r in rows]
    output.table(
        rows,
        ("id", "epoch", "outcome", "path", "block", "hotkey", "message"),
        as_json=app.json,
        empty="no weight submissions yet",
    )
