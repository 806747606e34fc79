"""Evaluation reports, and which of them count (pure: no I/O).

A report is the body of an ``evaluation`` envelope, signed by the validator. It names the
challenge version, its module and the hash of its signed metadata (``spec_sha256``), the
submission and the miner it is attributed to, the epoch, the outcome and the fixed-point
score, with the output hash and fuel so that any other validator can replay it and
compare. Receivers turn reports into the aggregation's score reports (the signer is the
validator; its stake comes from the metagraph).

Only deterministic outcomes are reported: a ``timeout`` depends on the machine and a
``failed`` job on a crashed worker, so neither says anything about the submission.

Binding. A well-formed report still counts for its epoch only if it is bound to what
the network agreed to evaluate. :func:`tally` checks each stored report, in this order,
and refuses it with the first reason that applies:

1. ``unbound``: it does not name what was evaluated (stored before reports did);
2. ``challenge_inactive``: no version of its challenge is active at the epoch's first
   block, by the registry's committed history;
3. ``version_inactive``: it names another version than the active one (a deprecated
   or retired one, a draft never committed, one not in effect yet, or none we know);
4. ``module_mismatch``: the active version's id and version, but another module;
5. ``spec_mismatch``: the active module, but other metadata (resources, params...): a
   local ``challenge.toml`` the sudo owner never signed;
6. ``no_submission``: its miner never submitted that file for that challenge (no
   admitted ``submission`` message signed by the miner's hotkey names it).

The inputs are the registry as of one block and the set of admitted submissions, so two
validators holding the same reports, history and submissions count the same reports.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from platform_cli.core.aggregation import ScoreReport
from platform_cli.core.challenge import is_challenge_id

EVALUATION_KIND = "evaluation"
SCORE_MAX = 10**9
NON_DETERMINISTIC_OUTCOMES = frozenset({"timeout", "failed"})
REFUSAL_REASONS = (
    "unbound",
    "challenge_inactive",
    "version_inactive",
    "module_mismatch",
    "spec_mismatch",
    "no_submission",
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SS58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{46,48}")
_OUTCOME = re.compile(r"[a-z_]{2,32}(?::[a-z_]{1,32})?")


class ReportError(ValueError):
    """A report body that does not follow the schema."""


@dataclass(frozen=True)
class EvaluationReport:
    challenge: str
    version: str
    module_sha256: str
    spec_sha256: str
    submission_sha256: str
    miner: str
    epoch: int
    outcome: str
    score: int
    output_sha256: str
    fuel: int

    def to_body(self) -> dict[str, Any]:
        return asdict(self)


def _uint(value: Any, name: str, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ReportError(f"{name} must be an integer in 0..{maximum}, got {value!r}")
    return value


def parse_report(body: Any) -> EvaluationReport:
    """Validate a report body; raise :class:`ReportError` naming the field at fault."""
    fields = EvaluationReport.__dataclass_fields__
    if not isinstance(body, dict) or set(body) != set(fields):
        raise ReportError(f"an evaluation report has exactly the fields {sorted(fields)}")
    strings = {name: body[name] for name in fields if name not in ("epoch", "score", "fuel")}
    for name, value in strings.items():
        if not isinstance(value, str) or len(value) > 128:
            raise ReportError(f"{name} must be a string of at most 128 characters")
    if not is_challenge_id(body["challenge"]):
        raise ReportError(f"challenge {body['challenge']!r} is not a challenge id")
    for name in ("module_sha256", "spec_sha256", "submission_sha256"):
        if not _HEX64.fullmatch(body[name]):
            raise ReportError(f"{name} is not 64 lowercase hex digits")
    if body["output_sha256"] and not _HEX64.fullmatch(body["output_sha256"]):
        raise ReportError("output_sha256 is neither empty nor 64 lowercase hex digits")
    if not _SS58.fullmatch(body["miner"]):
        raise ReportError(f"miner {body['miner']!r} is not an ss58 address")
    if not _OUTCOME.fullmatch(body["outcome"]) or body["outcome"] in NON_DETERMINISTIC_OUTCOMES:
        raise ReportError(f"outcome {body['outcome']!r} cannot be reported")
    score = _uint(body["score"], "score", SCORE_MAX)
    if body["outcome"] != "ok" and score != 0:
        raise ReportError(f"a {body['outcome']!r} outcome must score 0")
    return EvaluationReport(
        **strings, epoch=_uint(body["epoch"], "epoch"), score=score, fuel=_uint(body["fuel"], "fuel")
    )


@dataclass(frozen=True)
class StoredReport:
    """A validator's report for one (epoch, challenge, miner), as kept for the aggregation."""

    validator: str
    challenge: str
    version: str
    module_sha256: str
    spec_sha256: str
    submission_sha256: str
    miner: str
    score: int

    def score_report(self) -> ScoreReport:
        return ScoreReport(self.validator, self.challenge, self.miner, self.score)


