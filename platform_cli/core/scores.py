"""Evaluation reports: what a validator tells the network about one scored submission.

A report is the body of an ``evaluation`` envelope, signed by the validator. It names the
challenge version and module, the submission and the miner it is attributed to, the
epoch, the outcome and the fixed-point score, with the output hash and fuel so that any
other validator can replay it and compare. Receivers turn reports into the aggregation's
score reports (the signer is the validator; its stake comes from the metagraph).

Only deterministic outcomes are reported: a ``timeout`` depends on the machine and a
``failed`` job on a crashed worker, so neither says anything about the submission.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

EVALUATION_KIND = "evaluation"
SCORE_MAX = 10**9
NON_DETERMINISTIC_OUTCOMES = frozenset({"timeout", "failed"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SS58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{46,48}$")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_OUTCOME = re.compile(r"^[a-z_]{2,32}(?::[a-z_]{1,32})?$")


class ReportError(ValueError):
    """A report body that does not follow the schema."""


@dataclass(frozen=True)
class EvaluationReport:
    challenge: str
    version: str
    module_sha256: str
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
    if not _SLUG.match(body["challenge"]):
        raise ReportError(f"challenge {body['challenge']!r} is not a challenge id")
    for name in ("module_sha256", "submission_sha256"):
        if not _HEX64.match(body[name]):
            raise ReportError(f"{name} is not 64 lowercase hex digits")
    if body["output_sha256"] and not _HEX64.match(body["output_sha256"]):
        raise ReportError("output_sha256 is neither empty nor 64 lowercase hex digits")
    if not _SS58.match(body["miner"]):
        raise ReportError(f"miner {body['miner']!r} is not an ss58 address")
    if not _OUTCOME.match(body["outcome"]) or body["outcome"] in NON_DETERMINISTIC_OUTCOMES:
        raise ReportError(f"outcome {body['outcome']!r} cannot be reported")
    score = _uint(body["score"], "score", SCORE_MAX)
    if body["outcome"] != "ok" and score != 0:
        raise ReportError(f"a {body['outcome']!r} outcome must score 0")
    return EvaluationReport(
        **strings, epoch=_uint(body["epoch"], "epoch"), score=score, fuel=_uint(body["fuel"], "fuel")
    )
