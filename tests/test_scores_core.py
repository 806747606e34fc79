"""Which reports count (pure): the binding rules of ``core.scores`` and the submission schema."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_cli.core import gossip
from platform_cli.core.scores import (
    REFUSAL_REASONS,
    CountingVersion,
    ReportError,
    StoredReport,
    parse_report,
    refusal,
    tally,
)
from platform_cli.core.submission import (
    MAX_SUBMISSION_BYTES,
    SUBMISSION_KIND,
    Intake,
    Submission,
    SubmissionError,
    parse_submission,
)
from platform_cli.core.submission import refusal as intake_refusal

MINER = "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw"
OTHER = "5CiPPseXPECbkjWCa6MnjNokrgYjMqmKndv2rSnekmSK2DjL"
ACTIVE = {"predict": CountingVersion("1.1.0", "a" * 64, "b" * 64)}
LIFECYCLE = {
    ("predict", "1.0.0"): "deprecated",
    ("predict", "1.1.0"): "active",
    ("predict", "1.2.0"): "a draft",
}
SUBMITTED = {(MINER, "predict", "c" * 64)}
GOOD = StoredReport("validator", "predict", "1.1.0", "a" * 64, "b" * 64, "c" * 64, MINER, 700)


def why(report: StoredReport) -> tuple[str, str] | None:
    return refusal(report, ACTIVE, LIFECYCLE, SUBMITTED, 1234)


def test_a_report_bound_to_the_active_version_and_a_submitted_file_counts() -> None:
    assert why(GOOD) is None
    result = tally([GOOD], ACTIVE, LIFECYCLE, SUBMITTED, 1234)
    assert result.counted == (GOOD,) and result.refused == () and result.reasons() == {}
    assert [(r.validator, r.challenge, r.miner, r.score) for r in result.score_reports()] == [
        ("validator", "predict", MINER, 700)
    ]


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"version": ""}, "unbound", "stored before reports named"),
        ({"challenge": "sort"}, "challenge_inactive", "no version of sort is active at block 1234"),
        (
            {"version": "1.0.0"},
            "version_inactive",
            "predict 1.0.0 is deprecated at block 1234; the active version is 1.1.0",
        ),
        ({"version": "1.2.0"}, "version_inactive", "predict 1.2.0 is a draft at block 1234"),
        ({"version": "9.9.9"}, "version_inactive", "predict 9.9.9 is not in the registry"),
        ({"module_sha256": "d" * 64}, "module_mismatch", "module dddddddddddddddd is not predict 1.1.0's"),
        ({"spec_sha256": "d" * 64}, "spec_mismatch", "is not the signed metadata of predict 1.1.0"),
        ({"submission_sha256": "d" * 64}, "no_submission", f"{MINER} submitted no file dddddddddddddddd"),
        ({"miner": OTHER}, "no_submission", f"{OTHER} submitted no file"),
    ],
)
def test_each_refusal_names_its_reason(change: dict, reason: str, detail: str) -> None:
    report = dataclasses.replace(GOOD, **change)
    got = why(report)
    assert got is not None and got[0] == reason and detail in got[1], got
    result = tally([GOOD, report], ACTIVE, LIFECYCLE, SUBMITTED, 1234)
    assert result.counted == (GOOD,) and result.reasons() == {reason: 1}


def test_a_submission_for_another_challenge_does_not_bind() -> None:
    active = {**ACTIVE, "sort": CountingVersion("1.0.0", "e" * 64, "f" * 64)}
    report = dataclasses.replace(
        GOOD, challenge="sort", version="1.0.0", module_sha256="e" * 64, spec_sha256="f" * 64
    )
    assert refusal(report, active, LIFECYCLE, SUBMITTED, 1)[0] == "no_submission"
    assert refusal(report, active, LIFECYCLE, {*SUBMITTED, (MINER, "sort", "c" * 64)}, 1) is None


_FIELD = st.sampled_from(
    ["version", "module_sha256", "spec_sha256", "submission_sha256", "challenge", "none"]
)


@given(st.lists(st.tuples(_FIELD, st.integers(0, 10**9)), max_size=30))
def test_the_tally_partitions_the_reports_and_only_bound_ones_count(changes: list[tuple[str, int]]) -> None:
    reports = []
    for i, (field, score) in enumerate(changes):
        report = dataclasses.replace(GOOD, validator=f"v{i}", score=score)
        if field != "none":
            report = dataclasses.replace(report, **{field: "sort" if field == "challenge" else "0" * 64})
        reports.append(report)
    result = tally(reports, ACTIVE, LIFECYCLE, SUBMITTED, 1)
    assert sorted(
        result.counted + tuple(r.report for r in result.refused), key=lambda r: r.validator
    ) == sorted(reports, key=lambda r: r.validator)
    assert all(why(r) is None for r in result.counted)
    assert all(r.reason in REFUSAL_REASONS for r in result.refused)
    assert sum(result.reasons().values()) == len(result.refused)
    assert len(result.counted) == sum(field == "none" for field, _ in changes)


REPORT = {
    "challenge": "predict",
    "version": "1.0.0",
    "module_sha256": "a" * 64,
    "spec_sha256": "e" * 64,
    "submission_sha256": "b" * 64,
    "miner": MINER,
    "epoch": 3,
    "outcome": "ok",
    "score": 5,
    "output_sha256": "c" * 64,
    "fuel": 10,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": 10**9 + 1}, "score must be"),
        ({"outcome": "timeout", "score": 0}, "cannot be reported"),
        ({"outcome": "invalid", "score": 5}, "must score 0"),
        ({"miner": "not-an-address"}, "not an ss58"),
        ({"miner": MINER + "\n"}, "not an ss58"),
        ({"extra": 1}, "exactly the fields"),
        ({"epoch": -1}, "epoch must be"),
        ({"spec_sha256": "e" * 63}, "spec_sha256 is not"),
        ({"module_sha256": "a" * 64 + "\n"}, "module_sha256 is not"),
        ({"challenge": "predict\n"}, "not a challenge id"),
        ({"outcome": "ok\n"}, "cannot be reported"),
    ],
)
def test_report_bodies_are_validated(change: dict, message: str) -> None:
    assert parse_report(REPORT).score == 5
    with pytest.raises(ReportError, match=message):
        parse_report({**REPORT, **change})
    without = {k: v for k, v in REPORT.items() if k != "spec_sha256"}
    with pytest.raises(ReportError, match="exactly the fields"):
        parse_report(without)


# ---------------------------------------------------------------- submissions


def test_the_submission_kind_is_the_submissions_topic_kind() -> None:
    assert gossip.TOPICS["submissions"].kinds == frozenset({SUBMISSION_KIND})


def test_a_submission_names_its_file_exactly() -> None:
    content = b"\x00asm\x01\x00\x00\x00"
    made = Submission.of("sort", content)
    assert made == Submission("sort", "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476", 8)
    assert parse_submission(made.to_body()) == made


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"challenge": "sort", "sha256": "a" * 64}, "exactly the fields"),
        ({"challenge": "sort", "sha256": "a" * 64, "size": 1, "note": "x"}, "exactly the fields"),
        (["sort", "a" * 64, 1], "exactly the fields"),
        ({"challenge": "Sort", "sha256": "a" * 64, "size": 1}, "challenge 'Sort' is not a challenge id"),
        ({"challenge": 7, "sha256": "a" * 64, "size": 1}, "is not a challenge id"),
        ({"challenge": "sort", "sha256": "A" * 64, "size": 1}, "sha256 is not 64 lowercase hex"),
        ({"challenge": "sort", "sha256": "a" * 64 + "\n", "size": 1}, "sha256 is not 64 lowercase hex"),
        ({"challenge": "sort", "sha256": b"a" * 64, "size": 1}, "sha256 is not 64 lowercase hex"),
        ({"challenge": "sort", "sha256": "a" * 64, "size": 0}, "size must be an integer in 1.."),
        ({"challenge": "sort", "sha256": "a" * 64, "size": MAX_SUBMISSION_BYTES + 1}, "size must be"),
        ({"challenge": "sort", "sha256": "a" * 64, "size": True}, "size must be"),
        ({"challenge": "sort", "sha256": "a" * 64, "size": 1.0}, "size must be"),
    ],
)
def test_submission_bodies_are_validated(body: object, message: str) -> None:
    with pytest.raises(SubmissionError, match=message):
        parse_submission(body)
    with pytest.raises(SubmissionError):
        Submission.of("sort", b"")


def test_submission_errors_say_exactly_what_is_wrong() -> None:
    with pytest.raises(SubmissionError) as info:
        parse_submission({"challenge": "sort"})
    assert str(info.value) == "a submission has exactly the fields ['challenge', 'sha256', 'size']"
    with pytest.raises(SubmissionError) as info:
        parse_submission({"challenge": "sort", "sha256": "a" * 64, "size": -3})
    assert str(info.value) == f"size must be an integer in 1..{MAX_SUBMISSION_BYTES}, got -3"
    with pytest.raises(SubmissionError) as info:
        parse_submission({"challenge": "sort", "sha256": "a" * 63, "size": 1})
    assert str(info.value) == "sha256 is not 64 lowercase hex digits"
    assert MAX_SUBMISSION_BYTES == 64 * 1024 * 1024


@pytest.mark.parametrize("size", [1, MAX_SUBMISSION_BYTES])
def test_a_submission_size_may_be_at_either_bound(size: int) -> None:
    assert parse_submission({"challenge": "sort", "sha256": "a" * 64, "size": size}).size == size


INTAKE = Intake(frozenset({MINER}), {"sort": (1000, 2)})


@pytest.mark.parametrize(
    ("miner", "challenge", "size", "accepted", "reason"),
    [
        (MINER, "sort", 1000, 1, None),  # exactly the size limit, one slot left
        (MINER, "sort", 1, 0, None),
        (OTHER, "sort", 1, 0, "unregistered_miner"),
        (MINER, "predict", 1, 0, "inactive_challenge"),
        (MINER, "sort", 1001, 0, "too_large"),
        (MINER, "sort", 1000, 2, "over_epoch_limit"),  # the limit counts accepted files
        (MINER, "sort", 1001, 2, "too_large"),  # checked in order: size before the count
        (OTHER, "predict", 10**9, 9, "unregistered_miner"),
    ],
)
def test_a_validator_takes_a_submission_within_its_limits(
    miner: str, challenge: str, size: int, accepted: int, reason: str | None
) -> None:
    submission = Submission(challenge, "a" * 64, size)
    assert intake_refusal(submission, miner, INTAKE, accepted) == reason


# ---------------------------------------------------------------- report schema, exactly


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": 10**9 + 1}, "score must be an integer in 0..1000000000, got 1000000001"),
        ({"score": True}, "score must be an integer in 0..1000000000, got True"),
        ({"score": 5.0}, "score must be an integer in 0..1000000000, got 5.0"),
        ({"epoch": -1}, f"epoch must be an integer in 0..{2**63 - 1}, got -1"),
        ({"epoch": 2**63}, f"epoch must be an integer in 0..{2**63 - 1}, got {2**63}"),
        ({"fuel": -1}, f"fuel must be an integer in 0..{2**63 - 1}, got -1"),
        ({"version": 1}, "version must be a string of at most 128 characters"),
        ({"outcome": "x" * 129}, "outcome must be a string of at most 128 characters"),
        ({"challenge": "Predict"}, "challenge 'Predict' is not a challenge id"),
        ({"submission_sha256": "B" * 64}, "submission_sha256 is not 64 lowercase hex digits"),
        ({"output_sha256": "c" * 63}, "output_sha256 is neither empty nor 64 lowercase hex digits"),
        ({"miner": "0" * 48}, "miner '" + "0" * 48 + "' is not an ss58 address"),
        ({"outcome": "failed", "score": 0}, "outcome 'failed' cannot be reported"),
        ({"outcome": "o"}, "outcome 'o' cannot be reported"),
        ({"outcome": "x" * 33}, "outcome '" + "x" * 33 + "' cannot be reported"),
        ({"outcome": "bad:"}, "outcome 'bad:' cannot be reported"),
        ({"outcome": "bad:" + "y" * 33}, "outcome 'bad:" + "y" * 33 + "' cannot be reported"),
        ({"outcome": "trap:oob", "score": 1}, "a 'trap:oob' outcome must score 0"),
    ],
)
def test_report_errors_say_exactly_what_is_wrong(change: dict, message: str) -> None:
    with pytest.raises(ReportError) as info:
        parse_report({**REPORT, **change})
    assert str(info.value) == message


def test_report_field_list_is_spelled_out() -> None:
    with pytest.raises(ReportError) as info:
        parse_report([])
    assert str(info.value) == (
        "an evaluation report has exactly the fields ['challenge', 'epoch', 'fuel', 'miner', "
        "'module_sha256', 'outcome', 'output_sha256', 'score', 'spec_sha256', 'submission_sha256', 'version']"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"outcome": "ok", "score": 10**9},
        {"outcome": "ok", "score": 0},
        {"outcome": "xy", "score": 0},
        {"outcome": "x" * 32 + ":" + "y" * 32, "score": 0},
        {"outcome": "trap:a", "score": 0},
        {"output_sha256": ""},
        {"epoch": 2**63 - 1, "fuel": 2**63 - 1},
        {"epoch": 0, "fuel": 0},
        {"version": "1." + "0" * 126},
    ],
)
def test_report_bodies_at_the_limits_are_accepted(change: dict) -> None:
    body = {**REPORT, **change}
    assert parse_report(body).to_body() == body


def test_each_refusal_detail_is_exact() -> None:
    v = dataclasses.replace
    assert why(v(GOOD, version="")) == (
        "unbound",
        "stored before reports named the version, module and metadata they were evaluated with",
    )
    assert why(v(GOOD, version="1.0.0")) == (
        "version_inactive",
        "predict 1.0.0 is deprecated at block 1234; the active version is 1.1.0",
    )
    assert why(v(GOOD, module_sha256="d" * 64)) == (
        "module_mismatch",
        f"module {'d' * 16} is not predict 1.1.0's ({'a' * 16})",
    )
    assert why(v(GOOD, spec_sha256="d" * 64)) == (
        "spec_mismatch",
        f"metadata {'d' * 16} is not the signed metadata of predict 1.1.0 ({'b' * 16})",
    )
    assert why(v(GOOD, submission_sha256="d" * 64)) == (
        "no_submission",
        f"{MINER} submitted no file {'d' * 16} for predict",
    )


def test_the_tally_keeps_its_block_and_counts_reasons_in_the_documented_order() -> None:
    v = dataclasses.replace
    refused = [
        v(GOOD, submission_sha256="d" * 64),
        v(GOOD, version=""),
        v(GOOD, submission_sha256="e" * 64),
        v(GOOD, challenge="sort"),
    ]
    result = tally([*refused, GOOD], ACTIVE, LIFECYCLE, SUBMITTED, 77)
    assert result.block == 77 and result.counted == (GOOD,)
    assert [r.report for r in result.refused] == refused
    assert list(result.reasons().items()) == [("unbound", 1), ("challenge_inactive", 1), ("no_submission", 2)]
    assert result.refused[3].detail == "no version of sort is active at block 77"
