"""Metagraph sync: chain -> snapshots (``state/metagraph.py``), hyperparameters and the epoch schedule.

A sync reads, at the head, the metagraph, the weight hyperparameters and the epoch
schedule as the chain keeps it (``core.epoch.Schedule``), and stores them by block. It
also stores the metagraph at the block where the current epoch began, once per epoch:
that snapshot is the one the epoch names, and every validator computes the epoch's
vector over it, whenever it synced. An endpoint that no longer serves that block
(a pruned lite node) leaves it missing; computing that epoch then says so.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from platform_cli.chain.adapter import ChainClient, ChainUnavailable, Hyperparams
from platform_cli.chain.settings import ChainSettings
from platform_cli.core.epoch import Schedule
from platform_cli.errors import PlatformError
from platform_cli.state import audit
from platform_cli.state.db import State, write_transaction
from platform_cli.state.metagraph import Snapshot, latest_snapshot, save_snapshot
from platform_cli.state.schedules import latest_schedule, save_schedule

log = logging.getLogger("platform.chain")
_HYPER_COLUMNS = (
    "netuid",
    "block",
    "tempo",
    "max_weight_limit",
    "min_allowed_weights",
    "weights_rate_limit",
    "commit_reveal",
    "mechanism_count",
    "owner_hotkey",
)


def save_hyperparams(state: State, hyper: Hyperparams) -> None:
    values = asdict(hyper)
    values["commit_reveal"] = int(hyper.commit_reveal)
    with write_transaction(state):
        state.execute(
            f"INSERT OR REPLACE INTO chain_hyperparams ({', '.join(_HYPER_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _HYPER_COLUMNS)})",
            [values[c] for c in _HYPER_COLUMNS],
        )


def latest_hyperparams(state: State, netuid: int, at_or_before: int | None = None) -> Hyperparams | None:
    sql = f"SELECT {', '.join(_HYPER_COLUMNS)} FROM chain_hyperparams WHERE netuid = ?"
    params: list[int] = [netuid]
    if at_or_before is not None:
        sql += " AND block <= ?"
        params.append(at_or_before)
    row = state.execute(sql + " ORDER BY block DESC LIMIT 1", params).fetchone()
    if row is None:
        return None
    values = dict(zip(_HYPER_COLUMNS, row, strict=True))
    values["commit_reveal"] = bool(values["commit_reveal"])
    return Hyperparams(**values)


def record_sync(
    state: State,
    snapshot: Snapshot,
    hyper: Hyperparams,
    schedule: Schedule,
    network: str,
    epoch_snapshot: tuple[Snapshot, Hyperparams] | None = None,
) -> None:
    """Store a sync: the head snapshot, hyperparameters and schedule, and the epoch's start snapshot."""
    with write_transaction(state):
        if epoch_snapshot is not None:
            save_snapshot(state, epoch_snapshot[0])
            save_hyperparams(state, epoch_snapshot[1])
        save_snapshot(state, snapshot)
        save_hyperparams(state, hyper)
        save_schedule(state, schedule)
        audit.append(
            state,
            "chain",
            "chain.sync",
            {
                "network": network,
                "netuid": snapshot.netuid,
                "block": snapshot.block,
                "neurons": len(snapshot.neurons),
                "validators": len(snapshot.validators()),
                "epoch": schedule.index,
                "epoch_start": schedule.start,
            },
        )
    log.info(
        "chain.synced network=%s netuid=%d block=%d epoch=%d neurons=%d",
        network,
        snapshot.netuid,
        snapshot.block,
        schedule.index,
        len(snapshot.neurons),
    )


def has_snapshot(state: State, netuid: int, block: int) -> bool:
    row = state.execute(
        "SELECT 1 FROM metagraph_snapshots WHERE netuid = ? AND block = ?", [netuid, block]
    ).fetchone()
    return row is not None


async def read_epoch_snapshot(
    state: State, client: ChainClient, schedule: Schedule
) -> tuple[Snapshot, Hyperparams] | None:
    """The metagraph at the current epoch's start, unless stored already; None if the endpoint cannot serve it."""
    if has_snapshot(state, schedule.netuid, schedule.start):
        return None
    try:
        return await client.metagraph(schedule.netuid, schedule.start)
    except (ChainUnavailable, PlatformError) as exc:
        log.info(
            "chain.epoch_start_unavailable netuid=%d block=%d error=%s", schedule.netuid, schedule.start, exc
        )
        return None


async def sync_with(state: State, client: ChainClient, netuid: int) -> tuple[Snapshot, Hyperparams, Schedule]:
    """Read and store the head and the epoch's start snapshot over an open client."""
    schedule = await client.schedule(netuid)
    snapshot, hyper = await client.metagraph(netuid)
    start = await read_epoch_snapshot(state, client, schedule)
    record_sync(state, snapshot, hyper, schedule, client.settings.network, start)
    return snapshot, hyper, schedule


async def sync(state: State, settings: ChainSettings, netuid: int) -> Snapshot:
    """One-shot sync: read the metagraph, hyperparameters and schedule at the head and store them."""
    async with ChainClient(settings) as client:
        snapshot, _, _ = await sync_with(state, client, netuid)
    return snapshot


def status(
    state: State, netuid: int, live: Schedule | None, head: int | None, network: str
) -> dict[str, Any]:
    """What the node knows about the chain: head, newest snapshot, epoch, hyperparameters.

    The epoch comes from ``live`` (a schedule read just now) or else the newest stored
    reading, projected to the head.
    """
    snapshot = latest_snapshot(state, netuid)
    hyper = latest_hyperparams(state, netuid)
    schedule = live or latest_schedule(state, netuid)
    info: dict[str, Any] = {"network": network, "netuid": netuid, "head": head}
    if snapshot is None:
        info["snapshot_block"] = None
    else:
        info.update(
            snapshot_block=snapshot.block,
            neurons=len(snapshot.neurons),
            validators=len(snapshot.validators()),
        )
    if schedule is not None:
        block = max(head if head is not None else schedule.block, schedule.block)
        epoch = schedule.epoch_of(block)
        info.update(
            tempo=schedule.tempo,
            epoch=epoch,
            epoch_start=schedule.start_of(epoch),
            blocks_to_next_epoch=schedule.blocks_until_next(block),
        )
    if hyper is not None:
        info.update({k: v for k, v in asdict(hyper).items() if k not in ("netuid", "block", "tempo")})
    return info
