"""Metagraph snapshots in the state: the only source of the validator set and stakes.

Nothing a peer says about itself decides who is a validator or how much stake it holds;
the chain adapter writes snapshots here and every component reads them back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from platform_cli.clock import now_ms
from platform_cli.state.db import State, write_transaction


@dataclass(frozen=True)
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    stake_rao: int
    validator_permit: bool


@dataclass(frozen=True)
class Snapshot:
    netuid: int
    block: int
    tempo: int
    neurons: tuple[Neuron, ...]

    def validators(self, min_stake_rao: int = 0) -> dict[str, int]:
        """hotkey -> stake (rao) of neurons with a validator permit and enough stake."""
        return {
            n.hotkey: n.stake_rao for n in self.neurons if n.validator_permit and n.stake_rao >= min_stake_rao
        }


def save_snapshot(state: State, snapshot: Snapshot) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT OR REPLACE INTO metagraph_snapshots (netuid, block, tempo, taken_ms) VALUES (?, ?, ?, ?)",
            [snapshot.netuid, snapshot.block, snapshot.tempo, now_ms()],
        )
        state.execute(
            "DELETE FROM metagraph_neurons WHERE netuid = ? AND block = ?", [snapshot.netuid, snapshot.block]
        )
        state.conn.executemany(
            "INSERT INTO metagraph_neurons (netuid, block, uid, hotkey, coldkey, stake_rao, validator_permit) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    snapshot.netuid,
                    snapshot.block,
                    n.uid,
                    n.hotkey,
                    n.coldkey,
                    n.stake_rao,
                    int(n.validator_permit),
                )
                for n in snapshot.neurons
            ],
        )


def _load(state: State, netuid: int, block: int, tempo: int) -> Snapshot:
    rows: Iterable[tuple[int, str, str, int, int]] = state.execute(
        "SELECT uid, hotkey, coldkey, stake_rao, validator_permit FROM metagraph_neurons "
        "WHERE netuid = ? AND block = ? ORDER BY uid",
        [netuid, block],
    )
    neurons = tuple(Neuron(uid, hk, ck, stake, bool(permit)) for uid, hk, ck, stake, permit in rows)
    return Snapshot(netuid, block, tempo, neurons)


def latest_snapshot(state: State, netuid: int, at_or_before: int | None = None) -> Snapshot | None:
    sql = "SELECT block, tempo FROM metagraph_snapshots WHERE netuid = ?"
    params: list[int] = [netuid]
    if at_or_before is not None:
        sql += " AND block <= ?"
        params.append(at_or_before)
    row = state.execute(sql + " ORDER BY block DESC LIMIT 1", params).fetchone()
    return _load(state, netuid, row[0], row[1]) if row else None


def latest_validator_set(state: State, netuid: int, min_stake_rao: int = 0) -> dict[str, int]:
    """hotkey -> stake of the validators in the newest snapshot; empty if none synced."""
    snapshot = latest_snapshot(state, netuid)
    return snapshot.validators(min_stake_rao) if snapshot else {}


def subnet_owner(state: State, netuid: int) -> tuple[str, int] | None:
    """The subnet owner's hotkey and the block it was read at, from the newest chain sync."""
    row = state.execute(
        "SELECT owner_hotkey, block FROM chain_hyperparams WHERE netuid = ? ORDER BY block DESC LIMIT 1",
        [netuid],
    ).fetchone()
    return (row[0], row[1]) if row else None
