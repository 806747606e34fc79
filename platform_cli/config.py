"""The node's configuration: ``platform.toml`` in the data dir, or ``--config``.

With no file the node runs on the embedded default, the local devnet, whose sudo key is
the well-known one in ``fixtures/wallets`` (never use it on a real network). That default
is fail-closed: it applies only to the devnet itself (the dev chain, netuid 100, genesis
``platform-devnet``); on any other network the sudo key must be set explicitly, and
whatever trusts it refuses to run until it is. Every error names the file and the field
at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platform_cli.core.envelope import Network
from platform_cli.errors import PlatformError
from platform_cli.files import read_toml as read_toml_file
from platform_cli.files import tomllib

__all__ = ["Config", "NetworkConfig", "describe_sudo", "load_config", "read_toml", "tomllib"]

CONFIG_FILENAME = "platform.toml"
CONFIG_MAX_BYTES = 1024 * 1024
DEVNET_NETUID = 100
DEVNET_GENESIS = "platform-devnet"
DEVNET_SUDO = "5DVH4ASWcfJ5cUE31CtsCvoE78wisVsJRXagswAReC6zq33M"
DEVNET_CHAIN = "dev"
DEVNET_SUDO_SOURCE = "the devnet default (fixtures/wallets/devnet, a public key)"


@dataclass(frozen=True)
class NetworkConfig:
    netuid: int = DEVNET_NETUID
    genesis: str = DEVNET_GENESIS
    sudo_key: str | None = DEVNET_SUDO
    """The sudo owner's ss58; ``None`` when no sudo is set and this is not the devnet."""
    sudo_source: str = DEVNET_SUDO_SOURCE
    """Where ``sudo_key`` came from, as said to the operator."""

    @property
    def network(self) -> Network:
        return Network(self.netuid, self.genesis)

    @property
    def sudo(self) -> str:
        """The sudo key, for whatever trusts it: refuses when none is set (fail-closed)."""
        if self.sudo_key is None:
            raise PlatformError(
                f"network.sudo is {self.sudo_source}: outside the devnet (chain.network {DEVNET_CHAIN!r}, "
                f"netuid {DEVNET_NETUID}, genesis {DEVNET_GENESIS!r}) the sudo owner's ss58 must be set "
                "explicitly (the subnet owner's hotkey)"
            )
        return self.sudo_key


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
    """A config file: bounded, regular files only, every error naming the file."""
    return read_toml_file(path, "config file", CONFIG_MAX_BYTES)


def load_config(data_dir: Path, explicit: Path | None = None) -> Config:
    """Read the config; a missing default file means the embedded devnet defaults."""
    path = explicit if explicit is not None else Path(data_dir) / CONFIG_FILENAME
    if explicit is None and not path.exists() and not path.is_symlink():
        return Config(path=None)
    raw = read_toml(path)
    return Config(path=path, network=_network(raw, path), raw=raw)


def _network(raw: dict[str, Any], path: Path) -> NetworkConfig:
    table = raw.get("network", {})
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
    if "sudo" in table:
        sudo = table["sudo"]
        from platform_cli.identity import is_ss58

        if not isinstance(sudo, str) or not is_ss58(sudo):
            raise PlatformError(f"{path}: network.sudo = {sudo!r} is not an ss58 address")
        return NetworkConfig(netuid, genesis, sudo, f"network.sudo in {path}")
    chain = raw.get("chain", {})
    chain_network = chain.get("network", DEVNET_CHAIN) if isinstance(chain, dict) else None
    if (chain_network, netuid, genesis) == (DEVNET_CHAIN, DEVNET_NETUID, DEVNET_GENESIS):
        return NetworkConfig(netuid, genesis)
    return NetworkConfig(netuid, genesis, None, f"not set in {path}")


def describe_sudo(network: NetworkConfig, owner: tuple[str, int] | None) -> dict[str, Any]:
    """Which sudo key is trusted, where it came from, and whether the chain agrees.

    ``owner`` is the subnet owner's hotkey and the block it was read at (the newest
    ``chain sync``), when the chain exposes one.
    """
    info: dict[str, Any] = {"sudo": network.sudo_key, "sudo_source": network.sudo_source}
    if owner is None or not owner[0]:
        info["sudo_owner_check"] = "no subnet owner known (run 'platform chain sync')"
    elif network.sudo_key is None:
        info["sudo_owner_check"] = f"the subnet owner's hotkey is {owner[0]} (chain sync at block {owner[1]})"
    elif network.sudo_key == owner[0]:
        info["sudo_owner_check"] = f"the subnet owner's hotkey (chain sync at block {owner[1]})"
    else:
        info["sudo_owner_check"] = (
            f"DIFFERS from the subnet owner's hotkey {owner[0]} (chain sync at block {owner[1]})"
        )
    return info
