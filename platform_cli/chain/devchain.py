"""The embedded dev chain: the bittensor SDK's ``Substrate`` protocol over one SQLite file.

Several validator processes on one machine share one chain by opening the same file
(WAL mode, busy timeout). Blocks advance on the wall clock: the head is
``start_block + offset + (now - genesis) // block_time`` read from the file, so every
process sees the same head without a block producer; ``advance`` moves the offset.

Storage is kept the way the SDK reads it: ``(pallet, item, params) -> value`` rows
(values as JSON), plus a neuron table from which the per-subnet items (``Uids``,
``Keys``, ``ValidatorPermit``, ``SubnetworkN``) and the ``get_metagraph`` runtime call
are derived, and the epoch items (``LastEpochBlock``, ``SubnetEpochIndex``...) computed
from the block and tempo with the pallet's formula. Extrinsics the SDK submits are
checked with the chain's rules (registration, validator permit, rate limit, weight
count, max weight limit) and applied, or refused with the chain's error names.
State is kept at the head only: reads at an older block hash see the head.

Commit-reveal: salted hash commits (``commit_weights`` / ``reveal_weights``) are checked
and revealed exactly as subtensor does. Timelocked commits (what the SDK's ``SetWeights``
sends when commit-reveal is on) are stored as the chain stores them but NEVER revealed:
revealing needs the drand beacon's signature for the commit's round, which cannot be
fetched offline. They stay pending; :meth:`DevChain.pending_commits` reports them as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from platform_cli.clock import now_ms
from platform_cli.core.epoch import Schedule
from platform_cli.errors import PlatformError

MECHANISM_STRIDE = 4096  # GLOBAL_MAX_SUBNET_COUNT: storage index = mechid * stride + netuid
MAX_BLOCK = 2**32 - 1  # block numbers are u32 on subtensor
DEFAULT_HYPERPARAMS: dict[str, Any] = {
    "Tempo": 360,
    "WeightsSetRateLimit": 100,
    "MinAllowedWeights": 1,
    "MaxWeightsLimit": 65535,
    "CommitRevealWeightsEnabled": False,
    "RevealPeriodEpochs": 1,
    "SubnetEpochConsensus": "Yuma",
    "MechanismCountCurrent": 1,
    "MaxAllowedValidators": 64,
    "MaxAllowedUids": 256,
    "WeightsVersionKey": 0,
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS storage (
    pallet TEXT NOT NULL, item TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (pallet, item, key));
CREATE TABLE IF NOT EXISTS neurons (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, coldkey TEXT NOT NULL,
    stake_rao INTEGER NOT NULL, registered_at INTEGER NOT NULL,
    PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
CREATE TABLE IF NOT EXISTS extrinsics (
    id INTEGER PRIMARY KEY, block INTEGER NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL,
    signer TEXT NOT NULL, params TEXT NOT NULL, success INTEGER NOT NULL, error TEXT NOT NULL);
"""


def _key(params: Any) -> str:
    return json.dumps(list(params or []), separators=(",", ":"))


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, (bytes, bytearray)):
            return "0x" + bytes(obj).hex()
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"cannot store {type(obj).__name__}")

    return json.dumps(value, default=default, separators=(",", ":"))


