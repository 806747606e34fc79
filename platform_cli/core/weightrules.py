"""The subtensor pallet's rules for a weight vector, transcribed (pure: no I/O).

Source: opentensor/subtensor at commit 14bc6f9f964b9cc362e9635dd110a487fa5d15a0,
``pallets/subtensor/src/subnets/weights.rs`` (``internal_set_weights`` and its helpers),
``pallets/subtensor/src/epoch/math.rs`` (``vec_u16_max_upscale_to_u16``,
``check_vec_max_limited``), ``pallets/subtensor/src/guards/check_weights.rs`` and
``guards/check_rate_limits.rs`` (the transaction extension that runs before dispatch).

Theory of operation
-------------------
A ``set_mechanism_weights`` call passes two gates. The transaction extension (stage
``pool``) rejects the transaction before it is included: a signer below the stake
threshold (``NotEnoughStakeToSetWeights``, reported by the node as the custom error
``StakeAmountTooLow``) and a registered signer inside the rate limit on a subnet
without commit-reveal (``SettingWeightsTooFast``, reported as ``RateLimitExceeded``).
Then the dispatch (stage ``dispatch``: included, fee paid, state unchanged) checks, in
this order: commit-reveal off, not the root subnet, equal lengths, the mechanism exists,
no more uids than the subnet has, the signer is registered, its stake, the version
key, the rate limit, the validator permit (a lone self-weight and the subnet owner are
exempt), no duplicate uids, every uid exists, enough entries (``min(n, MinAllowedWeights)``
entries, zeros included; a self-weight is exempt), then the max-upscaled vector against
``MaxWeightsLimit`` in I32F32 fixed point. :func:`refusals` returns every rule the call
breaks, in that order; the chain answers with the first.

Fixed point: an I32F32 value is held as its integer bits (value * 2**32). The pallet's
``saturating_mul`` keeps ``(a * b) >> 32``, ``safe_div`` keeps ``(a << 32) // b`` (0 when
dividing by zero), ``round`` rounds half away from zero and ``saturating_to_num::<u16>``
floors and clamps; every value here is non-negative, so Rust's truncating division is
Python's floor division. Sums fit I32F32 while they stay below 2**31, that is for
vectors of up to 32768 entries; subnets hold at most 4096 uids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

U16_MAX = 65535
FRAC_BITS = 32
HALF = 1 << (FRAC_BITS - 1)
UPSCALE_THRESHOLD = 32768
ROOT_NETUID = 0


def _to_u16(bits: int) -> int:
    """``saturating_to_num::<u16>`` of a non-negative I32F32."""
    return min(U16_MAX, bits >> FRAC_BITS)


def _round(bits: int) -> int:
    """``round()`` of a non-negative I32F32 (ties away from zero), still in bits."""
    return ((bits + HALF) >> FRAC_BITS) << FRAC_BITS


def _div(a_bits: int, b_bits: int) -> int:
    """``safe_div`` of non-negative I32F32 values: 0 on a zero divisor."""
    return 0 if b_bits == 0 else (a_bits << FRAC_BITS) // b_bits


def _mul(a_bits: int, b_bits: int) -> int:
    return (a_bits * b_bits) >> FRAC_BITS


def max_upscale(values: Sequence[int]) -> list[int]:
    """``vec_u16_max_upscale_to_u16``: what the pallet stores for the u16 ``values``."""
    if not values:
        return []
    fixed = [v << FRAC_BITS for v in values]
    top = max(fixed)
    u16_max = U16_MAX << FRAC_BITS
    if top == 0:
        return [_to_u16(_mul(e, u16_max)) for e in fixed]
    if top > UPSCALE_THRESHOLD << FRAC_BITS:
        ratio = _div(u16_max, top)
        return [_to_u16(_round(_mul(e, ratio))) for e in fixed]
    return [_to_u16(_round(_div(_mul(e, u16_max), top))) for e in fixed]


def max_share_ok(values: Sequence[int], limit: int) -> bool:
    """``check_vec_max_limited``: the largest share of ``values`` is at most ``limit``/65535."""
    limit_bits = _div(limit << FRAC_BITS, U16_MAX << FRAC_BITS)
    total = sum(v << FRAC_BITS for v in values)
    if total == 0:  # inplace_normalize leaves an all-zero vector as it is: its max is 0
        return True
    return max(_div(v << FRAC_BITS, total) for v in values) <= limit_bits


def is_self_weight(uid: int | None, uids: Sequence[int], values: Sequence[int]) -> bool:
    """``is_self_weight``: exactly one weight, and the first uid is the signer's own."""
    return uid is not None and len(values) == 1 and bool(uids) and uids[0] == uid


