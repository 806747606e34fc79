"""The u16 conversion against the subtensor pallet's own checks, transcribed here.

The transcription below follows opentensor/subtensor at commit
14bc6f9f964b9cc362e9635dd110a487fa5d15a0, line for line:
``pallets/subtensor/src/epoch/math.rs`` (``vec_max_upscale_to_u16``,
``vec_u16_max_upscale_to_u16``, ``inplace_normalize``, ``check_vec_max_limited``) and
``pallets/subtensor/src/subnets/weights.rs`` (``max_weight_limited``,
``is_self_weight``). I32F32 values are their integer bits; ``safe_div`` is
``checked_div().unwrap_or_default()`` (substrate-fixed divides the widened bits,
``(a << 32) / b``, and multiplies as ``(a * b) >> 32``); ``round`` is half away from zero.
It is written apart from ``platform_cli.core.weightrules`` on purpose: a slip in one
shows up as a disagreement with the other.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_cli.core import weightrules
from platform_cli.core.aggregation import (
    UNITS,
    AggregationError,
    _clipped_target,
    pad_to_min_weights,
    required_sum,
    to_u16,
)

SATISFIABLE_CASES = 10_000


# --- the pallet, transcribed --------------------------------------------------------------
def i32f32(n: int) -> int:
    return n << 32


def safe_div(a: int, b: int) -> int:
    return (a << 32) // b if b else 0


def saturating_mul(a: int, b: int) -> int:
    return min((a * b) >> 32, 2**63 - 1)


def fx_round(a: int) -> int:
    return ((a + (1 << 31)) >> 32) << 32


def saturating_to_u16(a: int) -> int:
    return max(0, min(65535, a >> 32))


def vec_max_upscale_to_u16(vec: list[int]) -> list[int]:
    u16_max, threshold = i32f32(65535), i32f32(32768)
    val = max(vec)
    if val == 0:
        return [saturating_to_u16(saturating_mul(e, u16_max)) for e in vec]
    if val > threshold:
        return [saturating_to_u16(fx_round(saturating_mul(e, safe_div(u16_max, val)))) for e in vec]
    return [saturating_to_u16(fx_round(safe_div(saturating_mul(e, u16_max), val))) for e in vec]


def vec_u16_max_upscale_to_u16(vec: list[int]) -> list[int]:
    return vec_max_upscale_to_u16([i32f32(e) for e in vec])


def check_vec_max_limited(vec: list[int], max_limit: int) -> bool:
    max_limit_fixed = safe_div(i32f32(max_limit), i32f32(65535))
    vec_fixed = [i32f32(e) for e in vec]
    x_sum = sum(vec_fixed)
    if x_sum != 0:
        vec_fixed = [safe_div(v, x_sum) for v in vec_fixed]
    return not vec_fixed or max(vec_fixed) <= max_limit_fixed


def is_self_weight(uid: int, uids: list[int], weights: list[int]) -> bool:
    return len(weights) == 1 and bool(uids) and uids[0] == uid


def max_weight_limited(uid: int, uids: list[int], weights: list[int], max_weight_limit: int) -> bool:
    if is_self_weight(uid, uids, weights):
        return True
    if max_weight_limit == 65535:
        return True
    return check_vec_max_limited(weights, max_weight_limit)


def pallet_accepts(own: int, vector: dict[int, int], limit: int) -> bool:
    """Steps 14-15 of ``internal_set_weights``: max-upscale, then the max weight check."""
    uids = sorted(vector)
    upscaled = vec_u16_max_upscale_to_u16([vector[u] for u in uids])
    return max_weight_limited(own, uids, upscaled, limit)


def satisfiable(own: int, uids: list[int], limit: int) -> bool:
    """A vector over these uids that the pallet accepts exists: the most even one passes."""
    return uids == [own] or pallet_accepts(own, dict.fromkeys(uids, 65535), limit)


# --- generated cases ------------------------------------------------------------------------
LIMITS = [0, 1, 2, 3, 100, 6553, 13107, 21845, 32767, 32768, 45000, 65533, 65534, 65535]


def random_case(rng: random.Random) -> tuple[dict[int, int], int, int]:
    n = rng.choice([1, 2, 3, 4, 5, 8, 16, 33, 64, rng.randint(1, 256)])
    shape = rng.choice(["uniform", "heavy", "dominant", "ties", "tiny", "units"])
    if shape == "uniform":
        weights = [rng.randint(0, 10**9) for _ in range(n)]
    elif shape == "heavy":
        weights = [int(10 ** rng.uniform(0, 9)) for _ in range(n)]
    elif shape == "dominant":
        weights = [rng.randint(1, 1000) for _ in range(n)]
        weights[rng.randrange(n)] = 10**9
    elif shape == "ties":
        weights = [rng.choice([7, 7, 7, 13]) for _ in range(n)]
    elif shape == "tiny":
        weights = [rng.randint(0, 3) for _ in range(n)]
    else:
        weights = [rng.randint(0, UNITS) for _ in range(n)]
    if not any(weights):
        weights[0] = 1
    uids = rng.sample(range(4096), n)
    limit = rng.choice(LIMITS) if rng.random() < 0.5 else rng.randint(0, 65535)
    own = rng.choice(uids) if rng.random() < 0.2 else 5000
    return dict(zip(uids, weights, strict=True)), limit, own


def sdk_conform(vector: dict[int, int], limit: int, own: int) -> dict[int, int]:
    """What the SDK's ``SetWeights`` sends for our u16 row given as its weights."""
    from bittensor.intents import weights as sdk

    uids = sorted(vector)
    floats = [float(vector[u]) for u in uids]
    if uids != [own] and limit < 65535:
        floats = sdk.clip_to_max_weight(floats, limit / 65535)
    return dict(zip(*sdk.normalize(uids, floats), strict=True))


