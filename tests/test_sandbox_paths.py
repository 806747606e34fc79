"""The sandbox's less travelled paths, with real wasmtime: every status ``submission_run``
hands back to a challenge, a nested run cut by the wall clock, the memory-cap relabelling
at its edge, evaluations from threads other than the main one, and the bounded caches."""

from __future__ import annotations

import dataclasses
import resource
import threading

import pytest
import wasmtime

from platform_cli.core import abi
from platform_cli.core.challenge import ResourcePolicy
from platform_cli.runtime import host, sandbox
from platform_cli.runtime.sandbox import PAGE, RunResult, Sandbox
from tests.eval_helpers import good_job, make_input, nested_runner

SUBMISSION = """(module (memory (export "memory") {pages})
  (func (export "alloc") (param i32) (result i32) (i32.const 1024)) {body})"""
RUN = '(func (export "run") (param i32 i32) (result i64) {code})'
LIMITS = ResourcePolicy(
    fuel=3_000_000, memory_bytes=1 << 20, wall_ms=5_000, max_input_bytes=1 << 16, max_output_bytes=4096
)


@pytest.fixture(scope="module")
def box():
    opened = Sandbox()
    yield opened
    opened.close()


def submission(code: str = "", pages: int = 1, extra: str = "") -> bytes:
    body = extra + (RUN.format(code=code) if code else "")
    return wasmtime.wat2wasm(SUBMISSION.format(pages=pages, body=body))


def run_nested(box: Sandbox, module: bytes, limits: ResourcePolicy = LIMITS) -> RunResult:
    runner = nested_runner()
    data, seed, sha = make_input(runner, module)
    return box.evaluate(runner, sha, "evaluate", data, limits, seed)


NESTED = {
    # name: (submission, status, fuel the nested run used, output length)
    "five bytes of output": (
        submission("(i64.const 0x0000006400000005)", extra='(data (i32.const 100) "hello")'),
        host.RUN_OK,
        28,
        5,
    ),
    "a trap": (submission("unreachable"), host.RUN_TRAP, 23, 0),
    "a data segment out of bounds": (
        submission("(i64.const 0)", pages=1, extra='(data (i32.const 70000) "x")'),
        host.RUN_TRAP,
        0,
        0,
    ),
    "output outside its memory": (submission("(i64.const 0x0001000000000005)"), host.RUN_BAD_OUTPUT, 28, 0),
    "more output than the challenge's buffer": (
        submission("(i64.const 0x0000006400010000)", pages=2),
        host.RUN_BAD_OUTPUT,
        28,
        0,
    ),
    "no run export": (submission(), host.RUN_BAD_OUTPUT, 0, 0),
    "memory over the nested cap": (submission("(i64.const 0)", pages=513), host.RUN_INVALID_MODULE, 0, 0),
    "malformed bytes": (b"\0asm\x01\0\0\0\x05", host.RUN_INVALID_MODULE, 0, 0),
    "blocks nested deeper than a submission's limit": (
        submission("(block " * 300 + ")" * 300 + " (i64.const 0)"),
        host.RUN_INVALID_MODULE,
        0,
        0,
    ),
    "memory exactly at the nested cap": (
        submission("(i64.const 0)", pages=host.NESTED_MEMORY_CAP // PAGE),
        host.RUN_OK,
        28,
        0,
    ),
}


@pytest.mark.parametrize("name", list(NESTED))
def test_submission_run_hands_back_the_right_status(box: Sandbox, name: str) -> None:
    module, status, fuel, length = NESTED[name]
    result = run_nested(box, module)
    assert result.outcome == "ok", result.message
    metrics = result.result.metrics
    assert (metrics["status"], metrics["fuel"], metrics["len"]) == (status, fuel, length)
    assert result.host_calls["submission_run"] == 1
    assert result.host_calls["nested_fuel"] == fuel
    if name == "five bytes of output":
        assert metrics["value"] == int.from_bytes(b"hello", "little")


def test_a_nested_run_cut_by_the_wall_clock_is_the_evaluations_timeout(box: Sandbox) -> None:
    spin = submission("(loop $l (br $l)) (i64.const 0)")
    limits = ResourcePolicy(
        fuel=10**12, memory_bytes=1 << 20, wall_ms=200, max_input_bytes=1 << 16, max_output_bytes=4096
    )
    result = run_nested(box, spin, limits)
    assert result.outcome == "timeout"
    assert result.message == (
        "wall-clock budget exhausted in submission_run (the fuel used until the interruption is not observable)"
    )
    assert result.fuel_used is None and result.output is None


def grower(pages: int) -> bytes:
    """A challenge that grows its memory to ``pages`` pages, then traps."""
    return wasmtime.wat2wasm(
        f"""(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "evaluate") (param i32 i32) (result i64)
    (drop (memory.grow (i32.const {pages - 1}))) unreachable))"""
    )


@pytest.mark.parametrize(
    ("cap_pages", "near_pages"),
    [(512, 480), (64, 60), (16, 15)],  # a sixteenth of the cap, but never under a page
)
def test_a_trap_is_blamed_on_memory_only_near_the_cap(box: Sandbox, cap_pages: int, near_pages: int) -> None:
    limits = ResourcePolicy(
        fuel=1_000_000,
        memory_bytes=cap_pages * PAGE,
        wall_ms=5_000,
        max_input_bytes=1 << 16,
        max_output_bytes=64,
    )

    def evaluate(pages: int) -> RunResult:
        module = grower(pages)
        data, seed, sha = make_input(module, b"x")
        return box.evaluate(module, sha, "evaluate", data, limits, seed)

    at_edge = evaluate(near_pages)
    assert (at_edge.outcome, at_edge.peak_memory) == ("trap:unreachable", near_pages * PAGE)
    over = evaluate(near_pages + 1)
    assert (over.outcome, over.peak_memory) == ("memory_limit", (near_pages + 1) * PAGE)
    assert over.message == (
        f"memory reached the cap of {cap_pages * PAGE} bytes (wasm trap: wasm `unreachable` instruction executed)"
    )


def record(result: RunResult) -> tuple:
    return (result.outcome, result.message, result.fuel_used, result.output, result.peak_memory, result.logs)


def in_thread(call):
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="not-main")
    thread.start()
    thread.join(timeout=60)
    return outcome


