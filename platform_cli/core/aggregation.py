"""Aggregating validators' scores into one weight vector (pure: no I/O, no clock).

Theory of operation
-------------------
Inputs are integer score reports ``(validator hotkey, challenge id, miner hotkey,
score in [0, 10**9])`` for one epoch, the validator set with stakes (rao) from the
metagraph snapshot, the challenges with their emission shares (ppm) and
``min_validators``, and the snapshot's hotkey -> uid map.

1. Reports from hotkeys outside the validator set are ignored; a validator's stake is
   the snapshot's, never what it claims.
2. Per challenge and miner, the score is the stake-weighted *lower median* over every
   validator that reported in the challenge, a missing report counting as 0: the
   smallest score whose cumulative stake reaches half of the participating stake. When validators holding more than half of that stake are honest,
   the median lies inside the honest reports' range, so a minority below one third
   cannot push it out. A score backed by fewer than ``min_validators`` validators is
   withheld, not guessed.
3. Each challenge splits its ``emission_ppm`` among its miners in proportion to their
   medians, in integer units of ``UNITS`` (10**9 for the whole vector); rounding dust,
   shares of unscored challenges and the unallocated remainder go to the burn uid
   (the subnet owner, configurable; ``None`` leaves them unset).
4. Hotkeys map to uids at the snapshot block; miners no longer registered are dropped
   (their share burns).
5. :func:`to_u16` converts the unit vector to the u16 row the chain will store: the
   nearest vector (to the intended shares, capped at ``max_weight_limit``) that the
   pallet's exact fixed-point check accepts, or a refusal when none exists. The SDK's
   own conversion rounds after clipping and sends ~1% of capped vectors the pallet
   refuses; ours passes its checks unchanged (a property test holds both facts).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

SCORE_MAX = 10**9
PPM = 1_000_000
UNITS = 10**9
UNITS_PER_PPM = UNITS // PPM
U16_MAX = 65535


class AggregationError(ValueError):
    """The inputs cannot produce a weight vector; the message says which."""


@dataclass(frozen=True)
class ScoreReport:
    validator: str
    challenge: str
    miner: str
    score: int


@dataclass(frozen=True)
class ChallengeShare:
    challenge: str
    emission_ppm: int
    min_validators: int = 1


@dataclass(frozen=True)
class Withheld:
    challenge: str
    miner: str
    validators: int
    required: int


@dataclass(frozen=True)
class Aggregate:
    """The outcome: ``weights`` is uid -> units (sum ``UNITS`` when burning).

    ``burned`` counts the units no miner earned: given to the burn uid, or left unset.
    """

    weights: dict[int, int]
    medians: dict[tuple[str, str], int] = field(default_factory=dict)
    withheld: tuple[Withheld, ...] = ()
    dropped: tuple[str, ...] = ()
    burned: int = 0


def weighted_median(values: Sequence[tuple[int, int]]) -> int:
    """Lower stake-weighted median of ``(score, stake)`` pairs (all stakes > 0)."""
    if not values:
        raise AggregationError("weighted median of nothing")
    ordered = sorted(values)
    total = sum(stake for _, stake in ordered)
    running = 0
    for score, stake in ordered:  # noqa: B007 (the score at which the loop stops is the median)
        running += stake
        if 2 * running >= total:
            break
    return score


def _check_inputs(reports: Iterable[ScoreReport], challenges: Sequence[ChallengeShare]) -> None:
    total_ppm = 0
    seen: set[str] = set()
    for share in challenges:
        if share.challenge in seen:
            raise AggregationError(f"challenge {share.challenge!r} listed twice")
        seen.add(share.challenge)
        if not 0 <= share.emission_ppm <= PPM:
            raise AggregationError(
                f"challenge {share.challenge!r}: emission_ppm {share.emission_ppm} out of range"
            )
        total_ppm += share.emission_ppm
    if total_ppm > PPM:
        raise AggregationError(f"emission shares add up to {total_ppm} ppm, more than {PPM}")
    for report in reports:
        if isinstance(report.score, bool) or not isinstance(report.score, int):
            raise AggregationError(f"score of {report.validator} for {report.miner} is not an integer")
        if not 0 <= report.score <= SCORE_MAX:
            raise AggregationError(
                f"score {report.score} of {report.validator} for {report.miner} out of range"
            )


def medians(
    reports: Iterable[ScoreReport],
    stakes: Mapping[str, int],
    challenges: Sequence[ChallengeShare],
) -> tuple[dict[tuple[str, str], int], list[Withheld]]:
    """(challenge, miner) -> median score, and the scores withheld for lack of validators.

    The median of a miner is taken over every validator that reported in the challenge
    this epoch, a validator that did not score the miner counting as 0. Otherwise a
    single validator could give full marks to a miner nobody else evaluated (its own
    sybil) and its report alone would be the median.
    """
    required = {c.challenge: max(1, c.min_validators) for c in challenges}
    grouped: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    participants: dict[str, set[str]] = defaultdict(set)
    for report in reports:
        stake = stakes.get(report.validator, 0)
        if stake <= 0 or report.challenge not in required:
            continue
        grouped[(report.challenge, report.miner)][report.validator] = report.score
        participants[report.challenge].add(report.validator)
    out: dict[tuple[str, str], int] = {}
    withheld: list[Withheld] = []
    for key in sorted(grouped):
        by_validator = grouped[key]
        if len(by_validator) < required[key[0]]:
            withheld.append(Withheld(key[0], key[1], len(by_validator), required[key[0]]))
            continue
        column = [(by_validator.get(v, 0), stakes[v]) for v in participants[key[0]]]
        out[key] = weighted_median(column)
    return out, withheld


def aggregate(
    reports: Iterable[ScoreReport],
    stakes: Mapping[str, int],
    challenges: Sequence[ChallengeShare],
    uids: Mapping[str, int],
    burn_uid: int | None,
) -> Aggregate:
    """The epoch's weight vector in integer units; see the module docstring."""
    reports = list(reports)
    _check_inputs(reports, challenges)
    scores, withheld = medians(reports, stakes, challenges)
    per_challenge: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (challenge, miner), score in scores.items():
        per_challenge[challenge].append((miner, score))
    weights: dict[int, int] = defaultdict(int)
    dropped: set[str] = set()
    for share in challenges:
        budget = share.emission_ppm * UNITS_PER_PPM
        entries = [(m, s) for m, s in per_challenge.get(share.challenge, []) if s > 0]
        total = sum(s for _, s in entries)
        for miner, score in entries:
            uid = uids.get(miner)
            if uid is None:
                dropped.add(miner)
                continue
            weights[uid] += budget * score // total
    allocated = sum(weights.values())
    burned = UNITS - allocated
    if burn_uid is not None and burned > 0:
        weights[burn_uid] += burned
    vector = {uid: w for uid, w in sorted(weights.items()) if w > 0}
    return Aggregate(vector, scores, tuple(withheld), tuple(sorted(dropped)), burned)


