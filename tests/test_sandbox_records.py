"""What the sandbox records for every outcome of the hostile corpus (real wasmtime): the
message an operator reads, the fuel it reports (none for a timeout), the output kept only
for a result, and the input limit exactly at its edge."""

from __future__ import annotations

import dataclasses

import pytest

from platform_cli.runtime.instrument import STACK_LIMIT
from platform_cli.runtime.sandbox import Sandbox
from tests.eval_helpers import good_job, hostile_cases, run_case

CASES = hostile_cases()
EXACT_MESSAGES = {
    "out_of_fuel": "fuel budget exhausted",
    "timeout": "wall-clock budget exhausted (the fuel used until the interruption is not observable)",
    "trap:stack_overflow": f"call stack over the limit of {STACK_LIMIT} units",
}


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_outcome_is_recorded_consistently(sandbox: Sandbox, case) -> None:
    result = run_case(sandbox, case)
    assert result.outcome == case.expect, result.message
    if case.expect in EXACT_MESSAGES:
        assert result.message == EXACT_MESSAGES[case.expect]
    elif case.expect == "ok":
        assert result.message == ""
    else:
        assert result.message and "\n" not in result.message
    if case.expect.startswith("trap:") and case.expect != "trap:stack_overflow":
        assert not result.message.startswith(("trap", "XX"))
    if case.expect == "timeout":
        assert result.fuel_used is None
    else:
        assert isinstance(result.fuel_used, int) and 0 <= result.fuel_used <= case.limits.fuel
    if case.expect == "out_of_fuel":
        assert result.fuel_used == case.limits.fuel
    if case.expect in ("ok", "invalid"):
        assert result.output is not None and result.result is not None
    else:
        assert result.output is None
    assert isinstance(result.wall_ms, int) and result.wall_ms >= 0
    assert isinstance(result.compile_ms, int) and result.compile_ms >= 0
    assert 0 <= result.peak_memory <= case.limits.memory_bytes
    assert isinstance(result.logs, list)


def test_a_good_evaluation_reports_its_fuel_output_and_logs(sandbox: Sandbox) -> None:
    job = good_job()
    result = sandbox.evaluate(job.module, job.module_sha256, job.entrypoint, job.data, job.limits, job.seed)
    assert result.outcome == "ok", result.message
    assert 0 < result.fuel_used < job.limits.fuel
    assert result.output is not None and result.result is not None
    again = sandbox.evaluate(job.module, job.module_sha256, job.entrypoint, job.data, job.limits, job.seed)
    assert (again.fuel_used, again.output, again.logs) == (result.fuel_used, result.output, result.logs)


def test_the_input_limit_is_exact(sandbox: Sandbox) -> None:
    job = good_job()
    exact = dataclasses.replace(job.limits, max_input_bytes=len(job.data))
    assert (
        sandbox.evaluate(job.module, job.module_sha256, job.entrypoint, job.data, exact, job.seed).outcome
        == "ok"
    )
    tight = dataclasses.replace(job.limits, max_input_bytes=len(job.data) - 1)
    refused = sandbox.evaluate(job.module, job.module_sha256, job.entrypoint, job.data, tight, job.seed)
    assert (refused.outcome, refused.message) == (
        "abi_error",
        f"input of {len(job.data)} bytes exceeds max_input_bytes",
    )
    assert refused.output is None
