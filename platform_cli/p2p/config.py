"""The ``[p2p]`` table of the config, validated, with command-line overrides on top.

```toml
[p2p]
listen = ["/ip4/0.0.0.0/tcp/4001"]
bootstrap = ["/ip4/10.0.0.2/tcp/4001/p2p/12D3Koo..."]
key = "validator"            # key name (platform keys) that signs announcements
rate_per_signer = 100        # messages a second, per signer
burst_per_signer = 500
rate_per_peer = 1000         # messages a second a peer may relay to us, whoever signed them
burst_per_peer = 5000
inbox_max_rows = 200000      # inbox retention: the newest rows of each topic ...
inbox_max_age_s = 604800     # ... received in the last 7 days ...
inbox_max_bytes = 1073741824 # ... and the newest 1 GiB in all
min_validator_stake_rao = 0
sync_interval_s = 30         # also syncs from each peer on connection
```
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from platform_cli.config import Config
from platform_cli.errors import PlatformError

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/4001"
GOSSIP_WINDOW = 3
"""Heartbeats (1 s each) a message stays in the gossip cache; older ones come by sync."""
_KNOWN = {
    "listen",
    "bootstrap",
    "key",
    "rate_per_signer",
    "burst_per_signer",
    "min_validator_stake_rao",
    "redial_interval_s",
    "announce_interval_s",
    "sync_interval_s",
    "rate_per_peer",
    "burst_per_peer",
    "inbox_max_rows",
    "inbox_max_age_s",
    "inbox_max_bytes",
}


@dataclass(frozen=True)
class NodeSettings:
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    bootstrap: tuple[str, ...] = ()
    key: str | None = None
    rate_per_signer: int = 100
    burst_per_signer: int = 500
    min_validator_stake_rao: int = 0
    redial_interval_s: int = 2
    announce_interval_s: int = 30
    sync_interval_s: int = 30
    """Seconds between syncs from every connected peer (also done on each new connection)."""
    rate_per_peer: int = 1000
    burst_per_peer: int = 5000
    inbox_max_rows: int = 200_000
    inbox_max_age_s: int = 7 * 24 * 3600
    inbox_max_bytes: int = 1024**3

    def with_overrides(self, **values: Any) -> NodeSettings:
        return replace(self, **{k: v for k, v in values.items() if v not in (None, ())})


def _fail(config: Config, field: str, value: Any, want: str) -> PlatformError:
    return PlatformError(f"{config.path}: p2p.{field} = {value!r} {want}")


def _addr_list(
    config: Config, table: dict[str, Any], field: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    value = table.get(field, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith("/") for v in value):
        raise _fail(config, field, value, "must be a list of multiaddr strings")
    return tuple(value)


def _positive(config: Config, table: dict[str, Any], field: str, default: int, minimum: int = 1) -> int:
    value = table.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(config, field, value, f"must be an integer >= {minimum}")
    return value


def load_settings(config: Config) -> NodeSettings:
    table = config.section("p2p")
    unknown = sorted(set(table) - _KNOWN)
    if unknown:
        raise PlatformError(f"{config.path}: p2p.{unknown[0]} is not a known setting")
    key = table.get("key")
    if key is not None and not isinstance(key, str):
        raise _fail(config, "key", key, "must be a key name")
    base = NodeSettings()
    return NodeSettings(
        listen=_addr_list(config, table, "listen", base.listen),
        bootstrap=_addr_list(config, table, "bootstrap", base.bootstrap),
        key=key,
        rate_per_signer=_positive(config, table, "rate_per_signer", base.rate_per_signer),
        burst_per_signer=_positive(config, table, "burst_per_signer", base.burst_per_signer),
        min_validator_stake_rao=_positive(
            config, table, "min_validator_stake_rao", base.min_validator_stake_rao, minimum=0
        ),
        redial_interval_s=_positive(config, table, "redial_interval_s", base.redial_interval_s),
        announce_interval_s=_positive(config, table, "announce_interval_s", base.announce_interval_s),
        sync_interval_s=_positive(config, table, "sync_interval_s", base.sync_interval_s),
        rate_per_peer=_positive(config, table, "rate_per_peer", base.rate_per_peer),
        burst_per_peer=_positive(config, table, "burst_per_peer", base.burst_per_peer),
        inbox_max_rows=_positive(config, table, "inbox_max_rows", base.inbox_max_rows),
        inbox_max_age_s=_positive(config, table, "inbox_max_age_s", base.inbox_max_age_s),
        inbox_max_bytes=_positive(config, table, "inbox_max_bytes", base.inbox_max_bytes),
    )


def check_addr(what: str, addr: str, *, peer_id: bool) -> None:
    """Refuse an address the node cannot use: it must parse, be /ip4 or /ip6 over /tcp (the
    only transport the node runs) and, when ``peer_id``, end with /p2p/<peer id>."""
    import multiaddr

    try:
        names = [p.name for p in multiaddr.Multiaddr(addr).protocols()]
    except Exception as exc:  # the library raises several types for bad input
        raise PlatformError(f"{what}: {addr!r} is not a valid multiaddr: {exc}") from None
    if len(names) < 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
        raise PlatformError(f"{what}: {addr!r} must start with /ip4/<address>/tcp/<port> or /ip6/...")
    if peer_id and names[2:] != ["p2p"]:
        raise PlatformError(f"{what}: {addr!r} must end with /p2p/<peer id>")
    if not peer_id and len(names) != 2:
        raise PlatformError(f"{what}: {addr!r} must be just /ip4/<address>/tcp/<port> (or /ip6/...)")


def check_addrs(settings: NodeSettings) -> None:
    """Refuse malformed listen or bootstrap addresses before anything starts."""
    for addr in settings.listen:
        check_addr("p2p.listen", addr, peer_id=False)
    for addr in settings.bootstrap:
        check_addr("p2p.bootstrap", addr, peer_id=True)
