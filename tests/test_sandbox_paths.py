"""The sandbox's less travelled paths, with real wasmtime: every status ``submission_run``
hands back to a challenge, a nested run cut by the wall clock, the memory-cap relabelling
at its edge, evaluations from threads other than the main one, and the bounded caches."""

from __future__ import annotations

import resource
import threading

import pytest
import wasmtime

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
    [(512, 480), (64, 48)],  # a sixteenth of the cap, but never under 16 pages
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
            lambda: opened.evaluate(job.module, job.module_sha256, job.entrypoint, None, job.limits, job.seed)
        )
        assert isinstance(broken["error"], TypeError)
        assert record(in_thread(evaluate)["value"]) == record(direct)
        thread = opened._runner._thread
        assert thread.is_alive() and thread.name == "platform-eval"
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
