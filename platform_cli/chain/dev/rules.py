"""The dev chain's rules for the calls validators make, in the pallet's order.

Each rule takes the chain at the block the call is applied in (after that block's
epoch, :class:`~platform_cli.chain.dev.state.BlockState`), the call's parameters and
the signer, and returns the first :class:`~platform_cli.core.weightrules.Refusal` the
pallet would give, or applies the call and returns None. A refusal of stage ``pool``
is the transaction extension's (the transaction is not included); one of stage
``dispatch`` fails an included extrinsic. Nothing is written unless every check passed.

``set_mechanism_weights`` is ruled by ``core.weightrules`` (the same transcription the
dry run uses). The salted hash commit (``commit_weights``) and its reveal follow
``internal_commit_weights`` / ``internal_reveal_weights`` and the extension's
``check_reveal``; timelocked commits follow ``internal_commit_timelocked_weights`` and
are stored but never revealed (see :func:`commit_timelocked_mechanism_weights`).
docs/dev-chain.md maps every rule to its pallet function.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

from platform_cli.chain.dev.state import MECHANISM_STRIDE, BlockState
from platform_cli.core import weightrules
from platform_cli.core.weightrules import ChainView, Refusal, WeightsCall, dispatch, pool

MAX_UNREVEALED_COMMITS = 10  # weights.rs: `commits.len() < 10`

Rule = Callable[[BlockState, dict[str, Any], str], Refusal | None]


def storage_index(netuid: int, mecid: int) -> int:
    """``get_mechanism_storage_index``."""
    return mecid * MECHANISM_STRIDE + netuid


def chain_view(tx: BlockState, netuid: int, mecid: int, signer: str) -> ChainView:
    """What ``core.weightrules`` reads, from the chain at ``tx.block``."""
    uid = tx.uid_of(netuid, signer)
    last = list(tx.item("LastUpdate", [storage_index(netuid, mecid)]) or [])
    permits = tx.permits(netuid)
    return ChainView(
        block=tx.block,
        subnet_exists=bool(tx.item("NetworksAdded", [netuid])),
        mechanism_count=int(tx.item("MechanismCountCurrent", [netuid]) or 1),
        subnet_n=len(tx.neurons(netuid)),
        uid=uid,
        owner_uid=tx.owner_uid(netuid),
        stake=tx.stake_of(netuid, signer),
        stake_threshold=int(tx.item("StakeThreshold", [])),
        required_version_key=int(tx.item("WeightsVersionKey", [netuid]) or 0),
        commit_reveal=bool(tx.item("CommitRevealWeightsEnabled", [netuid])),
        rate_limit=int(tx.item("WeightsSetRateLimit", [netuid]) or 0),
        last_update=int(last[uid]) if uid is not None and uid < len(last) else 0,
        permit=uid is not None and uid < len(permits) and permits[uid],
        min_allowed_weights=int(tx.item("MinAllowedWeights", [netuid]) or 0),
        max_weight_limit=_or_default(tx.item("MaxWeightsLimit", [netuid]), weightrules.U16_MAX),
    )


def _or_default(value: Any, default: int) -> int:
    return default if value is None else int(value)


def touch(tx: BlockState, index: int, uid: int) -> None:
    """``set_last_update_for_uid``."""
    last = list(tx.item("LastUpdate", [index]) or [])
    last += [0] * (uid + 1 - len(last))
    last[uid] = tx.block
    tx.put("LastUpdate", [index], last)


def _store_weights(tx: BlockState, index: int, uid: int, uids: list[int], values: list[int]) -> None:
    """Steps 16-17 of ``internal_set_weights``: the max-upscaled row, zeros kept."""
    stored = weightrules.max_upscale(values)
    tx.put("Weights", [index, uid], [[d, w] for d, w in zip(uids, stored, strict=True)])


def _set_weights(tx: BlockState, call: WeightsCall, signer: str, *, from_reveal: bool) -> Refusal | None:
    """``internal_set_weights`` (a reveal calls it past the extension and the dispatch wrapper)."""
    view = chain_view(tx, call.netuid, call.mecid, signer)
    found = weightrules.vector_refusals(view, call) if from_reveal else weightrules.refusals(view, call)
    if found:
        return found[0]
    assert view.uid is not None
    index = storage_index(call.netuid, call.mecid)
    _store_weights(tx, index, view.uid, list(call.uids), list(call.values))
    if not view.commit_reveal:
        touch(tx, index, view.uid)
    return None


def _weights_call(params: dict[str, Any], uids_key: str, values_key: str) -> WeightsCall:
    return WeightsCall(
        int(params["netuid"]),
        int(params.get("mecid", 0)),
        tuple(int(u) for u in params[uids_key]),
        tuple(int(v) for v in params[values_key]),
        int(params.get("version_key", 0)),
    )


def set_mechanism_weights(tx: BlockState, params: dict[str, Any], signer: str) -> Refusal | None:
    return _set_weights(tx, _weights_call(params, "dests", "weights"), signer, from_reveal=False)


# -- salted hash commit-reveal ---------------------------------------------------------------
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
    """``get_commit_hash``: ``BlakeTwo256::hash_of(&(who, netuid_index, uids, values, salt, version_key))``.

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


