"""KadDHT namespace validators (strict: our namespaces only), its value store, put quotas,
stream slots and the SQLite mirror.

py-libp2p registers ``pk`` and ``ipns`` validators unless handed its validator set: we
hand it one with only our namespaces, so a peer cannot store public keys or IPNS records
at us. Remote puts are charged to the sending peer (the stream handler tells the
validator who is putting through a context variable), from the pool of validators' peers
or the smaller pool of unknown peers. Each inbound DHT stream holds a slot of the same
two pools for at most ``STREAM_S`` seconds, and must send its first byte within
``FIRST_BYTE_S`` and every later chunk within ``READ_S``.

The value store keeps records apart by kind (``dhtrec.StoreBudget``): our own, other
validators' signed records, unsigned content; content never evicts the others. The
newest (timestamp, sequence) of every signed key is remembered in SQLite (its mark), so
an older record is refused even after the newer one left the store. Only our own puts
and gets are mirrored in SQLite; a mirrored record that leaves the value store leaves
the mirror.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

import trio
from libp2p.kad_dht.kad_dht import PROTOCOL_ID
from libp2p.kad_dht.value_store import ValueStore
from libp2p.records.validator import NamespacedValidator, Validator

from platform_cli.clock import now_ms
from platform_cli.core import dhtrec
from platform_cli.identity import verify_signature
from platform_cli.p2p import store
from platform_cli.p2p.admission import Admission
from platform_cli.p2p.slots import SlotPools
from platform_cli.state.db import State

log = logging.getLogger("platform.p2p.dht")
FIRST_BYTE_S = 2.0
READ_S = 5.0
STREAM_S = 30.0
VALIDATOR_STREAMS = 8
UNKNOWN_STREAMS = 4
"""Together within py-libp2p's own limit of 12 inbound DHT streams, which then never
turns anyone away: the choice of whom to serve is ours."""
MARKS_PER_SIGNER = 4096
_putting_peer: contextvars.ContextVar[str] = contextvars.ContextVar("putting_peer", default="")


class Marks:
    """The newest (ts, seq) seen per signed key, in memory and in ``p2p_dht_marks``.

    A signer keeps at most ``per_signer`` marks (its oldest are forgotten past that:
    a validator that makes more keys than that can roll its own oldest ones back)."""

    def __init__(self, state: State, per_signer: int = MARKS_PER_SIGNER) -> None:
        self.state = state
        self.per_signer = per_signer
        self._marks = store.dht_marks(state)

    def get(self, key: str) -> dhtrec.Mark | None:
        found = self._marks.get(key)
        return (found[1], found[2]) if found else None

    def advance(self, key: str, signer: str, ts_ms: int, seq: int) -> None:
        current = self.get(key)
        if current is not None and (ts_ms, seq) <= current:
            return
        self._marks.pop(key, None)
        self._marks[key] = (signer, ts_ms, seq)  # newest last
        store.save_dht_mark(self.state, key, signer, ts_ms, seq)
        mine = [k for k, mark in self._marks.items() if mark[0] == signer]
        if len(mine) > self.per_signer:
            forgotten = mine[: len(mine) - self.per_signer]
            for old in forgotten:
                del self._marks[old]
            store.forget_dht_marks(self.state, forgotten)


class ContentValidator(Validator):
    def validate(self, key: str, value: bytes) -> None:
        dhtrec.check_content(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        return 0  # all valid values for a content key are the same bytes


class SignedValidator(Validator):
    def __init__(self, admission: Admission, marks: Marks) -> None:
        self.admission = admission
        self.marks = marks

    def validate(self, key: str, value: bytes) -> None:
        ctx = dhtrec.SignedContext(self.admission.network, self.admission.validators())
        dhtrec.check_signed(
            key,
            value,
            ctx,
            verify_signature=verify_signature,
            now_ms=now_ms(),
            newest_seen=self.marks.get(key),
        )

    def select(self, key: str, values: list[bytes]) -> int:
        return dhtrec.select_signed(key, values)


class PlatformValidator(NamespacedValidator):
    """Our namespaces only, and a quota on what remote peers put."""

    def __init__(self, admission: Admission, quota: dhtrec.PutQuota, marks: Marks) -> None:
        validators: dict[str, Validator] = {dhtrec.CONTENT_NAMESPACE: ContentValidator()}
        for namespace in dhtrec.SIGNED_NAMESPACES:
            validators[namespace] = SignedValidator(admission, marks)
        super().__init__(validators, strict_validation=True)
        self.admission = admission
        self.quota = quota
        self.value_store: Any = None
        """Set by ``install``: a copy of a record we hold already costs nothing."""

    def _held(self, key: str, value: bytes) -> bool:
        record = self.value_store.get(key.encode()) if self.value_store is not None else None
        return record is not None and record.value == value

    def validate(self, key: str, value: bytes) -> None:
        super().validate(key, value)  # invalid puts are refused before they cost any quota
        peer = _putting_peer.get()
        if peer and not self._held(key, value):
            validator = peer in self.admission.validator_peers()
            problem = self.quota.charge(peer, len(key) + len(value), now_ms(), validator=validator)
            if problem:
                raise dhtrec.RecordError(f"put of {key!r} refused: {problem}")


class RecordStore(ValueStore):
    """py-libp2p's value store, evicting by ``dhtrec.StoreBudget`` and keeping marks."""

    def __init__(self, host: Any, budget: dhtrec.StoreBudget, marks: Marks) -> None:
        super().__init__(host, host.get_id())
        self.budget = budget
        self.marks = marks

    def _evict_if_full(self) -> None:
        """Eviction is the budget's (py-libp2p's evicts the oldest record of any kind)."""

    def put(self, key: bytes, value: bytes, validity: float = 0.0) -> None:
        """A record we put (or fetched) ourselves."""
        super().put(key, value, validity)
        self._account(key, value, dhtrec.OWN)

    def put_record(self, key: bytes, record: Any) -> None:
        """A record from the network (a remote put, or the best answer of a get)."""
        if self._account(key, record.value, None):
            super().put_record(key, record)

    def _account(self, key: bytes, value: bytes, kind: str | None) -> bool:
        text = key.decode()
        signed = dhtrec.compact_namespace(text) in dhtrec.SIGNED_NAMESPACES
        ranked = dhtrec.rank(text, value) if signed else None
        if kind is None:
            kind = dhtrec.SIGNED if signed else dhtrec.CONTENT
        evicted = self.budget.admit(text, kind, len(value), ranked[0] if ranked else "")
        if text in evicted:
            log.info("record not kept key=%s: larger than what its kind may hold", text)
            return False
        for gone in evicted:
            self.store.pop(gone.encode(), None)
        if evicted:
            log.debug("evicted keys=%s for key=%s", evicted, text)
        if ranked is not None:
            self.marks.advance(text, *ranked)
        return True

    def remove(self, key: bytes) -> bool:
        self.budget.remove(key.decode())
        return super().remove(key)

    def cleanup_expired(self) -> int:
        now = time.time()  # py-libp2p's validity is a wall-clock time
        for key in [k for k, (_, validity) in self.store.items() if validity < now]:
            self.budget.remove(key.decode())
        return super().cleanup_expired()


