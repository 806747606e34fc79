"""Gossip topics and the admission rule for every message a peer hands us.

Theory of operation: a gossiped message is the wire form of a signed envelope. Before the
host forwards or stores it, :func:`admit` decides, cheapest check first: size, envelope
shape, the topic's kinds, network, timestamp window, per-signer rate, replay window,
signer role, signature. A refusal carries a short reason (counted per topic and reason by
the adapter). The validator set and the sudo key are inputs read from our own state,
never from what a peer says. Time is a parameter; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum

from platform_cli.core import envelope as env
from platform_cli.core.replay import SequenceWindow

TOPIC_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
"""Gossip cap per message (py-libp2p silently drops 1 MiB+; large data goes by sync)."""

ANNOUNCE_KIND = "peer.announce"
_TOPIC_RE = re.compile(r"^/platform/(\d{1,5})/([a-z]+)/(\d+)$")


class Role(Enum):
    REGISTERED = "registered"
    """Any hotkey registered on the subnet (a neuron of the newest metagraph snapshot)."""
    VALIDATOR = "validator"


@dataclass(frozen=True)
class TopicRule:
    kinds: frozenset[str]
    role: Role
    sudo_kinds: frozenset[str] = frozenset()
    """Kinds only the network's sudo key may sign (whatever ``role`` says)."""


TOPICS: Mapping[str, TopicRule] = {
    "submissions": TopicRule(frozenset({"submission"}), Role.REGISTERED),
    "evaluations": TopicRule(frozenset({"evaluation"}), Role.VALIDATOR),
    "consensus": TopicRule(
        frozenset(
            {
                "consensus.proposal",
                "consensus.prevote",
                "consensus.precommit",
                "consensus.bundle",
                "consensus.evidence",
            }
        ),
        Role.VALIDATOR,
    ),
    "registry": TopicRule(
        frozenset({"registry.update", "registry.vote"}), Role.VALIDATOR, frozenset({"registry.update"})
    ),
    "announce": TopicRule(frozenset({ANNOUNCE_KIND}), Role.VALIDATOR),
}
"""Short name -> what the topic carries and who may sign it."""


def topic_name(netuid: int, short: str) -> str:
    """The versioned topic id for ``short`` on network ``netuid``."""
    if short not in TOPICS:
        raise ValueError(f"unknown topic {short!r}: one of {', '.join(TOPICS)}")
    return f"/platform/{netuid}/{short}/{TOPIC_VERSION}"


def parse_topic(topic: str) -> tuple[int, str] | None:
    """(netuid, short name) of a topic id we know, else None."""
    match = _TOPIC_RE.match(topic)
    if not match or match[2] not in TOPICS or int(match[3]) != TOPIC_VERSION:
        return None
    return int(match[1]), match[2]


def role_ok(
    kind: str,
    signer: str,
    rule: TopicRule,
    validators: Collection[str],
    sudo: str,
    registered: Collection[str],
) -> bool:
    if kind in rule.sudo_kinds:
        return signer == sudo
    if rule.role is Role.REGISTERED:
        return signer in registered or signer in validators
    return signer in validators


@dataclass
class RateLimiter:
    """A token bucket per signer: ``rate`` messages a second, bursts up to ``burst``.

    Buckets that have refilled completely carry no information and are pruned, so
    memory stays bounded by the signers active in the last ``burst / rate`` seconds.
    """

    rate: float
    burst: int
    prune_every: int = 4096
    _buckets: dict[str, tuple[float, int]] = field(default_factory=dict)
    _calls: int = 0

    def _tokens(self, signer: str, now_ms: int) -> float:
        tokens, last = self._buckets.get(signer, (float(self.burst), now_ms))
        return min(float(self.burst), tokens + max(0, now_ms - last) * self.rate / 1000.0)

    def allow(self, signer: str, now_ms: int) -> bool:
        self._calls += 1
        if self._calls % self.prune_every == 0:
            full = [s for s in self._buckets if self._tokens(s, now_ms) >= self.burst]
            for s in full:
                del self._buckets[s]
        tokens = self._tokens(signer, now_ms)
        if tokens < 1.0:
            self._buckets[signer] = (tokens, now_ms)
            return False
        self._buckets[signer] = (tokens - 1.0, now_ms)
        return True

    def __len__(self) -> int:
        return len(self._buckets)