def test_the_conversion_is_accepted_whenever_a_vector_can_be() -> None:
    rng = random.Random(20260701)
    satisfied = refused = sdk_refused = 0
    while satisfied < SATISFIABLE_CASES:
        weights, limit, own = random_case(rng)
        positive = sorted(u for u, w in weights.items() if w > 0)
        if not satisfiable(own, positive, limit):
            with pytest.raises(AggregationError, match="max_weight_limit"):
                to_u16(weights, limit, own)
            refused += 1
            continue
        vector = to_u16(weights, limit, own)
        assert pallet_accepts(own, vector, limit), (weights, limit, own, vector)
        assert max(vector.values()) == 65535 and min(vector.values()) > 0
        assert set(vector) <= set(positive)
        assert vec_u16_max_upscale_to_u16([vector[u] for u in sorted(vector)]) == [
            vector[u] for u in sorted(vector)
        ]  # stored as sent: the read-back equals it
        assert sdk_conform(vector, limit, own) == vector, (weights, limit, own)
        assert weightrules.max_weight_limited(
            own, sorted(vector), weightrules.max_upscale([vector[u] for u in sorted(vector)]), limit
        )
        satisfied += 1
        sdk_refused += not pallet_accepts(own, sdk_conform(weights, limit, own), limit)
    print(
        f"{satisfied} satisfiable cases: 0 refused by the pallet's check (the SDK's conversion: "
        f"{sdk_refused}); {refused} unsatisfiable cases refused before sending"
    )
    assert sdk_refused > 0  # the SDK's own conversion does get refused by the pallet


def test_the_issue_example_is_adjusted_and_accepted() -> None:
    sdk_row = {0: 639, 1: 13594, 2: 7, 3: 51296, 4: 65535}
    assert not pallet_accepts(9, sdk_row, 32767)  # max * 65535 / sum = 32767.25
    ours = to_u16(sdk_row, 32767)
    assert pallet_accepts(9, ours, 32767) and sum(ours.values()) == required_sum(32767) == 131073
    assert sorted(abs(ours[u] - sdk_row[u]) for u in sdk_row) == [0, 0, 0, 1, 1]


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.integers(1, 10**6), min_size=2, max_size=4),
    limit=st.integers(1, 65534),
)
def test_no_accepted_vector_is_closer_to_the_target(weights: list[int], limit: int) -> None:
    """Brute force over every vector within 2 of the target: none accepted is closer."""
    items = list(enumerate(weights))
    if len(items) * limit < 65535:
        return
    target = _clipped_target(items, limit)
    ours = to_u16(dict(items), limit)
    worst = max(abs(ours.get(u, 0) - x) for u, x in target.items())
    total = sum(abs(ours.get(u, 0) - x) for u, x in target.items())
    ranges = [range(max(0, int(x) - 2), min(65535, int(x) + 3) + 1) for _, x in sorted(target.items())]
    for candidate in itertools.product(*ranges):
        vector = dict(enumerate(candidate))
        if max(candidate) != 65535 or not pallet_accepts(99, vector, limit):
            continue
        their_worst = max(abs(vector[u] - x) for u, x in target.items())
        their_total = sum(abs(vector[u] - x) for u, x in target.items())
        assert (their_worst, their_total) >= (worst, total) or sdk_conform(vector, limit, 99) != vector


def test_the_target_caps_shares_and_keeps_the_rest_in_proportion() -> None:
    target = _clipped_target([(0, 90), (1, 6), (2, 3), (3, 1)], 32767)
    # 90% capped at 32767/65535; the other 10% scaled up to fill the rest, 6:3:1
    assert target[0] == 65535
    assert target[1] / target[2] == 2 and target[2] / target[3] == 3
    assert sum(target.values()) * 32767 == 65535 * 65535


def test_self_weight_and_no_limit_are_not_capped() -> None:
    assert to_u16({3: 10}, 1000, own_uid=3) == {3: 65535}
    assert to_u16({3: 10}, 0, own_uid=3) == {3: 65535}
    assert to_u16({1: 1, 2: 3}, 65535) == {1: 21845, 2: 65535}
    with pytest.raises(AggregationError, match="refuses every vector but a lone self-weight"):
        to_u16({1: 1, 2: 3}, 0)
    with pytest.raises(AggregationError, match="needs weight on at least 3 uids; this vector has 2"):
        to_u16({1: 1, 2: 3}, 32767)
    with pytest.raises(AggregationError, match="all weights are zero"):
        to_u16({1: 0}, 65535)


def test_padding_makes_a_capped_vector_satisfiable_and_survives_quantisation() -> None:
    padded, added = pad_to_min_weights({5: UNITS}, 3, candidates=range(10), max_weight_limit=32767)
    assert added == [0, 1]
    vector = to_u16(padded, 32767)
    assert len(vector) == 3 and pallet_accepts(99, vector, 32767)


def test_the_core_transcription_agrees_with_this_one() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        values = [
            rng.choice([0, 1, rng.randint(0, 65535), 65535, 32768, 32769]) for _ in range(rng.randint(1, 9))
        ]
        limit = rng.choice([*LIMITS, rng.randint(0, 65535)])
        assert weightrules.max_upscale(values) == vec_u16_max_upscale_to_u16(values)
        assert weightrules.max_share_ok(values, limit) == check_vec_max_limited(values, limit)
    assert Fraction(required_sum(32767) * 32767, 65535 * 65535) >= 1