def test_an_evaluation_from_another_thread_runs_on_the_sandboxs_own_and_matches() -> None:
    job = good_job()
    opened = Sandbox()
    try:

        def evaluate() -> RunResult:
            return opened.evaluate(
                job.module, job.module_sha256, job.entrypoint, job.data, job.limits, job.seed
            )

        direct = evaluate()
        assert opened._runner is None
        handed = in_thread(evaluate)
        assert opened._runner is not None
        assert record(handed["value"]) == record(direct)
        assert direct.outcome == "ok"
        # What is not the guest's doing reaches the caller as it was raised.
        broken = in_thread(
            lambda: opened.evaluate(job.module, job.module_sha256, job.entrypoint, job.data, None, job.seed)
        )
        assert isinstance(broken["error"], AttributeError)
        assert record(in_thread(evaluate)["value"]) == record(direct)
        thread = opened._runner._thread
        assert thread.is_alive() and thread.name == "platform-eval" and thread.daemon
    finally:
        opened.close()
    assert not thread.is_alive()


def test_the_main_thread_runs_evaluations_itself_only_with_a_big_enough_stack(monkeypatch) -> None:
    needed = sandbox.NEEDED_STACK_BYTES
    assert needed == 2 * sandbox.MAX_WASM_STACK + 4 * 1024 * 1024
    assert in_thread(sandbox._stack_is_big_enough)["value"] is False
    for soft, expected in [(needed - 1, False), (needed, True), (resource.RLIM_INFINITY, True)]:
        monkeypatch.setattr(resource, "getrlimit", lambda _which, soft=soft: (soft, resource.RLIM_INFINITY))
        assert sandbox._stack_is_big_enough() is expected


def test_the_sandboxs_caches_keep_the_newest_entries_within_their_bounds() -> None:
    opened = Sandbox()
    try:
        modules = [submission(f"(i64.const {n})") for n in range(300)]
        shas = [f"{n:064x}" for n in range(300)]
        for module, sha in zip(modules, shas, strict=True):
            opened._shape(module, sha, host.NESTED_MEMORY_CAP, challenge=False)
        assert len(opened._shapes) == 256
        assert (shas[43], host.NESTED_MEMORY_CAP, False) not in opened._shapes
        assert (shas[44], host.NESTED_MEMORY_CAP, False) in opened._shapes
        for module, sha in list(zip(modules, shas, strict=True))[:70]:
            assert opened._prepare_nested(module, sha) is not None
        assert len(opened._loaded) == 64
        assert (id(opened.bare_linker), shas[5]) not in opened._loaded
        assert (id(opened.bare_linker), shas[6]) in opened._loaded
    finally:
        opened.close()