def hash_hex(value: Any) -> str:
    """A 32-byte hash given as bytes, a byte list or 0x-hex, as lowercase 0x-hex (H256)."""
    return "0x" + (bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)).hex()


def _current_epoch(tx: BlockState, netuid: int) -> int:
    """``current_epoch_with_lookahead``: ``SubnetEpochIndex`` (+1 if an epoch is due this block)."""
    state = tx.epoch(netuid)
    return state.lookahead_index() if state else 0


def _reveal_period(tx: BlockState, netuid: int) -> int:
    return int(tx.item("RevealPeriodEpochs", [netuid]) or 0)


def _stake_refusal(tx: BlockState, netuid: int, signer: str) -> Refusal | None:
    """``CheckWeights::check_min_stake`` (the extension, before dispatch)."""
    view = chain_view(tx, netuid, 0, signer)
    if weightrules.stake_passes(view):
        return None
    return pool(
        "NotEnoughStakeToSetWeights", f"stake {view.stake} rao is below the threshold {view.stake_threshold}"
    )


def _mechanism_refusal(tx: BlockState, netuid: int, mecid: int) -> Refusal | None:
    """``ensure_mechanism_exists``."""
    if tx.item("NetworksAdded", [netuid]) and mecid < int(tx.item("MechanismCountCurrent", [netuid]) or 1):
        return None
    return dispatch("MechanismDoesNotExist", f"mechanism {mecid} of netuid {netuid} does not exist")


def _commit_rate_refusal(tx: BlockState, netuid: int, index: int, uid: int, stage: str) -> Refusal | None:
    last = list(tx.item("LastUpdate", [index]) or [])
    last_update = int(last[uid]) if uid < len(last) else 0
    limit = int(tx.item("WeightsSetRateLimit", [netuid]) or 0)
    if weightrules.rate_limit_passes(last_update, limit, tx.block):
        return None
    detail = f"uid {uid} committed at block {last_update}; the rate limit is {limit} blocks"
    return (pool if stage == "pool" else dispatch)("CommittingWeightsTooFast", detail)


def commit_mechanism_weights(tx: BlockState, params: dict[str, Any], signer: str) -> Refusal | None:
    """A salted hash commit, queued in ``WeightCommits`` as ``(hash, epoch, block, 0)``."""
    netuid, mecid = int(params["netuid"]), int(params.get("mecid", 0))
    index = storage_index(netuid, mecid)
    refusal = _stake_refusal(tx, netuid, signer)
    uid = tx.uid_of(netuid, signer)
    if refusal is None and uid is not None:
        refusal = _commit_rate_refusal(tx, netuid, index, uid, "pool")
    refusal = refusal or _mechanism_refusal(tx, netuid, mecid)
    if refusal:
        return refusal
    if not tx.item("CommitRevealWeightsEnabled", [netuid]):
        return dispatch("CommitRevealDisabled", f"netuid {netuid} takes plain weights")
    if uid is None:
        return dispatch("HotKeyNotRegisteredInSubNet", f"{signer} on netuid {netuid}")
    refusal = _commit_rate_refusal(tx, netuid, index, uid, "dispatch")
    if refusal:
        return refusal
    now, period = _current_epoch(tx, netuid), _reveal_period(tx, netuid)
    commits = list(tx.item("WeightCommits", [index, signer]) or [])
    while commits and now > int(commits[0][1]) + period:  # is_commit_expired
        commits.pop(0)
    if len(commits) >= MAX_UNREVEALED_COMMITS:
        return dispatch("TooManyUnrevealedCommits", f"{len(commits)} commits of {signer} await their reveal")
    tx.put("WeightCommits", [index, signer], [*commits, [hash_hex(params["commit_hash"]), now, tx.block, 0]])
    touch(tx, index, uid)
    return None


def _check_reveal(tx: BlockState, netuid: int, index: int, signer: str, digest: str) -> Refusal | None:
    """``CheckWeights::check_reveal``: the commit exists and its reveal epoch is now."""
    commits = tx.item("WeightCommits", [index, signer])
    if not commits:
        return pool("NoWeightsCommitFound", f"{signer} has no commit on storage index {index}")
    epoch = next((int(c[1]) for c in commits if c[0] == digest), None)
    if epoch is None:
        return pool("NoWeightsCommitFound", "uids, values, salt and version_key hash to no commit")
    reveal_epoch, now = epoch + _reveal_period(tx, netuid), _current_epoch(tx, netuid)
    if now != reveal_epoch:
        return pool("RevealTooEarly", f"the commit reveals in epoch {reveal_epoch}; this is epoch {now}")
    return None


