"""The dev chain's dispatch rules for the calls validators make.

Each rule checks what subtensor checks for that call and returns the pallet's error
name (``Name: detail``) or applies the call and returns None. The checks follow the
pallet's order: subnet, registration, shapes, permit, weight count, limits, rate.
A rule writes nothing until every check has passed (a failed extrinsic leaves no trace
in storage, as on the chain).

Commit-reveal comes in two forms. The salted hash commit (``commit_weights`` then
``reveal_weights``) is real here: the reveal is hashed as the pallet hashes it and
checked against the hotkey's stored commits and the reveal epoch. Timelocked commits
(``commit_timelocked_mechanism_weights``, what the SDK's ``SetWeights`` sends when
commit-reveal is on) are stored but never revealed: see
:func:`commit_timelocked_mechanism_weights`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from platform_cli.chain.devchain import _Tx

MECHANISM_STRIDE = 4096
U16_MAX = 65535
MAX_UNREVEALED_COMMITS = 10  # subtensor refuses an 11th pending hash commit


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


def epoch_index(netuid: int, tempo: int, block: int) -> int:
    """Subtensor's ``get_epoch_index``: the epoch a commit or reveal block belongs to."""
    return (block + netuid + 1) // (tempo + 1)


def _compact(n: int) -> bytes:
    """SCALE compact encoding of a length."""
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return struct.pack("<H", (n << 2) | 1)
    if n < 1 << 30:
        return struct.pack("<I", (n << 2) | 2)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def _u16_vec(items: Sequence[int]) -> bytes:
    return _compact(len(items)) + b"".join(struct.pack("<H", int(i)) for i in items)


def commit_hash(
    account_id: bytes,
    netuid_index: int,
    uids: Sequence[int],
    values: Sequence[int],
    salt: Sequence[int],
    version_key: int,
) -> str:
    """The pallet's commit hash: ``BlakeTwo256::hash_of(&(who, netuid_index, uids, values, salt, version_key))``.

    The tuple is SCALE-encoded (AccountId32 raw, u16 LE, three ``Vec<u16>``, u64 LE) and
    hashed with blake2b-256; returned as 0x-hex.
    """
    preimage = (
        bytes(account_id)
        + struct.pack("<H", netuid_index)
        + _u16_vec(uids)
        + _u16_vec(values)
        + _u16_vec(salt)
        + struct.pack("<Q", version_key)
    )
    return "0x" + hashlib.blake2b(preimage, digest_size=32).hexdigest()


def _account_id(ss58: str) -> bytes:
    import bittensor_core

    return bytes(bittensor_core.ss58_decode(ss58))


def _weights_error(
    tx: _Tx, netuid: int, uid: int, dests: list[int], values: list[int], version_key: int
) -> str | None:
    """The checks ``do_set_weights`` makes on the vector itself (not the rate limit)."""
    if len(dests) != len(values):
        return f"WeightVecNotEqualSize: {len(dests)} uids, {len(values)} weights"
    if len(set(dests)) != len(dests):
        return "DuplicateUids: a uid appears twice"
    n = int(tx.get("SubnetworkN", [netuid]) or 0)
    if any(d < 0 or d >= n for d in dests) or any(not 0 <= w <= U16_MAX for w in values):
        return f"UidVecContainInvalidOne: uids must be below {n}, weights u16"
    if version_key < int(tx.get("WeightsVersionKey", [netuid]) or 0):
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
    return None


def _store_weights(tx: _Tx, index: int, uid: int, dests: list[int], values: list[int]) -> None:
    tx.put("Weights", [index, uid], [[d, w] for d, w in zip(dests, values, strict=True) if w > 0])


