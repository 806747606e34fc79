"""The ``[chain]`` and ``[weights]`` tables of ``platform.toml``, validated.

```toml
[chain]
network = "dev"        # dev (embedded, default) | finney | test | local | ws://... | wss://...
timeout_s = 30         # deadline of each attempt of a chain call
retries = 3            # more attempts per call, after backoffs of 0.25 s, 0.5 s, 1 s ... (at most 5 s)
                       # a one-shot command spends at most (retries + 1) * timeout_s + the backoffs
                       # on the chain in all (121.75 s with these values), then says what it tried
dev_db = "devchain.db" # the dev chain's own SQLite file (relative to the data dir)
dev_seed = "fixtures/metagraph/devnet.json"

[weights]
hotkey = "validator"   # key (in <data-dir>/keys) that signs weights; a registered hotkey
mechid = 0
version_key = 0
burn = true            # unallocated emission goes to the burn uid
burn_uid = 0           # default: the subnet owner's uid
min_stake_rao = 0      # validators below this stake do not count
lead_blocks = 10       # submit this many blocks before the next epoch (at least 2: a transaction
                       # sent at block h is included at h + 1 at the earliest)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli.config import Config
from platform_cli.core.epoch import MIN_LEAD_BLOCKS
from platform_cli.errors import PlatformError

NAMED_NETWORKS = ("dev", "finney", "test", "local")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_SEED = REPO / "fixtures" / "metagraph" / "devnet.json"


@dataclass(frozen=True)
class ChainSettings:
    network: str = "dev"
    timeout_s: float = 30.0
    retries: int = 3
    dev_db: Path = Path("devchain.db")
    dev_seed: Path = DEFAULT_SEED

    @property
    def is_dev(self) -> bool:
        return self.network == "dev"


@dataclass(frozen=True)
class WeightSettings:
    hotkey: str = "validator"
    mechid: int = 0
    version_key: int = 0
    burn: bool = True
    burn_uid: int | None = None
    min_stake_rao: int = 0
    lead_blocks: int = 10
    fallback: str = "own"
    """With consensus on and nothing committed by the deadline: ``own`` (this validator's
    own vector) or ``skip`` (set nothing; the epoch is recorded as missed)."""


class _Table:
    def __init__(self, config: Config, name: str, known: set[str]) -> None:
        self.where, self.name = config.path or "platform.toml", name
        self.table = config.section(name)
        unknown = sorted(set(self.table) - known)
        if unknown:
            raise PlatformError(f"{self.where}: {name}.{unknown[0]} is not a known setting")

    def int(self, key: str, default: int | None, low: int, high: int) -> int | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise PlatformError(
                f"{self.where}: {self.name}.{key} = {value!r} must be an integer in {low}..{high}"
            )
        return value

    def get(self, key: str, default: Any, kind: type) -> Any:
        value = self.table.get(key, default)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise PlatformError(f"{self.where}: {self.name}.{key} = {value!r} must be a {kind.__name__}")
        return value


def chain_settings(config: Config, data_dir: Path) -> ChainSettings:
    t = _Table(config, "chain", {"network", "timeout_s", "retries", "dev_db", "dev_seed"})
    network = t.get("network", "dev", str)
    if network not in NAMED_NETWORKS and not network.startswith(("ws://", "wss://")):
        raise PlatformError(
            f"{t.where}: chain.network = {network!r} must be one of {', '.join(NAMED_NETWORKS)} or a ws:// / wss:// URL"
        )
    timeout = t.get("timeout_s", 30, (int, float))
    if not 0 < timeout <= 600:
        raise PlatformError(f"{t.where}: chain.timeout_s = {timeout!r} must be in (0, 600]")
    retries = t.int("retries", 3, 0, 20)
    dev_db = Path(data_dir) / t.get("dev_db", "devchain.db", str)
    seed = Path(t.get("dev_seed", str(DEFAULT_SEED), str))
    return ChainSettings(network, float(timeout), int(retries or 0), dev_db, seed)


def weight_settings(config: Config) -> WeightSettings:
    t = _Table(
        config,
        "weights",
        {"hotkey", "mechid", "version_key", "burn", "burn_uid", "min_stake_rao", "lead_blocks", "fallback"},
    )
    fallback = t.get("fallback", "own", str)
    if fallback not in ("own", "skip"):
        raise PlatformError(f"{t.where}: weights.fallback = {fallback!r} must be 'own' or 'skip'")
    return WeightSettings(
        hotkey=t.get("hotkey", "validator", str),
        mechid=int(t.int("mechid", 0, 0, 255) or 0),
        version_key=int(t.int("version_key", 0, 0, 2**64 - 1) or 0),
        burn=t.get("burn", True, bool),
        burn_uid=t.int("burn_uid", None, 0, 65535),
        min_stake_rao=int(t.int("min_stake_rao", 0, 0, 2**64 - 1) or 0),
        lead_blocks=_lead_blocks(t),
        fallback=fallback,
    )


def _lead_blocks(t: _Table) -> int:
    value = t.table.get("lead_blocks", 10)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MIN_LEAD_BLOCKS:
        raise PlatformError(
            f"{t.where}: weights.lead_blocks = {value} cannot meet the deadline: a transaction sent at block h "
            f"is included at h + 1 at the earliest, so weights must leave at least {MIN_LEAD_BLOCKS} blocks "
            "before the next epoch"
        )
    return int(t.int("lead_blocks", 10, MIN_LEAD_BLOCKS, 10_000) or 10)
