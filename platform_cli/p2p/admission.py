"""Admission of gossiped messages against our own state (the adapter around core.gossip).

The validator set is read from the metagraph snapshot in the state (refreshed every few
seconds), the replay window from ``state.sequences``; accepted messages are written to
the inbox in the same transaction that advances the window, before they are forwarded.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from platform_cli.clock import now_ms
from platform_cli.core import gossip
from platform_cli.core.envelope import Network
from platform_cli.core.replay import SequenceWindow
from platform_cli.identity import verify_signature
from platform_cli.p2p import store
from platform_cli.state import metagraph, sequences
from platform_cli.state.db import State

log = logging.getLogger("platform.p2p")
VALIDATOR_SET_TTL_S = 2.0
STORED, HELD, OWN_HELD = "stored", "held", "own_held"
LOCAL_VIEW_REASONS = frozenset({"wrong_role", "stale", "rate_limited", "peer_rate_limited"})
"""Refusals that depend on our own view (validator set, clock, budgets) and may turn into
acceptance later: sync does not move its cursor past them."""


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
        self._loaded_at = -1e9
        self.local_peer = ""  # set by the node: our own announcements bind nothing
        self.penalties = gossip.PeerPenalties()
        self.on_misbehaving: Callable[[str], None] | None = None
        """Called once with a peer that crossed the penalty threshold (the node bans it)."""
        self.own_refusals: dict[bytes, str] = {}
        """Why our own publishes were refused (sha256 of the data -> reason), for the outbox."""

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._loaded_at > VALIDATOR_SET_TTL_S:
            snapshot = metagraph.latest_snapshot(self.state, self.network.netuid)
            self._validators = frozenset(snapshot.validators(self.min_stake_rao) if snapshot else ())
            self._registered = frozenset(n.hotkey for n in snapshot.neurons) if snapshot else frozenset()
            self._loaded_at = now

    def validators(self) -> frozenset[str]:
        self._refresh()
        return self._validators

    def context(self, *, max_age_ms: int | None = 5 * 60 * 1000) -> gossip.Context:
        self._refresh()
        return gossip.Context(
            self.network, self._validators, self.sudo, registered=self._registered, max_age_ms=max_age_ms
        )

    def receive(
        self, topic: str, data: bytes, origin_peer: str, *, forwarder: str = "", from_sync: bool = False
    ) -> bool:
        """Admit and store one message; False (counted) when refused or already held.
        True also for our own message already held (a re-publish: it may go out)."""
        outcome = self.admit(topic, data, origin_peer, forwarder=forwarder, from_sync=from_sync)
        return outcome in (STORED, OWN_HELD)

    def admit(
        self, topic: str, data: bytes, origin_peer: str, *, forwarder: str = "", from_sync: bool = False
    ) -> str:
        """Admit and store one message: ``STORED``, ``HELD``, ``OWN_HELD`` or the reason
        it was refused (counted). ``forwarder`` is the peer that handed it to us (for
        sync: the responder)."""
        parsed = gossip.parse_topic(topic)
        if parsed is None or parsed[0] != self.network.netuid:
            return self._reject(
                topic, "unknown_topic", f"topic {topic!r} is not one of ours", data, origin_peer, forwarder
            )
        short = parsed[1]
        relayed = not from_sync and forwarder not in ("", self.local_peer)
        if relayed and not self.peer_limiter.allow(forwarder, now_ms()):
            return self._reject(
                topic,
                "peer_rate_limited",
                f"{forwarder} exceeds its message rate",
                data,
                origin_peer,
                forwarder,
            )
        msg_id = hashlib.sha256(data).hexdigest()  # the envelope's message id, if it parses
        republish = origin_peer == self.local_peer and not relayed
        if (from_sync or republish) and store.seen(self.state, msg_id):
            # Sync offers what we may hold already (not a replay by anyone); our own
            # message already held, published by us, is a re-publish after a crash: let
            # it go out again (a copy of it relayed back by a peer is a replay).
            return HELD if from_sync else OWN_HELD
        # A message fetched by sync is old by nature: it may be as old as the retention
        # and far below its signer's window by now, so its replay check is the set of
        # message ids seen within the retention (store_received), not the window.
        ctx = self.context(max_age_ms=self.sync_max_age_ms if from_sync else 5 * 60 * 1000)
        decision = gossip.admit(
            data,
            short,
            ctx,
            now_ms=now_ms(),
            verify_signature=verify_signature,
            window_for=None if from_sync else self._window,
            limiter=self.limiter,  # a signer's budget holds on every path (sync too)
        )
        if not decision.accepted:
            return self._reject(topic, decision.reason, decision.detail, data, origin_peer, forwarder)
        envelope = decision.envelope
        assert envelope is not None
        if envelope.kind == gossip.ANNOUNCE_KIND:
            problem = gossip.check_announce(envelope, origin_peer)
            if problem:
                return self._reject(topic, "bad_announce", problem, data, origin_peer, forwarder)
        if not store.store_received(
            self.state, topic, envelope, data, origin_peer, "sync" if from_sync else "gossip"
        ):
            return HELD if store.seen(self.state, msg_id) else "replay"
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "admitted topic=%s msg_id=%s origin=%s forwarder=%s", topic, msg_id, origin_peer, forwarder
            )
        if envelope.kind == gossip.ANNOUNCE_KIND and origin_peer != self.local_peer:
            addrs = envelope.body.get("addrs", [])
            store.bind_hotkey(self.state, origin_peer, envelope.signer, addrs[0] if addrs else "")
        return STORED

    def _window(self, signer: str, kind: str) -> SequenceWindow:
        return sequences.window(self.state, signer, kind=store.window_kind(kind))

    def _reject(self, topic: str, reason: str, detail: str, data: bytes, origin: str, forwarder: str) -> str:
        log.info("rejected topic=%s reason=%s origin=%s detail=%s", topic, reason, origin, detail)
        store.count_rejection(self.state, topic, reason, detail)
        if origin == self.local_peer and forwarder in ("", self.local_peer):
            self.own_refusals[hashlib.sha256(data).digest()] = f"{reason}: {detail}"
        elif self._blames(reason, forwarder) and self.penalties.record(forwarder, now_ms()):
            log.warning("misbehaving peer=%s: repeated invalid messages (last: %s)", forwarder, reason)
            if self.on_misbehaving is not None:
                self.on_misbehaving(forwarder)
        return reason

    def _blames(self, reason: str, forwarder: str) -> bool:
        return reason in gossip.FORWARDER_FAULTS and forwarder not in ("", self.local_peer)
