"""Aggregation: stake-weighted medians, Byzantine resistance, emission shares, padding.

The u16 conversion is tested against the pallet's checks in ``test_chain_u16.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from platform_cli.core.aggregation import (
    SCORE_MAX,
    UNITS,
    AggregationError,
    ChallengeShare,
    ScoreReport,
    Withheld,
    aggregate,
    pad_to_min_weights,
    to_u16,
    weighted_median,
)

scores = st.integers(0, SCORE_MAX)
stakes = st.integers(1, 10**15)


def test_weighted_median_follows_stake_not_count() -> None:
    assert weighted_median([(10, 1), (20, 1), (30, 100)]) == 30
    assert weighted_median([(10, 5), (20, 5)]) == 10  # lower median on an exact tie
    assert weighted_median([(7, 3)]) == 7


@settings(max_examples=300, deadline=None)
@given(
    honest=st.lists(st.tuples(scores, stakes), min_size=1, max_size=20),
    byzantine_scores=st.lists(scores, max_size=20),
    byzantine_split=st.lists(st.integers(1, 1000), max_size=20),
)
def test_byzantine_minority_cannot_leave_honest_range(
    honest: list[tuple[int, int]], byzantine_scores: list[int], byzantine_split: list[int]
) -> None:
    honest_stake = sum(stake for _, stake in honest)
    # Byzantine validators together hold strictly less than a third of all stake.
    budget = (honest_stake - 1) // 2
    pairs = list(zip(byzantine_scores, byzantine_split, strict=False))
    parts = sum(weight for _, weight in pairs) or 1
    byzantine = [(score, budget * weight // parts) for score, weight in pairs]
    byzantine = [(score, stake) for score, stake in byzantine if stake > 0]
    assert 3 * sum(s for _, s in byzantine) < honest_stake + sum(s for _, s in byzantine)
    median = weighted_median(honest + byzantine)
    low = min(score for score, _ in honest)
    high = max(score for score, _ in honest)
    assert low <= median <= high


STAKES = {"v1": 500, "v2": 300, "v3": 200}
UIDS = {"m1": 1, "m2": 2, "m3": 3, "owner": 0}


def reports(challenge: str, table: dict[str, dict[str, int]]) -> list[ScoreReport]:
    return [ScoreReport(v, challenge, m, s) for v, row in table.items() for m, s in row.items()]


def test_emission_shares_and_burn_to_owner() -> None:
    shares = [ChallengeShare("a", 600_000, 2), ChallengeShare("b", 200_000, 1)]
    rs = reports("a", {"v1": {"m1": 300, "m2": 100}, "v2": {"m1": 300, "m2": 100}, "v3": {"m1": 0, "m2": 0}})
    rs += reports("b", {"v1": {"m3": 5}})
    result = aggregate(rs, STAKES, shares, UIDS, burn_uid=0)
    # a: 600_000 ppm split 3:1; b: 200_000 ppm all to m3; 200_000 ppm unallocated burns.
    assert result.weights == {0: 200_000_000, 1: 450_000_000, 2: 150_000_000, 3: 200_000_000}
    assert sum(result.weights.values()) == UNITS
    assert result.burned == 200_000_000


def test_an_uneven_split_gives_the_burn_uid_exactly_the_dust() -> None:
    shares = [ChallengeShare("a", 1_000_000)]
    rs = reports("a", {"v1": {"m1": 1, "m2": 1, "m3": 1}})
    result = aggregate(rs, STAKES, shares, UIDS, burn_uid=0)
    third = UNITS // 3
    assert result.weights == {0: UNITS - 3 * third, 1: third, 2: third, 3: third}
    assert result.burned == 1 and sum(result.weights.values()) == UNITS


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, SCORE_MAX), min_size=1, max_size=3), st.integers(1, 1_000_000))
def test_miners_never_get_more_than_the_budget_and_the_burn_uid_the_rest(
    miner_scores: list[int], ppm: int
) -> None:
    table = {"v1": {f"m{index + 1}": score for index, score in enumerate(miner_scores)}}
    result = aggregate(reports("a", table), STAKES, [ChallengeShare("a", ppm)], UIDS, burn_uid=0)
    earned = sum(weight for uid, weight in result.weights.items() if uid != 0)
    assert earned <= ppm * (UNITS // 1_000_000)
    assert result.weights.get(0, 0) == result.burned == UNITS - earned


def test_withheld_dropped_and_outsiders() -> None:
    shares = [ChallengeShare("a", 1_000_000, 2)]
    rs = reports("a", {"v1": {"m1": 10, "m2": 10, "gone": 10}, "v2": {"m1": 10, "gone": 10}})
    rs.append(ScoreReport("intruder", "a", "m2", 10**9))  # not in the validator set: ignored
    rs.append(ScoreReport("v1", "unknown-challenge", "m1", 10))  # not a registered challenge
    result = aggregate(rs, STAKES, shares, UIDS, burn_uid=0)
    assert [(w.miner, w.validators, w.required) for w in result.withheld] == [("m2", 1, 2)]
    assert result.dropped == ("gone",)
    assert result.weights == {0: 500_000_000, 1: 500_000_000}


def test_no_burn_uid_leaves_remainder_unset_and_nothing_scored_is_empty() -> None:
    shares = [ChallengeShare("a", 500_000)]
    result = aggregate(reports("a", {"v1": {"m1": 1}}), STAKES, shares, UIDS, burn_uid=None)
    assert result.weights == {1: 500_000_000} and result.burned == 500_000_000
    assert aggregate([], STAKES, shares, UIDS, burn_uid=0).weights == {0: UNITS}


@settings(max_examples=100, deadline=None)
@given(st.permutations(reports("a", {"v1": {"m1": 7, "m2": 3}, "v2": {"m1": 9, "m2": 1}, "v3": {"m1": 1}})))
def test_result_does_not_depend_on_report_order(permuted: list[ScoreReport]) -> None:
    shares = [ChallengeShare("a", 900_000)]
    baseline = reports("a", {"v1": {"m1": 7, "m2": 3}, "v2": {"m1": 9, "m2": 1}, "v3": {"m1": 1}})
    assert aggregate(permuted, STAKES, shares, UIDS, 0) == aggregate(baseline, STAKES, shares, UIDS, 0)


@pytest.mark.parametrize(
    ("shares", "rs", "message"),
    [
        ([ChallengeShare("a", 700_000), ChallengeShare("b", 400_000)], [], "more than"),
        ([ChallengeShare("a", 1)], [ScoreReport("v1", "a", "m1", SCORE_MAX + 1)], "out of range"),
        ([ChallengeShare("a", 1), ChallengeShare("a", 1)], [], "twice"),
    ],
)
def test_bad_inputs_are_refused(shares: list[ChallengeShare], rs: list[ScoreReport], message: str) -> None:
    with pytest.raises(AggregationError, match=message):
        aggregate(rs, STAKES, shares, UIDS, 0)


def test_min_allowed_weights_padding() -> None:
    padded, added = pad_to_min_weights({5: UNITS}, 3, candidates=range(10))
    assert added == [0, 1]
    assert to_u16(padded, 65535) == {0: 1, 1: 1, 5: 65535}
    assert pad_to_min_weights({1: 10, 2: 10}, 2, candidates=range(5)) == ({1: 10, 2: 10}, [])
    with pytest.raises(AggregationError, match="min_allowed_weights=4"):
        pad_to_min_weights({0: 1}, 4, candidates=[0, 1])


@settings(max_examples=100, deadline=None)
@given(
    honest=st.lists(st.tuples(st.lists(scores, min_size=3, max_size=3), stakes), min_size=2, max_size=8),
    liars=st.lists(st.lists(scores, min_size=3, max_size=3), min_size=1, max_size=5),
)
def test_aggregate_keeps_every_miner_inside_the_honest_range(
    honest: list[tuple[list[int], int]], liars: list[list[int]]
) -> None:
    miners = ["m1", "m2", "m3"]
    stakes_map = {f"h{i}": stake for i, (_, stake) in enumerate(honest)}
    honest_stake = sum(stakes_map.values())
    for j in range(len(liars)):  # together strictly below a third of all stake
        stakes_map[f"b{j}"] = max(1, (honest_stake - 1) // (2 * len(liars)))
    byzantine = sum(s for v, s in stakes_map.items() if v.startswith("b"))
    assume(3 * byzantine < sum(stakes_map.values()))
    rs = [
        ScoreReport(f"h{i}", "a", m, row[k])
        for i, (row, _) in enumerate(honest)
        for k, m in enumerate(miners)
    ]
    rs += [ScoreReport(f"b{j}", "a", m, row[k]) for j, row in enumerate(liars) for k, m in enumerate(miners)]
    result = aggregate(rs, stakes_map, [ChallengeShare("a", 1_000_000)], UIDS, burn_uid=0)
    for k, miner in enumerate(miners):
        column = [row[k] for row, _ in honest]
        assert min(column) <= result.medians[("a", miner)] <= max(column)


def test_a_lone_validator_cannot_score_its_own_sybil() -> None:
    """A miner only a small validator scored gets the median of all participants: 0."""
    stakes_map = {"h1": 40, "h2": 40, "cheat": 5}
    rs = reports("a", {"h1": {"m1": 500}, "h2": {"m1": 500}, "cheat": {"m1": 500, "m2": SCORE_MAX}})
    result = aggregate(rs, stakes_map, [ChallengeShare("a", 1_000_000)], UIDS, burn_uid=0)
    assert result.medians[("a", "m2")] == 0
    assert result.weights == {1: UNITS}


@settings(max_examples=200, deadline=None)
@given(
    honest=st.lists(stakes, min_size=1, max_size=8),
    liar_scores=st.lists(scores, min_size=1, max_size=5),
)
def test_miners_scored_only_by_a_minority_get_nothing(honest: list[int], liar_scores: list[int]) -> None:
    stakes_map = {f"h{i}": stake for i, stake in enumerate(honest)}
    honest_stake = sum(honest)
    for j in range(len(liar_scores)):
        stakes_map[f"b{j}"] = max(1, (honest_stake - 1) // (2 * len(liar_scores)))
    assume(3 * sum(s for v, s in stakes_map.items() if v.startswith("b")) < sum(stakes_map.values()))
    rs = [ScoreReport(f"h{i}", "a", "m1", 1000) for i in range(len(honest))]
    rs += [ScoreReport(f"b{j}", "a", "m2", score) for j, score in enumerate(liar_scores)]
    result = aggregate(rs, stakes_map, [ChallengeShare("a", 1_000_000)], UIDS, burn_uid=0)
    assert result.medians[("a", "m2")] == 0


@pytest.mark.parametrize(
    ("values", "median"),
    [
        ([(10, 1), (20, 2)], 20),  # 1 of 3 is not half: the next score
        ([(10, 2), (20, 2), (30, 2)], 20),  # 2 of 6 is not half, 4 of 6 is
        ([(30, 1), (10, 1)], 10),  # unordered input, exact half: the lower
        ([(10, 1), (20, 1), (30, 1), (40, 2)], 30),
    ],
)
def test_weighted_median_stops_where_the_running_stake_reaches_half(
    values: list[tuple[int, int]], median: int
) -> None:
    assert weighted_median(values) == median


def test_the_median_of_nothing_is_refused() -> None:
    with pytest.raises(AggregationError) as info:
        weighted_median([])
    assert str(info.value) == "weighted median of nothing"


@pytest.mark.parametrize(
    ("shares", "rs", "message"),
    [
        ([ChallengeShare("a", -1)], [], "challenge 'a': emission_ppm -1 out of range"),
        ([ChallengeShare("a", 1_000_001)], [], "challenge 'a': emission_ppm 1000001 out of range"),
        (
            [ChallengeShare("a", 600_000), ChallengeShare("b", 400_001)],
            [],
            "emission shares add up to 1000001 ppm, more than 1000000",
        ),
        ([ChallengeShare("a", 1), ChallengeShare("a", 2)], [], "challenge 'a' listed twice"),
        (
            [ChallengeShare("a", 1)],
            [ScoreReport("v1", "a", "m1", 1.5)],
            "score of v1 for m1 is not an integer",
        ),
        (
            [ChallengeShare("a", 1)],
            [ScoreReport("v1", "a", "m1", True)],
            "score of v1 for m1 is not an integer",
        ),
        ([ChallengeShare("a", 1)], [ScoreReport("v2", "a", "m2", -1)], "score -1 of v2 for m2 out of range"),
    ],
)
def test_bad_inputs_are_refused_saying_exactly_why(
    shares: list[ChallengeShare], rs: list[ScoreReport], message: str
) -> None:
    with pytest.raises(AggregationError) as info:
        aggregate(rs, STAKES, shares, UIDS, 0)
    assert str(info.value) == message


def test_shares_at_their_limits_are_accepted() -> None:
    rs = reports("a", {"v1": {"m1": 1}}) + reports("b", {"v1": {"m2": SCORE_MAX}})
    result = aggregate(rs, STAKES, [ChallengeShare("a", 0), ChallengeShare("b", 1_000_000)], UIDS, 0)
    # A challenge with no share pays nothing and leaves no zero entry in the vector.
    assert result.weights == {2: UNITS} and result.burned == 0
    assert result.medians == {("a", "m1"): 1, ("b", "m2"): SCORE_MAX}


def test_a_validator_with_the_least_stake_counts_and_outsiders_anywhere_are_skipped() -> None:
    stakes_map = {"v1": 1, "v2": 1, "v3": 1}
    rs = [ScoreReport("outsider", "a", "m1", SCORE_MAX), ScoreReport("v1", "nope", "m1", 5)]
    rs += reports("a", {"v1": {"m1": 8}, "v2": {"m1": 8}, "v3": {"m1": 2}})
    result = aggregate(rs, stakes_map, [ChallengeShare("a", 1_000_000)], UIDS, burn_uid=None)
    assert result.medians == {("a", "m1"): 8}
    assert result.weights == {1: UNITS}


def test_withheld_scores_name_their_challenge_and_the_rest_still_count() -> None:
    shares = [ChallengeShare("a", 500_000, 2), ChallengeShare("b", 500_000, 0)]
    rs = reports("a", {"v1": {"m1": 10, "m2": 10}, "v2": {"m2": 10}}) + reports("b", {"v3": {"m3": 4}})
    result = aggregate(rs, STAKES, shares, UIDS, burn_uid=0)
    assert result.withheld == (Withheld("a", "m1", 1, 2),)
    assert result.medians == {("a", "m2"): 10, ("b", "m3"): 4}
    assert result.weights == {2: 500_000_000, 3: 500_000_000}


def test_a_miner_paid_by_several_challenges_and_the_burn_uid_as_miner_add_up() -> None:
    shares = [ChallengeShare("a", 300_000), ChallengeShare("b", 200_000)]
    rs = reports("a", {"v1": {"m1": 1, "owner": 1}}) + reports("b", {"v1": {"m1": 3, "m2": 1}})
    result = aggregate(rs, STAKES, shares, UIDS, burn_uid=0)
    # m1: 150M from a + 150M from b; the owner earns 150M in a and gets the 500M unallocated.
    assert result.weights == {0: 650_000_000, 1: 300_000_000, 2: 50_000_000}
    assert result.burned == 500_000_000


def test_miners_scored_zero_are_paid_nothing_and_are_not_dropped() -> None:
    rs = reports("a", {"v1": {"m1": 0, "gone": 0}})
    result = aggregate(rs, STAKES, [ChallengeShare("a", 1_000_000)], UIDS, burn_uid=0)
    assert result.weights == {0: UNITS} and result.dropped == () and result.burned == UNITS


@pytest.mark.parametrize(
    ("weights", "minimum", "candidates", "limit", "padded", "added"),
    [
        ({}, 2, [1, 2], 65535, {1: 15260, 2: 15260}, [1, 2]),  # nothing yet: pads of UNITS / 65535
        ({5: UNITS}, 2, range(10), 65535, {0: 15260, 5: UNITS}, [0]),  # one short
        ({1: 0, 2: 10}, 2, [1, 3], 65535, {1: 1, 2: 10}, [1]),  # a zero weight is a free uid
        ({5: 1, 6: 1}, 2, [], 65535, {5: 1, 6: 1}, []),
        # Under the cap the small entry survives: counted with the cap, nothing to add.
        ({1: UNITS, 2: UNITS // 2, 3: 5000}, 3, [], 32768, {1: UNITS, 2: UNITS // 2, 3: 5000}, []),
        ({1: UNITS, 2: UNITS, 3: 1}, 3, [], 21845, {1: UNITS, 2: UNITS, 3: 1}, []),  # 3 * 21845 == 65535
        # Five pads push uid 0 (10 of 10**9) below one u16 unit: a sixth pad replaces it.
        (
            {0: 10, 1: 99, 2: 83985, 3: UNITS},
            9,
            range(10),
            59759,
            {0: 10, 1: 99, 2: 83985, 3: UNITS, **dict.fromkeys(range(4, 10), 15260)},
            [4, 5, 6, 7, 8, 9],
        ),
    ],
)
def test_padding_adds_exactly_the_uids_that_must_carry_weight(
    weights: dict[int, int],
    minimum: int,
    candidates: range | list[int],
    limit: int,
    padded: dict[int, int],
    added: list[int],
) -> None:
    assert pad_to_min_weights(weights, minimum, candidates, limit) == (padded, added)


@pytest.mark.parametrize(
    ("weights", "minimum", "candidates", "message"),
    [
        ({}, 1, [], "only 0 uids can carry weight but the subnet requires min_allowed_weights=1"),
        (
            {1: UNITS, 2: 1},
            2,
            [],
            "only 2 uids can carry weight but the subnet requires min_allowed_weights=2",
        ),
    ],
)
def test_padding_that_cannot_reach_the_minimum_says_so(
    weights: dict[int, int], minimum: int, candidates: list[int], message: str
) -> None:
    with pytest.raises(AggregationError) as info:
        pad_to_min_weights(weights, minimum, candidates)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("weights", "limit", "message"),
    [
        ({1: 0, 2: 0}, 65535, "all weights are zero; nothing to set"),
        (
            {1: 1, 2: 3},
            0,
            "the subnet's max_weight_limit 0/65535 refuses every vector but a lone self-weight; "
            "this vector has 2: the chain would refuse it",
        ),
        (
            {1: 1, 2: 3},
            32767,
            "the subnet's max_weight_limit 32767/65535 needs weight on at least 3 uids; "
            "this vector has 2: the chain would refuse it",
        ),
    ],
)
def test_a_vector_the_chain_would_refuse_is_never_converted(
    weights: dict[int, int], limit: int, message: str
) -> None:
    with pytest.raises(AggregationError) as info:
        to_u16(weights, limit)
    assert str(info.value) == message


def test_u16_rounding_raises_each_rounded_down_entry_at_most_once() -> None:
    """Two units short of the sum the cap needs: the two entries rounded down furthest are
    raised by one each, never one entry by two (it would move further from its target)."""
    vector = to_u16({0: 667, 1: 432, 2: 150, 3: 58}, 32767)
    assert vector == {0: 65535, 1: 44238, 2: 15360, 3: 5940}
    assert sum(vector.values()) == 131073