@dataclass(frozen=True)
class CountingVersion:
    """What a report must name to count for a challenge: its version active at the block."""

    version: str
    module_sha256: str
    spec_sha256: str


@dataclass(frozen=True)
class Refusal:
    report: StoredReport
    reason: str
    detail: str


@dataclass(frozen=True)
class Tally:
    block: int
    counted: tuple[StoredReport, ...]
    refused: tuple[Refusal, ...]

    def score_reports(self) -> list[ScoreReport]:
        return [report.score_report() for report in self.counted]

    def reasons(self) -> dict[str, int]:
        """Refused reports per reason, in :data:`REFUSAL_REASONS` order."""
        counts = Counter(refusal.reason for refusal in self.refused)
        return {reason: counts[reason] for reason in REFUSAL_REASONS if counts[reason]}


def refusal(
    report: StoredReport,
    active: Mapping[str, CountingVersion],
    lifecycle: Mapping[tuple[str, str], str],
    submitted: Collection[tuple[str, str, str]],
    block: int,
) -> tuple[str, str] | None:
    """Why ``report`` does not count at ``block`` (reason, detail), or None if it counts.

    ``active``: challenge id -> its version active at ``block``; ``lifecycle``: the state
    of each known version at ``block`` (``draft`` for one not in effect);
    ``submitted``: the admitted submissions as (miner, challenge, sha256).
    """
    name = f"{report.challenge} {report.version}"
    if not report.version:
        return (
            "unbound",
            "stored before reports named the version, module and metadata they were evaluated with",
        )
    counting = active.get(report.challenge)
    if counting is None:
        return "challenge_inactive", f"no version of {report.challenge} is active at block {block}"
    if report.version != counting.version:
        state = lifecycle.get((report.challenge, report.version))
        where = f"is {state} at block {block}" if state else "is not in the registry"
        return "version_inactive", f"{name} {where}; the active version is {counting.version}"
    if report.module_sha256 != counting.module_sha256:
        return (
            "module_mismatch",
            f"module {report.module_sha256[:16]} is not {name}'s ({counting.module_sha256[:16]})",
        )
    if report.spec_sha256 != counting.spec_sha256:
        return (
            "spec_mismatch",
            f"metadata {report.spec_sha256[:16]} is not the signed metadata of {name} "
            f"({counting.spec_sha256[:16]})",
        )
    if (report.miner, report.challenge, report.submission_sha256) not in submitted:
        return (
            "no_submission",
            f"{report.miner} submitted no file {report.submission_sha256[:16]} for {report.challenge}",
        )
    return None


def tally(
    reports: Iterable[StoredReport],
    active: Mapping[str, CountingVersion],
    lifecycle: Mapping[tuple[str, str], str],
    submitted: Collection[tuple[str, str, str]],
    block: int,
) -> Tally:
    """Split ``reports`` into those that count at ``block`` and those refused, with why."""
    counted: list[StoredReport] = []
    refused: list[Refusal] = []
    for report in reports:
        why = refusal(report, active, lifecycle, submitted, block)
        if why is None:
            counted.append(report)
        else:
            refused.append(Refusal(report, *why))
    return Tally(block, tuple(counted), tuple(refused))
