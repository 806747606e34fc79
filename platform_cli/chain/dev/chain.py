"""The embedded dev chain: one SQLite file that the bittensor SDK reads and writes.

Several validator processes on one machine share one chain by opening the same file
(WAL mode, busy timeout). Blocks advance on the wall clock: the head is
``start_block + offset + (now - genesis) // block_time`` read from the file, so every
process sees the same head without a block producer; ``advance`` moves the offset.
Extrinsics are applied in the head block, after its epoch (a real chain includes a
transaction in a later block than the one its sender saw).

State is kept by block (``store``): reads at an older block see that block, as an
archive node answers them. The items the pallet derives (uids, permits, the epoch
schedule) come from ``state.BlockState``; the calls validators make are ruled by
``rules`` in the pallet's order; docs/dev-chain.md maps each rule to its pallet
function and says what the dev chain leaves out (drand reveals of timelocked commits
among others).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from platform_cli.chain.dev import epochs
from platform_cli.chain.dev.rules import RULES, storage_index
from platform_cli.chain.dev.state import MECHANISM_STRIDE, PALLET, BlockState
from platform_cli.chain.dev.store import FORMAT, SCHEMA, NeuronRow, Store, connect, to_json
from platform_cli.clock import now_ms
from platform_cli.core.weightrules import Refusal
from platform_cli.errors import PlatformError, StateDamaged, storage_error

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


def _open_error(exc: sqlite3.DatabaseError, path: Path, wrong: PlatformError) -> PlatformError:
    """A machine fault (read-only, full disk...) as itself; anything else as ``wrong``."""
    fault = storage_error(exc, path.parent, path)
    return wrong if fault is None or isinstance(fault, StateDamaged) else fault


class DevChain:
    """One open dev chain file; ``substrate.DevSubstrate`` puts the SDK's protocol on it."""

    def __init__(self, path: Path, clock: Callable[[], int] = now_ms) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise PlatformError(f"no dev chain at {self.path}: run `platform chain dev init` first")
        self._clock = clock
        self._lock = threading.RLock()
        wrong = PlatformError(
            f"{self.path} is not a dev chain of this version (format {FORMAT}): "
            "remove it and run `platform chain dev init`"
        )
        try:
            self._conn = connect(self.path)
        except sqlite3.DatabaseError as exc:
            raise _open_error(exc, self.path, wrong) from None
        self._store = Store(self._conn)
        try:
            version = self._meta("format")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise _open_error(exc, self.path, wrong) from None
        if version != FORMAT:
            self._conn.close()
            raise wrong

    # -- file and clock -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path,
        *,
        start_block: int,
        block_time_ms: int,
        clock: Callable[[], int] = now_ms,
        setup: Callable[[DevChain], None] | None = None,
    ) -> DevChain:
        """Build the chain in a temporary file, run ``setup`` on it, then link it into place.

        A failure at any step leaves no file at ``path``; two concurrent inits cannot
        both win (the link is exclusive).
        """
        path = Path(path)
        if path.exists():
            raise PlatformError(f"a dev chain already exists at {path}; remove it to start over")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            conn = connect(temporary)
            with conn:
                conn.executescript(SCHEMA)
                meta = {
                    "format": FORMAT,
                    "genesis_ms": clock(),
                    "block_time_ms": block_time_ms,
                    "start_block": start_block,
                    "offset": 0,
                }
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
                )
            conn.close()
            building = cls(temporary, clock)
            try:
                if setup is not None:
                    setup(building)
            finally:
                building.release()
            try:
                os.link(temporary, path)
            except FileExistsError:
                raise PlatformError(
                    f"a dev chain already exists at {path}; remove it to start over"
                ) from None
            except OSError as exc:
                raise PlatformError(f"cannot create the dev chain at {path}: {exc.strerror}") from None
        finally:
            for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        return cls(path, clock)

    def release(self) -> None:
        """Close the file (``close`` is the SDK protocol's, which keeps it open)."""
        self._conn.close()

    def _meta(self, key: str) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

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
        with self._transaction():
            head = self.head()
            if head + blocks > MAX_BLOCK:
                raise PlatformError(
                    f"cannot advance by {blocks} blocks from block {head}: "
                    f"the dev chain ends at block {MAX_BLOCK} (block numbers are u32)"
                )
            offset = self._meta("offset")
            self._conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'offset'", [json.dumps(offset + blocks)]
            )
        return self.head()

    def block_time_ms(self) -> int:
        return int(self._meta("block_time_ms"))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def _write(self) -> Iterator[BlockState]:
        """One write at the head, after the head block's epochs (materialised first)."""
        with self._transaction():
            tx = BlockState(self._store, self.head())
            tx.materialize()
            yield tx

    def at(self, block: int | None = None) -> BlockState:
        """The chain as ``block`` (default: the head) sees it, for reads."""
        return BlockState(self._store, self.head() if block is None else block)

    # -- administration (what genesis, the sudo key or the subnet owner do) --------------------
    def put(self, pallet: str, item: str, params: list[Any], value: Any) -> None:
        """Write a storage item at the head; a ``Tempo`` write keeps ``LastEpochBlock``
        (``set_tempo_unchecked``)."""
        with self._write() as tx:
            if (pallet, item) == (PALLET, "Tempo"):
                self._set_anchor_tempo(tx, int(params[0]), int(value), reset=False)
            else:
                tx.put(item, params, value, pallet)

    @staticmethod
    def _set_anchor_tempo(tx: BlockState, netuid: int, tempo: int, *, reset: bool) -> None:
        state = tx.epoch(netuid)
        if state is None:
            raise PlatformError(f"netuid {netuid} does not exist on the dev chain")
        updated = epochs.with_tempo(state, tempo) if reset else replace(state, tempo=tempo)
        tx.set_anchor(netuid, updated, tx.permits(netuid))

    def add_subnet(
        self, netuid: int, owner_hotkey: str, owner_coldkey: str, hyperparams: dict[str, Any]
    ) -> None:
        unknown = sorted(set(hyperparams) - set(DEFAULT_HYPERPARAMS))
        if unknown:
            raise PlatformError(f"unknown dev chain hyperparameter {unknown[0]!r}")
        values = {**DEFAULT_HYPERPARAMS, **hyperparams}
        with self._write() as tx:
            for item, value in values.items():
                if item != "Tempo":
                    tx.put(item, [netuid], value)
            tx.put("NetworksAdded", [netuid], True)
            tx.put("SubnetOwnerHotkey", [netuid], owner_hotkey)
            tx.put("SubnetOwner", [netuid], owner_coldkey)
            tx.put("TokenSymbol", [netuid], list("α".encode()))
            tx.set_anchor(netuid, epochs.created(tx.block, netuid, int(values["Tempo"])), [])

    def register(
        self, netuid: int, hotkey: str, coldkey: str, stake_rao: int = 0, *, genesis: bool = False
    ) -> int:
        """``register_neuron``: append, or on a full subnet replace the weakest neuron.

        The neuron to replace is the lowest-stake, oldest one other than the owner's
        hotkey (the pallet prunes by pruning score and immunity; the dev chain has no
        emissions to score). Registration stamps ``LastUpdate`` (weights within the rate
        limit of it are refused) and leaves the uid without a permit until an epoch.
        ``genesis`` neurons (the seed's) are part of the initial state: never rate limited.
        """
        with self._write() as tx:
            if not tx.item("NetworksAdded", [netuid]):
                raise PlatformError(f"netuid {netuid} does not exist on the dev chain")
            rows = tx.neurons(netuid)
            if any(n.hotkey == hotkey for n in rows):
                raise PlatformError(f"hotkey {hotkey} is already registered on netuid {netuid}")
            mechanisms = int(tx.item("MechanismCountCurrent", [netuid]) or 1)
            if len(rows) < int(tx.item("MaxAllowedUids", [netuid]) or 0):
                uid = len(rows)
            else:
                owner = tx.item("SubnetOwnerHotkey", [netuid])
                prunable = sorted(
                    (n for n in rows if n.hotkey != owner),
                    key=lambda n: (n.stake_rao, n.registered_at, n.uid),
                )
                if not prunable:
                    raise PlatformError(
                        f"NoNeuronIdAvailable: netuid {netuid} is full and only its owner is registered"
                    )
                uid = prunable[0].uid
                self._clear_neuron(tx, netuid, uid, mechanisms)
            tx.put_neuron(netuid, NeuronRow(uid, hotkey, coldkey, stake_rao, tx.block))
            for mecid in range(0 if genesis else mechanisms):
                index = storage_index(netuid, mecid)
                last = list(tx.item("LastUpdate", [index]) or [])
                last += [0] * (uid + 1 - len(last))
                last[uid] = tx.block
                tx.put("LastUpdate", [index], last)
        return uid

    @staticmethod
    def _clear_neuron(tx: BlockState, netuid: int, uid: int, mechanisms: int) -> None:
        """``clear_neuron``: its weights removed, weights for it zeroed, its permit revoked."""
        for mecid in range(mechanisms):
            index = storage_index(netuid, mecid)
            tx.delete("Weights", [index, uid])
            for key, row in list(tx.store.entries(PALLET, "Weights", tx.block)):
                if key[0] == index and any(d == uid for d, _ in row):
                    tx.put("Weights", key, [[d, 0 if d == uid else w] for d, w in row])
        tx.revoke_permit(netuid, uid)

    def set_stake(self, netuid: int, hotkey: str, stake_rao: int) -> None:
        with self._write() as tx:
            row = next((n for n in tx.neurons(netuid) if n.hotkey == hotkey), None)
            if row is None:
                raise PlatformError(f"hotkey {hotkey} is not registered on netuid {netuid}")
            tx.put_neuron(netuid, replace(row, stake_rao=stake_rao))

    def grant_permits(self, netuid: int) -> None:
        """Permits from the current stakes, as an epoch would assign them (the seed's genesis)."""
        with self._write() as tx:
            tx.grant_permits(netuid)

    def set_tempo(self, netuid: int, tempo: int) -> epochs.EpochState:
        """``AdminUtils::sudo_set_tempo`` by root: any tempo, ``LastEpochBlock`` reset to now."""
        with self._write() as tx:
            state = tx.epoch(netuid)
            if state is None:
                raise PlatformError(f"SubnetDoesNotExist: netuid {netuid} does not exist on the dev chain")
            window = int(tx.item("AdminFreezeWindow", []))
            if state.in_admin_freeze_window(window):
                raise PlatformError(
                    f"AdminActionProhibitedDuringWeightsWindow: the next epoch of netuid {netuid} is "
                    f"within {window} blocks (or triggered); try again after it"
                )
            self._set_anchor_tempo(tx, netuid, tempo, reset=True)
            return epochs.with_tempo(state, tempo)

    def trigger_epoch(self, netuid: int) -> epochs.EpochState:
        """``trigger_epoch`` by the subnet owner: an epoch ``AdminFreezeWindow`` blocks from now."""
        with self._write() as tx:
            state = tx.epoch(netuid)
            if state is None:
                raise PlatformError(f"MechanismDoesNotExist: netuid {netuid} does not exist on the dev chain")
            window = int(tx.item("AdminFreezeWindow", []))
            refusal = epochs.trigger_refusal(
                state, bool(tx.item("CommitRevealWeightsEnabled", [netuid])), window
            )
            if refusal:
                raise PlatformError(refusal)
            triggered = epochs.triggered(state, window)
            tx.set_anchor(netuid, triggered, tx.permits(netuid))
            return triggered

    # -- extrinsics --------------------------------------------------------------------------
    def apply(
        self, module: str, function: str, params: dict[str, Any], signer: str
    ) -> tuple[int, Refusal | None]:
        """Run one call at the head; (block, the refusal or None). A ``pool`` refusal is
        not included: it is recorded but consumes no nonce, as the pool would drop it."""
        with self._write() as tx:
            rule = RULES.get((module, function))
            refusal = (
                rule(tx, params, signer)
                if rule
                else Refusal("CallUnavailable", "pool", f"{module}.{function} is not provided", "BadRequest")
            )
            self._conn.execute(
                "INSERT INTO extrinsics (block, module, function, signer, params, success, included, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    tx.block,
                    module,
                    function,
                    signer,
                    to_json(params),
                    int(refusal is None),
                    int(refusal is None or refusal.stage != "pool"),
                    str(refusal or ""),
                ],
            )
            return tx.block, refusal

    def extrinsics(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, block, module, function, signer, success, included, error FROM extrinsics "
                "ORDER BY id DESC LIMIT ?",
                [limit],
            ).fetchall()
        keys = ("id", "block", "module", "function", "signer", "success", "included", "error")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def nonce(self, address: str) -> int:
        with self._lock:
            return self._conn.execute(
                "SELECT COUNT(*) FROM extrinsics WHERE signer = ? AND included = 1", [address]
            ).fetchone()[0]

    # -- reads ---------------------------------------------------------------------------------
    def read(self, pallet: str, item: str, params: list[Any], block: int | None = None) -> Any:
        with self._lock:
            view = self.at(block)
            return view.get(item, list(params)) if pallet == PALLET else view.item(item, list(params), pallet)

    def read_map(
        self, pallet: str, item: str, prefix: list[Any], block: int | None = None
    ) -> list[tuple[Any, Any]]:
        """Entries one key deeper than ``prefix``, as ``(last key, value)``."""
        with self._lock:
            view = self.at(block)
            if (pallet, item) in ((PALLET, "Uids"), (PALLET, "Keys")) and len(prefix) == 1:
                rows = view.neurons(prefix[0])
                return [(n.hotkey, n.uid) if item == "Uids" else (n.uid, n.hotkey) for n in rows]
            out = [
                (key[-1], value)
                for key, value in view.store.entries(pallet, item, view.block)
                if key[: len(prefix)] == prefix and len(key) == len(prefix) + 1
            ]
        return sorted(out, key=lambda kv: json.dumps(kv[0]))

    def epoch(self, netuid: int, block: int | None = None) -> epochs.EpochState | None:
        with self._lock:
            return self.at(block).epoch(netuid)

    def metagraph(self, netuid: int, block: int | None = None) -> dict[str, Any] | None:
        """The ``SubnetInfoRuntimeApi.get_metagraph`` record, shaped as the runtime returns it."""
        with self._lock:
            view = self.at(block)
            state = view.epoch(netuid)
            if state is None:
                return None
            rows = view.neurons(netuid)
            n = len(rows)
            last_update = list(view.item("LastUpdate", [netuid]) or [])
            stakes = [r.stake_rao for r in rows]
            return {
                "netuid": netuid,
                "name": list(b"platform-devnet"),
                "symbol": list("α".encode()),
                "block": view.block,
                "tempo": state.tempo,
                "last_step": state.last_step_block,
                "blocks_since_last_step": state.blocks_since_last_step,
                "owner_hotkey": view.item("SubnetOwnerHotkey", [netuid]),
                "owner_coldkey": view.item("SubnetOwner", [netuid]),
                "network_registered_at": 0,
                "num_uids": n,
                "max_uids": view.item("MaxAllowedUids", [netuid]),
                "hotkeys": [r.hotkey for r in rows],
                "coldkeys": [r.coldkey for r in rows],
                "active": [True] * n,
                "validator_permit": view.permits(netuid),
                "last_update": (last_update + [0] * n)[:n],
                "block_at_registration": [r.registered_at for r in rows],
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
            view = self.at()
            for item, label in items.items():
                for key, value in view.store.entries(PALLET, item, view.block):
                    if key[0] % MECHANISM_STRIDE == netuid:
                        counts[label] += len(value)
        return counts

    # -- block hashes ----------------------------------------------------------------------------
    def _hash_prefix(self) -> str:
        return hashlib.blake2b(
            f"platform-devchain:{self._meta('genesis_ms')}".encode(), digest_size=28
        ).hexdigest()

    def block_hash_of(self, block: int) -> str:
        """This chain's hash of ``block``: a genesis-specific prefix and the block number."""
        return "0x" + self._hash_prefix() + f"{block:08x}"

    def block_of(self, block_hash: str) -> int:
        text = str(block_hash).removeprefix("0x")
        if len(text) != 64 or not text.startswith(self._hash_prefix()):
            raise PlatformError(f"block hash {block_hash} is not a block of the dev chain {self.path}")
        return int(text[56:], 16)