def set_mechanism_weights(tx: _Tx, params: dict[str, Any], signer: str) -> str | None:
    uid, index, error = _common(tx, params, signer)
    if error:
        return error
    netuid = int(params["netuid"])
    dests, values = [int(d) for d in params["dests"]], [int(w) for w in params["weights"]]
    if tx.get("CommitRevealWeightsEnabled", [netuid]):
        return f"CommitRevealEnabled: netuid {netuid} takes commits, not plain weights"
    error = _weights_error(tx, netuid, uid, dests, values, int(params.get("version_key", 0)))
    if error:
        return error
    if _rate_limited(tx, netuid, index, uid):
        return f"SettingWeightsTooFast: uid {uid} set weights at block {tx.get('LastUpdate', [index])[uid]}"
    _store_weights(tx, index, uid, dests, values)
    _touch(tx, index, uid)
    return None


def _hex32(value: Any) -> str | None:
    """A 32-byte hash given as bytes, a byte list or 0x-hex, as lowercase 0x-hex."""
    try:
        raw = (
            bytes.fromhex(value[2:] if value.startswith("0x") else value)
            if isinstance(value, str)
            else bytes(value)
        )
    except (ValueError, TypeError):
        return None
    return "0x" + raw.hex() if len(raw) == 32 else None


def _reveal_window(tx: _Tx, netuid: int, commit_block: int) -> tuple[int, int, int]:
    """(reveal epoch, first reveal block, last reveal block) of a commit, as the pallet computes them."""
    tempo, period = int(tx.get("Tempo", [netuid])), int(tx.get("RevealPeriodEpochs", [netuid]) or 0)
    reveal_epoch = epoch_index(netuid, tempo, commit_block) + period
    first = max(0, reveal_epoch * (tempo + 1) - (netuid + 1))
    return reveal_epoch, first, first + tempo


def _drop_expired(tx: _Tx, netuid: int, commits: list[Any], now: int) -> tuple[list[Any], list[Any]]:
    """(live, expired): commits whose reveal epoch has passed leave from the front of the queue."""
    expired = []
    while commits and now > _reveal_window(tx, netuid, int(commits[0][1]))[0]:
        expired.append(commits.pop(0))
    return commits, expired


def commit_mechanism_weights(tx: _Tx, params: dict[str, Any], signer: str) -> str | None:
    """A salted hash commit: stored in ``WeightCommits`` until revealed or expired."""
    netuid = int(params["netuid"])
    if not tx.get("CommitRevealWeightsEnabled", [netuid]):
        return f"CommitRevealDisabled: netuid {netuid} takes plain weights"
    uid, index, error = _common(tx, params, signer)
    if error:
        return error
    digest = _hex32(params["commit_hash"])
    if digest is None:
        return "InvalidCommitHash: commit_hash must be 32 bytes (H256)"
    if _rate_limited(tx, netuid, index, uid):
        return f"CommittingWeightsTooFast: uid {uid} committed at block {tx.get('LastUpdate', [index])[uid]}"
    tempo = int(tx.get("Tempo", [netuid]))
    now = epoch_index(netuid, tempo, tx.block)
    commits, _ = _drop_expired(tx, netuid, list(tx.get("WeightCommits", [index, signer]) or []), now)
    if len(commits) >= MAX_UNREVEALED_COMMITS:
        return f"TooManyUnrevealedCommits: {len(commits)} commits of {signer} await their reveal"
    _, first, last = _reveal_window(tx, netuid, tx.block)
    tx.put("WeightCommits", [index, signer], [*commits, [digest, tx.block, first, last]])
    _touch(tx, index, uid)
    return None


