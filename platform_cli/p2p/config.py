"""The ``[p2p]`` table of the config, validated, with command-line overrides on top.

```toml
[p2p]
listen = ["/ip4/0.0.0.0/tcp/4001"]
bootstrap = ["/ip4/10.0.0.2/tcp/4001/p2p/12D3Koo..."]
key = "validator"            # key name (platform keys) that signs announcements
rate_per_signer = 100        # messages a second, per signer
burst_per_signer = 500
min_validator_stake_rao = 0
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
    )


def check_addrs(settings: NodeSettings) -> None:
    """Refuse malformed listen or bootstrap addresses before anything starts."""
    import multiaddr

    for field, addrs in (("listen", settings.listen), ("bootstrap", settings.bootstrap)):
        for addr in addrs:
            try:
                multiaddr.Multiaddr(addr)
            except Exception as exc:  # the library raises several types for bad input
                raise PlatformError(f"p2p.{field}: {addr!r} is not a valid multiaddr: {exc}") from None
            if field == "bootstrap" and "/p2p/" not in addr:
                raise PlatformError(f"p2p.bootstrap: {addr!r} must end with /p2p/<peer id>")
