"""DHT record rules, one per namespace.

- ``/sub/<sha256 hex>``: content-addressed submissions; the value must hash to the key.
- ``/eval/<name>`` and ``/ckpt/<name>``: signed records, the wire form of an envelope of
  kind ``evaluation`` or ``checkpoint`` whose body is ``{"key": <the full DHT key>,
  "data": ...}`` (so a record cannot be moved to another key), signed by a validator of
  our network. Among valid records for a key the newest (timestamp, then sequence) wins.

Pure: the validator set, network and time are inputs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass

from platform_cli.core import envelope as env

MAX_RECORD_BYTES = 256 * 1024
CONTENT_NAMESPACE = "sub"
SIGNED_NAMESPACES = {"eval": "evaluation", "ckpt": "checkpoint"}
NAMESPACES = (CONTENT_NAMESPACE, *SIGNED_NAMESPACES)
_KEY_RE = re.compile(r"^/([a-z]+)/([A-Za-z0-9_.:-]{1,128})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class RecordError(ValueError):
    pass


@dataclass(frozen=True)
class SignedContext:
    network: env.Network
    validators: Collection[str]


def split(key: str) -> tuple[str, str]:
    match = _KEY_RE.match(key)
    if not match or match[1] not in NAMESPACES:
        raise RecordError(f"DHT key {key!r} must be /<namespace>/<name> with namespace one of {NAMESPACES}")
    return match[1], match[2]


def content_key(value: bytes) -> str:
    return f"/{CONTENT_NAMESPACE}/{hashlib.sha256(value).hexdigest()}"


def check_content(key: str, value: bytes) -> None:
    _, name = split(key)
    if not _HEX64.match(name):
        raise RecordError(f"submission key {key!r} must be /sub/<sha256 hex of the value>")
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError(f"record of {len(value)} bytes exceeds {MAX_RECORD_BYTES}")
    if hashlib.sha256(value).hexdigest() != name:
        raise RecordError(f"value does not hash to its key {key!r}")


def check_signed(
    key: str, value: bytes, ctx: SignedContext, *, verify_signature: env.SignatureVerifier, now_ms: int
) -> env.Envelope:
    namespace, _ = split(key)
    try:
        envelope = env.from_wire(value, max_size=MAX_RECORD_BYTES)
        policy = env.VerifyPolicy(
            ctx.network, {SIGNED_NAMESPACES[namespace]}, max_size=MAX_RECORD_BYTES, max_age_ms=None
        )
        env.verify(envelope, policy, verify_signature=verify_signature, now_ms=now_ms)
    except env.EnvelopeError as exc:
        raise RecordError(f"record for {key!r} refused: {exc}") from None
    if envelope.signer not in ctx.validators:
        raise RecordError(f"record for {key!r} is signed by {envelope.signer}, not a validator")
    body = envelope.body
    if not isinstance(body, dict) or body.get("key") != key or set(body) != {"key", "data"}:
        raise RecordError(f"record body must be {{'key': {key!r}, 'data': ...}}")
    return envelope


def select_signed(values: list[bytes]) -> int:
    """Index of the newest record among already-validated ones."""

    def rank(value: bytes) -> tuple[int, int]:
        try:
            envelope = env.from_wire(value, max_size=MAX_RECORD_BYTES)
        except env.EnvelopeError:
            return (-1, -1)
        return (envelope.ts_ms, envelope.seq)

    ranks = [rank(v) for v in values]
    return ranks.index(max(ranks))
