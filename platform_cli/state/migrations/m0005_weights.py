"""Weights: the aggregation input, computed vectors, submissions, chain hyperparameters."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE score_reports (
            validator TEXT NOT NULL,
            challenge_id TEXT NOT NULL,
            miner TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 1000000000),
            received_ms INTEGER NOT NULL,
            PRIMARY KEY (epoch, challenge_id, miner, validator)
        )"""
    )
    db.execute(
        """CREATE TABLE weight_vectors (
            netuid INTEGER NOT NULL,
            mechid INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            snapshot_block INTEGER NOT NULL,
            vector_hash TEXT NOT NULL,
            weights TEXT NOT NULL,
            u16 TEXT NOT NULL,
            detail TEXT NOT NULL,
            computed_ms INTEGER NOT NULL,
            PRIMARY KEY (netuid, mechid, epoch)
        )"""
    )
    db.execute(
        """CREATE TABLE weight_submissions (
            id INTEGER PRIMARY KEY,
            netuid INTEGER NOT NULL,
            mechid INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            hotkey TEXT NOT NULL,
            vector_hash TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'submitted', 'confirmed', 'failed', 'missed')),
            path TEXT NOT NULL,
            block INTEGER,
            message TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX weight_submissions_epoch ON weight_submissions (netuid, mechid, epoch)")
    db.execute(
        """CREATE TABLE chain_hyperparams (
            netuid INTEGER NOT NULL,
            block INTEGER NOT NULL,
            tempo INTEGER NOT NULL,
            max_weight_limit INTEGER NOT NULL,
            min_allowed_weights INTEGER NOT NULL,
            weights_rate_limit INTEGER NOT NULL,
            commit_reveal INTEGER NOT NULL,
            mechanism_count INTEGER NOT NULL,
            owner_hotkey TEXT NOT NULL,
            PRIMARY KEY (netuid, block)
        )"""
    )