def test_a_module_is_validated_and_compiled_once_then_served_from_memory(box: Sandbox) -> None:
    module = submission("(i64.const 0)", extra="(global i32 (i32.const 79))")
    sha = f"{79:064x}"
    shape, loaded = box._prepare_nested(module, sha)
    assert box._shape(module, sha, host.NESTED_MEMORY_CAP, challenge=False) is shape
    again = box._prepare_nested(module, sha)
    assert again is not None and again[0] is shape and again[1] is loaded
    other = box._prepare_nested(submission("(i64.const 1)"), f"{80:064x}")
    assert other is not None and other[1] is not loaded


# --- the ABI's edges, with modules built here -------------------------------------------


def challenge(alloc: int, out: int, *, pages: int = 1, exports: str = "", body: str = "") -> bytes:
    """A challenge whose ``alloc`` returns ``alloc`` and whose ``evaluate`` runs ``body``
    and returns the packed pointer ``out``."""
    return wasmtime.wat2wasm(
        f"""(module (memory (export "memory") {pages}) {exports}
  (func (export "alloc") (param i32) (result i32) (i32.const {alloc}))
  (func (export "evaluate") (param i32 i32) (result i64) {body} (i64.const {out})))"""
    )


def run_challenge(
    box: Sandbox, module: bytes, limits: ResourcePolicy = LIMITS, submission: bytes = b"x"
) -> RunResult:
    data, seed, sha = make_input(module, submission)
    return box.evaluate(module, sha, "evaluate", data, limits, seed)


def packed(ptr: int, length: int) -> int:
    return (ptr << 32) | length


def input_size() -> int:
    return len(make_input(challenge(0, 0), b"x")[0])


def test_alloc_may_end_exactly_at_the_end_of_memory_and_not_a_byte_later(box: Sandbox) -> None:
    size = input_size()
    fits = run_challenge(box, challenge(PAGE - size, packed(16, 0)))
    assert not fits.message.startswith("alloc(")
    over = run_challenge(box, challenge(PAGE - size + 1, packed(16, 0)))
    assert (over.outcome, over.message) == (
        "abi_error",
        f"alloc({size}) returned {PAGE - size + 1}, outside usable memory",
    )


def test_output_may_be_exactly_the_cap_and_end_exactly_at_the_end_of_memory(box: Sandbox) -> None:
    at_cap = run_challenge(box, challenge(1024, packed(0, LIMITS.max_output_bytes)))
    assert "exceeds max_output_bytes" not in at_cap.message and at_cap.outcome == "abi_error"
    over_cap = run_challenge(box, challenge(1024, packed(0, LIMITS.max_output_bytes + 1)))
    assert over_cap.message == f"output of {LIMITS.max_output_bytes + 1} bytes exceeds max_output_bytes 4096"
    at_end = run_challenge(box, challenge(1024, packed(PAGE - 16, 16)))
    assert not at_end.message.startswith("output range")
    past_end = run_challenge(box, challenge(1024, packed(PAGE - 15, 16)))
    assert past_end.message == f"output range {PAGE - 15}+16 is outside guest memory"


@pytest.mark.parametrize(
    ("wat", "message", "peak"),
    [
        (
            '(module (func (export "memory")) (func (export "alloc") (param i32) (result i32) (i32.const 8))'
            ' (func (export "evaluate") (param i32 i32) (result i64) unreachable))',
            "missing export 'memory'",
            0,
        ),
        (
            '(module (memory (export "memory") 1)'
            ' (func (export "evaluate") (param i32 i32) (result i64) (i64.const 0)))',
            "missing export function 'alloc'",
            PAGE,
        ),
        (
            '(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i64) (i64.const 8))'
            ' (func (export "evaluate") (param i32 i32) (result i64) (i64.const 0)))',
            "export 'alloc' must have type (i32) -> (i32)",
            PAGE,
        ),
    ],
    ids=["memory is a function", "no alloc", "alloc returns i64"],
)
def test_a_missing_or_mistyped_export_is_named(box: Sandbox, wat: str, message: str, peak: int) -> None:
    result = run_challenge(box, wasmtime.wat2wasm(wat))
    assert (result.outcome, result.message, result.peak_memory) == ("abi_error", message, peak)


def test_a_table_cannot_grow_past_the_element_cap(box: Sandbox) -> None:
    from platform_cli.runtime.validate import MAX_TABLE_ELEMENTS

    def grow(count: int) -> RunResult:
        body = (
            f"(if (i32.eq (table.grow $t (ref.null func) (i32.const {count})) (i32.const -1)) (then unreachable))"
            " (drop (i32.div_u (i32.const 1) (i32.const 0)))"
        )
        return run_challenge(box, challenge(1024, 0, exports="(table $t 0 funcref)", body=body))

    assert grow(MAX_TABLE_ELEMENTS).outcome == "trap:integer_division_by_zero"  # grown
    assert grow(MAX_TABLE_ELEMENTS + 1).outcome == "trap:unreachable"  # refused


