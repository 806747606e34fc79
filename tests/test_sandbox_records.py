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
TIMEOUT = "wall-clock budget exhausted (the fuel used until the interruption is not observable)"
# What an operator reads for each case: outcome, fuel (deterministic: the engine's settings
# are pinned; none for a timeout), peak memory and the message, exactly.
RECORDS = {
    "infinite_loop": ("timeout", None, 65536, TIMEOUT),
    "table_bomb": ("timeout", None, 65536, TIMEOUT),
    "fuel_bomb": ("out_of_fuel", 50_000_000, 65536, "fuel budget exhausted"),
    "grow_bomb": (
        "memory_limit",
        1814,
        16_777_216,
        "memory reached the cap of 16777216 bytes (wasm trap: wasm `unreachable` instruction executed)",
    ),
    "huge_memory": ("memory_limit", 0, 0, "initial memory of 4294967296 bytes exceeds the cap of 16777216"),
    "deep_recursion": (
        "trap:stack_overflow",
        121_729,
        65536,
        f"call stack over the limit of {STACK_LIMIT} units",
    ),
    "output_out_of_bounds": ("abi_error", 28, 65536, "output range 2147418112+256 is outside guest memory"),
    "output_too_long": ("abi_error", 28, 65536, "output of 65536 bytes exceeds max_output_bytes 4096"),
    "alloc_zero": ("abi_error", 14, 65536, "alloc(91) returned 0, outside usable memory"),
    "alloc_out_of_range": ("abi_error", 14, 65536, "alloc(91) returned 2147483632, outside usable memory"),
    "undefined_import": ("abi_error", 0, 0, "import platform.exec is not in the host whitelist"),
    "wasi_import": (
        "abi_error",
        0,
        0,
        "import wasi_snapshot_preview1.clock_time_get is not in the host whitelist",
    ),
    "simd": ("abi_error", 0, 0, "function 1: SIMD instructions are not allowed"),
    "shared_memory": ("abi_error", 0, 0, "shared memory is not allowed (threads are off)"),
    "nan_floats": ("ok", 57, 65536, ""),
    "start_trap": ("trap:unreachable", 11, 0, "wasm trap: wasm `unreachable` instruction executed"),
    "divide_by_zero": ("trap:integer_division_by_zero", 14, 65536, "wasm trap: integer divide by zero"),
    "log_flood": ("trap:log_limit", 282, 65536, "more than 64 log calls or 8192 bytes"),
    "bad_output_record": ("abi_error", 28, 65536, "output abi byte is 7, expected 1"),
    "wrong_signature": ("abi_error", 0, 65536, "export 'evaluate' must have type (i32, i32) -> (i64)"),
    "nested_bomb": ("trap:nested_limit", 3630, 131072, "more than 256 submission_run calls"),
    "malformed": ("abi_error", 0, 0, "malformed module: section 10 runs past the end"),
    "oversize": ("abi_error", 0, 0, "module of 9437201 bytes exceeds the limit of 8388608"),
    "compile_bomb": ("invalid", 10443, 393216, "the submission failed to run (trap, fuel or bad output)"),
}


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def test_every_case_of_the_corpus_has_its_record() -> None:
    assert sorted(RECORDS) == sorted(case.name for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_outcome_is_recorded_consistently(sandbox: Sandbox, case) -> None:
    result = run_case(sandbox, case)
    assert result.outcome == case.expect, result.message
    assert (result.outcome, result.fuel_used, result.peak_memory, result.message) == RECORDS[case.name]
    if case.expect in ("ok", "invalid"):
        assert result.output is not None and result.result is not None
        assert result.result.message == result.message
    else:
        assert result.output is None and result.result is None
    assert isinstance(result.wall_ms, int) and result.wall_ms >= 0
    if case.expect == "timeout":  # the epoch clock ticks in steps of a few milliseconds
        assert result.wall_ms >= case.limits.wall_ms * 0.9
    assert isinstance(result.compile_ms, int) and result.compile_ms >= 0
    assert result.logs == (["flood"] * 64 if case.name == "log_flood" else [])


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