def reveal_mechanism_weights(tx: BlockState, params: dict[str, Any], signer: str) -> Refusal | None:
    """Reveal a hash commit in its reveal epoch, then set the weights as ``internal_set_weights``.

    On success the commits up to the revealed one leave the queue. With commit-reveal
    on, the set skips the rate limit and keeps ``LastUpdate`` (stamped at commit time).
    """
    call = _weights_call(params, "uids", "values")
    salt = [int(s) for s in params["salt"]]
    index = storage_index(call.netuid, call.mecid)
    digest = commit_hash(_account_id(signer), index, call.uids, call.values, salt, call.version_key)
    refusal = _stake_refusal(tx, call.netuid, signer) or _check_reveal(tx, call.netuid, index, signer, digest)
    if refusal:
        return refusal
    if not tx.item("CommitRevealWeightsEnabled", [call.netuid]):
        return dispatch("CommitRevealDisabled", f"netuid {call.netuid} takes plain weights")
    commits = list(tx.item("WeightCommits", [index, signer]) or [])
    now, period = _current_epoch(tx, call.netuid), _reveal_period(tx, call.netuid)
    expired = []
    while commits and now > int(commits[0][1]) + period:
        expired.append(commits.pop(0)[0])
    if not commits:
        name = "ExpiredWeightCommit" if digest in expired else "NoWeightsCommitFound"
        return dispatch(name, f"no live commit of {signer} (epoch {now})")
    position = next((i for i, c in enumerate(commits) if c[0] == digest), None)
    if position is None:
        name = "ExpiredWeightCommit" if digest in expired else "InvalidRevealCommitHashNotMatch"
        return dispatch(name, "uids, values, salt and version_key do not hash to a live commit")
    if now != int(commits[position][1]) + period:
        return dispatch("RevealTooEarly", f"the commit reveals in epoch {int(commits[position][1]) + period}")
    refusal = _set_weights(tx, call, signer, from_reveal=True)
    if refusal:
        return refusal
    rest = commits[position + 1 :]
    tx.put("WeightCommits", [index, signer], rest or None)
    return None


def commit_timelocked_mechanism_weights(
    tx: BlockState, params: dict[str, Any], signer: str
) -> Refusal | None:
    """Store a timelocked commit in ``TimelockedWeightCommits`` under the current epoch.

    Limitation: the dev chain never reveals these. Subtensor decrypts them with the
    drand beacon's signature for ``reveal_round``, which cannot be fetched offline, so
    the weights inside stay unapplied and the commit stays pending. The extension's
    ``InvalidRevealRound`` check compares with drand's ``LastStoredRound``, which is 0
    here: it never refuses. Use the salted hash commit for a full commit-reveal.
    """
    netuid, mecid = int(params["netuid"]), int(params.get("mecid", 0))
    index = storage_index(netuid, mecid)
    refusal = _stake_refusal(tx, netuid, signer) or _mechanism_refusal(tx, netuid, mecid)
    if refusal:
        return refusal
    if not tx.item("CommitRevealWeightsEnabled", [netuid]):
        return dispatch("CommitRevealDisabled", f"netuid {netuid} takes plain weights")
    version = int(params.get("commit_reveal_version", 0))
    required = int(tx.item("CommitRevealWeightsVersion", []))
    if version != required:
        return dispatch("IncorrectCommitRevealVersion", f"version {version}, the chain requires {required}")
    uid = tx.uid_of(netuid, signer)
    if uid is None:
        return dispatch("HotKeyNotRegisteredInSubNet", f"{signer} on netuid {netuid}")
    refusal = _commit_rate_refusal(tx, netuid, index, uid, "dispatch")
    if refusal:
        return refusal
    epoch = _current_epoch(tx, netuid)
    commits = list(tx.item("TimelockedWeightCommits", [index, epoch]) or [])
    if sum(1 for c in commits if c[0] == signer) >= MAX_UNREVEALED_COMMITS:
        return dispatch(
            "TooManyUnrevealedCommits", f"{signer} has {MAX_UNREVEALED_COMMITS} commits this epoch"
        )
    commit = params["commit"]
    commit_hex = commit if isinstance(commit, str) else "0x" + bytes(commit).hex()
    commits.append([signer, tx.block, commit_hex, int(params["reveal_round"])])
    tx.put("TimelockedWeightCommits", [index, epoch], commits)
    touch(tx, index, uid)
    return None


RULES: dict[tuple[str, str], Rule] = {
    ("SubtensorModule", "set_mechanism_weights"): set_mechanism_weights,
    ("SubtensorModule", "commit_weights"): commit_mechanism_weights,
    ("SubtensorModule", "commit_mechanism_weights"): commit_mechanism_weights,
    ("SubtensorModule", "reveal_weights"): reveal_mechanism_weights,
    ("SubtensorModule", "reveal_mechanism_weights"): reveal_mechanism_weights,
    ("SubtensorModule", "commit_timelocked_mechanism_weights"): commit_timelocked_mechanism_weights,
}
