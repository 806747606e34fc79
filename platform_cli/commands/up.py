"""``platform up``: a full validator in one process (see ``platform_cli.node.validator``)."""

from __future__ import annotations

from pathlib import Path

import click

from platform_cli.commands.params import DIRECTORY, FILE
from platform_cli.context import AppContext
from platform_cli.errors import PlatformError

pass_app = click.make_pass_decorator(AppContext)

NO_CONFIG = (
    "no config at {path}: a validator needs one. Write it (the README's Configuration section "
    "shows platform.toml: [network] netuid and sudo, [chain] network, [weights] hotkey, [p2p] listen "
    "and bootstrap) and pass it with --config or put it in the data dir; or try a whole network on "
    "this machine first with 'platform devnet up'"
)


@click.command("up")
@click.option("--listen", multiple=True, help="Multiaddr to listen on (repeatable) [default: p2p.listen].")
@click.option(
    "--bootstrap", multiple=True, help="Multiaddr of a peer to dial (repeatable, added to p2p.bootstrap)."
)
@click.option(
    "--key", "key_name", help="This validator's hotkey (platform keys list) [default: weights.hotkey]."
)
@click.option(
    "--metrics", "metrics", metavar="HOST:PORT", help="Serve Prometheus /metrics and /healthz here."
)
@click.option(
    "--data-dir",
    "data_dir",
    type=DIRECTORY,
    help="As 'platform --data-dir' (so 'nix run .#validator -- --data-dir D' works).",
)
@click.option("--config", "config_path", type=FILE, help="As 'platform --config'.")
@click.option(
    "--byzantine",
    is_flag=True,
    help="Embedded dev chain only: misbehave on purpose (wrong scores, conflicting votes, garbage) "
    "to show the network tolerates it.",
)
@pass_app
def up(
    app: AppContext,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    key_name: str | None,
    metrics: str | None,
    data_dir: Path | None,
    config_path: Path | None,
    byzantine: bool,
) -> None:
    """Run a full validator until SIGINT/SIGTERM: P2P, chain sync, evaluations, weights.

    Reads platform.toml (from --config or the data dir), checks every setting and the
    key before starting anything, then prints a line per service as it comes up and one
    JSON line ({"ready": true, "peer_id", "addrs", ...}) once all are up. A service that
    fails is restarted with backoff; 'platform status' shows each one's state.
    """
    if data_dir is not None or config_path is not None:
        app = AppContext(
            data_dir=data_dir or app.data_dir,
            config_path=config_path or app.config_path,
            json=app.json,
            verbose=app.verbose,
        )
        click.get_current_context().call_on_close(app.close)
    config = app.config
    if config.path is None:
        raise PlatformError(NO_CONFIG.format(path=app.data_dir / "platform.toml"))
    app.validate_config()
    from platform_cli.node.validator import run

    plan = validator_plan(app, listen, bootstrap, key_name, metrics, byzantine=byzantine)
    app.serving()
    run(plan, lambda line: click.echo(f"up: {line}", err=True))


def validator_plan(
    app: AppContext,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    key_name: str | None,
    metrics: str | None,
    *,
    only_consensus: bool = False,
    byzantine: bool = False,
):  # -> node.validator.ValidatorPlan
    """Every setting and the key, checked before anything starts (also 'consensus run')."""
    from platform_cli.chain.settings import chain_settings, weight_settings
    from platform_cli.commands.trust import trusted_sudo
    from platform_cli.consensus.settings import consensus_settings
    from platform_cli.evaluation import default_jobs
    from platform_cli.identity import KeyStore
    from platform_cli.node.validator import ValidatorPlan
    from platform_cli.p2p.config import check_addrs, load_settings
    from platform_cli.state import integrity

    config = app.config
    weights = weight_settings(config)
    key = key_name or weights.hotkey
    p2p = load_settings(config)
    p2p = p2p.with_overrides(
        listen=listen, bootstrap=tuple(dict.fromkeys(p2p.bootstrap + bootstrap)), key=p2p.key or key
    )
    check_addrs(p2p)
    address = None
    if metrics is not None:
        from platform_cli.node.metrics import parse_address

        address = parse_address(metrics)
    consensus = consensus_settings(config)
    if only_consensus and not consensus.enabled:
        raise PlatformError(
            f"{config.path}: consensus is off: set [consensus] genesis_block (docs/consensus.md)"
        )
    chain = chain_settings(config, app.data_dir)
    if byzantine and not chain.is_dev:
        raise PlatformError('--byzantine runs only on the embedded dev chain ([chain] network = "dev")')
    plan = ValidatorPlan(
        data_dir=app.data_dir,
        network=config.network,
        p2p=p2p,
        chain=chain,
        weights=weights,
        signer=KeyStore(app.data_dir).signer(key),
        config=config,
        consensus=consensus,
        jobs=default_jobs(config),
        metrics=address,
        only_consensus=only_consensus,
        byzantine=byzantine,
    )
    trusted_sudo(config.network, app.state, required=True)
    integrity.require_intact(app.state.conn, app.state.path, quick=True)
    return plan
