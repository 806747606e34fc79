"""Gossip topics and the admission rule for every message a peer hands us.

Theory of operation: a gossiped message is the wire form of a signed envelope. Before the
host forwards or stores it, :func:`admit` decides, cheapest check first: size and envelope
shape, signer role, replay window, the topic's kinds, network, timestamp window,
signature, then the signer's rate (after the signature, so that forgeries do not spend an
honest signer's budget). A refusal carries a short reason (counted per topic and reason
by the adapter). The validator set and the sudo key are inputs read from our own state,
never from what a peer says. Time is a parameter; nothing here does I/O.

Refusals are of two sorts. Some need no local view (a bad signature, a malformed or
oversized message, another network): an honest peer checks the same before forwarding,
so they are the forwarding peer's fault. Others depend on our own view (the validator
set, the clock, replay windows, budgets) and an honest peer may see differently; when
``admit`` is asked to ``blame``, such a refusal also verifies the signature, so a forgery
is refused as one whatever else is wrong with it. Every refusal costs the forwarder some
:class:`Standing` (:func:`penalty`: much for its own faults, little for a view refusal);
a peer whose points reach the ban level is cut off. Outcomes are counted in a
:class:`Tally` kept in memory and written in batches, so a flood costs no write per message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum

from platform_cli.core import envelope as env
from platform_cli.core.consensus import messages as consensus_messages
from platform_cli.core.replay import BitWindow, SequenceWindow

ReplayWindow = SequenceWindow | BitWindow

TOPIC_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
"""Gossip cap per message (py-libp2p silently drops 1 MiB+; large data goes by sync)."""

ANNOUNCE_KIND = "peer.announce"
_TOPIC_RE = re.compile(r"/platform/([0-9]{1,5})/([a-z]+)/([0-9]+)")


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
    "consensus": TopicRule(consensus_messages.KINDS, Role.VALIDATOR),
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
    match = _TOPIC_RE.fullmatch(topic)
    if not match or match[2] not in TOPICS or int(match[3]) != TOPIC_VERSION:
        return None
    return int(match[1]), match[2]


OTHER_TOPIC = "other"
"""The label counters use for a topic that is not ours (peers choose topic strings freely)."""


def topic_label(topic: str, netuid: int) -> str:
    """``topic`` if it is one of this network's topics, else :data:`OTHER_TOPIC`."""
    parsed = parse_topic(topic)
    return topic if parsed is not None and parsed[0] == netuid else OTHER_TOPIC


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
        "bad_announce",
        "bad_pubsub_signature",
        "bad_sender_record",
    }
)
"""Refusals that depend on no local view (validator set, clock, windows): an honest peer
checks the same before forwarding, so a peer that hands us these is misbehaving."""

VIEW_REFUSALS = frozenset({"wrong_role", "stale", "replay", "rate_limited", "unsubscribed_topic"})
"""Refusals of a validly signed message by our own view, which an honest peer may not share."""

BUDGET_REFUSALS = frozenset({"peer_rate_limited"})
"""The forwarding peer itself sends more than its budget."""

FAULT_POINTS = 10.0
VIEW_POINTS = 0.1
BUDGET_POINTS = 0.01
BAN_POINTS = 100.0
"""A peer is cut off at 100 points: ten of its own faults at once, or about a thousand view
refusals (or ten thousand messages over its budget) before the points decay."""


def penalty(reason: str) -> float:
    """Standing points a refusal (or drop) for ``reason`` costs the peer that handed it."""
    if reason in FORWARDER_FAULTS:
        return FAULT_POINTS
    if reason in VIEW_REFUSALS:
        return VIEW_POINTS
    if reason in BUDGET_REFUSALS:
        return BUDGET_POINTS
    return 0.0  # duplicates, messages of banned peers, our own failures


@dataclass
class Standing:
    """Penalty points per peer, halving every ``half_life_ms``; ``charge`` says when a
    peer reaches ``ban_at`` (the adapter cuts it off). Memory is bounded by the peers
    charged recently: ``prune`` forgets those whose points have decayed away."""

    ban_at: float = BAN_POINTS
    half_life_ms: int = 60_000
    _points: dict[str, tuple[float, int]] = field(default_factory=dict)

    def points(self, peer: str, now_ms: int) -> float:
        value, at = self._points.get(peer, (0.0, now_ms))
        return value * 0.5 ** (max(0, now_ms - at) / self.half_life_ms)

    def charge(self, peer: str, points: float, now_ms: int) -> bool:
        """Add ``points`` to ``peer``; True when this charge takes it to the ban level."""
        if points <= 0:
            return False
        before = self.points(peer, now_ms)
        self._points[peer] = (before + points, now_ms)
        return before < self.ban_at <= before + points

    def prune(self, now_ms: int, below: float = 0.01) -> None:
        for peer in [p for p in self._points if self.points(p, now_ms) < below]:
            del self._points[peer]

    def __len__(self) -> int:
        return len(self._points)