def test_the_seed_a_challenge_reads_is_the_evaluations(box: Sandbox) -> None:
    """The challenge traps one way when the seed's first word is zero, another way otherwise."""
    module = wasmtime.wat2wasm(
        """(module (import "platform" "seed" (func $seed (param i32))) (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "evaluate") (param i32 i32) (result i64)
    (call $seed (i32.const 0))
    (if (i32.eqz (i32.load (i32.const 0))) (then unreachable))
    (drop (i32.div_u (i32.const 1) (i32.const 0))) (i64.const 0)))"""
    )
    data, seed, sha = make_input(module, b"x")
    assert seed[:4] != bytes(4)
    assert (
        box.evaluate(module, sha, "evaluate", data, LIMITS, seed).outcome == "trap:integer_division_by_zero"
    )
    assert box.evaluate(module, sha, "evaluate", data, LIMITS, bytes(32)).outcome == "trap:unreachable"


NEAR_CAP = ResourcePolicy(
    fuel=200_000, memory_bytes=64 * PAGE, wall_ms=5_000, max_input_bytes=1 << 16, max_output_bytes=4096
)
GROW_TO_CAP = "(drop (memory.grow (i32.const 63)))"


def test_running_out_of_fuel_near_the_memory_cap_keeps_its_outcome(box: Sandbox) -> None:
    spin = challenge(1024, 0, body=f"{GROW_TO_CAP} (loop $l (br $l))")
    result = run_challenge(box, spin, NEAR_CAP)
    assert (result.outcome, result.peak_memory) == ("out_of_fuel", 64 * PAGE)


def test_a_timeout_near_the_memory_cap_keeps_its_outcome(box: Sandbox) -> None:
    spin = challenge(1024, 0, body=f"{GROW_TO_CAP} (loop $l (br $l))")
    limits = dataclasses.replace(NEAR_CAP, fuel=10**12, wall_ms=100)
    result = run_challenge(box, spin, limits)
    assert (result.outcome, result.peak_memory) == ("timeout", 64 * PAGE)


@pytest.mark.parametrize("valid", [True, False], ids=["ok", "invalid"])
def test_a_result_near_the_memory_cap_keeps_its_outcome(box: Sandbox, valid: bool) -> None:
    written = abi.encode_output(abi.Result(abi.SCORE_SCALE if valid else 0, valid, "done"))
    segment = "".join(f"\\{byte:02x}" for byte in written)
    module = challenge(
        1024, packed(16, len(written)), exports=f'(data (i32.const 16) "{segment}")', body=GROW_TO_CAP
    )
    result = run_challenge(box, module, NEAR_CAP)
    assert (result.outcome, result.message, result.peak_memory) == (
        "ok" if valid else "invalid",
        "done",
        64 * PAGE,
    )


# --- what a failure is called -----------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (wasmtime.Trap("boom"), ("trap:unknown", "boom")),
        (host.HostTrap("native_stack", "deep"), ("failed", "deep")),
        (host.HostTrap("timeout", "late"), ("timeout", "late")),
        (host.HostTrap("log_limit", "chatty"), ("trap:log_limit", "chatty")),
        (
            wasmtime.WasmtimeError("memory minimum size of 300 pages exceeds memory limits"),
            ("memory_limit", "memory minimum size of 300 pages exceeds memory limits"),
        ),
        (wasmtime.WasmtimeError("memory limit reached"), ("memory_limit", "memory limit reached")),
        (
            wasmtime.WasmtimeError("memory minimum of 300 pages"),
            ("memory_limit", "memory minimum of 300 pages"),
        ),
        (wasmtime.WasmtimeError("memory is fine"), ("abi_error", "memory is fine")),
        (wasmtime.WasmtimeError("table limit reached"), ("abi_error", "table limit reached")),
        (wasmtime.WasmtimeError("minimum of something"), ("abi_error", "minimum of something")),
    ],
    ids=lambda v: v if isinstance(v, tuple) else type(v).__name__,
)
def test_each_kind_of_failure_gets_its_outcome(error: BaseException, expected: tuple[str, str]) -> None:
    assert sandbox._outcome(error, None) == expected


def test_a_trap_without_a_message_is_still_named() -> None:
    assert sandbox._outcome(wasmtime.Trap(""), None) == ("trap:unknown", "trap")


