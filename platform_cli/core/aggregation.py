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
5. :func:`to_u16` converts the unit vector exactly as the bittensor SDK does
   (``clip_to_max_weight`` then ``normalize``), reimplemented here so the agreed vector
   is known before anything touches the chain; a property test holds it equal to the SDK.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from math import isfinite

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
    for score, stake in ordered:
        running += stake
        if 2 * running >= total:
            return score
    return ordered[-1][0]


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


def normalize(uids: Sequence[int], weights: Sequence[float]) -> tuple[list[int], list[int]]:
    """Max-upscale to u16 and drop zeros: the SDK's ``bittensor.intents.weights.normalize``."""
    if len(uids) != len(weights):
        raise AggregationError(f"uids and weights differ in length: {len(uids)} vs {len(weights)}")
    if any(not isfinite(w) or w < 0 for w in weights):
        raise AggregationError("weights must be finite and non-negative")
    top = max(weights) if weights else 0
    if top == 0:
        return [], []
    out_uids: list[int] = []
    out_vals: list[int] = []
    for uid, weight in zip(uids, weights, strict=True):
        value = round((weight / top) * U16_MAX)
        if value != 0:
            out_uids.append(int(uid))
            out_vals.append(int(value))
    return out_uids, out_vals


def clip_to_max_weight(weights: Sequence[float], limit: float) -> list[float]:
    """Sum-normalise with no element above ``limit``: the SDK's ``clip_to_max_weight``."""
    n = len(weights)
    total = float(sum(weights))
    if n == 0 or total <= 0:
        raise AggregationError("all weights are zero; nothing to set")
    if n * limit <= 1:
        return [1.0 / n] * n
    estimation = sorted(w / total for w in weights)
    if estimation[-1] <= limit:
        return [w / total for w in weights]
    epsilon = 1e-7
    cumsum = list(accumulate(estimation))
    n_values = sum(1 for i, e in enumerate(estimation) if e / ((n - i - 1) * e + cumsum[i] + epsilon) < limit)
    cutoff = (limit * cumsum[n_values - 1] - epsilon) / (1 - limit * (n - n_values)) * total
    clipped = [min(float(w), cutoff) for w in weights]
    clipped_total = sum(clipped)
    return [w / clipped_total for w in clipped]


def to_u16(weights: Mapping[int, int], max_weight_limit: int, own_uid: int | None = None) -> dict[int, int]:
    """uid -> u16 exactly as the SDK's ``SetWeights`` emits for ``{uid: float(units)}``."""
    uids = sorted(weights)
    floats = [float(weights[uid]) for uid in uids]
    if not uids or sum(floats) <= 0:
        raise AggregationError("all weights are zero; nothing to set")
    if uids != [own_uid] and max_weight_limit < U16_MAX:
        floats = clip_to_max_weight(floats, max_weight_limit / U16_MAX)
    out_uids, out_vals = normalize(uids, floats)
    return dict(zip(out_uids, out_vals, strict=True))


def pad_to_min_weights(
    weights: Mapping[int, int], min_allowed: int, candidates: Iterable[int], max_weight_limit: int = U16_MAX
) -> tuple[dict[int, int], list[int]]:
    """Add the smallest weight that survives u16 quantisation to free uids, in ``candidates`` order.

    The chain refuses vectors with fewer than ``min_allowed_weights`` nonzero entries;
    padding with one-in-65535 weights keeps the computed proportions while meeting the
    rule. Returns the padded vector and the uids added.
    """
    vector = {uid: w for uid, w in weights.items() if w > 0}

    def nonzero() -> int:
        return len(to_u16(vector, max_weight_limit)) if vector else 0

    added: list[int] = []
    for uid in dict.fromkeys(candidates):
        if nonzero() >= min_allowed:
            break
        if uid in vector:
            continue
        top = max(vector.values(), default=UNITS)
        vector[uid] = -(-top // U16_MAX)
        added.append(uid)
    if nonzero() < min_allowed:
        raise AggregationError(
            f"only {len(vector)} uids can carry weight but the subnet requires min_allowed_weights={min_allowed}"
        )
    return dict(sorted(vector.items())), added
