"""``platform chain``: metagraph sync and status; ``chain dev`` runs the embedded dev chain."""

from __future__ import annotations

from pathlib import Path

import click

from platform_cli import output
from platform_cli.chain.dev.chain import MAX_BLOCK
from platform_cli.chain.dev.seed import MAX_TAO
from platform_cli.chain.dev.seed import U16_MAX as MAX_TEMPO
from platform_cli.commands.params import FILE
from platform_cli.context import AppContext

pass_app = click.make_pass_decorator(AppContext)


def _settings(app: AppContext):  # -> ChainSettings
    from platform_cli.chain.settings import chain_settings

    return chain_settings(app.config, app.data_dir)


@click.group()
def chain() -> None:
    """The chain: Bittensor (finney, test, local, ws:// URL) or the embedded dev chain."""


@chain.command("sync")
@pass_app
def sync_(app: AppContext) -> None:
    """Read the metagraph and weight hyperparameters at the head into a snapshot."""
    from platform_cli.chain import sync
    from platform_cli.chain.adapter import run
    from platform_cli.state.schedules import latest_schedule

    settings = _settings(app)
    netuid = app.config.network.netuid
    snapshot = run(sync.sync(app.state, settings, netuid))
    schedule = latest_schedule(app.state, netuid)
    output.record(
        {
            "network": settings.network,
            "netuid": snapshot.netuid,
            "block": snapshot.block,
            "neurons": len(snapshot.neurons),
            "validators": len(snapshot.validators()),
            "epoch": schedule.index if schedule else None,
            "epoch_start": schedule.start if schedule else None,
        },
        as_json=app.json,
    )


@chain.command("status")
@click.option("--offline", is_flag=True, help="Only what the state knows; do not contact the chain.")
@pass_app
def status(app: AppContext, offline: bool) -> None:
    """Chain head, newest snapshot, epoch and the hyperparameters weights depend on."""
    from platform_cli.chain import sync
    from platform_cli.chain.adapter import ChainClient, run

    settings = _settings(app)
    netuid = app.config.network.netuid
    live = None
    if not offline:

        async def read_schedule():  # -> Schedule
            async with ChainClient(settings) as client:
                return await client.schedule(netuid)

        live = run(read_schedule())
    head = live.block if live else None
    from platform_cli.commands.trust import trusted_sudo

    info = sync.status(app.state, netuid, live, head, settings.network)
    output.record({**info, **trusted_sudo(app.config.network, app.state)}, as_json=app.json)


@chain.group("dev")
def dev() -> None:
    """The embedded dev chain: one SQLite file shared by every process on this machine."""


@dev.command("init")
@click.option("--seed", type=FILE, help="Seed metagraph JSON (a regular file).")
@click.option(
    "--block-time-ms", type=click.IntRange(0, 2**31 - 1), help="Milliseconds per block (0: only `advance`)."
)
@click.option("--tempo", type=click.IntRange(1, 65535), help="Blocks per epoch (u16).")
@click.option("--commit-reveal/--no-commit-reveal", default=None, help="Timelocked commit-reveal weights.")
@click.option("--rate-limit", type=click.IntRange(0, MAX_BLOCK), help="Weights rate limit in blocks.")
@pass_app
def dev_init(
    app: AppContext,
    seed: Path | None,
    block_time_ms: int | None,
    tempo: int | None,
    commit_reveal: bool | None,
    rate_limit: int | None,
) -> None:
    """Create the dev chain from the seed (fixtures/metagraph/devnet.json by default)."""
    from platform_cli.chain.dev.seed import init_dev_chain
    from platform_cli.state import audit

    settings = _settings(app)
    overrides: dict[str, object] = {}
    if commit_reveal is not None:
        overrides["CommitRevealWeightsEnabled"] = commit_reveal
    if rate_limit is not None:
        overrides["WeightsSetRateLimit"] = rate_limit
    chain_ = init_dev_chain(
        settings.dev_db,
        seed or settings.dev_seed,
        block_time_ms=block_time_ms,
        tempo=tempo,
        hyperparameters=overrides,
    )
    try:
        info = _dev_info(chain_, app.config.network.netuid)
    finally:
        chain_.release()
    audit.append(app.state, "chain", "chain.dev.init", {"path": str(settings.dev_db), "head": info["head"]})
    output.record(info, as_json=app.json)