class DeadlineStream:
    """A stream whose reads must deliver within a deadline: ``first_s`` for the first,
    ``each_s`` for every one after (an overdue read raises trio.TooSlowError)."""

    def __init__(self, stream: Any, first_s: float, each_s: float) -> None:
        self._stream = stream
        self._deadline = first_s
        self._each = each_s

    async def read(self, n: int | None = None) -> bytes:
        with trio.fail_after(self._deadline):
            data = await self._stream.read(n)
        self._deadline = self._each
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def validator(admission: Admission, marks: Marks, quota: dhtrec.PutQuota | None = None) -> PlatformValidator:
    """The validator set to hand KadDHT (with ``validator_changed=True``)."""
    return PlatformValidator(admission, quota or dhtrec.PutQuota(), marks)


def install(
    host: Any, dht: Any, admission: Admission, marks: Marks, budget: dhtrec.StoreBudget | None = None
) -> None:
    """Give ``dht`` our value store, and serve the DHT protocol through slots that name
    the remote peer (for its quota) and bound its stream in time."""
    dht.value_store = RecordStore(host, budget or dhtrec.StoreBudget(), marks)
    dht.validator.value_store = dht.value_store
    pools = SlotPools(VALIDATOR_STREAMS, UNKNOWN_STREAMS, per_peer=2)
    dht.stream_slots = pools

    async def handle(stream: Any) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        with pools.slot(peer, peer in admission.validator_peers()) as taken:
            if not taken:
                log.info("dht stream refused peer=%s: its pool is full", peer)
                await _reset(stream)
                return
            _putting_peer.set(peer)
            with trio.move_on_after(STREAM_S) as scope:
                await dht.handle_stream(DeadlineStream(stream, FIRST_BYTE_S, READ_S))
            if scope.cancelled_caught:
                log.info("dht stream closed peer=%s: open longer than %s s", peer, STREAM_S)
                await _reset(stream)

    host.set_stream_handler(PROTOCOL_ID, handle)


async def _reset(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception as exc:  # already closed by the peer
        log.debug("dht stream reset failed: %s", exc)


def restore(dht: Any, admission: Admission) -> int:
    """Load the SQLite mirror back into the DHT's value store (records still valid only)."""
    count = 0
    for key, value in store.mirrored(admission.state):
        try:
            dht.validator.validate(key, value)
        except Exception:
            store.forget_record(admission.state, key)
            continue
        dht.value_store.put(key.encode(), value)
        count += 1
    return count


def prune_mirror(dht: Any, admission: Admission) -> int:
    """Drop mirror rows whose records the value store evicted or expired."""
    gone = [key for key, _ in store.mirrored(admission.state) if dht.value_store.get(key.encode()) is None]
    for key in gone:
        store.forget_record(admission.state, key)
    return len(gone)
