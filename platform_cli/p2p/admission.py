"""Admission of gossiped messages against our own state (the adapter around core.gossip).

The validator set is read from the metagraph snapshot in the state (refreshed every few
seconds), the replay window from ``p2p_windows``; accepted messages are written to the
inbox in the same transaction that advances the window, before they are forwarded.

Everything else that happens to a message is counted in memory (``tally``) and written
by :meth:`Admission.flush` in one transaction, which the node calls every second: a
flood of refusals costs one write a second, not one per message (the counts of the last
second are lost if the process is killed). Refusals and drops cost the forwarding peer
standing (``core.gossip.penalty``); a peer that reaches the ban level is handed to
``on_misbehaving`` once.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from platform_cli.clock import now_ms
from platform_cli.core import envelope as env
from platform_cli.core import gossip
from platform_cli.core.envelope import Network
from platform_cli.core.replay import BitWindow
from platform_cli.identity import verify_signature
from platform_cli.p2p import store
from platform_cli.state import metagraph
from platform_cli.state.db import State

log = logging.getLogger("platform.p2p")
VALIDATOR_SET_TTL_S = 2.0
MAX_CACHED_WINDOWS = 4096
STORED, HELD, OWN_HELD = "stored", "held", "own_held"
LOCAL_VIEW_REASONS = frozenset({"wrong_role", "stale", "rate_limited", "peer_rate_limited"})
"""Refusals that depend on our own view (validator set, clock, budgets) and may turn into
acceptance later: sync does not move its cursor past them."""


@dataclass(frozen=True)
class Checked:
    """A message admission accepted, not yet stored."""

    received: store.Received
    msg_id: str
    forwarder: str


class Admission:
    def __init__(
        self,
        state: State,
        network: Network,
        sudo: str,
        *,
        rate: int,
        burst: int,
        peer_rate: int = 1000,
        peer_burst: int = 5000,
        min_stake_rao: int = 0,
        sync_max_age_ms: int = 7 * 24 * 3600 * 1000,
    ) -> None:
        self.state = state
        self.sync_max_age_ms = sync_max_age_ms
        """The oldest message sync admits: the inbox retention, over which ids are remembered."""
        self.network = network
        self.sudo = sudo
        self.min_stake_rao = min_stake_rao
        self.limiter = gossip.RateLimiter(rate, burst)
        self.peer_limiter = gossip.RateLimiter(peer_rate, peer_burst)
        """Per forwarding peer: what any peer may hand us, whoever signed it."""
        self._validators: frozenset[str] = frozenset()
        self._registered: frozenset[str] = frozenset()
        self._validator_peers: frozenset[str] = frozenset()
        self._loaded_at = -1e9
        self._windows: OrderedDict[tuple[str, str], BitWindow] = OrderedDict()
        """Replay windows as read here or advanced by what we stored (LRU), for the
        pre-check before a signature is verified. A window only ever advances, so an
        entry may lag the state (another process stored a message) but is never ahead of
        it: the pre-check refuses nothing the state accepts, and the write checks the
        state's own window in its transaction."""
        self.local_peer = ""  # set by the node: our own announcements bind nothing
        self.tally = gossip.Tally()
        self.standing = gossip.Standing()
        self.on_misbehaving: Callable[[str], None] | None = None
        """Called once with a peer whose standing reached the ban level (the node bans it)."""
        self.own_refusals: dict[bytes, str] = {}
        """Why our own publishes were refused (sha256 of the data -> reason), for the outbox."""
        self.suspended: set[str] = set()
        """Validators proven to equivocate: their consensus messages are refused until the
        consensus service installs the next validator set (``lift_suspensions``)."""
        self.listeners: list[Callable[[str, env.Envelope], None]] = []
        """Called with (topic, envelope) of every message stored, in the node's process:
        services there (consensus) learn of it at once instead of polling the inbox."""

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._loaded_at > VALIDATOR_SET_TTL_S:
            snapshot = metagraph.latest_snapshot(self.state, self.network.netuid)
            self._validators = frozenset(snapshot.validators(self.min_stake_rao) if snapshot else ())
            self._registered = frozenset(n.hotkey for n in snapshot.neurons) if snapshot else frozenset()
            self._validator_peers = frozenset(store.bound_peers(self.state, self._validators))
            self._loaded_at = now

    def validators(self) -> frozenset[str]:
        self._refresh()
        return self._validators

    def validator_peers(self) -> frozenset[str]:
        """Peer ids bound by a signed announcement to a validator of the metagraph."""
        self._refresh()
        return self._validator_peers

    def context(self, *, max_age_ms: int | None = 5 * 60 * 1000) -> gossip.Context:
        self._refresh()
        return gossip.Context(
            self.network, self._validators, self.sudo, registered=self._registered, max_age_ms=max_age_ms
        )

    def label(self, topic: str) -> str:
        return gossip.topic_label(topic, self.network.netuid)

    def receive(
        self, topic: str, data: bytes, origin_peer: str, *, forwarder: str = "", from_sync: bool = False
    ) -> bool:
        """Admit and store one message; False (counted) when refused or already held.
        True also for our own message already held (a re-publish: it may go out)."""
        outcome = self.admit(topic, data, origin_peer, forwarder=forwarder, from_sync=from_sync)
        return outcome in (STORED, OWN_HELD)

    def via(self, origin_peer: str, forwarder: str, from_sync: bool) -> str:
        if from_sync:
            return "sync"
        own = origin_peer == self.local_peer and forwarder in ("", self.local_peer)
        return "own" if own else "gossip"

    def admit(
        self, topic: str, data: bytes, origin_peer: str, *, forwarder: str = "", from_sync: bool = False
    ) -> str:
        """Admit and store one message: ``STORED``, ``HELD``, ``OWN_HELD`` or the reason
        it was refused (counted). ``forwarder`` is the peer that handed it to us (for
        sync: the responder). Gossip from peers is counted as received by the pubsub
        layer (which may drop it before admission); sync and our own messages here."""
        checked = self.check(topic, data, origin_peer, forwarder=forwarder, from_sync=from_sync)
        if isinstance(checked, str):
            return checked
        (stored,) = store.store_received_batch(self.state, [checked.received])
        return self.settle(checked, stored)

    def check(
        self, topic: str, data: bytes, origin_peer: str, *, forwarder: str = "", from_sync: bool = False
    ) -> Checked | str:
        """Everything :meth:`admit` decides before the durable write: the message to
        store, or the outcome (``HELD``, ``OWN_HELD``, a refusal reason, counted)."""
        via = self.via(origin_peer, forwarder, from_sync)
        label = self.label(topic)
        now = now_ms()
        if via != "gossip":
            self.tally.count(label, via, "received", now_ms=now)
        parsed = gossip.parse_topic(topic)
        if parsed is None or parsed[0] != self.network.netuid:
            return self.reject(
                topic,
                "unknown_topic",
                f"topic {topic!r} is not one of ours",
                data,
                origin_peer,
                forwarder,
                via,
            )
        short = parsed[1]
        if via == "gossip" and forwarder and not self.peer_limiter.allow(forwarder, now):
            return self.reject(
                topic,
                "peer_rate_limited",
                f"{forwarder} exceeds its message rate",
                data,
                origin_peer,
                forwarder,
                via,
            )
        msg_id = hashlib.sha256(data).hexdigest()  # the envelope's message id, if it parses
        if via != "gossip" and store.seen(self.state, msg_id):
            # Sync offers what we may hold already (not a replay by anyone); our own
            # message already held, published by us, is a re-publish after a crash: let
            # it go out again (a copy of it relayed back by a peer is a replay).
            self.tally.count(label, via, "dropped" if from_sync else "admitted", "held", now_ms=now)
            return HELD if from_sync else OWN_HELD
        # A message fetched by sync is old by nature: it may be as old as the retention
        # and far below its signer's window by now, so its replay check is the set of
        # message ids seen within the retention (store_received), not the window.
        ctx = self.context(max_age_ms=self.sync_max_age_ms if from_sync else 5 * 60 * 1000)
        decision = gossip.admit(
            data,
            short,
            ctx,
            now_ms=now,
            verify_signature=verify_signature,
            window_for=None if from_sync else self._window,
            limiter=self.limiter,  # a signer's budget holds on every path (sync too)
            blame=via == "gossip",
        )
        if not decision.accepted:
            return self.reject(topic, decision.reason, decision.detail, data, origin_peer, forwarder, via)
        envelope = decision.envelope
        assert envelope is not None
        if envelope.signer in self.suspended and short == "consensus":
            detail = f"{envelope.signer} equivocated: its consensus messages wait for the next validator set"
            return self.reject(topic, "equivocator", detail, data, origin_peer, forwarder, via)
        if envelope.kind == gossip.ANNOUNCE_KIND:
            problem = gossip.check_announce(envelope, origin_peer)
            if problem:
                return self.reject(topic, "bad_announce", problem, data, origin_peer, forwarder, via)
        path = "sync" if from_sync else "gossip"
        return Checked(store.Received(topic, envelope, data, origin_peer, path, via), msg_id, forwarder)

    def settle(self, checked: Checked, stored: bool) -> str:
        """The outcome of a checked message once the write is done (``stored``: whether
        :func:`store.store_received` kept it), counted; listeners hear of it."""
        received = checked.received
        topic, envelope, via = received.topic, received.envelope, received.counted_as or received.via
        label = self.label(topic)
        if not stored:
            if store.seen(self.state, checked.msg_id):
                self.tally.count(label, via, "dropped", "duplicate", now_ms=now_ms())
                return HELD
            return "replay"  # counted by store_received, in its transaction
        self.tally.count(label, via, "admitted", now_ms=now_ms())
        key = (envelope.signer, envelope.kind)
        cached = self._windows.get(key)
        if cached is not None and cached.check(envelope.seq) is None:
            self._remember_window(key, cached.accept(envelope.seq))
        for listener in self.listeners:
            listener(topic, envelope)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "admitted topic=%s msg_id=%s origin=%s forwarder=%s",
                topic,
                checked.msg_id,
                received.from_peer,
                checked.forwarder,
            )
        if envelope.kind == gossip.ANNOUNCE_KIND and received.from_peer != self.local_peer:
            addrs = envelope.body.get("addrs", [])
            store.bind_hotkey(self.state, received.from_peer, envelope.signer, addrs[0] if addrs else "")
            self._loaded_at = -1e9  # the binding may make a validator's peer known
        return STORED

    def suspend(self, signer: str) -> None:
        if signer not in self.suspended:
            log.warning("suspended signer=%s: proven to equivocate", signer)
            self.suspended.add(signer)

    def lift_suspensions(self) -> None:
        if self.suspended:
            log.info("suspensions lifted signers=%s: a new validator set", sorted(self.suspended))
            self.suspended.clear()

    def _window(self, signer: str, kind: str) -> BitWindow:
        key = (signer, kind)
        window = self._windows.get(key)
        if window is None:
            window = store.window(self.state, signer, kind)
        self._remember_window(key, window)
        return window

    def _remember_window(self, key: tuple[str, str], window: BitWindow) -> None:
        self._windows[key] = window
        self._windows.move_to_end(key)
        if len(self._windows) > MAX_CACHED_WINDOWS:
            self._windows.popitem(last=False)

    def reject(
        self, topic: str, reason: str, detail: str, data: bytes, origin: str, forwarder: str, via: str
    ) -> str:
        """Count a refusal by admission and charge the peer that handed us the message."""
        log.info("rejected topic=%s reason=%s origin=%s detail=%s", topic, reason, origin, detail)
        self.tally.count(self.label(topic), via, "refused", reason, detail, now_ms=now_ms())
        if via == "own":
            self.own_refusals[hashlib.sha256(data).digest()] = f"{reason}: {detail}"
        elif via == "gossip" or reason in gossip.FORWARDER_FAULTS:  # a sync responder: its faults only
            self.charge(forwarder, reason)
        return reason

    def drop(
        self,
        topic: str,
        reason: str,
        forwarder: str,
        detail: str = "",
        *,
        outcome: str = "dropped",
        via: str = "gossip",
    ) -> None:
        """Count a message the pubsub layer dropped before admission (or refused without
        it: ``outcome="refused"``) and charge its forwarder."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dropped topic=%s reason=%s forwarder=%s %s", topic, reason, forwarder, detail)
        self.tally.count(self.label(topic), via, outcome, reason, detail, now_ms=now_ms())
        self.charge(forwarder, reason)

    def received(self, topic: str, n: int = 1) -> None:
        """Count gossip handed to us by peers, where the pubsub layer first sees it."""
        self.tally.count(self.label(topic), "gossip", "received", now_ms=now_ms(), n=n)

    def charge(self, peer: str, reason: str) -> None:
        if peer in ("", self.local_peer):
            return
        if self.standing.charge(peer, gossip.penalty(reason), now_ms()):
            log.warning("misbehaving peer=%s: its standing reached the ban level (last: %s)", peer, reason)
            if self.on_misbehaving is not None:
                self.on_misbehaving(peer)

    def flush(self) -> int:
        """Write the counters gathered since the last flush, in one transaction; the
        number of counter rows written (0 when the database was locked: kept for next time)."""
        rows = self.tally.drain()
        try:
            store.add_traffic(self.state, rows)
        except sqlite3.Error as exc:
            log.warning("traffic counters not written (kept for the next flush): %s", exc)
            self.tally.merge(rows)
            return 0
        return len(rows)