OUTCOMES = ("received", "admitted", "refused", "dropped", "forward_dropped")
"""What happens to a message: every one ``received`` is ``admitted``, ``refused`` (by
admission) or ``dropped`` (before admission: a duplicate, a banned peer...); an admitted
one we fail to forward to a peer counts as ``forward_dropped``."""


@dataclass
class TallyRow:
    topic: str
    via: str
    outcome: str
    reason: str
    count: int
    last_ms: int
    last_detail: str


@dataclass
class Tally:
    """Counters per (topic, via, outcome, reason), kept in memory until ``drain``."""

    _rows: dict[tuple[str, str, str, str], TallyRow] = field(default_factory=dict)

    def count(
        self,
        topic: str,
        via: str,
        outcome: str,
        reason: str = "",
        detail: str = "",
        *,
        now_ms: int,
        n: int = 1,
    ) -> None:
        key = (topic, via, outcome, reason)
        row = self._rows.get(key)
        if row is None:
            self._rows[key] = TallyRow(topic, via, outcome, reason, n, now_ms, detail[:300])
            return
        row.count += n
        row.last_ms = now_ms
        if detail:
            row.last_detail = detail[:300]

    def drain(self) -> list[TallyRow]:
        """Every counter since the last drain (the tally starts again from zero)."""
        rows = list(self._rows.values())
        self._rows = {}
        return rows

    def merge(self, rows: list[TallyRow]) -> None:
        """Put drained rows back (their write failed)."""
        for row in rows:
            self.count(
                row.topic, row.via, row.outcome, row.reason, row.last_detail, now_ms=row.last_ms, n=row.count
            )


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
    window_for: Callable[[str, str], ReplayWindow] | None,
    limiter: RateLimiter | None = None,
    blame: bool = False,
) -> Decision:
    """Decide whether ``data`` gossiped on ``short_topic`` may be forwarded and stored.

    ``window_for(signer, kind)`` returns the replay window (None: no replay check). With
    ``blame``, a refusal by our own view (role, replay, time) also checks the signature:
    a forgery is refused as ``bad_signature``, the forwarder's fault.
    """
    rule = TOPICS.get(short_topic)
    if rule is None:
        return refuse("unknown_topic", f"topic {short_topic!r} is not ours")
    try:
        envelope = env.from_wire(data, max_size=ctx.max_bytes)
    except env.EnvelopeError as exc:
        return refuse(exc.reason, str(exc))

    def view_refusal(reason: str, detail: str) -> Decision:
        if blame and not _signed(envelope, verify_signature):
            return refuse("bad_signature", f"signature does not verify for {envelope.signer} ({detail})")
        return refuse(reason, detail)

    if not role_ok(envelope.kind, envelope.signer, rule, ctx.validators, ctx.sudo, ctx.registered):
        return view_refusal(
            "wrong_role", f"{envelope.signer} may not sign {envelope.kind!r} ({rule.role.value} only)"
        )
    window = window_for(envelope.signer, envelope.kind) if window_for is not None else None
    problem = window.check(envelope.seq) if window is not None else None
    if problem:
        return view_refusal("replay", f"sequence {envelope.seq} from {envelope.signer}: {problem}")
    policy = env.VerifyPolicy(
        network=ctx.network, kinds=rule.kinds, max_size=ctx.max_bytes, max_age_ms=ctx.max_age_ms
    )
    try:
        env.verify(envelope, policy, verify_signature=verify_signature, now_ms=now_ms)
    except env.EnvelopeError as exc:
        if exc.reason == "stale":
            return view_refusal(exc.reason, str(exc))
        return refuse(exc.reason, str(exc))
    # After the signature: forgeries must not spend an honest signer's budget.
    if limiter is not None and not limiter.allow(envelope.signer, now_ms):
        return refuse("rate_limited", f"{envelope.signer} exceeds its message rate")
    return Decision(envelope)


def _signed(envelope: env.Envelope, verify_signature: env.SignatureVerifier) -> bool:
    return len(envelope.signature) == env.SIGNATURE_BYTES and verify_signature(
        envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
    )


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
