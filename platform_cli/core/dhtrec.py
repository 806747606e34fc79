"""DHT record rules, one per namespace.

- ``/sub/<sha256 hex>``: content-addressed submissions; the value must hash to the key.
- ``/eval/<ss58>/<name>`` and ``/ckpt/<ss58>/<name>``: signed records, the wire form of
  an envelope of kind ``evaluation`` or ``checkpoint`` whose body is ``{"key": <the full
  DHT key>, "data": ...}`` (so a record cannot be moved to another key), signed by the
  validator the key names (so no validator can overwrite another's record). Among valid
  records for a key the newest (timestamp, then sequence) of that signer wins.

Pure: the validator set, network and time are inputs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass, field

from platform_cli.core import envelope as env

MAX_RECORD_BYTES = 256 * 1024
CONTENT_NAMESPACE = "sub"
SIGNED_NAMESPACES = {"eval": "evaluation", "ckpt": "checkpoint"}
NAMESPACES = (CONTENT_NAMESPACE, *SIGNED_NAMESPACES)
_KEY_RE = re.compile(r"^/([a-z]+)/([A-Za-z0-9_.:-]{1,128})$")
_SIGNED_KEY_RE = re.compile(r"^/([a-z]+)/([1-9A-HJ-NP-Za-km-z]{46,48})/([A-Za-z0-9_.:-]{1,128})$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class RecordError(ValueError):
    pass


@dataclass(frozen=True)
class SignedContext:
    network: env.Network
    validators: Collection[str]


def split(key: str) -> tuple[str, str]:
    """(namespace, name) of a key; for signed namespaces the name is ``<ss58>/<name>``."""
    signed = _SIGNED_KEY_RE.match(key)
    if signed and signed[1] in SIGNED_NAMESPACES:
        return signed[1], f"{signed[2]}/{signed[3]}"
    match = _KEY_RE.match(key)
    if not match or match[1] != CONTENT_NAMESPACE:
        raise RecordError(
            f"DHT key {key!r} must be /{CONTENT_NAMESPACE}/<sha256 hex> or /<namespace>/<signer ss58>/<name> "
            f"with namespace one of {tuple(SIGNED_NAMESPACES)}"
        )
    return match[1], match[2]


def check_key(key: str) -> str:
    """The namespace of a well-formed key of ours (a content key must be 64 hex digits)."""
    namespace, name = split(key)
    if namespace == CONTENT_NAMESPACE and not _HEX64.match(name):
        raise RecordError(f"submission key {key!r} must be /{CONTENT_NAMESPACE}/<sha256 hex of the value>")
    return namespace


def with_owner(key: str, signer: str) -> str:
    """``/eval/<name>`` -> ``/eval/<signer>/<name>`` (a full key is returned unchanged)."""
    match = _KEY_RE.match(key)
    if match and match[1] in SIGNED_NAMESPACES:
        return f"/{match[1]}/{signer}/{match[2]}"
    return key


def owner(key: str) -> str:
    """The ss58 a signed record's key names (its only allowed signer)."""
    namespace, name = split(key)
    if namespace not in SIGNED_NAMESPACES:
        raise RecordError(f"DHT key {key!r} is not in a signed namespace")
    return name.split("/", 1)[0]


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
    if namespace not in SIGNED_NAMESPACES:
        raise RecordError(f"DHT key {key!r} is not in a signed namespace")
    try:
        envelope = env.from_wire(value, max_size=MAX_RECORD_BYTES)
        policy = env.VerifyPolicy(
            ctx.network, {SIGNED_NAMESPACES[namespace]}, max_size=MAX_RECORD_BYTES, max_age_ms=None
        )
        env.verify(envelope, policy, verify_signature=verify_signature, now_ms=now_ms)
    except env.EnvelopeError as exc:
        raise RecordError(f"record for {key!r} refused: {exc}") from None
    if envelope.signer != owner(key):
        raise RecordError(f"record for {key!r} is signed by {envelope.signer}, not by the key's owner")
    if envelope.signer not in ctx.validators:
        raise RecordError(f"record for {key!r} is signed by {envelope.signer}, not a validator")
    body = envelope.body
    if not isinstance(body, dict) or body.get("key") != key or set(body) != {"key", "data"}:
        raise RecordError(f"record body must be {{'key': {key!r}, 'data': ...}}")
    return envelope


def select_signed(key: str, values: list[bytes]) -> int:
    """Index of the newest record among already-validated ones, by the key's owner only."""
    signer = owner(key)

    def rank(value: bytes) -> tuple[int, int]:
        try:
            envelope = env.from_wire(value, max_size=MAX_RECORD_BYTES)
        except env.EnvelopeError:
            return (-1, -1)
        if envelope.signer != signer:
            return (-1, -1)
        return (envelope.ts_ms, envelope.seq)

    ranks = [rank(v) for v in values]
    return ranks.index(max(ranks))


@dataclass
class PutQuota:
    """Puts a remote peer may make at us per ``window_ms``: a count and a byte budget,
    per peer and for all peers together (fresh peer ids are free to make)."""

    per_peer_puts: int = 64
    per_peer_bytes: int = 4 << 20
    total_puts: int = 1024
    total_bytes: int = 64 << 20
    window_ms: int = 60_000
    _used: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """peer ('' for everyone) -> (window start, puts, bytes)."""

    def charge(self, peer: str, size: int, now_ms: int) -> str | None:
        """Count one put of ``size`` bytes by ``peer``; why it is over quota, or None."""
        self._expire(now_ms)
        peer_start, peer_puts, peer_bytes = self._used.get(peer, (now_ms, 0, 0))
        all_start, all_puts, all_bytes = self._used.get("", (now_ms, 0, 0))
        if peer_puts + 1 > self.per_peer_puts or peer_bytes + size > self.per_peer_bytes:
            return f"peer {peer} exceeds {self.per_peer_puts} puts / {self.per_peer_bytes} bytes a window"
        if all_puts + 1 > self.total_puts or all_bytes + size > self.total_bytes:
            return "all peers together exceed the DHT put quota"
        self._used[peer] = (peer_start, peer_puts + 1, peer_bytes + size)
        self._used[""] = (all_start, all_puts + 1, all_bytes + size)
        return None

    def _expire(self, now_ms: int) -> None:
        for peer in [p for p, (start, _, _) in self._used.items() if now_ms - start >= self.window_ms]:
            del self._used[peer]
