"""Consensus on a node: bundles and report sets received, committed weight vectors."""

from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE consensus_bundles (
            epoch INTEGER NOT NULL,
            signer TEXT NOT NULL,
            root TEXT NOT NULL,
            envelope BLOB NOT NULL,
            received_ms INTEGER NOT NULL,
            received_block INTEGER NOT NULL,
            PRIMARY KEY (epoch, signer)
        )"""
    )
    db.execute(
        """CREATE TABLE consensus_report_sets (
            root TEXT PRIMARY KEY,
            validator TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            body BLOB NOT NULL,
            received_ms INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE consensus_vectors (
            netuid INTEGER NOT NULL,
            mechid INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            height INTEGER NOT NULL,
            vector_hash TEXT NOT NULL,
            snapshot_block INTEGER NOT NULL,
            weights TEXT NOT NULL,
            committed_ms INTEGER NOT NULL,
            PRIMARY KEY (netuid, mechid, epoch)
        )"""
    )
