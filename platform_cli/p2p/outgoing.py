"""Preparing messages to publish: sealing, and the same checks a receiver will make.

Used by commands (``peer publish``, ``dht put``) and by the node itself; imports no
libp2p, so a command can refuse a bad message before anything is queued.
"""

from __future__ import annotations

from typing import Any

from platform_cli.clock import now_ms
from platform_cli.core import canonical, gossip
from platform_cli.core import envelope as env
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer, verify_signature
from platform_cli.p2p import store
from platform_cli.state import metagraph, sequences
from platform_cli.state.db import State


def seal_for(state: State, network: env.Network, signer: Signer, kind: str, body: Any) -> env.Envelope:
    """Seal ``body`` with the next sequence number (reserved before signing)."""
    now = now_ms()
    seq = sequences.next_own_seq(state, signer.ss58, floor=now)
    try:
        return env.seal(
            network=network,
            kind=kind,
            signer=signer.ss58,
            scheme=signer.scheme,
            seq=seq,
            ts_ms=now,
            body=body,
            sign=signer.sign,
        )
    except (env.EnvelopeError, canonical.CanonicalError) as exc:
        raise PlatformError(f"cannot seal a {kind!r} message: {exc}") from None


def resolve_topic(netuid: int, topic: str) -> tuple[str, str]:
    """(short name, full topic id) from either form."""
    parsed = gossip.parse_topic(topic)
    if parsed is not None:
        if parsed[0] != netuid:
            raise PlatformError(f"topic {topic!r} belongs to netuid {parsed[0]}, this network is {netuid}")
        return parsed[1], topic
    if topic not in gossip.TOPICS:
        raise PlatformError(f"unknown topic {topic!r}: use one of {', '.join(gossip.TOPICS)}")
    return topic, gossip.topic_name(netuid, topic)


def parse_input(data: bytes, source: str) -> env.Envelope | Any:
    """A signed envelope (JSON file form or wire CBOR) or, failing that, a JSON body."""
    try:
        return env.from_wire(data, max_size=len(data) + 1)
    except env.EnvelopeError:
        pass
    try:
        value = env.strict_json_loads(data)
    except env.EnvelopeError as exc:
        raise PlatformError(f"{source}: not a signed envelope nor a JSON body: {exc}") from None
    if isinstance(value, dict) and "signature" in value and "kind" in value:
        try:
            return env.from_file_json(value)
        except env.EnvelopeError as exc:
            raise PlatformError(f"{source}: {exc}") from None
    return value


def check_publishable(
    state: State, network: env.Network, sudo: str, short: str, envelope: env.Envelope
) -> None:
    """Refuse, with the reason a receiver would give, what the network would reject."""
    size = len(envelope.to_wire())
    if size > gossip.MAX_MESSAGE_BYTES:
        raise PlatformError(
            f"message of {size} bytes exceeds the gossip cap of {gossip.MAX_MESSAGE_BYTES} bytes "
            "(put large data in the DHT and gossip its key)"
        )
    snapshot = metagraph.latest_snapshot(state, network.netuid)
    ctx = gossip.Context(
        network,
        frozenset(snapshot.validators() if snapshot else ()),
        sudo,
        registered=frozenset(n.hotkey for n in snapshot.neurons) if snapshot else frozenset(),
    )
    decision = gossip.admit(
        envelope.to_wire(),
        short,
        ctx,
        now_ms=now_ms(),
        verify_signature=verify_signature,
        window_for=None,
    )
    if not decision.accepted:
        raise PlatformError(f"the network would refuse this message ({decision.reason}): {decision.detail}")


def queue_publish(
    state: State, network: env.Network, sudo: str, topic: str, envelope: env.Envelope
) -> dict[str, Any]:
    short, full = resolve_topic(network.netuid, topic)
    check_publishable(state, network, sudo, short, envelope)
    row_id = store.queue_outgoing(state, full, envelope)
    return {"outbox_id": row_id, "topic": full, "msg_id": envelope.message_id(), "kind": envelope.kind}