def reveal_mechanism_weights(tx: _Tx, params: dict[str, Any], signer: str) -> str | None:
    """Reveal a hash commit: the hash must match a live commit of ``signer``, in its reveal epoch.

    On success the commits up to the matched one are dropped and the weights are set as
    ``set_weights`` would, without the rate limit and without touching ``LastUpdate``
    (subtensor does both at commit time while commit-reveal is on).
    """
    netuid, mecid = int(params["netuid"]), int(params.get("mecid", 0))
    if not tx.get("CommitRevealWeightsEnabled", [netuid]):
        return f"CommitRevealDisabled: netuid {netuid} takes plain weights"
    index = mecid * MECHANISM_STRIDE + netuid
    stored = list(tx.get("WeightCommits", [index, signer]) or [])
    if not stored:
        return f"NoWeightsCommitFound: {signer} has no commit on netuid {netuid} mechanism {mecid}"
    uids, values = [int(u) for u in params["uids"]], [int(v) for v in params["values"]]
    salt, version_key = [int(s) for s in params["salt"]], int(params.get("version_key", 0))
    if not 0 <= version_key < 2**64:
        return f"InvalidArgument: version_key {version_key} is not a u64"
    if any(not 0 <= x <= U16_MAX for x in (*uids, *values, *salt)):
        return "UidVecContainInvalidOne: uids, values and salt must be u16"
    digest = commit_hash(_account_id(signer), index, uids, values, salt, version_key)
    tempo = int(tx.get("Tempo", [netuid]))
    now = epoch_index(netuid, tempo, tx.block)
    live, expired = _drop_expired(tx, netuid, stored, now)
    position = next((i for i, c in enumerate(live) if c[0] == digest), None)
    if position is None:
        if any(c[0] == digest for c in expired):
            return f"ExpiredWeightCommit: the commit's reveal epoch has passed (now epoch {now})"
        if not live:
            return f"NoWeightsCommitFound: {signer} has no live commit on netuid {netuid}"
        return "InvalidRevealCommitHashNotMatch: uids, values, salt and version_key do not hash to a commit"
    commit_block = int(live[position][1])
    reveal_epoch, first, last = _reveal_window(tx, netuid, commit_block)
    if now != reveal_epoch:
        return f"RevealTooEarly: commit of block {commit_block} reveals in blocks {first}..{last} (now {tx.block})"
    uid, index, error = _common(tx, params, signer)
    if error:
        return error
    error = _weights_error(tx, netuid, uid, uids, values, version_key)
    if error:
        return error
    rest = live[position + 1 :]
    if rest:
        tx.put("WeightCommits", [index, signer], rest)
    else:
        tx.delete("WeightCommits", [index, signer])
    _store_weights(tx, index, uid, uids, values)
    return None


def commit_timelocked_mechanism_weights(tx: _Tx, params: dict[str, Any], signer: str) -> str | None:
    """Store a timelocked commit in ``TimelockedWeightCommits`` under the current epoch.

    Limitation: the dev chain never reveals these. Subtensor decrypts them with the
    drand beacon's signature for ``reveal_round``, which cannot be fetched offline, so
    the weights inside stay unapplied and the commit stays pending. Use the salted hash
    commit (``commit_weights`` / ``reveal_weights``) for a full commit-reveal on the dev chain.
    """
    uid, index, error = _common(tx, params, signer)
    if error:
        return error
    netuid = int(params["netuid"])
    if not tx.get("CommitRevealWeightsEnabled", [netuid]):
        return f"CommitRevealDisabled: netuid {netuid} takes plain weights"
    if _rate_limited(tx, netuid, index, uid):
        return f"CommittingWeightsTooFast: uid {uid} committed at block {tx.get('LastUpdate', [index])[uid]}"
    epoch = epoch_index(netuid, int(tx.get("Tempo", [netuid])), tx.block)
    commits = list(tx.get("TimelockedWeightCommits", [index, epoch]) or [])
    commit = params["commit"]
    commit_hex = commit if isinstance(commit, str) else "0x" + bytes(commit).hex()
    commits.append([signer, tx.block, commit_hex, int(params["reveal_round"])])
    tx.put("TimelockedWeightCommits", [index, epoch], commits)
    _touch(tx, index, uid)
    return None


RULES: dict[tuple[str, str], Callable[[_Tx, dict[str, Any], str], str | None]] = {
    ("SubtensorModule", "set_mechanism_weights"): set_mechanism_weights,
    ("SubtensorModule", "commit_weights"): commit_mechanism_weights,
    ("SubtensorModule", "commit_mechanism_weights"): commit_mechanism_weights,
    ("SubtensorModule", "reveal_weights"): reveal_mechanism_weights,
    ("SubtensorModule", "reveal_mechanism_weights"): reveal_mechanism_weights,
    ("SubtensorModule", "commit_timelocked_mechanism_weights"): commit_timelocked_mechanism_weights,
}
