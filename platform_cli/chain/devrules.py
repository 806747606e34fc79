"""The dev chain's dispatch rules for the calls validators make.

Each rule checks what subtensor checks for that call and returns the pallet's error
name (``Name: detail``) or applies the call and returns None. The checks follow the
pallet's order: subnet, registration, shapes, permit, weight count, limits, rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from platform_cli.core.epoch import Schedule

if TYPE_CHECKING:
    from platform_cli.chain.devchain import _Tx

MECHANISM_STRIDE = 4096
U16_MAX = 65535


def _common(tx: _Tx, params: dict[str, Any], signer: str) -> tuple[int, int, str | None]:
    """(uid, storage index, error) for a weight call's subnet, mechanism and signer."""
    netuid, mecid = int(params["netuid"]), int(params.get("mecid", 0))
    if not tx.get("NetworksAdded", [netuid]):
        return -1, -1, f"SubNetworkDoesNotExist: netuid {netuid}"
    if mecid >= int(tx.get("MechanismCountCurrent", [netuid]) or 1):
        return -1, -1, f"MechanismDoesNotExist: mechanism {mecid} on netuid {netuid}"
    uid = tx.get("Uids", [netuid, signer])
    if uid is None:
        return -1, -1, f"HotKeyNotRegisteredInSubNet: {signer} on netuid {netuid}"
    return int(uid), mecid * MECHANISM_STRIDE + netuid, None


def _rate_limited(tx: _Tx, netuid: int, index: int, uid: int) -> bool:
    limit = int(tx.get("WeightsSetRateLimit", [netuid]) or 0)
    last = list(tx.get("LastUpdate", [index]) or [])
    return bool(limit) and uid < len(last) and last[uid] > 0 and tx.block - last[uid] < limit


def _touch(tx: _Tx, index: int, uid: int) -> None:
    last = list(tx.get("LastUpdate", [index]) or [])
    last += [0] * (uid + 1 - len(last))
    last[uid] = tx.block
    tx.put("LastUpdate", [index], last)


def set_mechanism_weights(tx: _Tx, params: dict[str, Any], signer: str) -> str | None:
    uid, index, error = _common(tx, params, signer)
    if error:
        return error
    netuid = int(params["netuid"])
    dests, values = [int(d) for d in params["dests"]], [int(w) for w in params["weights"]]
    if tx.get("CommitRevealWeightsEnabled", [netuid]):
        return f"CommitRevealEnabled: netuid {netuid} takes timelocked commits, not plain weights"
    if len(dests) != len(values):
        return f"WeightVecNotEqualSize: {len(dests)} uids, {len(values)} weights"
    if len(set(dests)) != len(dests):
        return "DuplicateUids: a uid appears twice"
    n = int(tx.get("SubnetworkN", [netuid]) or 0)
    if any(d < 0 or d >= n for d in dests) or any(not 0 <= w <= U16_MAX for w in values):
        return f"UidVecContainInvalidOne: uids must be below {n}, weights u16"
    if int(params.get("version_key", 0)) < int(tx.get("WeightsVersionKey", [netuid]) or 0):
        return "IncorrectWeightVersionKey: version_key is older than the subnet requires"
    if dests != [uid]:
        permits = tx.get("ValidatorPermit", [netuid]) or []
        if uid >= len(permits) or not permits[uid]:
            return f"NeuronNoValidatorPermit: uid {uid} on netuid {netuid} holds no validator permit"
        minimum = int(tx.get("MinAllowedWeights", [netuid]) or 0)
        if len([w for w in values if w > 0]) < minimum:
            return f"WeightVecLengthIsLow: {len(dests)} weights, the subnet requires {minimum}"
        limit = int(tx.get("MaxWeightsLimit", [netuid]) or U16_MAX)
        if sum(values) and max(values) * U16_MAX // sum(values) > limit:
            return f"MaxWeightExceeded: a weight exceeds {limit}/65535 of the total"
    if _rate_limited(tx, netuid, index, uid):
        return f"SettingWeightsTooFast: uid {uid} set weights at block {tx.get('LastUpdate', [index])[uid]}"
    tx.put("Weights", [index, uid], [[d, w] for d, w in zip(dests, values, strict=True) if w > 0])
    _touch(tx, index, uid)
    return None


def commit_timelocked_mechanism_weights(tx: _Tx, params: dict[str, Any], signer: str) -> str | None:
    uid, index, error = _common(tx, params, signer)
    if error:
        return error
    netuid = int(params["netuid"])
    if not tx.get("CommitRevealWeightsEnabled", [netuid]):
        return f"CommitRevealDisabled: netuid {netuid} takes plain weights"
    if _rate_limited(tx, netuid, index, uid):
        return f"CommittingWeightsTooFast: uid {uid} committed at block {tx.get('LastUpdate', [index])[uid]}"
    epoch = Schedule(netuid, int(tx.get("Tempo", [netuid]))).epoch_of(tx.block)
    commits = list(tx.get("TimelockedWeightCommits", [index, epoch]) or [])
    commit = params["commit"]
    commit_hex = commit if isinstance(commit, str) else "0x" + bytes(commit).hex()
    commits.append([signer, tx.block, commit_hex, int(params["reveal_round"])])
    tx.put("TimelockedWeightCommits", [index, epoch], commits)
    _touch(tx, index, uid)
    return None


RULES: dict[tuple[str, str], Callable[[_Tx, dict[str, Any], str], str | None]] = {
    ("SubtensorModule", "set_mechanism_weights"): set_mechanism_weights,
    ("SubtensorModule", "commit_timelocked_mechanism_weights"): commit_timelocked_mechanism_weights,
}
