"""KadDHT namespace validators (strict: our namespaces only), put quotas and the mirror.

py-libp2p registers ``pk`` and ``ipns`` validators unless handed its validator set: we
hand it one with only our namespaces, so a peer cannot store public keys or IPNS records
at us. Remote puts are charged to the sending peer (the stream handler tells the
validator who is putting through a context variable). Only our own puts and gets are
mirrored in SQLite; a mirrored record that leaves the value store leaves the mirror.
"""

from __future__ import annotations

import contextvars
from typing import Any

from libp2p.kad_dht import value_store as value_store_module
from libp2p.kad_dht.kad_dht import PROTOCOL_ID
from libp2p.records.validator import NamespacedValidator, Validator

from platform_cli.clock import now_ms
from platform_cli.core import dhtrec
from platform_cli.identity import verify_signature
from platform_cli.p2p import store
from platform_cli.p2p.admission import Admission

MAX_STORED_RECORDS = 1024
"""Value store entries, at most 256 MiB of records (py-libp2p's default, 50 000 records of
up to 256 KiB, would let peers fill 12 GiB of memory)."""
_putting_peer: contextvars.ContextVar[str] = contextvars.ContextVar("putting_peer", default="")


class ContentValidator(Validator):
    def validate(self, key: str, value: bytes) -> None:
        dhtrec.check_content(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        return 0  # all valid values for a content key are the same bytes


class SignedValidator(Validator):
    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def validate(self, key: str, value: bytes) -> None:
        ctx = dhtrec.SignedContext(self.admission.network, self.admission.validators())
        dhtrec.check_signed(key, value, ctx, verify_signature=verify_signature, now_ms=now_ms())

    def select(self, key: str, values: list[bytes]) -> int:
        return dhtrec.select_signed(key, values)


class PlatformValidator(NamespacedValidator):
    """Our namespaces only, and a quota on what remote peers put."""

    def __init__(self, admission: Admission, quota: dhtrec.PutQuota) -> None:
        validators: dict[str, Validator] = {dhtrec.CONTENT_NAMESPACE: ContentValidator()}
        for namespace in dhtrec.SIGNED_NAMESPACES:
            validators[namespace] = SignedValidator(admission)
        super().__init__(validators, strict_validation=True)
        self.quota = quota
        self.value_store: Any = None
        """Set by ``charge_remote_puts``: a copy of a record we hold already costs nothing."""

    def _held(self, key: str, value: bytes) -> bool:
        record = self.value_store.get(key.encode()) if self.value_store is not None else None
        return record is not None and record.value == value

    def validate(self, key: str, value: bytes) -> None:
        super().validate(key, value)  # invalid puts are refused before they cost any quota
        peer = _putting_peer.get()
        if peer and not self._held(key, value):
            problem = self.quota.charge(peer, len(key) + len(value), now_ms())
            if problem:
                raise dhtrec.RecordError(f"put of {key!r} refused: {problem}")


def validator(admission: Admission, quota: dhtrec.PutQuota | None = None) -> PlatformValidator:
    """The validator set to hand KadDHT (with ``validator_changed=True``)."""
    value_store_module.MAX_VALUE_STORE_SIZE = MAX_STORED_RECORDS
    return PlatformValidator(admission, quota or dhtrec.PutQuota())


def charge_remote_puts(host: Any, dht: Any) -> None:
    """Serve the DHT protocol through a handler that names the remote peer."""
    dht.validator.value_store = dht.value_store

    async def handle(stream: Any) -> None:
        _putting_peer.set(stream.muxed_conn.peer_id.to_base58())
        await dht.handle_stream(stream)

    host.set_stream_handler(PROTOCOL_ID, handle)


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