def _clipped_target(items: Sequence[tuple[int, int]], limit: int | None) -> dict[int, Fraction]:
    """The intended vector in u16 units, largest entry 65535, shares capped at ``limit``/65535.

    Shares above the cap are clipped and the rest scaled up in proportion (the shares
    closest to the intended ones, in relative entropy, that respect the cap; the SDK's
    ``clip_to_max_weight`` approximates the same in floats).
    """
    top = max(w for _, w in items)
    if limit is None:
        return {uid: Fraction(w * U16_MAX, top) for uid, w in items}
    cap = Fraction(limit, U16_MAX)
    rest = sum(w for _, w in items)
    ordered = sorted(items, key=lambda item: -item[1])
    clipped = 0
    while (1 - clipped * cap) * ordered[clipped][1] > cap * rest:
        rest -= ordered[clipped][1]
        clipped += 1
    if clipped == 0:
        return {uid: Fraction(w * U16_MAX, top) for uid, w in items}
    scale = (1 - clipped * cap) * U16_MAX / (cap * rest)
    capped = {uid for uid, _ in ordered[:clipped]}
    return {uid: Fraction(U16_MAX) if uid in capped else scale * w for uid, w in items}


def required_sum(limit: int) -> int:
    """The least u16 sum a vector whose largest entry is 65535 needs under ``limit``.

    ``65535 * 65535 <= limit * sum``: the largest share is at most ``limit``/65535
    exactly. The pallet's fixed-point check (``core.weightrules.max_share_ok``) then
    passes, and the SDK's own ``clip_to_max_weight`` leaves the vector as it is.
    """
    return -(-U16_MAX * U16_MAX // limit)


def to_u16(weights: Mapping[int, int], max_weight_limit: int, own_uid: int | None = None) -> dict[int, int]:
    """uid -> u16 as the chain will store it, accepted by the pallet's exact integer check.

    The rule (docs/weights-on-chain.md): take the intended vector in u16 units (largest
    entry 65535, shares capped at the limit, :func:`_clipped_target`), round each entry
    to the nearest integer (ties to even), and while the sum is below
    :func:`required_sum` raise by 1 the entry whose distance to its target stays
    smallest. No vector the chain accepts is closer to the target: the largest and the
    total distance are both minimal. Zeros are dropped, as the SDK drops them. A lone self-weight and a
    limit of 65535 are not capped. When no accepted vector over these uids exists (fewer
    than 65535/limit uids), :class:`AggregationError` says so before anything is sent.
    """
    items = sorted((uid, w) for uid, w in weights.items() if w > 0)
    if not items:
        raise AggregationError("all weights are zero; nothing to set")
    limited = [uid for uid, _ in items] != [own_uid] and max_weight_limit < U16_MAX
    if limited and len(items) * max_weight_limit < U16_MAX:
        needed = -(-U16_MAX // max_weight_limit) if max_weight_limit else None
        raise AggregationError(
            f"the subnet's max_weight_limit {max_weight_limit}/{U16_MAX} "
            + (
                f"needs weight on at least {needed} uids"
                if needed
                else "refuses every vector but a lone self-weight"
            )
            + f"; this vector has {len(items)}: the chain would refuse it"
        )
    target = _clipped_target(items, max_weight_limit if limited else None)
    values = {uid: round(x) for uid, x in target.items()}
    missing = required_sum(max_weight_limit) - sum(values.values()) if limited else 0
    raisable = [(values[uid] + 1 - x, uid) for uid, x in target.items() if values[uid] < U16_MAX]
    heapq.heapify(raisable)
    for _ in range(missing):
        _, uid = heapq.heappop(raisable)
        values[uid] += 1
        if values[uid] < U16_MAX:
            heapq.heappush(raisable, (values[uid] + 1 - target[uid], uid))
    return {uid: v for uid, v in values.items() if v > 0}


def pad_to_min_weights(
    weights: Mapping[int, int], min_allowed: int, candidates: Iterable[int], max_weight_limit: int = U16_MAX
) -> tuple[dict[int, int], list[int]]:
    """Add the smallest weight that survives u16 quantisation to free uids, in ``candidates`` order.

    The SDK refuses vectors with fewer than ``min_allowed_weights`` nonzero entries;
    padding with one-in-65535 weights keeps the computed proportions while meeting the
    rule. Returns the padded vector and the uids added.
    """
    vector = {uid: w for uid, w in weights.items() if w > 0}
    free = [uid for uid in dict.fromkeys(candidates) if uid not in vector]
    added: list[int] = []
    while (short := min_allowed - _surviving(vector, max_weight_limit)) > 0 and free:
        pad = -(-max(vector.values(), default=UNITS) // U16_MAX)
        for uid in free[:short]:
            vector[uid] = pad
            added.append(uid)
        free = free[short:]
    if _surviving(vector, max_weight_limit) < min_allowed:
        raise AggregationError(
            f"only {len(vector)} uids can carry weight but the subnet requires min_allowed_weights={min_allowed}"
        )
    return dict(sorted(vector.items())), added


def _surviving(vector: Mapping[int, int], max_weight_limit: int) -> int:
    """How many entries stay nonzero in u16 (counted without the cap while it cannot be met)."""
    if not vector:
        return 0
    limit = max_weight_limit if len(vector) * max_weight_limit >= U16_MAX else U16_MAX
    return len(to_u16(vector, limit))
