"""Preparing DHT records in a command: the same rules the DHT validators apply."""

from __future__ import annotations

from pathlib import Path

from platform_cli.clock import now_ms
from platform_cli.config import NetworkConfig
from platform_cli.core import dhtrec
from platform_cli.core import envelope as env
from platform_cli.errors import PlatformError
from platform_cli.identity import KeyStore, verify_signature
from platform_cli.p2p.outgoing import seal_for
from platform_cli.state import metagraph
from platform_cli.state.db import State


def check_key(key: str) -> str:
    try:
        return dhtrec.check_key(key)
    except dhtrec.RecordError as exc:
        raise PlatformError(str(exc)) from None


def prepare(
    state: State, data_dir: Path, network: NetworkConfig, key: str, data: bytes, key_name: str | None
) -> tuple[str, bytes]:
    """(key, value) to put, refused here when the network would refuse it."""
    if key == f"/{dhtrec.CONTENT_NAMESPACE}/":
        key = dhtrec.content_key(data)
    signer = KeyStore(data_dir).signer(key_name) if key_name else None
    if signer is not None:
        key = dhtrec.with_owner(key, signer.ss58)
    namespace = check_key(key)
    try:
        if namespace == dhtrec.CONTENT_NAMESPACE:
            if key_name:
                raise PlatformError("content-addressed records (/sub/) are not signed: drop --key")
            dhtrec.check_content(key, data)
            return key, data
        if signer is None:
            raise PlatformError(f"records under /{namespace}/ must be signed: pass --key NAME")
        kind = dhtrec.SIGNED_NAMESPACES[namespace]
        envelope = seal_for(state, network.network, signer, kind, {"key": key, "data": data})
        value = envelope.to_wire()
        validators = metagraph.latest_validator_set(state, network.netuid)
        ctx = dhtrec.SignedContext(network.network, validators)
        dhtrec.check_signed(key, value, ctx, verify_signature=verify_signature, now_ms=now_ms())
        return key, value
    except (dhtrec.RecordError, env.EnvelopeError) as exc:
        raise PlatformError(str(exc)) from None
