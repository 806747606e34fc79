"""py-libp2p's Pubsub and GossipSub with every received message accounted for.

py-libp2p 0.8.1 can lose a received message at several points before a topic validator
ever sees it, each with at most a debug log: a whole RPC whose sender record is invalid,
a topic we do not subscribe to, a message arriving while the service stops, a forwarder
or origin on the blacklist, a duplicate, a copy of a message whose validation result is
cached, a bad pubsub signature, the score gate. :class:`AccountedPubsub` hooks each of
these points, so that every message a peer hands us is counted once as ``received`` and
once more as ``admitted`` or ``refused`` (by admission, in the topic validator) or
``dropped`` with the reason; :class:`AccountedGossipSub` counts what its outbound queues
fail to forward. The counts live in the admission's tally.

The topic validator is admission itself (checked and stored before anything is
forwarded); py-libp2p validates each message in a task of its own, so the messages
admitted side by side are stored in one commit (:mod:`platform_cli.p2p.group_commit`). The subscription channels would only copy what admission already stored, and
drop copies when full: they are not fed.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub, ValidationCache, ValidationError, ValidationResult

from platform_cli.p2p import store
from platform_cli.p2p.admission import HELD, OWN_HELD, STORED, Admission
from platform_cli.p2p.group_commit import GroupCommit

log = logging.getLogger("platform.p2p")
MAX_BATCH = 256
"""The most admitted messages one commit writes (a quarter of a replay window: a batch
is written in the order its tasks ran, which trio may reverse)."""
UNCACHED_REASONS = frozenset({"rate_limited", "peer_rate_limited"})
"""Refusals for a budget spent at that moment (the signer's, the forwarder's): the same
message may be admitted later, or from another peer, so they are not cached."""


@dataclass
class _Push:
    validated: bool = False


_push: contextvars.ContextVar[_Push | None] = contextvars.ContextVar("push", default=None)
"""Set while py-libp2p pushes one received message: whether our validator saw it."""


class ReasonedValidationCache(ValidationCache):
    """py-libp2p caches a refusal for its TTL (5 min), and its validators can only say
    valid or invalid (no IGNORE). A refusal caused by a local failure (a locked database,
    a bug) must not stick: such message ids are left out of the cache, so the copy the
    next peer forwards is validated afresh. Other refusals are cached with admission's
    reason, so that a copy refused from the cache is counted and charged as the first.

    Its LRU order is an OrderedDict: py-libp2p's keeps a list and searches it on every
    put (O(size) a message, about 4% of a node's CPU under a flood)."""

    def __init__(self, ttl: int, max_size: int) -> None:
        super().__init__(ttl, max_size)
        self.cache: OrderedDict[bytes, ValidationResult] = OrderedDict()
        self.transient: set[bytes] = set()
        self.reasons: dict[bytes, str] = {}

    def get(self, msg_id: bytes) -> ValidationResult | None:
        result = self.cache.get(msg_id)
        if result is None:
            return None
        if time.time() - result.timestamp > self.ttl:
            del self.cache[msg_id]
            return None
        self.cache.move_to_end(msg_id)
        return result

    def _remove(self, msg_id: bytes) -> None:
        self.cache.pop(msg_id, None)

    def put(self, msg_id: bytes, result: ValidationResult) -> None:
        reason = self.reasons.pop(msg_id, None)
        if msg_id in self.transient:
            self.transient.discard(msg_id)
            if not result.is_valid:
                return
        if not result.is_valid and reason:
            result = result._replace(error_message=reason)
        self.cache[msg_id] = result
        self.cache.move_to_end(msg_id)
        while len(self.cache) > self.max_size:
            self.cache.popitem(last=False)


class AccountedPubsub(Pubsub):
    def __init__(
        self, host: Any, router: Any, admission: Admission, topics: list[str], **kwargs: Any
    ) -> None:
        super().__init__(host, router, strict_signing=True, **kwargs)
        self.admission = admission
        self.inbox: GroupCommit[store.Received, bool] = GroupCommit(
            partial(store.store_received_batch, admission.state), max_batch=MAX_BATCH
        )
        """Admitted messages are written in batches (one commit for all those admitted
        while the last batch was written), each before its validator answers."""
        self.validation_cache = ReasonedValidationCache(
            self.validation_cache.ttl, self.validation_cache.max_size
        )
        for topic in topics:
            self.set_topic_validator(topic, self._validator(topic), True)
        self._sender_records: OrderedDict[ID, tuple[bytes, float]] = OrderedDict()
        """The sender record each peer sent last and when it was checked (LRU, bounded)."""
        _by_host[host] = self

    # ------------------------------------------------------------ received

    def _is_subscribed_to_msg(self, msg: Any) -> bool:
        """py-libp2p asks this once for every message it reads from a peer's RPC."""
        topic = _topic(msg)
        self.admission.received(topic)
        if not self.manager.is_running:
            self.admission.drop(topic, "shutting_down", "")
            return False
        if not super()._is_subscribed_to_msg(msg):
            self.admission.drop(topic, "unsubscribed_topic", "")
            return False
        return True

    def sender_record_known(self, rpc: Any, peer: ID) -> bool:
        """Whether ``rpc`` carries the very sender record ``peer`` sent last, accepted
        less than a minute ago. A peer attaches the same signed record to every RPC, and
        py-libp2p would parse it and check its signature each time (a tenth of our CPU in
        a mesh); the same bytes from the same peer verify the same way. Re-checked once a
        minute, which also renews the record's lifetime in the peerstore."""
        if not rpc.HasField("senderRecord"):
            return False
        known = self._sender_records.get(peer)
        return (
            known is not None
            and known[0] == rpc.senderRecord
            and time.monotonic() - known[1] < SENDER_RECORD_RECHECK_S
        )

    def remember_sender_record(self, rpc: Any, peer: ID) -> None:
        if rpc.HasField("senderRecord"):
            self._sender_records[peer] = (rpc.senderRecord, time.monotonic())
            self._sender_records.move_to_end(peer)
            if len(self._sender_records) > MAX_SENDER_RECORDS:
                self._sender_records.popitem(last=False)

    def bad_sender_record(self, rpc: Any, peer: ID) -> None:
        """py-libp2p ignores a whole RPC whose sender record does not verify."""
        for msg in rpc.publish:
            self.admission.received(_topic(msg))
            self.admission.drop(_topic(msg), "bad_sender_record", "")
        self.admission.charge(peer.to_base58(), "bad_sender_record")

    # ------------------------------------------------------------ pushed

    async def push_msg(self, msg_forwarder: ID, msg: Any) -> None:
        if msg_forwarder == self.my_id:  # our own publish: admission counts it
            await super().push_msg(msg_forwarder, msg)
            return
        forwarder, topic = msg_forwarder.to_base58(), _topic(msg)
        reason = self._early_drop(msg_forwarder, msg)
        if reason is not None:
            self.admission.drop(topic, reason, forwarder)
            return
        cached = self.validation_cache.get(self._msg_id_constructor(msg))
        if cached is not None:  # py-libp2p would answer from its cache, unseen by admission
            reason = "duplicate" if cached.is_valid else cached.error_message or "refused"
            outcome = "dropped" if reason == "duplicate" else "refused"
            self.admission.drop(
                topic, reason, forwarder, "a copy of a message refused before", outcome=outcome
            )
            return
        push = _Push()
        token = _push.set(push)
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception:
            if not push.validated:
                self.admission.drop(topic, "local_failure", "")
            raise
        finally:
            _push.reset(token)
        if not push.validated:  # py-libp2p stopped before our validator
            self.admission.drop(topic, self._late_drop(msg_forwarder, msg), forwarder)

    async def validate_msg(self, msg_forwarder: ID, msg: Any) -> None:
        """py-libp2p's, with each topic validator awaited in place, in topic order (the
        first refusal ends it): py-libp2p runs async validators together in a nursery of
        their own under a timeout, about 50 µs a message. Ours answer within a scheduler
        pass and one write (:class:`GroupCommit`)."""
        msg_id = self._msg_id_constructor(msg)
        cached = self.validation_cache.get(msg_id)
        if cached is not None:
            if not cached.is_valid:
                raise ValidationError(f"cached refusal: {cached.error_message or 'refused'}")
            return
        for topic_validator in self.get_msg_validators(msg):
            valid = topic_validator.validator(msg_forwarder, msg)
            if topic_validator.is_async:
                valid = await valid
            if not valid:
                self.validation_cache.put(msg_id, ValidationResult(False, time.time(), "refused"))
                raise ValidationError("refused by the topic validator")
        self.validation_cache.put(msg_id, ValidationResult(True, time.time()))

    def _early_drop(self, forwarder: ID, msg: Any) -> str | None:
        """The checks py-libp2p's push_msg makes first, in its order."""
        if self.is_peer_blacklisted(forwarder):
            return "banned_peer"
        if self.is_peer_blacklisted(ID(msg.from_id)):
            return "banned_origin"
        if self._is_msg_seen(msg):
            return "duplicate"
        return None

    def _late_drop(self, forwarder: ID, msg: Any) -> str:
        scorer = getattr(self.router, "scorer", None)
        if scorer is not None and not scorer.allow_publish(forwarder, list(msg.topicIDs)):
            return "score_gate"
        return "bad_pubsub_signature"

    def _validator(self, topic: str) -> Any:
        async def validate(forwarder: ID, msg: Any) -> bool:
            push = _push.get()
            if push is not None:
                push.validated = True
            msg_id = self._msg_id_constructor(msg)
            peer = forwarder.to_base58()
            via = "own" if forwarder == self.my_id else "gossip"
            if len(msg.topicIDs) != 1:
                self.validation_cache.reasons[msg_id] = "malformed"
                self.admission.drop(topic, "malformed", peer, "several topics", outcome="refused", via=via)
                return False
            try:
                origin = ID(msg.from_id).to_base58()
                checked = self.admission.check(topic, msg.data, origin, forwarder=peer)
                if isinstance(checked, str):
                    outcome = checked
                else:
                    outcome = self.admission.settle(checked, await self.inbox.submit(checked.received))
            except Exception as exc:  # a bug or a locked database must not kill the pubsub reader
                log.exception("admission failed topic=%s", topic)
                self.validation_cache.transient.add(msg_id)
                detail = f"{type(exc).__name__}: {exc}"
                self.admission.drop(topic, "local_failure", "", detail, outcome="refused", via=via)
                if msg.from_id == self.host.get_id().to_bytes():
                    digest = hashlib.sha256(msg.data).digest()
                    self.admission.own_refusals[digest] = f"local_failure: {type(exc).__name__}: {exc}"
                return False
            if outcome in (STORED, OWN_HELD):
                return True
            if outcome in UNCACHED_REASONS:
                self.validation_cache.transient.add(msg_id)
            self.validation_cache.reasons[msg_id] = "duplicate" if outcome == HELD else outcome
            return False

        return validate

    def notify_subscriptions(self, publish_message: Any) -> None:
        """Admission stored the message already; nothing reads the subscription channels."""


class AccountedGossipSub(GossipSub):
    """GossipSub that counts messages its outbound queues drop (full, oversized)."""

    admission: Admission | None = None

    def _handle_dropped_rpc(self, peer_id: ID, rpc: Any, reason: str) -> None:
        if self.admission is not None:
            for msg in rpc.publish:
                self.admission.drop(_topic(msg), reason, "", f"to {peer_id}", outcome="forward_dropped")
        super()._handle_dropped_rpc(peer_id, rpc, reason)


def _topic(msg: Any) -> str:
    return msg.topicIDs[0] if msg.topicIDs else ""


_by_host: weakref.WeakKeyDictionary[Any, AccountedPubsub] = weakref.WeakKeyDictionary()
_consume_sender_record = pubsub_module.maybe_consume_signed_record
SENDER_RECORD_RECHECK_S = 60.0
MAX_SENDER_RECORDS = 4096


def _checked_sender_record(rpc: Any, host: Any, peer_id: ID) -> bool:
    accounted = _by_host.get(host)
    if accounted is None:
        return bool(_consume_sender_record(rpc, host, peer_id))
    if accounted.sender_record_known(rpc, peer_id):
        return True
    ok = bool(_consume_sender_record(rpc, host, peer_id))
    if ok:
        accounted.remember_sender_record(rpc, peer_id)
    else:
        accounted.bad_sender_record(rpc, peer_id)
    return ok


pubsub_module.maybe_consume_signed_record = _checked_sender_record
"""The read loop checks an RPC's sender record through this module global, before any
per-message hook: wrapped once, it reports what it discards to the pubsub of its host."""