def max_weight_limited(uid: int | None, uids: Sequence[int], stored: Sequence[int], limit: int) -> bool:
    """``max_weight_limited`` over the max-upscaled vector ``stored``."""
    if is_self_weight(uid, uids, stored) or limit == U16_MAX:
        return True
    return max_share_ok(stored, limit)


def min_entries(subnet_n: int, min_allowed_weights: int) -> int:
    """``check_length``'s bound: ``min(SubnetworkN, MinAllowedWeights)`` entries."""
    return min(subnet_n, min_allowed_weights)


def rate_limit_passes(last_update: int, rate_limit: int, block: int) -> bool:
    """``check_rate_limit``: never set (0), or at least ``rate_limit`` blocks ago."""
    return last_update == 0 or block - last_update >= rate_limit


def version_key_passes(required: int, given: int) -> bool:
    """``check_version_key``: the subnet requires none (0), or ``given`` is not older."""
    return required == 0 or given >= required


@dataclass(frozen=True)
class WeightsCall:
    """What a ``set_mechanism_weights`` extrinsic carries."""

    netuid: int
    mecid: int
    uids: tuple[int, ...]
    values: tuple[int, ...]
    version_key: int


@dataclass(frozen=True)
class ChainView:
    """What the rules read, at the block the call is applied in.

    ``uid`` is the signer's uid (None: not registered); ``last_update`` its entry in
    ``LastUpdate`` for the mechanism's storage index; ``stake`` the stake the pallet
    weighs against ``stake_threshold``.
    """

    block: int
    subnet_exists: bool
    mechanism_count: int
    subnet_n: int
    uid: int | None
    owner_uid: int | None
    stake: int
    stake_threshold: int
    required_version_key: int
    commit_reveal: bool
    rate_limit: int
    last_update: int
    permit: bool
    min_allowed_weights: int
    max_weight_limit: int


@dataclass(frozen=True)
class Refusal:
    """One broken rule: the pallet's error name, where it stops the call, and why.

    ``reported`` is the name the node answers with: a pool rejection arrives as the
    transaction extension's custom error name, a dispatch error as the pallet's.
    """

    name: str
    stage: str  # "pool" (not included) | "dispatch" (included, failed)
    detail: str
    reported: str

    def __str__(self) -> str:
        return f"{self.name}: {self.detail}"


POOL_NAMES = {
    "NotEnoughStakeToSetWeights": "StakeAmountTooLow",
    "SettingWeightsTooFast": "RateLimitExceeded",
    "CommittingWeightsTooFast": "RateLimitExceeded",
    "NoWeightsCommitFound": "NoWeightsCommitFound",
    "RevealTooEarly": "RevealTooEarly",
}


def pool(name: str, detail: str) -> Refusal:
    return Refusal(name, "pool", detail, POOL_NAMES[name])


def dispatch(name: str, detail: str) -> Refusal:
    return Refusal(name, "dispatch", detail, name)


def stake_passes(view: ChainView) -> bool:
    """``check_weights_min_stake``: the subnet owner's hotkey is exempt."""
    owner = view.uid is not None and view.uid == view.owner_uid
    return owner or view.stake >= view.stake_threshold


def pool_refusals(view: ChainView) -> list[Refusal]:
    """The transaction extension's checks of a ``set_mechanism_weights`` call."""
    out = []
    if not stake_passes(view):
        out.append(
            pool(
                "NotEnoughStakeToSetWeights",
                f"stake {view.stake} rao is below the threshold {view.stake_threshold}",
            )
        )
    if (
        not view.commit_reveal
        and view.uid is not None
        and not rate_limit_passes(view.last_update, view.rate_limit, view.block)
    ):
        out.append(pool("SettingWeightsTooFast", _rate_detail(view)))
    return out


def _rate_detail(view: ChainView) -> str:
    return (
        f"uid {view.uid} last set weights at block {view.last_update}; the rate limit is "
        f"{view.rate_limit} blocks, so block {view.last_update + view.rate_limit} is the earliest"
    )