@dev.command("status")
@click.option(
    "--extrinsics", "last", type=click.IntRange(0, 10**6), default=0, help="Also list the last N extrinsics."
)
@pass_app
def dev_status(app: AppContext, last: int) -> None:
    """Head block, block time, subnet and epoch of the dev chain."""
    from platform_cli.chain.dev.chain import DevChain

    chain_ = DevChain(_settings(app).dev_db)
    try:
        output.record(_dev_info(chain_, app.config.network.netuid), as_json=app.json)
        if last:
            output.table(
                chain_.extrinsics(last),
                ("id", "block", "function", "signer", "success", "error"),
                as_json=app.json,
            )
    finally:
        chain_.release()


@dev.command("advance")
@click.argument("blocks", type=click.IntRange(0, MAX_BLOCK))
@pass_app
def dev_advance(app: AppContext, blocks: int) -> None:
    """Move the dev chain's head forward by BLOCKS (every process sees it)."""
    from platform_cli.chain.dev.chain import DevChain

    chain_ = DevChain(_settings(app).dev_db)
    try:
        chain_.advance(blocks)
        output.record(_dev_info(chain_, app.config.network.netuid), as_json=app.json)
    finally:
        chain_.release()


@dev.command("tempo")
@click.argument("tempo", type=click.IntRange(1, MAX_TEMPO))
@pass_app
def dev_tempo(app: AppContext, tempo: int) -> None:
    """Set the subnet's TEMPO as root does (``sudo_set_tempo``): the epoch cycle restarts now."""
    from platform_cli.chain.dev.chain import DevChain

    chain_ = DevChain(_settings(app).dev_db)
    try:
        chain_.set_tempo(app.config.network.netuid, tempo)
        output.record(_dev_info(chain_, app.config.network.netuid), as_json=app.json)
    finally:
        chain_.release()


@dev.command("trigger-epoch")
@pass_app
def dev_trigger_epoch(app: AppContext) -> None:
    """Trigger the next epoch early, as the subnet owner does: it runs AdminFreezeWindow blocks from now."""
    from platform_cli.chain.dev.chain import DevChain

    chain_ = DevChain(_settings(app).dev_db)
    try:
        chain_.trigger_epoch(app.config.network.netuid)
        output.record(_dev_info(chain_, app.config.network.netuid), as_json=app.json)
    finally:
        chain_.release()


@dev.command("register")
@click.argument("hotkey")
@click.option("--coldkey", help="Owning coldkey ss58 [default: the hotkey].")
@click.option("--stake-tao", type=click.IntRange(0, MAX_TAO), default=0, show_default=True)
@pass_app
def dev_register(app: AppContext, hotkey: str, coldkey: str | None, stake_tao: int) -> None:
    """Register HOTKEY (ss58) on the dev subnet; a full subnet evicts its weakest neuron."""
    from platform_cli.chain.dev.chain import DevChain
    from platform_cli.chain.dev.seed import RAO_PER_TAO
    from platform_cli.errors import PlatformError
    from platform_cli.identity import is_ss58

    for name, value in (("hotkey", hotkey), ("coldkey", coldkey or hotkey)):
        if not is_ss58(value):
            raise PlatformError(f"{name} {value!r} is not an ss58 address")
    chain_ = DevChain(_settings(app).dev_db)
    try:
        netuid = app.config.network.netuid
        uid = chain_.register(netuid, hotkey, coldkey or hotkey, stake_tao * RAO_PER_TAO)
        output.record(
            {"netuid": netuid, "uid": uid, "hotkey": hotkey, "head": chain_.head()}, as_json=app.json
        )
    finally:
        chain_.release()


def _dev_info(chain_, netuid: int) -> dict[str, object]:  # chain_: DevChain
    head = chain_.head()
    graph = chain_.metagraph(netuid)
    state = chain_.epoch(netuid)
    info: dict[str, object] = {
        "path": str(chain_.path),
        "head": head,
        "block_time_ms": chain_.block_time_ms(),
        "netuid": netuid,
    }
    if graph is None or state is None:
        info["subnet"] = "missing"
        return info
    next_start = state.next_epoch_start_block()
    info.update(
        neurons=graph["num_uids"],
        validators=sum(graph["validator_permit"]),
        tempo=state.tempo,
        epoch=state.epoch_index,
        last_epoch_block=state.last_epoch_block,
        pending_epoch_at=state.pending_epoch_at or None,
        next_epoch_start=next_start,
        blocks_to_next_epoch=None if next_start is None else max(0, next_start - head),
    )
    info.update(chain_.pending_commits(netuid))
    return info
