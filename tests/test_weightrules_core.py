"""The pallet's weight rules as pure functions: every rule's boundary, message and order.

The same rules run against the dev chain through the real SDK in ``test_chain_devrules.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from platform_cli.core.weightrules import (
    ChainView,
    Refusal,
    WeightsCall,
    is_self_weight,
    max_share_ok,
    max_upscale,
    max_weight_limited,
    min_entries,
    rate_limit_passes,
    refusals,
    stake_passes,
    timelocked_refusals,
    vector_refusals,
    version_key_passes,
)

VIEW = ChainView(
    block=2000, subnet_exists=True, mechanism_count=2, subnet_n=42, uid=6, owner_uid=0, stake=10,
    stake_threshold=10, required_version_key=7, commit_reveal=False, rate_limit=100, last_update=1900,
    permit=True, min_allowed_weights=8, max_weight_limit=65535,
)  # fmt: skip
"""A signer that passes every rule, each at its limit where it has one."""
CALL = WeightsCall(netuid=2, mecid=1, uids=tuple(range(34, 42)), values=(1,) * 8, version_key=7)


def rows(found: list[Refusal]) -> list[tuple[str, str, str, str]]:
    return [(r.name, r.stage, r.reported, r.detail) for r in found]


def test_a_call_at_every_limit_passes() -> None:
    assert refusals(VIEW, CALL) == [] and timelocked_refusals(VIEW, CALL) == []


@pytest.mark.parametrize(
    ("view", "call", "expected"),
    [
        (
            {"stake": 9},
            {},
            [
                (
                    "NotEnoughStakeToSetWeights",
                    "pool",
                    "StakeAmountTooLow",
                    "stake 9 rao is below the threshold 10",
                )
            ],
        ),
        ({"stake": 0, "uid": 0}, {}, []),  # the subnet owner is exempt from the stake threshold
        (
            {"last_update": 1901},
            {},
            [
                (
                    "SettingWeightsTooFast",
                    "pool",
                    "RateLimitExceeded",
                    "uid 6 last set weights at block 1901; the rate limit is 100 blocks, so block 2001 is the earliest",
                )
            ],
        ),
        ({"last_update": 0, "block": 50}, {}, []),  # never set: no rate limit
        (
            {"commit_reveal": True, "last_update": 1950},
            {},
            [
                (
                    "CommitRevealEnabled",
                    "dispatch",
                    "CommitRevealEnabled",
                    "netuid 2 takes commits, not plain weights",
                )
            ],
        ),
        (
            {},
            {"netuid": 0},
            [
                (
                    "CanNotSetRootNetworkWeights",
                    "dispatch",
                    "CanNotSetRootNetworkWeights",
                    "netuid 0 is the root network",
                )
            ],
        ),
        (
            {},
            {"values": (1,) * 9},
            [("WeightVecNotEqualSize", "dispatch", "WeightVecNotEqualSize", "8 uids, 9 weights")],
        ),
        (
            {"subnet_exists": False, "permit": False},
            {"netuid": 0},
            [
                (
                    "CanNotSetRootNetworkWeights",
                    "dispatch",
                    "CanNotSetRootNetworkWeights",
                    "netuid 0 is the root network",
                ),
                (
                    "MechanismDoesNotExist",
                    "dispatch",
                    "MechanismDoesNotExist",
                    "mechanism 1 of netuid 0 does not exist",
                ),
            ],
        ),
        (
            {"permit": False},
            {"mecid": 2},
            [
                (
                    "MechanismDoesNotExist",
                    "dispatch",
                    "MechanismDoesNotExist",
                    "mechanism 2 of netuid 2 does not exist",
                )
            ],
        ),
        (
            {"subnet_n": 7, "min_allowed_weights": 1},
            {"uids": tuple(range(8)), "values": (1,) * 8},
            [
                (
                    "UidsLengthExceedUidsInSubNet",
                    "dispatch",
                    "UidsLengthExceedUidsInSubNet",
                    "8 uids on a subnet of 7",
                ),
                (
                    "UidVecContainInvalidOne",
                    "dispatch",
                    "UidVecContainInvalidOne",
                    "uid 7 does not exist (the subnet has 7)",
                ),
            ],
        ),
        ({"subnet_n": 8}, {"uids": tuple(range(8))}, []),
        (
            {"uid": None, "stake": 0, "owner_uid": None, "last_update": 1999, "permit": False},
            {},
            [
                (
                    "NotEnoughStakeToSetWeights",
                    "pool",
                    "StakeAmountTooLow",
                    "stake 0 rao is below the threshold 10",
                ),
                (
                    "HotKeyNotRegisteredInSubNet",
                    "dispatch",
                    "HotKeyNotRegisteredInSubNet",
                    "the signer is not registered on netuid 2",
                ),
            ],
        ),
        (
            {},
            {"version_key": 6},
            [
                (
                    "IncorrectWeightVersionKey",
                    "dispatch",
                    "IncorrectWeightVersionKey",
                    "version_key 6 is older than the subnet's 7",
                )
            ],
        ),
        ({"required_version_key": 0}, {"version_key": 0}, []),
        (
            {"permit": False},
            {},
            [
                (
                    "NeuronNoValidatorPermit",
                    "dispatch",
                    "NeuronNoValidatorPermit",
                    "uid 6 holds no validator permit",
                )
            ],
        ),
        ({"permit": False, "uid": 0, "stake": 0}, {}, []),  # the owner needs no permit
        ({"permit": False, "max_weight_limit": 0}, {"uids": (6,), "values": (9,)}, []),  # a lone self-weight
        (
            {},
            {"uids": (34, 35, 36, 37, 38, 39, 40, 34)},
            [("DuplicateUids", "dispatch", "DuplicateUids", "a uid appears twice")],
        ),
        (
            {},
            {"uids": (34, 35, 36, 37, 38, 39, 45, 42)},
            [
                (
                    "UidVecContainInvalidOne",
                    "dispatch",
                    "UidVecContainInvalidOne",
                    "uid 42 does not exist (the subnet has 42)",
                )
            ],
        ),
        (
            {},
            {"uids": (34, 35, 36, 37, 38, 39, 40), "values": (1,) * 7},
            [
                (
                    "WeightVecLengthIsLow",
                    "dispatch",
                    "WeightVecLengthIsLow",
                    "7 weights, the subnet requires 8",
                )
            ],
        ),
        ({"subnet_n": 7, "min_allowed_weights": 8}, {"uids": tuple(range(7)), "values": (0,) * 7}, []),
        (
            {"max_weight_limit": 32768},
            {"values": (65535,) + (1,) * 7},
            [
                (
                    "MaxWeightExceeded",
                    "dispatch",
                    "MaxWeightExceeded",
                    "the largest weight is 65535/65542 of the vector, above the limit 32768/65535",
                )
            ],
        ),
    ],
)
def test_each_rule_refuses_at_its_limit_with_its_name_stage_and_detail(
    view: dict[str, Any], call: dict[str, Any], expected: list[tuple[str, str, str, str]]
) -> None:
    assert rows(refusals(replace(VIEW, **view), replace(CALL, **call))) == expected


def test_a_refusal_reads_as_name_and_detail() -> None:
    (refused,) = refusals(replace(VIEW, permit=False), CALL)
    assert str(refused) == "NeuronNoValidatorPermit: uid 6 holds no validator permit"


def test_a_pool_rule_is_not_repeated_at_dispatch_but_the_order_is_the_pallets() -> None:
    view = replace(VIEW, stake=0, last_update=1950, permit=False, required_version_key=8)
    assert [(r.name, r.stage) for r in refusals(view, CALL)] == [
        ("NotEnoughStakeToSetWeights", "pool"),
        ("SettingWeightsTooFast", "pool"),
        ("IncorrectWeightVersionKey", "dispatch"),
        ("NeuronNoValidatorPermit", "dispatch"),
    ]


AT_REVEAL = " (at reveal: the chain drops the commit)"


@pytest.mark.parametrize(
    ("view", "call", "expected"),
    [
        (
            {"stake": 9, "subnet_exists": False},
            {},
            [
                (
                    "NotEnoughStakeToSetWeights",
                    "pool",
                    "StakeAmountTooLow",
                    "stake 9 rao is below the threshold 10",
                ),
                (
                    "MechanismDoesNotExist",
                    "dispatch",
                    "MechanismDoesNotExist",
                    "mechanism 1 of netuid 2 does not exist",
                ),
            ],
        ),
        (
            {"permit": False},
            {"mecid": 2},
            [
                (
                    "MechanismDoesNotExist",
                    "dispatch",
                    "MechanismDoesNotExist",
                    "mechanism 2 of netuid 2 does not exist",
                )
            ],
        ),
        (
            {"uid": None, "owner_uid": None, "permit": False},
            {},
            [
                (
                    "HotKeyNotRegisteredInSubNet",
                    "dispatch",
                    "HotKeyNotRegisteredInSubNet",
                    "the signer is not registered on netuid 2",
                )
            ],
        ),
        (
            # Commit-reveal on: commits are rate limited too, and the plain-weights rate rule is not repeated.
            {"commit_reveal": True, "last_update": 1901, "stake": 0},
            {},
            [
                (
                    "NotEnoughStakeToSetWeights",
                    "pool",
                    "StakeAmountTooLow",
                    "stake 0 rao is below the threshold 10",
                ),
                (
                    "CommittingWeightsTooFast",
                    "dispatch",
                    "CommittingWeightsTooFast",
                    "uid 6 last set weights at block 1901; the rate limit is 100 blocks, so block 2001 is the earliest",
                ),
            ],
        ),
        (
            {"last_update": 1901, "permit": False},
            {"uids": (34, 35, 36, 37, 38, 39, 40), "values": (1,) * 7},
            [
                (
                    "CommittingWeightsTooFast",
                    "dispatch",
                    "CommittingWeightsTooFast",
                    "uid 6 last set weights at block 1901; the rate limit is 100 blocks, so block 2001 is the earliest",
                ),
                (
                    "NeuronNoValidatorPermit",
                    "dispatch",
                    "NeuronNoValidatorPermit",
                    "uid 6 holds no validator permit" + AT_REVEAL,
                ),
                (
                    "WeightVecLengthIsLow",
                    "dispatch",
                    "WeightVecLengthIsLow",
                    "7 weights, the subnet requires 8" + AT_REVEAL,
                ),
            ],
        ),
    ],
)
def test_a_timelocked_commit_is_refused_now_or_at_its_reveal(
    view: dict[str, Any], call: dict[str, Any], expected: list[tuple[str, str, str, str]]
) -> None:
    assert rows(timelocked_refusals(replace(VIEW, **view), replace(CALL, **call))) == expected


@pytest.mark.parametrize(
    ("values", "stored"),
    [
        ([], []),
        ([0, 0], [0, 0]),
        ([1], [65535]),
        ([1, 2], [32768, 65535]),  # 32767.5 rounds away from zero
        ([10, 100], [6554, 65535]),  # a top up to 32768: multiply, then divide
        ([4000, 40000], [6553, 65535]),  # a larger top: multiply by the truncated ratio
        ([3277, 32768], [6554, 65535]),
        ([3277, 32769], [6554, 65535]),
        ([0, 7, 7], [0, 65535, 65535]),
    ],
)
def test_max_upscale_is_the_pallets_fixed_point_arithmetic(values: list[int], stored: list[int]) -> None:
    assert max_upscale(values) == stored


@pytest.mark.parametrize(
    ("values", "limit", "ok"),
    [
        ([1, 1], 32767, False),  # a half is above 32767/65535
        ([1, 1], 32768, True),
        ([5], 65535, True),  # a share of exactly 1 meets a limit of 65535/65535
        ([5], 65534, False),
        ([0, 0], 0, True),  # an all-zero vector has no largest share
        ([0, 3], 0, False),
    ],
)
def test_the_max_share_check_is_exact_at_the_limit(values: list[int], limit: int, ok: bool) -> None:
    assert max_share_ok(values, limit) is ok


def test_the_small_predicates_at_their_limits() -> None:
    assert is_self_weight(6, [6], [1])
    assert (
        not is_self_weight(6, [], [1])
        and not is_self_weight(6, [7], [1])
        and not is_self_weight(None, [6], [1])
    )
    assert not is_self_weight(6, [6], [1, 1])
    assert max_weight_limited(6, [6], [65535], 0) and max_weight_limited(1, [2, 3], [65535, 0], 65535)
    assert not max_weight_limited(1, [2], [65535], 65534)
    assert max_weight_limited(1, [2, 3], [1, 1], 32768) and not max_weight_limited(1, [2, 3], [1, 1], 32767)
    assert min_entries(5, 8) == 5 and min_entries(42, 8) == 8
    assert rate_limit_passes(0, 100, 50) and rate_limit_passes(1900, 100, 2000)
    assert not rate_limit_passes(1901, 100, 2000) and not rate_limit_passes(1, 100, 50)
    assert version_key_passes(0, 0) and version_key_passes(7, 7) and version_key_passes(7, 8)
    assert not version_key_passes(7, 6) and not version_key_passes(1, 0)
    assert stake_passes(replace(VIEW, stake=10)) and not stake_passes(replace(VIEW, stake=9))
    assert stake_passes(replace(VIEW, uid=0, stake=0))
    assert not stake_passes(replace(VIEW, uid=None, owner_uid=None, stake=0))


def test_a_revealed_vector_is_checked_at_dispatch_with_its_own_stake_and_rate_rules() -> None:
    """A reveal (the dev chain's ``from_reveal``) runs the dispatch checks alone: the stake and
    rate rules are reported there, not in the pool."""
    view = replace(VIEW, stake=9, last_update=1901)
    assert rows(vector_refusals(view, CALL)) == [
        (
            "NotEnoughStakeToSetWeights",
            "dispatch",
            "NotEnoughStakeToSetWeights",
            "stake 9 rao is below the threshold 10",
        ),
        (
            "SettingWeightsTooFast",
            "dispatch",
            "SettingWeightsTooFast",
            "uid 6 last set weights at block 1901; the rate limit is 100 blocks, so block 2001 is the earliest",
        ),
    ]
