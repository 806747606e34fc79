"""Outcomes that do not depend on the machine's CPU: two engines that differ only in the
CPU features Cranelift may use give the same outcome, fuel and output for a corpus of
deep recursions, as challenges and as nested submissions, cold and cached."""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from platform_cli.core.challenge import ResourcePolicy
from platform_cli.errors import PlatformError
from platform_cli.runtime import engine as eng
from platform_cli.runtime.cache import ModuleCache
from platform_cli.runtime.instrument import STACK_LIMIT, frame_units
from platform_cli.runtime.sandbox import Sandbox
from platform_cli.runtime.validate import validate
from platform_cli.state.db import DB_FILENAME
from tests.eval_helpers import (
    RECURSION_FRAMES,
    make_input,
    native_depth,
    nested_runner,
    recursion_module,
    write_challenge,
)

pytestmark = pytest.mark.skipif(eng.arch() != "x86_64", reason="the CPU features compared are x86-64's")

# What this machine has beyond the baseline, and what changes stack frames (BMI2's shifts).
HOST_FEATURES = {
    **eng.X86_64_BASELINE,
    "has_avx": True,
    "has_avx2": True,
    "has_bmi1": True,
    "has_bmi2": True,
    "has_lzcnt": True,
    "has_fma": True,
}
LIMITS = ResourcePolicy(
    fuel=10**10, memory_bytes=16 << 20, wall_ms=20_000, max_input_bytes=1 << 20, max_output_bytes=4096
)


def host_has_features() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    return all(f in flags for f in ("avx2", "bmi1", "bmi2", "abm", "fma"))


needs_features = pytest.mark.skipif(not host_has_features(), reason="this CPU lacks AVX2/BMI2/LZCNT/FMA")


def units(frame: str) -> int:
    shape = validate(
        recursion_module(frame), max_bytes=1 << 20, max_memory_bytes=1 << 30, allowed_imports=frozenset()
    )
    return max(frame_units(b) for b in shape.bodies)


@functools.cache
def split_depth() -> int:
    """A depth between the native limits of the two engines for the BMI2-sensitive frame:
    without the call-depth limit, one engine would finish it and the other overflow."""
    module = recursion_module("live i64 shifts")
    return (native_depth(module) + native_depth(module, HOST_FEATURES)) // 2


