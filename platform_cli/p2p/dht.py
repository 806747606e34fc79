"""KadDHT namespace validators (strict: no other namespace is accepted) and the mirror."""

from __future__ import annotations

from typing import Any

from libp2p.records.validator import Validator

from platform_cli.clock import now_ms
from platform_cli.core import dhtrec
from platform_cli.identity import verify_signature
from platform_cli.p2p import store
from platform_cli.p2p.admission import Admission


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
        return dhtrec.select_signed(values)


def install(dht: Any, admission: Admission) -> None:
    dht.register_validator(dhtrec.CONTENT_NAMESPACE, ContentValidator())
    for namespace in dhtrec.SIGNED_NAMESPACES:
        dht.register_validator(namespace, SignedValidator(admission))


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


def mirror_new(dht: Any, admission: Admission, known: dict[bytes, bytes]) -> None:
    """Copy records that are new or changed in the value store (ours or stored at us by peers)."""
    for key in dht.value_store.get_keys():
        record = dht.value_store.get(key)
        if record is not None and known.get(key) != record.value:
            store.mirror_record(admission.state, key.decode(), record.value)
            known[key] = record.value
