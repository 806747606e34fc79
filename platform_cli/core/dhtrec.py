"""DHT record rules, one per namespace, and the value store's budget.

Keys come in two forms. People and commands use the human form:

- ``/sub/<sha256 hex>``: content-addressed submissions; the value must hash to the key.
- ``/eval/<ss58>/<name>`` and ``/ckpt/<ss58>/<name>``: signed records, the wire form of
  an envelope of kind ``dht.evaluation`` or ``dht.checkpoint`` (kinds used for nothing
  else, so a signature made for a DHT record is never valid as a gossip message, nor the
  reverse) whose body is ``{"key": <the human key>, "data": ...}`` (so a record cannot be
  moved to another key), signed by the validator the key names (so no validator can
  overwrite another's record). Among valid records for a key the newest (timestamp, then
  sequence) of that signer wins.

The DHT stores every record under the compact form of its key: the namespace, then the
SHA-256 digest (of the content for ``/sub/``, of the human key for signed namespaces) in
unpadded base64url: ``/sub/<43 characters>``, 48 or 49 bytes. Standard Kademlia peers
look a key up with FIND_NODE before they put it, and py-libp2p 0.8.1 answers FIND_NODE
only for keys of at most 50 bytes that are not multihashes: a 69-byte ``/sub/<hex>``
could be read but not put by other implementations. A binary multihash after the
namespace would be shorter still, but py-libp2p decodes every PUT_VALUE key as UTF-8 and
resets the stream otherwise, so binary keys cannot be stored at our own nodes; base58 of
a multihash (46 characters) would exceed 50 bytes. The validators accept compact keys
only; the signed record's body carries the human key, bound to the compact one.

Pure: the validator set, network, marks and time are inputs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from platform_cli.core import envelope as env

MAX_RECORD_BYTES = 256 * 1024
CONTENT_NAMESPACE = "sub"
SIGNED_NAMESPACES = {"eval": "dht.evaluation", "ckpt": "dht.checkpoint"}
"""Namespace -> the envelope kind its records are signed with."""
NAMESPACES = (CONTENT_NAMESPACE, *SIGNED_NAMESPACES)
MAX_KEY_BYTES = 50
"""The longest key py-libp2p 0.8.1 answers FIND_NODE for (unless it is a multihash)."""
_KEY_RE = re.compile(r"/([a-z]+)/([A-Za-z0-9_.:-]{1,128})")
_SIGNED_KEY_RE = re.compile(r"/([a-z]+)/([1-9A-HJ-NP-Za-km-z]{46,48})/([A-Za-z0-9_.:-]{1,128})")
_COMPACT_RE = re.compile(r"/([a-z]+)/([A-Za-z0-9_-]{43})")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class RecordError(ValueError):
    pass


@dataclass(frozen=True)
class SignedContext:
    network: env.Network
    validators: Collection[str]


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def split(key: str) -> tuple[str, str]:
    """(namespace, name) of a human key; for signed namespaces the name is ``<ss58>/<name>``."""
    signed = _SIGNED_KEY_RE.fullmatch(key)
    if signed and signed[1] in SIGNED_NAMESPACES:
        return signed[1], f"{signed[2]}/{signed[3]}"
    match = _KEY_RE.fullmatch(key)
    if not match or match[1] != CONTENT_NAMESPACE:
        raise RecordError(
            f"DHT key {key!r} must be /{CONTENT_NAMESPACE}/<sha256 hex> or /<namespace>/<signer ss58>/<name> "
            f"with namespace one of {tuple(SIGNED_NAMESPACES)}"
        )
    return match[1], match[2]


def check_key(key: str) -> str:
    """The namespace of a well-formed human key (a content key must be 64 hex digits)."""
    namespace, name = split(key)
    if namespace == CONTENT_NAMESPACE and not _HEX64.fullmatch(name):
        raise RecordError(f"submission key {key!r} must be /{CONTENT_NAMESPACE}/<sha256 hex of the value>")
    return namespace


def compact_namespace(key: str) -> str | None:
    """The namespace of a key in the compact (DHT) form, or None if it is not one."""
    match = _COMPACT_RE.fullmatch(key)
    if not match or match[1] not in NAMESPACES:
        return None
    digest = base64.urlsafe_b64decode(match[2] + "=")
    return match[1] if _b64(digest) == match[2] else None  # the canonical spelling only


def dht_key(key: str) -> str:
    """The compact form of ``key`` (human or compact already) under which the DHT stores it."""
    if compact_namespace(key) is not None:
        return key
    namespace = check_key(key)
    if namespace == CONTENT_NAMESPACE:
        return f"/{namespace}/{_b64(bytes.fromhex(split(key)[1]))}"
    return f"/{namespace}/{_b64(hashlib.sha256(key.encode()).digest())}"


def with_owner(key: str, signer: str) -> str:
    """``/eval/<name>`` -> ``/eval/<signer>/<name>`` (a full key is returned unchanged)."""
    match = _KEY_RE.fullmatch(key)
    if match and match[1] in SIGNED_NAMESPACES:
        return f"/{match[1]}/{signer}/{match[2]}"
    return key


def owner(key: str) -> str:
    """The ss58 a signed record's human key names (its only allowed signer)."""
    namespace, name = split(key)
    if namespace not in SIGNED_NAMESPACES:
        raise RecordError(f"DHT key {key!r} is not in a signed namespace")
    return name.split("/", 1)[0]


