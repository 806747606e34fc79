"""``[consensus]`` in platform.toml: whether this node takes part, and its timing.

Consensus runs when ``genesis_block`` is set: the block of the metagraph snapshot whose
validator set starts the log. Every validator of a network must name the same block
(and the same network and sudo key), or their logs start from different genesis ids and
they never agree on anything. The timeouts are the machine's (``core/consensus/params``);
``cutoff_percent`` is how far into an epoch validators fix their score bundles, and
``grace_blocks`` how long after that a proposer waits for bundles to spread.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from platform_cli.config import Config
from platform_cli.core.consensus.params import Timeouts
from platform_cli.errors import PlatformError

KNOWN = {"genesis_block", "cutoff_percent", "grace_blocks"} | {f.name for f in fields(Timeouts)}


@dataclass(frozen=True)
class ConsensusSettings:
    genesis_block: int | None = None
    cutoff_percent: int = 50
    grace_blocks: int = 2
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def enabled(self) -> bool:
        return self.genesis_block is not None


def _int(where: str, table: dict[str, Any], key: str, default: Any, low: int, high: int) -> Any:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PlatformError(f"{where}: consensus.{key} = {value!r} must be an integer in {low}..{high}")
    return value


def consensus_settings(config: Config) -> ConsensusSettings:
    table = config.section("consensus")
    where = str(config.path or "platform.toml")
    unknown = sorted(set(table) - KNOWN)
    if unknown:
        raise PlatformError(f"{where}: consensus.{unknown[0]} is not a known setting")
    defaults = Timeouts()
    timeouts = Timeouts(
        **{
            f.name: _int(where, table, f.name, getattr(defaults, f.name), 1, 600_000)
            for f in fields(Timeouts)
        }
    )
    return ConsensusSettings(
        genesis_block=_int(where, table, "genesis_block", None, 0, 2**63 - 1),
        cutoff_percent=_int(where, table, "cutoff_percent", 50, 1, 90),
        grace_blocks=_int(where, table, "grace_blocks", 2, 0, 10_000),
        timeouts=timeouts,
    )
