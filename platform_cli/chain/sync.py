"""Metagraph sync: chain -> snapshot (``state/metagraph.py``) + hyperparameters, by block."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from platform_cli.chain.adapter import ChainClient, Hyperparams
from platform_cli.chain.settings import ChainSettings
from platform_cli.core.epoch import Schedule
from platform_cli.state import audit
from platform_cli.state.db import State, write_transaction
from platform_cli.state.metagraph import Snapshot, latest_snapshot, save_snapshot

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


def record_sync(state: State, snapshot: Snapshot, hyper: Hyperparams, network: str) -> None:
    with write_transaction(state):
        save_snapshot(state, snapshot)
        save_hyperparams(state, hyper)
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
            },
        )
    log.info(
        "chain.synced network=%s netuid=%d block=%d neurons=%d",
        network,
        snapshot.netuid,
        snapshot.block,
        len(snapshot.neurons),
    )


async def sync(
    state: State, settings: ChainSettings, netuid: int, client: ChainClient | None = None
) -> Snapshot:
    """Read the metagraph and hyperparameters at the head and store them by block."""
    if client is None:
        async with ChainClient(settings) as own:
            snapshot, hyper = await own.metagraph(netuid)
    else:
        snapshot, hyper = await client.metagraph(netuid)
    record_sync(state, snapshot, hyper, settings.network)
    return snapshot


def status(state: State, netuid: int, head: int | None, network: str) -> dict[str, Any]:
    """What the node knows about the chain: head, newest snapshot, epoch, hyperparameters."""
    snapshot = latest_snapshot(state, netuid)
    hyper = latest_hyperparams(state, netuid)
    info: dict[str, Any] = {"network": network, "netuid": netuid, "head": head}
    if snapshot is None:
        info["snapshot_block"] = None
        return info
    schedule = Schedule(netuid, snapshot.tempo) if snapshot.tempo > 0 else None
    block = head if head is not None else snapshot.block
    info.update(
        snapshot_block=snapshot.block,
        neurons=len(snapshot.neurons),
        validators=len(snapshot.validators()),
        tempo=snapshot.tempo,
        epoch=schedule.epoch_of(block) if schedule else None,
        blocks_to_next_epoch=schedule.blocks_until_next(block) if schedule else None,
    )
    if hyper is not None:
        info.update({k: v for k, v in asdict(hyper).items() if k not in ("netuid", "block", "tempo")})
    return info