def vector_refusals(view: ChainView, call: WeightsCall) -> list[Refusal]:
    """``internal_set_weights`` from its root-subnet check to ``MaxWeightExceeded``."""
    uids, values, uid = list(call.uids), list(call.values), view.uid
    out: list[Refusal] = []
    if call.netuid == ROOT_NETUID:
        out.append(dispatch("CanNotSetRootNetworkWeights", "netuid 0 is the root network"))
    if len(uids) != len(values):
        out.append(dispatch("WeightVecNotEqualSize", f"{len(uids)} uids, {len(values)} weights"))
    if not view.subnet_exists or call.mecid >= view.mechanism_count:
        out.append(
            dispatch(
                "MechanismDoesNotExist", f"mechanism {call.mecid} of netuid {call.netuid} does not exist"
            )
        )
        return out
    if len(uids) > view.subnet_n:
        out.append(
            dispatch("UidsLengthExceedUidsInSubNet", f"{len(uids)} uids on a subnet of {view.subnet_n}")
        )
    if uid is None:
        out.append(
            dispatch("HotKeyNotRegisteredInSubNet", f"the signer is not registered on netuid {call.netuid}")
        )
        return out
    if not stake_passes(view):
        out.append(
            dispatch(
                "NotEnoughStakeToSetWeights",
                f"stake {view.stake} rao is below the threshold {view.stake_threshold}",
            )
        )
    if not version_key_passes(view.required_version_key, call.version_key):
        out.append(
            dispatch(
                "IncorrectWeightVersionKey",
                f"version_key {call.version_key} is older than the subnet's {view.required_version_key}",
            )
        )
    if not view.commit_reveal and not rate_limit_passes(view.last_update, view.rate_limit, view.block):
        out.append(dispatch("SettingWeightsTooFast", _rate_detail(view)))
    if not (is_self_weight(uid, uids, values) or uid == view.owner_uid or view.permit):
        out.append(dispatch("NeuronNoValidatorPermit", f"uid {uid} holds no validator permit"))
    if len(set(uids)) != len(uids):
        out.append(dispatch("DuplicateUids", "a uid appears twice"))
    invalid = sorted({u for u in uids if not 0 <= u < view.subnet_n})
    if invalid:
        out.append(
            dispatch(
                "UidVecContainInvalidOne", f"uid {invalid[0]} does not exist (the subnet has {view.subnet_n})"
            )
        )
    needed = min_entries(view.subnet_n, view.min_allowed_weights)
    if not is_self_weight(uid, uids, values) and len(values) < needed:
        out.append(dispatch("WeightVecLengthIsLow", f"{len(values)} weights, the subnet requires {needed}"))
    stored = max_upscale(values)
    if not max_weight_limited(uid, uids, stored, view.max_weight_limit):
        top, total = max(stored), sum(stored)
        out.append(
            dispatch(
                "MaxWeightExceeded",
                f"the largest weight is {top}/{total} of the vector, above the limit "
                f"{view.max_weight_limit}/{U16_MAX}",
            )
        )
    return out


def refusals(view: ChainView, call: WeightsCall) -> list[Refusal]:
    """Every rule a ``set_mechanism_weights`` call breaks, in the pallet's order."""
    out = pool_refusals(view)
    if view.commit_reveal:
        out.append(dispatch("CommitRevealEnabled", f"netuid {call.netuid} takes commits, not plain weights"))
    seen = {r.name for r in out}
    return out + [r for r in vector_refusals(view, call) if not (r.name in seen and r.stage == "dispatch")]


def timelocked_refusals(view: ChainView, call: WeightsCall) -> list[Refusal]:
    """Every rule a timelocked commit of ``call`` breaks now, then those its reveal will break.

    ``internal_commit_timelocked_weights`` checks the mechanism, registration and the
    rate limit at commit time; the vector itself is checked only when the chain reveals
    it (``reveal_crv3_commits`` calls ``do_set_mechanism_weights`` and drops a failure
    silently), so its rules are reported here, marked as at reveal.
    """
    out = []
    if not stake_passes(view):
        out.append(
            pool(
                "NotEnoughStakeToSetWeights",
                f"stake {view.stake} rao is below the threshold {view.stake_threshold}",
            )
        )
    if not view.subnet_exists or call.mecid >= view.mechanism_count:
        out.append(
            dispatch(
                "MechanismDoesNotExist", f"mechanism {call.mecid} of netuid {call.netuid} does not exist"
            )
        )
        return out
    if view.uid is None:
        out.append(
            dispatch("HotKeyNotRegisteredInSubNet", f"the signer is not registered on netuid {call.netuid}")
        )
        return out
    if not rate_limit_passes(view.last_update, view.rate_limit, view.block):
        out.append(dispatch("CommittingWeightsTooFast", _rate_detail(view)))
    seen = {r.name for r in out}
    at_reveal = [
        Refusal(r.name, r.stage, f"{r.detail} (at reveal: the chain drops the commit)", r.reported)
        for r in vector_refusals(view, call)
        if r.name not in seen and r.name != "SettingWeightsTooFast"
    ]
    return out + at_reveal
