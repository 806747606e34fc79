"""Metagraph snapshots: who the validators are and what stake they hold, by block."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE metagraph_snapshots (
            netuid INTEGER NOT NULL,
            block INTEGER NOT NULL,
            tempo INTEGER NOT NULL,
            taken_ms INTEGER NOT NULL,
            PRIMARY KEY (netuid, block)
        )"""
    )
    db.execute(
        """CREATE TABLE metagraph_neurons (
            netuid INTEGER NOT NULL,
            block INTEGER NOT NULL,
            uid INTEGER NOT NULL,
            hotkey TEXT NOT NULL,
            coldkey TEXT NOT NULL,
            stake_rao INTEGER NOT NULL,
            validator_permit INTEGER NOT NULL,
            PRIMARY KEY (netuid, block, uid),
            FOREIGN KEY (netuid, block) REFERENCES metagraph_snapshots (netuid, block) ON DELETE CASCADE
        )"""
    )
    db.execute("CREATE INDEX metagraph_neurons_hotkey ON metagraph_neurons (netuid, hotkey)")
