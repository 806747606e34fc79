"""Signed envelopes: the one format for everything a key signs.

An envelope binds a body to its context: a domain tag, the network (netuid and genesis
id), the message kind, the signer (ss58 and scheme), a per-signer sequence number and a
timestamp in milliseconds. The signature covers the canonical encoding of
``[DOMAIN, netuid, genesis, kind, signer, scheme, seq, ts_ms, body]``, so nothing can be
moved to another network, kind or sequence without breaking it.

Two transports carry the same envelope:

- the wire form, a canonical CBOR map (gossip, DHT, sync), strictly decoded;
- the file form, a JSON object with the same fields and the signature in hex (signed
  updates on disk, readable and diffable). Its body must hold no ``bytes``.

This module does no I/O and holds no keys: signature checks are delegated to a
``SignatureVerifier`` callable, and the replay check takes the signer's persisted
sequence state and the current time as values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from platform_cli.core import canonical
from platform_cli.core.replay import SequenceWindow

DOMAIN = "platform/envelope/v1"
SCHEMES = ("sr25519", "ed25519")
SIGNATURE_BYTES = 64
DEFAULT_MAX_SIZE = 256 * 1024
_KIND_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_WIRE_FIELDS = {"v", "netuid", "genesis", "kind", "signer", "scheme", "seq", "ts", "body", "sig"}
_FILE_FIELDS = _WIRE_FIELDS - {"sig"} | {"signature"}

SignatureVerifier = Callable[[str, str, bytes, bytes], bool]
"""verify(scheme, ss58, message, signature) -> True only for a valid signature."""


class EnvelopeError(ValueError):
    """An envelope was refused; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Network:
    """The network a message belongs to."""

    netuid: int
    genesis: str


@dataclass(frozen=True)
class Envelope:
    network: Network
    kind: str
    signer: str
    scheme: str
    seq: int
    ts_ms: int
    body: Any
    signature: bytes = field(default=b"", repr=False)

    def signing_payload(self) -> bytes:
        return signing_payload(
            self.network, self.kind, self.signer, self.scheme, self.seq, self.ts_ms, self.body
        )

    def to_wire(self) -> bytes:
        return canonical.encode(
            {
                "v": 1,
                "netuid": self.network.netuid,
                "genesis": self.network.genesis,
                "kind": self.kind,
                "signer": self.signer,
                "scheme": self.scheme,
                "seq": self.seq,
                "ts": self.ts_ms,
                "body": self.body,
                "sig": self.signature,
            }
        )

    def message_id(self) -> str:
        """sha256 of the wire form: stable across nodes, used for deduplication."""
        return hashlib.sha256(self.to_wire()).hexdigest()

    def to_file_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "netuid": self.network.netuid,
            "genesis": self.network.genesis,
            "kind": self.kind,
            "signer": self.signer,
            "scheme": self.scheme,
            "seq": self.seq,
            "ts": self.ts_ms,
            "body": self.body,
            "signature": self.signature.hex(),
        }


def signing_payload(
    network: Network, kind: str, signer: str, scheme: str, seq: int, ts_ms: int, body: Any
) -> bytes:
    return canonical.encode([DOMAIN, network.netuid, network.genesis, kind, signer, scheme, seq, ts_ms, body])


def seal(
    *,
    network: Network,
    kind: str,
    signer: str,
    scheme: str,
    seq: int,
    ts_ms: int,
    body: Any,
    sign: Callable[[bytes], bytes],
) -> Envelope:
    """Build and sign an envelope; ``sign`` is the signer's raw signing function."""
    unsigned = Envelope(network, kind, signer, scheme, seq, ts_ms, body)
    _check_shape(unsigned)
    return Envelope(network, kind, signer, scheme, seq, ts_ms, body, sign(unsigned.signing_payload()))


