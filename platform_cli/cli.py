"""The ``platform`` command: a root group whose subgroups load on demand.

Each group lives in ``platform_cli.commands.<module>`` and is imported only when it is
run, so ``platform --help`` and light commands never pay for libp2p, wasmtime or
bittensor. Library errors (:class:`PlatformError`) become one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from platform_cli import __version__
from platform_cli.commands.params import DIRECTORY, FILE
from platform_cli.errors import PlatformError

# name -> (module, attribute, one-line help). The help is here so that listing commands
# imports nothing.
COMMAND_GROUPS: dict[str, tuple[str, str, str]] = {
    "keys": ("platform_cli.commands.keys", "keys", "Create, import and show identities."),
    "registry": (
        "platform_cli.commands.registry",
        "registry",
        "Challenge registry: sign, verify, propose, list, show.",
    ),
    "audit": ("platform_cli.commands.audit", "audit", "Inspect and verify the audit log."),
    "eval": ("platform_cli.commands.eval", "eval_", "WASM evaluations: run, replay, list, conformance."),
    "monitor": ("platform_cli.commands.monitor", "monitor", "Watch a node or a devnet live (Textual TUI)."),
    "peer": ("platform_cli.commands.peer", "peer", "The libp2p host: run it, list/connect peers, publish."),
    "devnet": (
        "platform_cli.commands.devnet",
        "devnet",
        "A whole local network: dev chain, validators, miners; up, status, logs, down.",
    ),
    "dht": ("platform_cli.commands.dht", "dht", "Put/get/provide/find records in the Kademlia DHT."),
    "chain": (
        "platform_cli.commands.chain",
        "chain",
        "Metagraph sync and chain status; the embedded dev chain.",
    ),
    "consensus": (
        "platform_cli.commands.consensus",
        "consensus",
        "Tendermint consensus: status, log, show, evidence, propose, verify, simulate.",
    ),
    "weights": (
        "platform_cli.commands.weights",
        "weights",
        "Aggregate scores into weights; show, submit, history.",
    ),
    "scores": (
        "platform_cli.commands.scores",
        "scores",
        "Score reports: counted for an epoch, or refused with the reason.",
    ),
    "state": ("platform_cli.commands.state", "state", "The state database: integrity check, online backup."),
    "status": (
        "platform_cli.commands.status",
        "status",
        "One screen on the validator: services, peers, epoch, weights.",
    ),
    "submit": ("platform_cli.commands.submissions", "submit", "A miner submits a file to a challenge."),
    "submissions": (
        "platform_cli.commands.submissions",
        "submissions",
        "Miners' submissions this validator took: list, show.",
    ),
    "up": ("platform_cli.commands.up", "up", "Run a full validator: P2P, chain sync, evaluations, weights."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_GROUPS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMAND_GROUPS:
            return None
        module_name, attribute, _ = COMMAND_GROUPS[name]
        import importlib

        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMAND_GROUPS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.ClickException as exc:
            raise OneLineError(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PlatformError as exc:
            _report(ctx, exc)
            ctx.exit(exc.exit_code)
        except click.ClickException as exc:
            raise OneLineError(exc) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            # The reader went away (`platform ... | head`): stop quietly, as Unix tools do.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except (click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from platform_cli.errors import storage_error

            mapped = storage_error(exc, getattr(ctx.obj, "data_dir", "?"))
            if mapped is not None:  # the machine's fault (read-only, full, damaged): say which
                _report(ctx, mapped, cause=exc)
                ctx.exit(mapped.exit_code)
            _report(ctx, exc, internal=True)  # a bug: say so in one line; -v shows the traceback
            ctx.exit(70)


class OneLineError(click.ClickException):
    """A click usage error as one ``error:`` line (click prints usage, a hint and the error)."""

    def __init__(self, original: click.ClickException) -> None:
        message = original.format_message()
        context = getattr(original, "ctx", None)
        if isinstance(original, click.UsageError) and context is not None:
            message = f"{message.rstrip('.')} (see '{context.command_path} --help')"
        super().__init__(message)
        self.exit_code = original.exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _report(
    ctx: click.Context, exc: BaseException, internal: bool = False, cause: BaseException | None = None
) -> None:
    verbose = bool(getattr(ctx.obj, "verbose", 0))
    if verbose:
        import traceback

        traceback.print_exception(cause or exc, file=sys.stderr)
    if internal:
        hint = "" if verbose else " (run with -v for details)"
        click.echo(f"internal error: {type(exc).__name__}: {exc}{hint}", err=True)
    else:
        click.echo(f"error: {exc}", err=True)


@click.group("platform", cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=DIRECTORY,
    envvar="PLATFORM_DATA_DIR",
    default=Path("data"),
    show_default=True,
    help="Where the node's state lives (env: PLATFORM_DATA_DIR).",
)
@click.option(
    "--config",
    "config_path",
    type=FILE,
    help="TOML config [default: platform.toml in the data dir].",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON lines for lists).")
@click.option("-v", "--verbose", count=True, help="Log lines on stderr: -v info, -vv debug.")
@click.version_option(__version__, prog_name="platform")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path, config_path: Path | None, as_json: bool, verbose: int) -> None:
    """Platform: a WASM-first, peer-to-peer validator network for Bittensor subnets."""
    import logging

    from platform_cli.context import AppContext

    # One-shot commands say what went wrong in one 'error:' line; log lines are for -v
    # (-v info, -vv debug). Long-running services raise this to warnings (AppContext.serving).
    level = (logging.CRITICAL + 1, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    app = AppContext(data_dir=data_dir, config_path=config_path, json=as_json, verbose=verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)
    if config_path is not None:  # named explicitly: load and check it whatever the command reads
        app.validate_config()


def main() -> None:
    cli(prog_name="platform")
