"""What a command says about the sudo key it trusts: which key, from where, and the chain's view."""

from __future__ import annotations

import click

from platform_cli.config import NetworkConfig, describe_sudo
from platform_cli.state.db import State
from platform_cli.state.metagraph import subnet_owner


def trusted_sudo(network: NetworkConfig, state: State | None, *, required: bool = False) -> dict[str, object]:
    """The sudo key trusted, its source and the chain's opinion; a warning line if they differ.

    ``required``: refuse (fail-closed) when no sudo key is set for this network.
    """
    if required:
        network.sudo  # noqa: B018 - the property raises when no sudo key is set
    owner = subnet_owner(state, network.netuid) if state is not None else None
    info = describe_sudo(network, owner)
    if info["sudo_owner_check"].startswith("DIFFERS"):
        click.echo(f"warning: the sudo key {network.sudo_key} {info['sudo_owner_check']}", err=True)
    return info
