"""Chain epoch schedule readings, one per sync: where each epoch (the chain's
``SubnetEpochIndex``) began, so a past epoch's vector is computed over the metagraph
at its start block."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE chain_schedules (
            netuid INTEGER NOT NULL,
            block INTEGER NOT NULL,
            tempo INTEGER NOT NULL,
            epoch_index INTEGER NOT NULL,
            epoch_start INTEGER NOT NULL,
            next_epoch_start INTEGER NOT NULL,
            PRIMARY KEY (netuid, block)
        )"""
    )
    db.execute("CREATE INDEX chain_schedules_epoch ON chain_schedules (netuid, epoch_index)")
