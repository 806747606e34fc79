"""Creating a dev chain from a seed file (``fixtures/metagraph/devnet.json``).

The seed names the subnet, its owner, its hyperparameters and its neurons in
registration order (uid = position) with their stake in TAO.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from platform_cli.chain.devchain import MAX_BLOCK, DevChain
from platform_cli.clock import now_ms
from platform_cli.errors import PlatformError

RAO_PER_TAO = 10**9
MAX_TAO = 21_000_000  # the total TAO supply


def _field(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PlatformError(f"{where}: {key} = {value!r} must be a {kind.__name__}")
    return value


def _bounded(doc: dict[str, Any], key: str, low: int, high: int, where: str) -> int:
    value = _field(doc, key, int, where)
    if not low <= value <= high:
        raise PlatformError(f"{where}: {key} = {value} must be in {low}..{high}")
    return value


def load_seed(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PlatformError(f"cannot read dev chain seed {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PlatformError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PlatformError(f"{path}: the seed must be a JSON object")
    _bounded(doc, "netuid", 0, 65535, str(path))
    if "start_block" in doc:
        _bounded(doc, "start_block", 0, MAX_BLOCK, str(path))
    _field(doc, "owner", dict, str(path))
    _field(doc, "hyperparameters", dict, str(path))
    for i, neuron in enumerate(_field(doc, "neurons", list, str(path))):
        where = f"{path}: neurons[{i}]"
        if not isinstance(neuron, dict):
            raise PlatformError(f"{where} must be an object")
        _field(neuron, "hotkey", str, where)
        _field(neuron, "coldkey", str, where)
        _bounded(neuron, "stake_tao", 0, MAX_TAO, where)
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
    chain = DevChain.create(
        path, start_block=int(seed.get("start_block", 1)), block_time_ms=block_time, clock=clock
    )
    netuid = seed["netuid"]
    owner = seed["owner"]
    chain.add_subnet(netuid, owner.get("hotkey", ""), owner.get("coldkey", ""), hyper)
    for neuron in seed["neurons"]:
        chain.register(netuid, neuron["hotkey"], neuron["coldkey"], neuron["stake_tao"] * RAO_PER_TAO)
    return chain