class DevChain:
    """One open dev chain file; ``devsubstrate.DevSubstrate`` puts the SDK's protocol on it."""

    def __init__(self, path: Path, clock: Callable[[], int] = now_ms) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise PlatformError(f"no dev chain at {self.path}: run `platform chain dev init` first")
        self._clock = clock
        self._lock = threading.RLock()
        self._conn = _connect(self.path)
        if self._meta("genesis_ms") is None:
            raise PlatformError(f"{self.path} is not an initialised dev chain")

    # -- file and clock -------------------------------------------------------------------
    @classmethod
    def create(
        cls, path: Path, *, start_block: int, block_time_ms: int, clock: Callable[[], int] = now_ms
    ) -> DevChain:
        path = Path(path)
        if path.exists():
            raise PlatformError(f"a dev chain already exists at {path}; remove it to start over")
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(path)
        with conn:
            conn.executescript(_SCHEMA)
            meta = {
                "genesis_ms": clock(),
                "block_time_ms": block_time_ms,
                "start_block": start_block,
                "offset": 0,
            }
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        conn.close()
        return cls(path, clock)

    def release(self) -> None:
        """Close the file (``close`` is the SDK protocol's, which keeps it open)."""
        self._conn.close()

    def _meta(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def head(self) -> int:
        with self._lock:
            rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        meta = {k: json.loads(v) for k, v in rows.items()}
        elapsed = max(0, self._clock() - meta["genesis_ms"])
        ticks = elapsed // meta["block_time_ms"] if meta["block_time_ms"] > 0 else 0
        head = meta["start_block"] + meta["offset"] + ticks
        if head > MAX_BLOCK:
            raise PlatformError(
                f"the dev chain {self.path} is past its last block {MAX_BLOCK} (head {head}): "
                "remove it and run `platform chain dev init`"
            )
        return head

    def advance(self, blocks: int) -> int:
        if blocks < 0:
            raise PlatformError(f"cannot advance by {blocks} blocks: the chain only moves forward")
        with self._write() as conn:
            head = self.head()
            if head + blocks > MAX_BLOCK:
                raise PlatformError(
                    f"cannot advance by {blocks} blocks from block {head}: "
                    f"the dev chain ends at block {MAX_BLOCK} (block numbers are u32)"
                )
            offset = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'offset'").fetchone()[0])
            conn.execute("UPDATE meta SET value = ? WHERE key = 'offset'", [json.dumps(offset + blocks)])
        return self.head()

    def block_time_ms(self) -> int:
        return int(self._meta("block_time_ms"))

    # -- seeding -----------------------------------------------------------------------
    def put(self, pallet: str, item: str, params: list[Any], value: Any) -> None:
        with self._write() as conn:
            self._put(conn, pallet, item, params, value)

    @staticmethod
    def _put(conn: sqlite3.Connection, pallet: str, item: str, params: list[Any], value: Any) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO storage VALUES (?, ?, ?, ?)", [pallet, item, _key(params), _json(value)]
        )

    def add_subnet(
        self, netuid: int, owner_hotkey: str, owner_coldkey: str, hyperparams: dict[str, Any]
    ) -> None:
        unknown = sorted(set(hyperparams) - set(DEFAULT_HYPERPARAMS))
        if unknown:
            raise PlatformError(f"unknown dev chain hyperparameter {unknown[0]!r}")
        with self._write() as conn:
            for item, value in {**DEFAULT_HYPERPARAMS, **hyperparams}.items():
                self._put(conn, "SubtensorModule", item, [netuid], value)
            self._put(conn, "SubtensorModule", "NetworksAdded", [netuid], True)
            self._put(conn, "SubtensorModule", "SubnetOwnerHotkey", [netuid], owner_hotkey)
            self._put(conn, "SubtensorModule", "SubnetOwner", [netuid], owner_coldkey)
            self._put(conn, "SubtensorModule", "TokenSymbol", [netuid], list("α".encode()))

    def register(self, netuid: int, hotkey: str, coldkey: str, stake_rao: int = 0) -> int:
        """Register ``hotkey``; on a full subnet the lowest-stake, oldest neuron (not the owner) gives way."""
        with self._write() as conn:
            if conn.execute(
                "SELECT 1 FROM neurons WHERE netuid = ? AND hotkey = ?", [netuid, hotkey]
            ).fetchone():
                raise PlatformError(f"hotkey {hotkey} is already registered on netuid {netuid}")
            max_uids = self._item(conn, "MaxAllowedUids", [netuid])
            if max_uids is None:
                raise PlatformError(f"netuid {netuid} does not exist on the dev chain")
            count = conn.execute("SELECT COUNT(*) FROM neurons WHERE netuid = ?", [netuid]).fetchone()[0]
            if count < max_uids:
                uid = count
            else:
                owner = self._item(conn, "SubnetOwnerHotkey", [netuid])
                uid = conn.execute(
                    "SELECT uid FROM neurons WHERE netuid = ? AND hotkey != ? "
                    "ORDER BY stake_rao, registered_at, uid LIMIT 1",
                    [netuid, owner or ""],
                ).fetchone()[0]
                conn.execute("DELETE FROM neurons WHERE netuid = ? AND uid = ?", [netuid, uid])
                for mech in range(int(self._item(conn, "MechanismCountCurrent", [netuid]) or 1)):
                    index = mech * MECHANISM_STRIDE + netuid
                    conn.execute(
                        "DELETE FROM storage WHERE pallet = 'SubtensorModule' AND item = 'Weights' AND key = ?",
                        [_key([index, uid])],
                    )
            conn.execute(
                "INSERT INTO neurons VALUES (?, ?, ?, ?, ?, ?)",
                [netuid, uid, hotkey, coldkey, stake_rao, self.head()],
            )
        return uid

    def set_stake(self, netuid: int, hotkey: str, stake_rao: int) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE neurons SET stake_rao = ? WHERE netuid = ? AND hotkey = ?",
                [stake_rao, netuid, hotkey],
            )

    # -- derived reads --------------------------------------------------------------------
    def _item(
        self, conn: sqlite3.Connection, item: str, params: list[Any], pallet: str = "SubtensorModule"
    ) -> Any:
        row = conn.execute(
            "SELECT value FROM storage WHERE pallet = ? AND item = ? AND key = ?",
            [pallet, item, _key(params)],
        ).fetchone()
        return json.loads(row[0]) if row else None

    def neurons(self, netuid: int) -> list[tuple[int, str, str, int]]:
        with self._lock:
            return self._conn.execute(
                "SELECT uid, hotkey, coldkey, stake_rao FROM neurons WHERE netuid = ? ORDER BY uid", [netuid]
            ).fetchall()

    def _permits(self, netuid: int, rows: list[tuple[int, str, str, int]]) -> list[bool]:
        top = int(self._item(self._conn, "MaxAllowedValidators", [netuid]) or 0)
        ranked = sorted((r for r in rows if r[3] > 0), key=lambda r: (-r[3], r[0]))[:top]
        chosen = {r[0] for r in ranked}
        return [r[0] in chosen for r in rows]

    def _derived(self, item: str, params: list[Any]) -> tuple[bool, Any]:
        """Items computed from the neuron table or the block; (handled, value)."""
        if item in ("Uids", "Keys", "ValidatorPermit", "SubnetworkN", "Owner"):
            if item == "Owner":
                row = self._conn.execute(
                    "SELECT coldkey FROM neurons WHERE hotkey = ? LIMIT 1", params
                ).fetchone()
                return True, row[0] if row else None
            netuid = params[0]
            rows = self.neurons(netuid)
            if item == "Uids":
                return True, next((r[0] for r in rows if r[1] == params[1]), None)
            if item == "Keys":
                return True, next((r[1] for r in rows if r[0] == params[1]), None)
            if item == "SubnetworkN":
                return True, len(rows)
            return True, self._permits(netuid, rows) if rows else None
        if item in ("LastEpochBlock", "SubnetEpochIndex", "BlocksSinceLastStep", "PendingEpochAt"):
            tempo = self._item(self._conn, "Tempo", params[:1])
            if tempo is None:
                return True, None
            schedule, block = Schedule(params[0], int(tempo)), self.head()
            epoch = schedule.epoch_of(block)
            start = max(0, schedule.start(epoch))
            values = {
                "LastEpochBlock": start,
                "SubnetEpochIndex": epoch,
                "BlocksSinceLastStep": block - start,
            }
            return True, values.get(item, 0)
        return False, None

    def metagraph(self, netuid: int) -> dict[str, Any] | None:
        """The ``SubnetInfoRuntimeApi.get_metagraph`` record, shaped as the runtime returns it."""
        with self._lock:
            tempo = self._item(self._conn, "Tempo", [netuid])
            if tempo is None:
                return None
            rows = self.neurons(netuid)
            block = self.head()
            n = len(rows)
            last_update = list(self._item(self._conn, "LastUpdate", [netuid]) or [])
            last_update = (last_update + [0] * n)[:n]
            stakes = [r[3] for r in rows]
            owner_hotkey = self._item(self._conn, "SubnetOwnerHotkey", [netuid])
            _, last_step = self._derived("LastEpochBlock", [netuid])
            return {
                "netuid": netuid,
                "name": list(b"platform-devnet"),
                "symbol": list("α".encode()),
                "block": block,
                "tempo": tempo,
                "last_step": last_step,
                "blocks_since_last_step": block - last_step,
                "owner_hotkey": owner_hotkey,
                "owner_coldkey": self._item(self._conn, "SubnetOwner", [netuid]),
                "network_registered_at": 0,
                "num_uids": n,
                "max_uids": self._item(self._conn, "MaxAllowedUids", [netuid]),
                "hotkeys": [r[1] for r in rows],
                "coldkeys": [r[2] for r in rows],
                "active": [True] * n,
                "validator_permit": self._permits(netuid, rows),
                "last_update": last_update,
                "block_at_registration": [0] * n,
                "rank": [0] * n,
                "trust": [0] * n,
                "consensus": [0] * n,
                "incentives": [0] * n,
                "dividends": [0] * n,
                "pruning_score": [0] * n,
                "emission": [0] * n,
                "alpha_stake": stakes,
                "tao_stake": [0] * n,
                "total_stake": stakes,
                "axons": [None] * n,
                "identities": [None] * n,
                "tao_in": 10**12,
                "alpha_in": 10**12,
                "moving_price": {"bits": 2**32},
            }

    def pending_commits(self, netuid: int) -> dict[str, int]:
        """Unrevealed commits on ``netuid`` (all mechanisms): hash commits await a
        ``reveal_weights``; timelocked commits are never revealed by the dev chain."""
        counts = {"hash_commits": 0, "timelocked_commits_never_revealed": 0}
        items = {
            "WeightCommits": "hash_commits",
            "TimelockedWeightCommits": "timelocked_commits_never_revealed",
        }
        with self._lock:
            rows = self._conn.execute(
                "SELECT item, key, value FROM storage WHERE pallet = 'SubtensorModule' AND item IN (?, ?)",
                list(items),
            ).fetchall()
        for item, key_text, value_text in rows:
            if json.loads(key_text)[0] % MECHANISM_STRIDE == netuid:
                counts[items[item]] += len(json.loads(value_text))
        return counts

    def extrinsics(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, block, module, function, signer, success, error FROM extrinsics ORDER BY id DESC LIMIT ?",
                [limit],
            ).fetchall()
        keys = ("id", "block", "module", "function", "signer", "success", "error")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- extrinsics --------------------------------------------------------------------------
    def apply(
        self, module: str, function: str, params: dict[str, Any], signer: str
    ) -> tuple[int, str | None]:
        """Run one call at the head inside one transaction; (block, error name or None)."""
        from platform_cli.chain import devrules

        with self._write() as conn:
            block = self.head()
            rule = devrules.RULES.get((module, function))
            error = (
                rule(_Tx(self, conn, block), params, signer)
                if rule
                else f"CallUnavailable:{module}.{function}"
            )
            conn.execute(
                "INSERT INTO extrinsics (block, module, function, signer, params, success, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [block, module, function, signer, _json(params), int(error is None), error or ""],
            )
        return block, error

    # -- reads for the protocol adapter ---------------------------------------------------
    def read(self, pallet: str, item: str, params: list[Any]) -> Any:
        with self._lock:
            handled, value = self._derived(item, list(params))
            return value if handled else self._item(self._conn, item, list(params), pallet)

    def read_map(self, pallet: str, item: str, prefix: list[Any]) -> list[tuple[Any, Any]]:
        """Entries one key deeper than ``prefix``, as ``(last key, value)``."""
        if (pallet, item) == ("SubtensorModule", "Uids") and len(prefix) == 1:
            return [(r[1], r[0]) for r in self.neurons(prefix[0])]
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM storage WHERE pallet = ? AND item = ?", [pallet, item]
            ).fetchall()
        out = []
        for key_text, value_text in rows:
            key = json.loads(key_text)
            if key[: len(prefix)] == prefix and len(key) == len(prefix) + 1:
                out.append((key[-1], json.loads(value_text)))
        return sorted(out, key=lambda kv: json.dumps(kv[0]))

    def block_hash_of(self, block: int) -> str:
        genesis = self._meta("genesis_ms")
        return "0x" + hashlib.blake2b(f"{genesis}:{block}".encode(), digest_size=32).hexdigest()

    def nonce(self, address: str) -> int:
        with self._lock:
            return self._conn.execute(
                "SELECT COUNT(*) FROM extrinsics WHERE signer = ?", [address]
            ).fetchone()[0]


class _Tx:
    """What a rule sees: reads and writes inside the extrinsic's transaction."""

    def __init__(self, chain: DevChain, conn: sqlite3.Connection, block: int) -> None:
        self.chain, self.conn, self.block = chain, conn, block

    def get(self, item: str, params: list[Any]) -> Any:
        handled, value = self.chain._derived(item, params)
        return value if handled else self.chain._item(self.conn, item, params)

    def put(self, item: str, params: list[Any], value: Any) -> None:
        DevChain._put(self.conn, "SubtensorModule", item, params, value)

    def delete(self, item: str, params: list[Any]) -> None:
        self.conn.execute(
            "DELETE FROM storage WHERE pallet = 'SubtensorModule' AND item = ? AND key = ?",
            [item, _key(params)],
        )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn
