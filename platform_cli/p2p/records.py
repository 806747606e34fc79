"""Preparing DHT records in a command: the same rules the DHT validators apply.

People write keys in the human form (``/sub/<sha256 hex>``, ``/eval/<ss58>/<name>``);
the DHT stores them under the compact form (``core.dhtrec``), which commands also accept.
"""

from __future__ import annotations

from pathlib import Path

from platform_cli.clock import now_ms
from platform_cli.config import NetworkConfig
from platform_cli.core import dhtrec
from platform_cli.core import envelope as env
from platform_cli.errors import PlatformError
from platform_cli.identity import KeyStore, verify_signature
from platform_cli.p2p import store
from platform_cli.p2p.outgoing import seal_for
from platform_cli.state import metagraph
from platform_cli.state.db import State


def resolve_key(key: str) -> str:
    """The compact (DHT) form of a human or compact key; a user error when it is neither."""
    try:
        return dhtrec.dht_key(key)
    except dhtrec.RecordError as exc:
        raise PlatformError(str(exc)) from None


def prepare(
    state: State, data_dir: Path, network: NetworkConfig, key: str, data: bytes, key_name: str | None
) -> tuple[str, str, bytes]:
    """(human key, DHT key, value) to put, refused here when the network would refuse it."""
    if key == f"/{dhtrec.CONTENT_NAMESPACE}/":
        key = dhtrec.content_key(data)
    signer = KeyStore(data_dir).signer(key_name) if key_name else None
    if signer is not None:
        key = dhtrec.with_owner(key, signer.ss58)
    try:
        namespace = dhtrec.check_key(key)
        compact = dhtrec.dht_key(key)
        if namespace == dhtrec.CONTENT_NAMESPACE:
            if key_name:
                raise PlatformError("content-addressed records (/sub/) are not signed: drop --key")
            dhtrec.check_content(compact, data)
            return key, compact, data
        if signer is None:
            raise PlatformError(f"records under /{namespace}/ must be signed: pass --key NAME")
        kind = dhtrec.SIGNED_NAMESPACES[namespace]
        envelope = seal_for(state, network.network, signer, kind, {"key": key, "data": data})
        value = envelope.to_wire()
        validators = metagraph.latest_validator_set(state, network.netuid)
        ctx = dhtrec.SignedContext(network.network, validators)
        dhtrec.check_signed(
            compact, value, ctx, verify_signature=verify_signature, now_ms=now_ms(),
            newest_seen=store.dht_mark(state, compact),
        )  # fmt: skip
        return key, compact, value
    except (dhtrec.RecordError, env.EnvelopeError) as exc:
        raise PlatformError(str(exc)) from None