def depths(frame: str) -> list[int]:
    """Around the call-depth limit: well within, at its edge, past it, and unbounded."""
    edge = STACK_LIMIT // units(frame)
    return [edge // 2, edge - 3, edge + 3, 10**7] + ([split_depth()] if frame == "live i64 shifts" else [])


def evaluate_challenge(box: Sandbox, frame: str, depth: int) -> tuple:
    module = recursion_module(frame, "challenge")
    data, seed, sha = make_input(module, depth.to_bytes(4, "little"))
    result = box.evaluate(module, sha, "evaluate", data, LIMITS, seed)
    return result.outcome, result.fuel_used, result.output_sha256


def evaluate_submission(box: Sandbox, frame: str, depth: int) -> tuple:
    runner, submission = nested_runner(), recursion_module(frame, "submission", depth)
    data, seed, sha = make_input(runner, submission)
    result = box.evaluate(runner, sha, "evaluate", data, LIMITS, seed, (submission,))
    assert result.outcome == "ok", result.message
    return result.outcome, result.fuel_used, result.output_sha256, result.result.metrics


@needs_features
def test_the_two_engines_really_compile_different_frames():
    """Without the call-depth limit, the BMI2 engine's frames differ: the native limit
    falls at another depth (the defect this file guards against)."""
    module = recursion_module("live i64 shifts")
    assert native_depth(module) != native_depth(module, HOST_FEATURES)


@needs_features
@pytest.mark.parametrize("role", ["challenge", "submission"])
def test_same_outcome_fuel_and_output_on_both_engines_cold_and_cached(tmp_path, role):
    evaluate = evaluate_challenge if role == "challenge" else evaluate_submission
    runs: dict[str, dict] = {}
    for name, flags in (("baseline", None), ("host", HOST_FEATURES)):
        cache = tmp_path / name
        cold_box = Sandbox(cache, isa_flags=flags)
        try:
            cold = {(f, d): evaluate(cold_box, f, d) for f in RECURSION_FRAMES for d in depths(f)}
            warm = {(f, d): evaluate(cold_box, f, d) for f in RECURSION_FRAMES for d in depths(f)}
        finally:
            cold_box.close()
        disk_box = Sandbox(cache, isa_flags=flags)  # challenges from the disk cache
        try:
            disk = {(f, d): evaluate(disk_box, f, d) for f in RECURSION_FRAMES for d in depths(f)}
            assert disk_box.cache.stats["disk_hits"] == (len(RECURSION_FRAMES) if role == "challenge" else 1)
        finally:
            disk_box.close()
        assert cold == warm == disk
        runs[name] = cold
    assert runs["baseline"] == runs["host"]
    outcomes = [r[0] if role == "challenge" else r[3]["status"] for r in runs["baseline"].values()]
    if role == "challenge":
        assert {"ok", "trap:stack_overflow"} == set(outcomes)
    else:
        assert {0, -2} == set(outcomes)  # ok, trap (the nested call-depth limit)


def test_the_depth_limit_is_counted_in_wasm_terms():
    """The deepest recursion that fits is the limit, less the caller's frame, divided by
    the frame's cost: the same number on every engine."""
    module = recursion_module("minimal", "challenge")
    shape = validate(module, max_bytes=1 << 20, max_memory_bytes=1 << 30, allowed_imports=frozenset())
    _, recursive, _, caller = (frame_units(b) for b in shape.bodies)  # max, $rec, alloc, evaluate
    deepest = (STACK_LIMIT - caller) // recursive - 1  # depth d makes d + 1 frames of $rec
    box = Sandbox()
    try:
        assert evaluate_challenge(box, "minimal", deepest)[0] == "ok"
        assert evaluate_challenge(box, "minimal", deepest + 1)[0] == "trap:stack_overflow"
    finally:
        box.close()
    assert recursive == 7 and deepest == 9_360


def test_a_stack_overflow_says_which_limit():
    box = Sandbox()
    try:
        module = recursion_module("minimal", "challenge")
        data, seed, sha = make_input(module, (10**7).to_bytes(4, "little"))
        result = box.evaluate(module, sha, "evaluate", data, LIMITS, seed)
    finally:
        box.close()
    assert result.outcome == "trap:stack_overflow"
    assert result.message == f"call stack over the limit of {STACK_LIMIT} units"
    assert result.fuel_used > 0


def test_engine_info_and_cache_key_carry_the_pinned_settings(tmp_path):
    info = eng.engine_info()
    assert info["isa_flags"] == eng.X86_64_BASELINE and info["isa_flags"]["has_bmi2"] is False
    assert info["target"] == eng.target_triple() and info["target"].startswith("x86_64-")
    assert info["settings"]["cranelift_opt_level"] == "none"
    assert info["settings"]["strategy"] == "cranelift"
    assert info["stack_limit"] == {"version": 1, "units": STACK_LIMIT}
    host = eng.Engine(HOST_FEATURES)
    baseline = eng.Engine()
    try:
        assert host.info["isa_flags"]["has_bmi2"] is True
        assert host.fingerprint != baseline.fingerprint == eng.engine_fingerprint()
        keys = {ModuleCache(e.wasm, e.fingerprint, tmp_path).key("ab" * 32) for e in (host, baseline)}
        assert len(keys) == 2
    finally:
        host.close()
        baseline.close()


def test_sandboxes_of_different_engines_sharing_a_cache_dir_keep_their_artifacts_apart(tmp_path):
    boxes = [Sandbox(cache_dir=tmp_path), Sandbox(cache_dir=tmp_path, isa_flags=HOST_FEATURES)]
    try:
        assert [box.cache.fingerprint for box in boxes] == [box.engine.fingerprint for box in boxes]
        assert boxes[0].cache.key("ab" * 32) != boxes[1].cache.key("ab" * 32)
    finally:
        for box in boxes:
            box.close()


def test_each_setting_changes_the_fingerprint(monkeypatch):
    before = eng.engine_fingerprint()
    monkeypatch.setitem(eng.ENGINE_SETTINGS, "cranelift_opt_level", "speed")
    assert eng.engine_fingerprint() != before
    monkeypatch.undo()
    monkeypatch.setattr(eng, "target_triple", lambda: "x86_64-apple-darwin")
    assert eng.engine_fingerprint() != before


def test_a_host_without_the_baseline_is_refused_clearly():
    with pytest.raises(PlatformError, match="cannot run the pinned engine") as refused:
        Sandbox(isa_flags={**eng.X86_64_BASELINE, "has_apx": True})  # no x86 CPU here has APX
    assert "has_apx" in str(refused.value) and "\n" not in str(refused.value)


def test_replay_names_the_engine_settings_that_differ(run, data_dir, tmp_path):
    module = recursion_module("live i64 shifts", "challenge")
    toml = write_challenge(tmp_path / "deep", module, wall_ms=5_000, fuel=10**9)
    depth = tmp_path / "depth.bin"
    depth.write_bytes((500).to_bytes(4, "little"))
    result = run("--json", "eval", "run", str(toml), str(depth))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["outcome"] == "ok" and record["engine"]["isa_flags"]["has_bmi2"] is False
    same = json.loads(run("--json", "eval", "replay", str(record["id"])).stdout)
    assert same["identical"] is True and same["same_engine"] is True and same["engine_differences"] == "none"
    with sqlite3.connect(data_dir / DB_FILENAME) as conn:
        engine = dict(record["engine"], isa_flags={**record["engine"]["isa_flags"], "has_bmi2": True})
        conn.execute("UPDATE evaluations SET engine = ? WHERE id = ?", [json.dumps(engine), record["id"]])
    other = json.loads(run("--json", "eval", "replay", str(record["id"])).stdout)
    assert other["identical"] is True and other["same_engine"] is False
    assert other["engine_differences"] == "isa_flags.has_bmi2: True -> False"
    with sqlite3.connect(data_dir / DB_FILENAME) as conn:
        conn.execute("UPDATE evaluations SET fuel_used = fuel_used + 1 WHERE id = ?", [record["id"]])
    differs = run("eval", "replay", str(record["id"]))
    assert differs.exit_code == 1
    assert (
        "DIFFERS" in differs.stderr and "recorded under another engine: isa_flags.has_bmi2" in differs.stderr
    )


def test_instrumented_modules_compute_what_the_originals_compute():
    """The rewrite keeps results: every frame shape, as a bare module, returns the same
    value instrumented (through the sandbox's path) as compiled as it is."""
    import wasmtime

    from platform_cli.runtime.instrument import instrument

    wasm = wasmtime.Engine(eng.make_config())
    for frame in RECURSION_FRAMES:
        module = recursion_module(frame)
        shape = validate(module, max_bytes=1 << 20, max_memory_bytes=1 << 30, allowed_imports=frozenset())
        values = []
        for compiled in (module, instrument(module, shape)):
            store = wasmtime.Store(wasm)
            store.set_fuel(10**9)
            store.set_epoch_deadline(10**6)
            exports = wasmtime.Linker(wasm).instantiate(store, wasmtime.Module(wasm, compiled)).exports(store)
            values.append((exports["f"](store, 300), exports["max"](store)))
        assert values[0] == values[1], frame


def test_a_thread_with_a_small_stack_still_reaches_the_depth_limit():
    """A caller on a 256 KiB thread stack: the evaluation moves to the sandbox's own
    thread, so a challenge and its nested submission may both recurse to the limit."""
    box = Sandbox()
    expected = [evaluate_submission(box, "live f64", 10**7), evaluate_challenge(box, "live f64", 10**7)]
    got: list = []
    previous = threading.stack_size(256 * 1024)
    try:
        caller = threading.Thread(
            target=lambda: got.extend(
                [evaluate_submission(box, "live f64", 10**7), evaluate_challenge(box, "live f64", 10**7)]
            )
        )
        caller.start()
    finally:
        threading.stack_size(previous)
    caller.join(timeout=120)
    box.close()
    assert got == expected
    assert expected[0][3]["status"] == -2 and expected[1][0] == "trap:stack_overflow"
