"""Creating a dev chain from a seed file (``fixtures/metagraph/devnet.json``).

The seed is the chain's genesis: the subnet, its owner, its hyperparameters and its
neurons in registration order (uid = position) with their stake in TAO. It is read
through the bounded, regular-files-only reader and checked field by field before
anything is built; the chain is built in a temporary file and appears only complete.
The seed's neurons get their validator permits as an epoch would assign them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from platform_cli.chain.dev.chain import DEFAULT_HYPERPARAMS, MAX_BLOCK, DevChain
from platform_cli.clock import now_ms
from platform_cli.errors import PlatformError
from platform_cli.files import read_limited

RAO_PER_TAO = 10**9
MAX_TAO = 21_000_000  # the total TAO supply
MAX_SEED_BYTES = 4 * 1024 * 1024
MAX_NETUID = 4095  # GLOBAL_MAX_SUBNET_COUNT - 1; netuid 0 is the root network
U16_MAX = 2**16 - 1
# Each hyperparameter's type and range, as the pallet stores it.
HYPERPARAMETER_RANGES: dict[str, tuple[type, int, int]] = {
    "Tempo": (int, 1, U16_MAX),
    "WeightsSetRateLimit": (int, 0, 2**64 - 1),
    "MinAllowedWeights": (int, 0, U16_MAX),
    "MaxWeightsLimit": (int, 0, U16_MAX),
    "CommitRevealWeightsEnabled": (bool, 0, 1),
    "RevealPeriodEpochs": (int, 1, 100),
    "MechanismCountCurrent": (int, 1, 8),
    "MaxAllowedValidators": (int, 0, U16_MAX),
    "MaxAllowedUids": (int, 1, 4096),
    "WeightsVersionKey": (int, 0, 2**64 - 1),
}
CONSENSUS_MODES = ("Yuma", "Null")


_KIND_NAMES = {
    int: "an integer",
    str: "a string",
    dict: "a JSON object",
    list: "a JSON list",
    bool: "a boolean",
}


def _field(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in doc:
        raise PlatformError(f"{where}: {key} is missing (it must be {_KIND_NAMES[kind]})")
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PlatformError(f"{where}: {key} = {value!r} must be {_KIND_NAMES[kind]}")
    return value


def _bounded(doc: dict[str, Any], key: str, low: int, high: int, where: str) -> int:
    value = _field(doc, key, int, where)
    if not low <= value <= high:
        raise PlatformError(f"{where}: {key} = {value} must be in {low}..{high}")
    return value


def _address(doc: dict[str, Any], key: str, where: str) -> str:
    from platform_cli.identity import is_ss58

    value = _field(doc, key, str, where)
    if not is_ss58(value):
        raise PlatformError(f"{where}: {key} = {value!r} is not an ss58 address")
    return value


def _hyperparameters(doc: dict[str, Any], where: str) -> dict[str, Any]:
    hyper = _field(doc, "hyperparameters", dict, where)
    where = f"{where}: hyperparameters"
    for key, value in hyper.items():
        if key == "SubnetEpochConsensus":
            if value not in CONSENSUS_MODES:
                raise PlatformError(f"{where}: {key} = {value!r} must be one of {', '.join(CONSENSUS_MODES)}")
            continue
        if key not in HYPERPARAMETER_RANGES:
            known = ", ".join(sorted(DEFAULT_HYPERPARAMS))
            raise PlatformError(f"{where}: {key!r} is not a dev chain hyperparameter ({known})")
        kind, low, high = HYPERPARAMETER_RANGES[key]
        if kind is bool:
            _field(hyper, key, bool, where)
        else:
            _bounded(hyper, key, low, high, where)
    return hyper


def _parse(path: Path) -> Any:
    data = read_limited(path, MAX_SEED_BYTES, "dev chain seed")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PlatformError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise PlatformError(f"{path}: invalid JSON: {exc}") from None
    except RecursionError:
        raise PlatformError(f"{path}: JSON nested too deeply") from None


def load_seed(path: Path) -> dict[str, Any]:
    doc = _parse(Path(path))
    where = str(path)
    if not isinstance(doc, dict):
        raise PlatformError(f"{where}: the seed must be a JSON object")
    _bounded(doc, "netuid", 1, MAX_NETUID, where)
    if "start_block" in doc:
        _bounded(doc, "start_block", 0, MAX_BLOCK, where)
    if "block_time_ms" in doc:
        _bounded(doc, "block_time_ms", 0, 2**31 - 1, where)
    owner = _field(doc, "owner", dict, where)
    _address(owner, "hotkey", f"{where}: owner")
    _address(owner, "coldkey", f"{where}: owner")
    hyper = _hyperparameters(doc, where)
    neurons = _field(doc, "neurons", list, where)
    limit = int(hyper.get("MaxAllowedUids", DEFAULT_HYPERPARAMS["MaxAllowedUids"]))
    if len(neurons) > limit:
        raise PlatformError(f"{where}: {len(neurons)} neurons, more than MaxAllowedUids = {limit}")
    seen: set[str] = set()
    for i, neuron in enumerate(neurons):
        at = f"{where}: neurons[{i}]"
        if not isinstance(neuron, dict):
            raise PlatformError(f"{at} must be an object")
        hotkey = _address(neuron, "hotkey", at)
        _address(neuron, "coldkey", at)
        _bounded(neuron, "stake_tao", 0, MAX_TAO, at)
        if hotkey in seen:
            raise PlatformError(f"{at}: hotkey {hotkey} is registered twice")
        seen.add(hotkey)
    return doc


def init_dev_chain(
    path: Path,
    seed_path: Path,
    *,
    block_time_ms: int | None = None,
    tempo: int | None = None,
    hyperparameters: dict[str, Any] | None = None,
    clock: Callable[[], int] = now_ms,
) -> DevChain:
    """Create the chain file at ``path`` from the seed; options override the seed."""
    seed = load_seed(seed_path)
    block_time = seed.get("block_time_ms", 12_000) if block_time_ms is None else block_time_ms
    if isinstance(block_time, bool) or not isinstance(block_time, int) or block_time < 0:
        raise PlatformError(f"block time {block_time!r} must be a non-negative integer of milliseconds")
    hyper = dict(seed["hyperparameters"])
    hyper.update(hyperparameters or {})
    if tempo is not None:
        if tempo <= 0:
            raise PlatformError(f"tempo {tempo} must be a positive number of blocks")
        hyper["Tempo"] = tempo
    netuid, owner = seed["netuid"], seed["owner"]

    def genesis(chain: DevChain) -> None:
        chain.add_subnet(netuid, owner["hotkey"], owner["coldkey"], hyper)
        for neuron in seed["neurons"]:
            chain.register(
                netuid, neuron["hotkey"], neuron["coldkey"], neuron["stake_tao"] * RAO_PER_TAO, genesis=True
            )
        chain.grant_permits(netuid)

    return DevChain.create(
        path,
        start_block=int(seed.get("start_block", 1)),
        block_time_ms=block_time,
        clock=clock,
        setup=genesis,
    )