def from_wire(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """Parse the wire form. Shape only: call :func:`verify` before trusting it."""
    if len(data) > max_size:
        raise EnvelopeError("oversized", f"message of {len(data)} bytes exceeds {max_size}")
    try:
        value = canonical.decode(data)
    except canonical.CanonicalError as exc:
        raise EnvelopeError("non_canonical", f"malformed envelope: {exc}") from None
    if not isinstance(value, dict) or set(value) != _WIRE_FIELDS:
        raise EnvelopeError("malformed", "envelope fields are not the expected set")
    sig = value["sig"]
    if not isinstance(sig, bytes):
        raise EnvelopeError("malformed", "signature is not a byte string")
    return _build(value, sig)


def from_file_json(obj: Any) -> Envelope:
    """Parse the file form (already JSON-decoded, floats refused by the reader)."""
    if not isinstance(obj, dict):
        raise EnvelopeError("malformed", "a signed envelope must be a JSON object")
    missing = _FILE_FIELDS - set(obj)
    extra = set(obj) - _FILE_FIELDS
    if missing or extra:
        detail = ", ".join(
            [f"missing {name!r}" for name in sorted(missing)]
            + [f"unexpected {name!r}" for name in sorted(extra)]
        )
        raise EnvelopeError("malformed", f"envelope fields: {detail}")
    signature = obj["signature"]
    if not isinstance(signature, str) or not re.fullmatch(f"[0-9a-f]{{{2 * SIGNATURE_BYTES}}}", signature):
        raise EnvelopeError("malformed", f"signature must be {2 * SIGNATURE_BYTES} lowercase hex digits")
    try:
        canonical.check_value(obj["body"], path="body")
    except canonical.CanonicalError as exc:
        raise EnvelopeError("non_canonical", str(exc)) from None
    return _build(obj, bytes.fromhex(signature))


def _build(value: dict[str, Any], signature: bytes) -> Envelope:
    if value["v"] != 1:
        raise EnvelopeError("malformed", f"unsupported envelope version {value['v']!r}")
    envelope = Envelope(
        network=Network(value["netuid"], value["genesis"]),
        kind=value["kind"],
        signer=value["signer"],
        scheme=value["scheme"],
        seq=value["seq"],
        ts_ms=value["ts"],
        body=value["body"],
        signature=signature,
    )
    _check_shape(envelope)
    return envelope


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _check_shape(envelope: Envelope) -> None:
    net = envelope.network
    if not _is_uint(net.netuid) or net.netuid > 0xFFFF:
        raise EnvelopeError("malformed", f"netuid {net.netuid!r} is not an integer in 0..65535")
    if not isinstance(net.genesis, str) or not 0 < len(net.genesis) <= 128:
        raise EnvelopeError("malformed", "genesis must be a string of 1..128 characters")
    if not isinstance(envelope.kind, str) or not _KIND_RE.fullmatch(envelope.kind):
        raise EnvelopeError("malformed", f"kind {envelope.kind!r} is not a valid kind name")
    if envelope.scheme not in SCHEMES:
        raise EnvelopeError("malformed", f"scheme {envelope.scheme!r} is not one of {SCHEMES}")
    if not isinstance(envelope.signer, str) or not 40 <= len(envelope.signer) <= 60:
        raise EnvelopeError("malformed", f"signer {envelope.signer!r} is not an ss58 address")
    if not _is_uint(envelope.seq) or not _is_uint(envelope.ts_ms):
        raise EnvelopeError("malformed", "seq and ts must be non-negative 63-bit integers")


@dataclass(frozen=True)
class VerifyPolicy:
    """What a receiver accepts.

    ``max_age_ms`` None means no age limit (offline-signed registry updates); the future
    skew is always bounded, so a signer cannot pre-date messages far ahead.
    """

    network: Network
    kinds: Collection[str]
    max_size: int = DEFAULT_MAX_SIZE
    max_age_ms: int | None = 5 * 60 * 1000
    max_future_ms: int = 5 * 60 * 1000


def verify(
    envelope: Envelope,
    policy: VerifyPolicy,
    *,
    verify_signature: SignatureVerifier,
    now_ms: int,
    window: SequenceWindow | None = None,
) -> None:
    """Raise EnvelopeError unless the envelope is acceptable under ``policy``.

    Checks, cheapest first: size, kind, network, timestamp window, replay (when the
    signer's ``window`` is given), then the signature.
    """
    size = len(envelope.to_wire())
    if size > policy.max_size:
        raise EnvelopeError("oversized", f"message of {size} bytes exceeds {policy.max_size}")
    if envelope.kind not in policy.kinds:
        raise EnvelopeError("wrong_kind", f"kind {envelope.kind!r} is not accepted here")
    if envelope.network != policy.network:
        raise EnvelopeError(
            "wrong_network",
            f"signed for netuid {envelope.network.netuid} genesis {envelope.network.genesis!r}, "
            f"this network is netuid {policy.network.netuid} genesis {policy.network.genesis!r}",
        )
    if envelope.ts_ms > now_ms + policy.max_future_ms:
        raise EnvelopeError("stale", "timestamp is too far in the future")
    if policy.max_age_ms is not None and envelope.ts_ms < now_ms - policy.max_age_ms:
        raise EnvelopeError("stale", "timestamp is older than the accepted window")
    if window is not None:
        problem = window.check(envelope.seq)
        if problem:
            raise EnvelopeError("replay", f"sequence {envelope.seq} from {envelope.signer}: {problem}")
    if len(envelope.signature) != SIGNATURE_BYTES or not verify_signature(
        envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
    ):
        raise EnvelopeError("bad_signature", f"signature does not verify for {envelope.signer}")


def strict_json_loads(text: str | bytes) -> Any:
    """Parse JSON for signed files: floats, NaN and duplicate keys are refused."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise EnvelopeError("malformed", "duplicate key in JSON object")
        return dict(pairs)

    def no_float(token: str) -> Any:
        raise EnvelopeError("non_canonical", f"number {token} is not an integer")

    try:
        return json.loads(
            text, object_pairs_hook=no_duplicates, parse_float=no_float, parse_constant=no_float
        )
    except EnvelopeError:
        raise  # a hook's refusal, with its own reason (an EnvelopeError is a ValueError)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EnvelopeError("malformed", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise EnvelopeError("malformed", "JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise EnvelopeError("malformed", f"not acceptable JSON: {exc}") from None
