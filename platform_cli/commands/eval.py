"""``platform eval``: run challenges on submissions in the WASM sandbox, replay, conformance."""

from __future__ import annotations

from pathlib import Path

import click

from platform_cli import output
from platform_cli.commands.params import FILE
from platform_cli.context import AppContext
from platform_cli.errors import PlatformError

pass_app = click.make_pass_decorator(AppContext)

MAX_INT = 2**63 - 1  # SQLite's integer range

_RUN_COLUMNS = [
    "id",
    "challenge_id",
    "challenge_state",
    "outcome",
    "score",
    "fuel_used",
    "wall_ms",
    "compile_ms",
    "message",
]
_RECORD_FIELDS = [
    "id",
    "challenge_id",
    "challenge_version",
    "submission_sha256",
    "outcome",
    "message",
    "score",
    "metrics",
    "fuel_used",
    "wall_ms",
    "compile_ms",
    "peak_memory",
    "output_sha256",
    "challenge_state",
]


@click.group("eval")
def eval_() -> None:
    """Evaluate submissions in the deterministic WASM sandbox (challenge ABI v1)."""


@eval_.command("run")
@click.argument("challenge")
@click.argument("submissions", nargs=-1, required=True, type=FILE)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    help="Worker processes [default: runtime.jobs in the config, or 1].",
)
@click.option(
    "--epoch",
    default=0,
    show_default=True,
    type=click.IntRange(0, MAX_INT),
    help="Epoch the seed derives from.",
)
@click.option("--miner", default="", help="Hotkey (ss58) of the miner the submissions come from.")
@pass_app
def run(
    app: AppContext, challenge: str, submissions: tuple[Path, ...], jobs: int | None, epoch: int, miner: str
) -> None:
    """Evaluate SUBMISSIONS with CHALLENGE (a registry id[@version] or a challenge.toml)."""
    from platform_cli import evaluation

    jobs = jobs or evaluation.default_jobs(app.config)
    batch = evaluation.run_evaluations(
        app.state, app.data_dir, challenge, list(submissions), epoch=epoch, jobs=jobs, miner=miner
    )
    records = batch.records
    if records and records[0]["challenge_state"] not in ("active", "file"):
        click.echo(f"warning: challenge {challenge} is {records[0]['challenge_state']}, not active", err=True)
    if app.json or len(records) > 1:
        output.table(records, _RUN_COLUMNS, as_json=app.json)
    elif records:
        output.record({k: records[0][k] for k in _RECORD_FIELDS}, as_json=False)
    for line in batch.refused + batch.failed:
        click.echo(f"error: {line}", err=True)
    if batch.refused or batch.failed:
        click.get_current_context().exit(1)


@eval_.command("publish")
@click.argument("eval_ids", nargs=-1, required=True, type=click.IntRange(1, MAX_INT))
@click.option("--key", "key_name", default="validator", show_default=True, help="The validator hotkey.")
@pass_app
def publish(app: AppContext, eval_ids: tuple[int, ...], key_name: str) -> None:
    """Sign the reports of evaluations (attributed with --miner) and queue them for gossip.

    Each also becomes this validator's score report for the weights; the running P2P node
    publishes the queued messages to the other validators.
    """
    from platform_cli import evaluation, scores
    from platform_cli.identity import KeyStore

    signer = KeyStore(app.data_dir).signer(key_name)
    evaluations = [evaluation.show_evaluation(app.state, i) for i in eval_ids]
    rows = scores.publish(app.state, app.config, signer, evaluations)
    output.table(rows, ["id", "miner", "score", "outbox_id", "msg_id"], as_json=app.json)


@eval_.command("list")
@click.option("--challenge", help="Only this challenge id.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, MAX_INT))
@pass_app
def list_(app: AppContext, challenge: str | None, limit: int) -> None:
    """Recorded evaluations, newest first."""
    from platform_cli import evaluation

    rows = evaluation.list_evaluations(app.state, challenge, limit)
    output.table(
        rows,
        ["id", "challenge_id", "challenge_version", "outcome", "score", "fuel_used", "wall_ms"],
        as_json=app.json,
        empty="no evaluations recorded",
    )


@eval_.command("show")
@click.argument("eval_id", type=click.IntRange(1, MAX_INT))
@pass_app
def show(app: AppContext, eval_id: int) -> None:
    """One evaluation record in full (including the engine that produced it)."""
    from platform_cli import evaluation

    output.record(evaluation.show_evaluation(app.state, eval_id), as_json=app.json)


@eval_.command("replay")
@click.argument("eval_id", type=click.IntRange(1, MAX_INT))
@pass_app
def replay(app: AppContext, eval_id: int) -> None:
    """Re-run a recorded evaluation; fails unless outcome, output hash and fuel are identical.

    A timeout or a failed evaluation depends on the machine: it is re-run, not compared.
    """
    from platform_cli import evaluation

    output.record(evaluation.replay(app.state, app.data_dir, eval_id), as_json=app.json)


@eval_.command("conformance")
@click.argument("module", type=FILE)
@click.option(
    "--challenge",
    "challenge_toml",
    type=FILE,
    help="Take limits, entrypoint and params from this challenge.toml.",
)
@pass_app
def conformance(app: AppContext, module: Path, challenge_toml: Path | None) -> None:
    """Check a challenge module against ABI v1 and print what fails."""
    from platform_cli.files import read_limited
    from platform_cli.runtime import conformance as conf
    from platform_cli.runtime.validate import MAX_CHALLENGE_MODULE_BYTES

    data = read_limited(module, MAX_CHALLENGE_MODULE_BYTES, "module")
    kwargs = {}
    if challenge_toml is not None:
        from platform_cli.core.challenge import SpecError, parse_spec
        from platform_cli.files import read_toml

        try:
            spec = parse_spec(read_toml(challenge_toml, "challenge file"))
        except SpecError as exc:
            raise PlatformError(f"{challenge_toml}: {exc}") from None
        kwargs = {"entrypoint": spec.entrypoint, "limits": spec.resources, "params": spec.params}
    checks = conf.check_module(data, **kwargs)
    rows = [{"check": c.name, "result": "pass" if c.passed else "FAIL", "detail": c.detail} for c in checks]
    output.table(rows, ["result", "check", "detail"], as_json=app.json)
    failed = sum(not c.passed for c in checks)
    if failed:
        raise PlatformError(f"{module}: {failed} of {len(checks)} conformance checks failed")
