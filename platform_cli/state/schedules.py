"""The chain's epoch schedule as syncs read it (``core.epoch.Schedule``), stored by block.

Two readers need it: the weights service (which epoch it is, where it began, so that its
vector is computed over the snapshot the epoch names) and the score tally (the registry
as of an epoch's first block decides which reports count). Both ask here, so they agree
on where an epoch begins.
"""

from __future__ import annotations

from platform_cli.core.epoch import Schedule
from platform_cli.state.db import State, write_transaction

_COLUMNS = ("netuid", "block", "tempo", "epoch_index", "epoch_start", "next_epoch_start")


def save_schedule(state: State, schedule: Schedule) -> None:
    with write_transaction(state):
        state.execute(
            f"INSERT OR REPLACE INTO chain_schedules ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            [
                schedule.netuid,
                schedule.block,
                schedule.tempo,
                schedule.index,
                schedule.start,
                schedule.next_start,
            ],
        )


def prune_schedules(state: State, netuid: int, before_epoch: int) -> int:
    """Of the readings of epochs before ``before_epoch``, keep the newest of each (it says
    where the epoch began); a node that reads the head every few seconds would otherwise
    keep thousands a day. The number of rows removed."""
    with write_transaction(state):
        cursor = state.execute(
            "DELETE FROM chain_schedules WHERE netuid = ? AND epoch_index < ? AND block NOT IN "
            "(SELECT max(block) FROM chain_schedules WHERE netuid = ? AND epoch_index < ? GROUP BY epoch_index)",
            [netuid, before_epoch, netuid, before_epoch],
        )
    return cursor.rowcount


def latest_schedule(state: State, netuid: int) -> Schedule | None:
    row = state.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM chain_schedules WHERE netuid = ? ORDER BY block DESC LIMIT 1",
        [netuid],
    ).fetchone()
    return Schedule(*row) if row else None


def recorded_epoch_start(state: State, netuid: int, epoch: int) -> int | None:
    """The block where ``epoch`` began, as a sync during that epoch read it."""
    row = state.execute(
        "SELECT epoch_start FROM chain_schedules WHERE netuid = ? AND epoch_index = ? ORDER BY block DESC LIMIT 1",
        [netuid, epoch],
    ).fetchone()
    return int(row[0]) if row else None


def epoch_start(state: State, netuid: int, epoch: int) -> int | None:
    """Where ``epoch`` begins: recorded by a sync during it, or projected from the newest
    reading for the current and later epochs; None for an earlier epoch no sync saw."""
    recorded = recorded_epoch_start(state, netuid, epoch)
    if recorded is not None:
        return recorded
    newest = latest_schedule(state, netuid)
    if newest is None or epoch < newest.index:
        return None
    return newest.start_of(epoch)