def content_key(value: bytes) -> str:
    """The human key of content: ``/sub/<sha256 hex>``."""
    return f"/{CONTENT_NAMESPACE}/{hashlib.sha256(value).hexdigest()}"


def check_content(key: str, value: bytes) -> None:
    """``key`` (compact) must be the content address of ``value``."""
    if compact_namespace(key) != CONTENT_NAMESPACE:
        raise RecordError(
            f"submission key {key!r} must be /{CONTENT_NAMESPACE}/<base64url sha256 of the value>"
        )
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError(f"record of {len(value)} bytes exceeds {MAX_RECORD_BYTES}")
    if dht_key(content_key(value)) != key:
        raise RecordError(f"value does not hash to its key {key!r}")


Mark = tuple[int, int]
"""(timestamp, sequence) of the newest signed record seen for a key."""


def check_signed(
    key: str,
    value: bytes,
    ctx: SignedContext,
    *,
    verify_signature: env.SignatureVerifier,
    now_ms: int,
    newest_seen: Mark | None = None,
) -> env.Envelope:
    """Validate a signed record stored under the compact ``key``; ``newest_seen`` is the
    mark of the newest record seen for it (an older one is refused, even if that newer
    record has left the store)."""
    namespace = compact_namespace(key)
    if namespace not in SIGNED_NAMESPACES:
        raise RecordError(f"DHT key {key!r} is not the compact key of a signed namespace")
    try:
        envelope = env.from_wire(value, max_size=MAX_RECORD_BYTES)
        policy = env.VerifyPolicy(
            ctx.network, {SIGNED_NAMESPACES[namespace]}, max_size=MAX_RECORD_BYTES, max_age_ms=None
        )
        env.verify(envelope, policy, verify_signature=verify_signature, now_ms=now_ms)
    except env.EnvelopeError as exc:
        raise RecordError(f"record for {key!r} refused: {exc}") from None
    body = envelope.body
    if not isinstance(body, dict) or set(body) != {"key", "data"} or not isinstance(body["key"], str):
        raise RecordError(f"record body for {key!r} must be {{'key': <its key>, 'data': ...}}")
    human = body["key"]
    try:
        bound = split(human)[0] == namespace and dht_key(human) == key
    except RecordError:
        bound = False
    if not bound:
        raise RecordError(f"record body names key {human!r}, which is not stored under {key!r}")
    if envelope.signer != owner(human):
        raise RecordError(f"record for {human!r} is signed by {envelope.signer}, not by the key's owner")
    if envelope.signer not in ctx.validators:
        raise RecordError(f"record for {human!r} is signed by {envelope.signer}, not a validator")
    if newest_seen is not None and (envelope.ts_ms, envelope.seq) < newest_seen:
        raise RecordError(f"record for {human!r} is older than the newest one seen for it")
    return envelope


def rank(key: str, value: bytes) -> tuple[str, int, int] | None:
    """(signer, ts, seq) of a signed record for the compact ``key`` whose body binds it to
    ``key`` and which its key's owner signed (shape only: validate before trusting)."""
    try:
        envelope = env.from_wire(value, max_size=MAX_RECORD_BYTES)
        human = envelope.body.get("key") if isinstance(envelope.body, dict) else None
        if not isinstance(human, str) or dht_key(human) != key or owner(human) != envelope.signer:
            return None
    except (env.EnvelopeError, RecordError):
        return None
    return envelope.signer, envelope.ts_ms, envelope.seq


def select_signed(key: str, values: list[bytes]) -> int:
    """Index of the newest record among already-validated ones, by the key's owner only."""
    ranks = [(r[1], r[2]) if (r := rank(key, v)) else (-1, -1) for v in values]
    return ranks.index(max(ranks))


