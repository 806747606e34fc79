"""The node's configuration: ``platform.toml`` in the data dir, or ``--config``.

With no file the node runs on the embedded default, the local devnet, whose sudo key is
the well-known one in ``fixtures/wallets`` (never use it on a real network). Every error
names the file and the field at fault.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platform_cli.core.envelope import Network
from platform_cli.errors import PlatformError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FILENAME = "platform.toml"
DEVNET_NETUID = 100
DEVNET_GENESIS = "platform-devnet"
DEVNET_SUDO = "5DVH4ASWcfJ5cUE31CtsCvoE78wisVsJRXagswAReC6zq33M"


@dataclass(frozen=True)
class NetworkConfig:
    netuid: int = DEVNET_NETUID
    genesis: str = DEVNET_GENESIS
    sudo: str = DEVNET_SUDO

    @property
    def network(self) -> Network:
        return Network(self.netuid, self.genesis)


@dataclass(frozen=True)
class Config:
    path: Path | None
    network: NetworkConfig = field(default_factory=NetworkConfig)
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """A table of the file for components that own their own settings."""
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise PlatformError(f"{self.path}: [{name}] must be a table")
        return value


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise PlatformError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise PlatformError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlatformError(f"{path}: invalid TOML: {exc}") from None


def load_config(data_dir: Path, explicit: Path | None = None) -> Config:
    """Read the config; a missing default file means the embedded devnet defaults."""
    path = explicit if explicit is not None else Path(data_dir) / CONFIG_FILENAME
    if explicit is None and not path.exists():
        return Config(path=None)
    raw = read_toml(path)
    return Config(path=path, network=_network(raw.get("network", {}), path), raw=raw)


def _network(table: Any, path: Path) -> NetworkConfig:
    if not isinstance(table, dict):
        raise PlatformError(f"{path}: [network] must be a table")
    unknown = sorted(set(table) - {"netuid", "genesis", "sudo"})
    if unknown:
        raise PlatformError(f"{path}: network.{unknown[0]} is not a known setting")
    netuid = table.get("netuid", DEVNET_NETUID)
    if isinstance(netuid, bool) or not isinstance(netuid, int) or not 0 <= netuid <= 0xFFFF:
        raise PlatformError(f"{path}: network.netuid = {netuid!r} must be an integer in 0..65535")
    genesis = table.get("genesis", DEVNET_GENESIS)
    if not isinstance(genesis, str) or not 0 < len(genesis) <= 128:
        raise PlatformError(f"{path}: network.genesis = {genesis!r} must be a string of 1..128 characters")
    sudo = table.get("sudo", DEVNET_SUDO)
    from platform_cli.identity import is_ss58

    if not isinstance(sudo, str) or not is_ss58(sudo):
        raise PlatformError(f"{path}: network.sudo = {sudo!r} is not an ss58 address")
    return NetworkConfig(netuid, genesis, sudo)