FORWARDER_FAULTS = frozenset(
    {
        "bad_signature",
        "oversized",
        "non_canonical",
        "malformed",
        "wrong_network",
        "wrong_kind",
        "unknown_topic",
    }
)
"""Refusals that depend on no local view (validator set, clock, windows): an honest peer
checks the same before forwarding, so a peer that hands us these is misbehaving."""


@dataclass
class PeerPenalties:
    """Counts a peer's forwarder faults; ``record`` says when one crosses ``threshold``
    within ``window_ms`` and should be cut off."""

    threshold: int = 10
    window_ms: int = 60_000
    _faults: dict[str, list[int]] = field(default_factory=dict)

    def record(self, peer: str, now_ms: int) -> bool:
        recent = [t for t in self._faults.get(peer, []) if t > now_ms - self.window_ms]
        recent.append(now_ms)
        self._faults[peer] = recent
        return len(recent) == self.threshold

    def prune(self, now_ms: int) -> None:
        """Forget peers with no fault in the window (memory bound: recently faulty peers)."""
        for peer in [p for p, times in self._faults.items() if times[-1] <= now_ms - self.window_ms]:
            del self._faults[peer]

    def __len__(self) -> int:
        return len(self._faults)


@dataclass(frozen=True)
class Context:
    """Everything the admission rule needs from our own state."""

    network: env.Network
    validators: Collection[str]
    sudo: str
    registered: Collection[str] = frozenset()
    """Hotkeys of every neuron in the newest metagraph snapshot (fresh keys cost nothing)."""
    max_bytes: int = MAX_MESSAGE_BYTES
    max_age_ms: int | None = 5 * 60 * 1000


@dataclass(frozen=True)
class Decision:
    envelope: env.Envelope | None
    reason: str = ""
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.envelope is not None


def refuse(reason: str, detail: str) -> Decision:
    return Decision(None, reason, detail)


def admit(
    data: bytes,
    short_topic: str,
    ctx: Context,
    *,
    now_ms: int,
    verify_signature: env.SignatureVerifier,
    window_for: Callable[[str, str], SequenceWindow] | None,
    limiter: RateLimiter | None = None,
) -> Decision:
    """Decide whether ``data`` gossiped on ``short_topic`` may be forwarded and stored.

    ``window_for(signer, kind)`` returns the replay window (None: no replay check).
    """
    rule = TOPICS.get(short_topic)
    if rule is None:
        return refuse("unknown_topic", f"topic {short_topic!r} is not ours")
    try:
        envelope = env.from_wire(data, max_size=ctx.max_bytes)
    except env.EnvelopeError as exc:
        return refuse(exc.reason, str(exc))
    policy = env.VerifyPolicy(
        network=ctx.network, kinds=rule.kinds, max_size=ctx.max_bytes, max_age_ms=ctx.max_age_ms
    )
    if not role_ok(envelope.kind, envelope.signer, rule, ctx.validators, ctx.sudo, ctx.registered):
        return refuse(
            "wrong_role", f"{envelope.signer} may not sign {envelope.kind!r} ({rule.role.value} only)"
        )
    try:
        window = window_for(envelope.signer, envelope.kind) if window_for is not None else None
        env.verify(envelope, policy, verify_signature=verify_signature, now_ms=now_ms, window=window)
    except env.EnvelopeError as exc:
        return refuse(exc.reason, str(exc))
    # After the signature: forgeries must not spend an honest signer's budget.
    if limiter is not None and not limiter.allow(envelope.signer, now_ms):
        return refuse("rate_limited", f"{envelope.signer} exceeds its message rate")
    return Decision(envelope)


def check_announce(envelope: env.Envelope, origin_peer: str) -> str | None:
    """Why an announcement is unacceptable, or None: it must name the peer that sent it."""
    body = envelope.body
    if not isinstance(body, dict) or not isinstance(body.get("peer_id"), str):
        return "announce body must be a map with a peer_id"
    if body["peer_id"] != origin_peer:
        return f"announce names peer {body['peer_id']} but came from {origin_peer}"
    addrs = body.get("addrs", [])
    if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
        return "announce addrs must be a list of strings"
    return None