@dataclass
class PutQuota:
    """Puts a remote peer may make at us per ``window_ms``: a count and a byte budget per
    peer, and for all peers of a pool together. Peers bound to validators draw on their
    own pool, so that fresh peer ids (free to make) exhausting the pool of unknown peers
    cannot lock validators out."""

    per_peer_puts: int = 64
    per_peer_bytes: int = 4 << 20
    total_puts: int = 1024
    total_bytes: int = 64 << 20
    unknown_total_puts: int = 256
    unknown_total_bytes: int = 16 << 20
    window_ms: int = 60_000
    _used: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """peer (or a pool: ' validators', ' unknown') -> (window start, puts, bytes)."""

    def charge(self, peer: str, size: int, now_ms: int, *, validator: bool = False) -> str | None:
        """Count one put of ``size`` bytes by ``peer``; why it is over quota, or None."""
        self._expire(now_ms)
        pool = " validators" if validator else " unknown"
        limits = (self.total_puts, self.total_bytes) if validator else (
            self.unknown_total_puts, self.unknown_total_bytes
        )  # fmt: skip
        peer_start, peer_puts, peer_bytes = self._used.get(peer, (now_ms, 0, 0))
        pool_start, pool_puts, pool_bytes = self._used.get(pool, (now_ms, 0, 0))
        if peer_puts + 1 > self.per_peer_puts or peer_bytes + size > self.per_peer_bytes:
            return f"peer {peer} exceeds {self.per_peer_puts} puts / {self.per_peer_bytes} bytes a window"
        if pool_puts + 1 > limits[0] or pool_bytes + size > limits[1]:
            return f"the{pool} peers together exceed the DHT put quota"
        self._used[peer] = (peer_start, peer_puts + 1, peer_bytes + size)
        self._used[pool] = (pool_start, pool_puts + 1, pool_bytes + size)
        return None

    def _expire(self, now_ms: int) -> None:
        for peer in [p for p, (start, _, _) in self._used.items() if now_ms - start >= self.window_ms]:
            del self._used[peer]


OWN, SIGNED, CONTENT = "own", "signed", "content"


@dataclass
class StoreBudget:
    """Which records the value store keeps when it fills, apart by kind.

    - ``own``: what this node put or fetched for itself; never evicted by anything.
    - ``signed``: other validators' signed records, at most ``signer_records`` and
      ``signer_bytes`` per signer (a signer's new record evicts its own oldest) and
      ``signed_records`` / ``signed_bytes`` in all (the oldest record of the signer holding
      the most goes first). Unsigned records never evict them.
    - ``content``: unsigned content from others, at most ``content_records`` and
      ``content_bytes``; a new one evicts the oldest content.

    ``admit`` says which keys to evict to make room (the record itself when it cannot fit).
    """

    signer_records: int = 64
    signer_bytes: int = 8 << 20
    signed_records: int = 4096
    signed_bytes: int = 256 << 20
    content_records: int = 1024
    content_bytes: int = 64 << 20
    _entries: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """key -> (kind, signer, size), oldest first."""

    def admit(self, key: str, kind: str, size: int, signer: str = "") -> list[str]:
        """Record ``key`` (replacing its previous entry); the keys to evict."""
        if self._entries.get(key, (CONTENT,))[0] == OWN:
            kind = OWN  # once ours, always ours
        limit = {CONTENT: self.content_bytes, SIGNED: min(self.signer_bytes, self.signed_bytes)}.get(kind)
        if limit is not None and size > limit:
            return [key]  # evicting others would not make room
        self._entries.pop(key, None)
        self._entries[key] = (kind, signer, size)
        evicted: list[str] = []
        if kind == CONTENT:
            evicted = self._trim(lambda e: e[0] == CONTENT, self.content_records, self.content_bytes)
        elif kind == SIGNED:
            evicted = self._trim(
                lambda e: e[0] == SIGNED and e[1] == signer, self.signer_records, self.signer_bytes
            )
            evicted += self._trim_signed()
        for gone in evicted:
            del self._entries[gone]
        return evicted

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)

    def kind(self, key: str) -> str | None:
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def _trim(
        self, member: Callable[[tuple[str, str, int]], bool], max_records: int, max_bytes: int
    ) -> list[str]:
        keys = [k for k, e in self._entries.items() if member(e)]
        total = sum(self._entries[k][2] for k in keys)
        evicted = []
        while keys and (len(keys) > max_records or total > max_bytes):
            oldest = keys.pop(0)
            total -= self._entries[oldest][2]
            evicted.append(oldest)
        return evicted

    def _trim_signed(self) -> list[str]:
        signed = {k: e for k, e in self._entries.items() if e[0] == SIGNED}
        count, total = len(signed), sum(e[2] for e in signed.values())
        evicted = []
        while signed and (count > self.signed_records or total > self.signed_bytes):
            held: dict[str, int] = {}
            for _, signer, _ in signed.values():
                held[signer] = held.get(signer, 0) + 1
            heaviest = max(held, key=lambda s: held[s])
            oldest = next(k for k, e in signed.items() if e[1] == heaviest)
            count, total = count - 1, total - signed.pop(oldest)[2]
            evicted.append(oldest)
        return evicted

    def __len__(self) -> int:
        return len(self._entries)