@pytest.fixture
def uninstrumented(monkeypatch, tmp_path):
    """A sandbox whose call-depth instrumentation is off: as if an engine bound were wrong,
    wasmtime's own native stack limit is what stops a deep recursion."""
    monkeypatch.setattr(sandbox, "instrument", lambda data, shape: data)
    opened = Sandbox(cache_dir=tmp_path / "cache")
    yield opened
    opened.close()


def test_a_native_stack_overflow_is_a_failure_that_names_the_wrong_bound(uninstrumented: Sandbox) -> None:
    from tests.eval_helpers import hostile_cases, run_case

    case = next(c for c in hostile_cases() if c.name == "deep_recursion")
    result = run_case(uninstrumented, case)
    assert (result.outcome, result.message, result.fuel_used, result.output) == (
        "failed",
        "native stack exhausted before the call-depth limit (an engine bound was wrong)",
        None,
        None,
    )


def test_a_native_stack_overflow_near_the_memory_cap_is_still_a_failure(uninstrumented: Sandbox) -> None:
    deep = challenge(
        1024,
        0,
        exports="(func $f (param i32) (result i32) (call $f (i32.add (local.get 0) (i32.const 1))))",
        body=f"{GROW_TO_CAP} (drop (call $f (i32.const 0)))",
    )
    result = run_challenge(uninstrumented, deep, dataclasses.replace(NEAR_CAP, fuel=10**9))
    assert (result.outcome, result.peak_memory) == ("failed", 64 * PAGE)


def test_a_native_stack_overflow_in_a_nested_run_fails_the_evaluation(uninstrumented: Sandbox) -> None:
    deep = submission(
        "(drop (call $f (i32.const 0))) (i64.const 0)",
        extra="(func $f (param i32) (result i32) (call $f (i32.add (local.get 0) (i32.const 1))))",
    )
    result = run_nested(uninstrumented, deep)
    assert (result.outcome, result.message, result.fuel_used) == (
        "failed",
        "native stack exhausted before the call-depth limit in submission_run",
        None,
    )


def test_a_nested_run_asked_for_after_the_deadline_is_a_timeout(box: Sandbox) -> None:
    import time

    clock = sandbox._Clock(1000)
    clock.deadline = time.perf_counter() - 0.5
    ctx = host.HostContext(seed=bytes(32), nested_fuel_budget=10**6, compile_budget_ms=10**6, run_nested=None)
    with pytest.raises(host.HostTrap) as info:
        box._run_nested(submission("(i64.const 0)"), b"", 1000, clock, ctx)
    assert (info.value.code, str(info.value)) == ("timeout", "wall-clock budget exhausted in submission_run")


def test_submissions_named_up_front_are_compiled_before_the_clock_starts(box: Sandbox) -> None:
    import hashlib

    module = submission("(i64.const 0)", extra="(global i32 (i32.const 77))")
    sha = hashlib.sha256(module).hexdigest()
    assert (id(box.bare_linker), sha) not in box._loaded
    runner = nested_runner()
    data, seed, runner_sha = make_input(runner, module)
    result = box.evaluate(runner, runner_sha, "evaluate", data, LIMITS, seed, (module,))
    assert result.outcome == "ok" and (id(box.bare_linker), sha) in box._loaded
    assert (sha, host.NESTED_MEMORY_CAP, False) in box._shapes
    unused = submission("(i64.const 0)", extra="(global i32 (i32.const 78))")
    unused_sha = hashlib.sha256(unused).hexdigest()
    never_runs_it = challenge(1024, 0)
    data, seed, sha = make_input(never_runs_it, unused)
    box.evaluate(never_runs_it, sha, "evaluate", data, LIMITS, seed, (unused,))
    assert (id(box.bare_linker), unused_sha) in box._loaded  # compiled up front, under its hash


def custom_section(module: bytes, size: int) -> bytes:
    """``module`` with a custom section of ``size`` payload bytes appended."""
    name = b"pad"
    payload = bytes([len(name)]) + name + bytes(size)
    length, encoded = len(payload), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return module + b"\x00" + bytes(encoded) + payload


def test_a_nested_module_is_held_to_the_submission_size_limit(box: Sandbox) -> None:
    import hashlib

    from platform_cli.runtime.validate import MAX_SUBMISSION_MODULE_BYTES

    base = submission("(i64.const 0)")
    fits = custom_section(base, MAX_SUBMISSION_MODULE_BYTES - len(base) - 16)
    assert len(fits) <= MAX_SUBMISSION_MODULE_BYTES
    too_big = custom_section(base, MAX_SUBMISSION_MODULE_BYTES)
    assert box._prepare_nested(fits, hashlib.sha256(fits).hexdigest()) is not None
    assert box._prepare_nested(too_big, hashlib.sha256(too_big).hexdigest()) is None
