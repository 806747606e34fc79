"""The dev chain's SQLite file: storage and neurons kept by block.

Every write is a row stamped with the block it happened in; a read at block ``B`` sees
the newest row at or before ``B``. So the chain answers reads at any block since its
genesis as that block saw them (what an archive node does), and the head is simply the
newest block. A removed storage entry is a row with a NULL value.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 2  # the file layout; files of another format are refused with a clear error
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE storage (
    pallet TEXT NOT NULL, item TEXT NOT NULL, key TEXT NOT NULL, block INTEGER NOT NULL, value TEXT,
    PRIMARY KEY (pallet, item, key, block));
CREATE TABLE neurons (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, block INTEGER NOT NULL, hotkey TEXT NOT NULL,
    coldkey TEXT NOT NULL, stake_rao INTEGER NOT NULL, registered_at INTEGER NOT NULL,
    PRIMARY KEY (netuid, uid, block));
CREATE TABLE extrinsics (
    id INTEGER PRIMARY KEY, block INTEGER NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
    signer TEXT NOT NULL, params TEXT NOT NULL, success INTEGER NOT NULL, included INTEGER NOT NULL,
    error TEXT NOT NULL);
"""


@dataclass(frozen=True)
class NeuronRow:
    uid: int
    hotkey: str
    coldkey: str
    stake_rao: int
    registered_at: int


def key_of(params: Any) -> str:
    return json.dumps(list(params or []), separators=(",", ":"))


def to_json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, (bytes, bytearray)):
            return "0x" + bytes(obj).hex()
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"cannot store {type(obj).__name__}")

    return json.dumps(value, default=default, separators=(",", ":"))


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


class Store:
    """Reads at a block and writes stamped with a block, over one connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def get(self, pallet: str, item: str, params: list[Any], block: int) -> Any:
        row = self.conn.execute(
            "SELECT value FROM storage WHERE pallet = ? AND item = ? AND key = ? AND block <= ? "
            "ORDER BY block DESC LIMIT 1",
            [pallet, item, key_of(params), block],
        ).fetchone()
        return json.loads(row[0]) if row and row[0] is not None else None

    def put(self, pallet: str, item: str, params: list[Any], value: Any, block: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO storage VALUES (?, ?, ?, ?, ?)",
            [pallet, item, key_of(params), block, None if value is None else to_json(value)],
        )

    def entries(self, pallet: str, item: str, block: int) -> Iterator[tuple[list[Any], Any]]:
        """Every live entry of ``item`` at ``block`` as ``(key params, value)``."""
        rows = self.conn.execute(
            "SELECT key, value FROM storage s WHERE pallet = ? AND item = ? AND block = ("
            "SELECT MAX(block) FROM storage t WHERE t.pallet = s.pallet AND t.item = s.item "
            "AND t.key = s.key AND t.block <= ?)",
            [pallet, item, block],
        ).fetchall()
        for key_text, value_text in rows:
            if value_text is not None:
                yield json.loads(key_text), json.loads(value_text)

    def neurons(self, netuid: int, block: int) -> list[NeuronRow]:
        rows = self.conn.execute(
            "SELECT uid, hotkey, coldkey, stake_rao, registered_at FROM neurons n WHERE netuid = ? AND block = ("
            "SELECT MAX(block) FROM neurons m WHERE m.netuid = n.netuid AND m.uid = n.uid AND m.block <= ?) "
            "ORDER BY uid",
            [netuid, block],
        ).fetchall()
        return [NeuronRow(*row) for row in rows]

    def put_neuron(self, netuid: int, row: NeuronRow, block: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO neurons VALUES (?, ?, ?, ?, ?, ?, ?)",
            [netuid, row.uid, block, row.hotkey, row.coldkey, row.stake_rao, row.registered_at],
        )

    def netuids(self, block: int) -> list[int]:
        return sorted(
            int(key[0]) for key, added in self.entries("SubtensorModule", "NetworksAdded", block) if added
        )
