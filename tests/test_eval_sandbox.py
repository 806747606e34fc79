"""Sandbox internals: static limits, the integrity-checked module cache, engine facts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import wasmtime

from platform_cli.runtime import engine as eng
from platform_cli.runtime.cache import MAGIC, ModuleCache
from platform_cli.runtime.validate import HOST_IMPORTS, ModuleRefused, validate

OK_MODULE = '(module (memory (export "memory") 1) (func (export "f") (result i32) (i32.const 7)))'


def check(wat: str, **kw):
    args = {"max_bytes": 1 << 20, "max_memory_bytes": 1 << 24, "allowed_imports": HOST_IMPORTS} | kw
    return validate(wasmtime.wat2wasm(wat), **args)


def test_valid_module_shape_is_reported():
    shape = check('(module (import "platform" "log" (func (param i32 i32))) ' + OK_MODULE[8:])
    assert shape.imports == [("platform", "log")] and shape.functions == 1 and shape.initial_memory == 65536


@pytest.mark.parametrize(
    ("wat", "error"),
    [
        ("(module (func (param " + "i32 " * 33 + ")))", "parameters exceed"),
        ("(module (func (local " + "i64 " * 2001 + ")))", "more than 2000 locals"),
        ("(module (table 20000 funcref))", "table of 20000 elements"),
        ("(module (table 1 funcref) (table 1 funcref))", "2 tables exceed"),
        ('(module (import "platform" "seed" (global i32)))', "only functions may be imported"),
        ('(module (import "env" "seed" (func)))', "not in the host whitelist"),
        ("(module (func (param v128)))", "SIMD"),
        ("(module (memory i64 1))", "memory64"),
        ("(module (memory 1 1 shared))", "shared memory"),
        ("(module (memory 300))", "initial memory"),
    ],
)
def test_static_limits(wat, error):
    with pytest.raises(ModuleRefused, match=error):
        check(wat)


def test_submission_modules_may_import_nothing():
    with pytest.raises(ModuleRefused, match="whitelist"):
        check('(module (import "platform" "log" (func (param i32 i32))))', allowed_imports=frozenset())


@pytest.mark.parametrize(
    "data", [b"", b"\0asm", b"\0asm\x02\0\0\0", b"\0asm\x01\0\0\0\x01\x80", b"not wasm at all"]
)
def test_malformed_bytes_refused(data):
    with pytest.raises(ModuleRefused, match="malformed"):
        validate(data, max_bytes=1 << 20, max_memory_bytes=1 << 24, allowed_imports=HOST_IMPORTS)


def test_size_cap():
    with pytest.raises(ModuleRefused, match="exceeds the limit"):
        validate(
            b"\0asm\x01\0\0\0" + bytes(100), max_bytes=50, max_memory_bytes=1, allowed_imports=HOST_IMPORTS
        )


@pytest.fixture
def engine():
    e = eng.Engine()
    yield e.wasm
    e.close()


def call(module: wasmtime.Module, engine: wasmtime.Engine) -> int:
    store = wasmtime.Store(engine)
    store.set_fuel(1000)
    store.set_epoch_deadline(100)
    return wasmtime.Linker(engine).instantiate(store, module).exports(store)["f"](store)


def test_cache_memory_disk_and_integrity(engine, tmp_path):
    data = wasmtime.wat2wasm(OK_MODULE)
    cold = ModuleCache(engine, "fp", tmp_path)
    assert call(cold.get("a" * 64, lambda: data), engine) == 7
    assert call(cold.get("a" * 64, lambda: data), engine) == 7
    assert cold.stats["compiles"] == 1 and cold.stats["memory_hits"] == 1
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0
    warm = ModuleCache(engine, "fp", tmp_path)
    assert call(warm.get("a" * 64, lambda: data), engine) == 7
    assert warm.stats == {
        "memory_hits": 0,
        "disk_hits": 1,
        "compiles": 0,
        "rejected_artifacts": 0,
        "write_failures": 0,
    }
    # a different engine fingerprint never reuses the artifact
    other = ModuleCache(engine, "other-fp", tmp_path)
    other.get("a" * 64, lambda: data)
    assert other.stats["compiles"] == 1


def test_tampered_or_foreign_artifact_is_rejected(engine, tmp_path):
    data = wasmtime.wat2wasm(OK_MODULE)
    ModuleCache(engine, "fp", tmp_path).get("b" * 64, lambda: data)
    (artifact,) = tmp_path.glob("*.cwasm")
    blob = bytearray(artifact.read_bytes())
    blob[-1] ^= 0xFF
    artifact.write_bytes(bytes(blob))
    tampered = ModuleCache(engine, "fp", tmp_path)
    assert call(tampered.get("b" * 64, lambda: data), engine) == 7
    assert tampered.stats["rejected_artifacts"] == 1 and tampered.stats["compiles"] == 1
    # an artifact written under another node's secret fails the check too
    foreign = tmp_path / "foreign"
    ModuleCache(engine, "fp", foreign).get("b" * 64, lambda: data)
    (foreign / "secret").write_bytes(b"\0" * 32)
    stranger = ModuleCache(engine, "fp", foreign)
    stranger.get("b" * 64, lambda: data)
    assert stranger.stats["rejected_artifacts"] == 1
    assert artifact.read_bytes().startswith(MAGIC)


def test_engine_info_names_version_and_settings():
    info = eng.engine_info()
    assert info["wasmtime"] == "50.0.1"
    assert info["settings"]["wasm_relaxed_simd"] is False and info["settings"]["wasm_threads"] is False
    assert info["settings"]["cranelift_nan_canonicalization"] is True
    assert len(eng.engine_fingerprint()) == 64


@pytest.mark.slow
def test_eval_command_module_is_light():
    code = "import sys, platform_cli.commands.eval; print('wasmtime' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_module_bytes_must_match_their_hash():
    from platform_cli.core.challenge import ResourcePolicy
    from platform_cli.runtime.sandbox import Sandbox

    box = Sandbox()
    try:
        limits = ResourcePolicy(1000, 1 << 20, 100, 1000, 100)
        result = box.evaluate(wasmtime.wat2wasm(OK_MODULE), "0" * 64, "evaluate", b"", limits, bytes(32))
    finally:
        box.close()
    assert result.outcome == "abi_error" and "do not hash" in result.message


def test_a_memory_grow_bomb_peaks_at_the_memory_cap() -> None:
    from platform_cli.runtime.sandbox import Sandbox
    from tests.eval_helpers import hostile_cases, run_case

    case = next(c for c in hostile_cases() if c.name == "grow_bomb")
    box = Sandbox()
    try:
        result = run_case(box, case)
    finally:
        box.close()
    assert result.outcome == "memory_limit", result.message
    assert result.peak_memory == case.limits.memory_bytes == 16 * 1024 * 1024


SPIN_SUBMISSION = """(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"""


def test_a_nested_run_asking_for_more_fuel_than_is_left_gets_only_what_is_left() -> None:
    from platform_cli.core.challenge import ResourcePolicy
    from platform_cli.runtime import host
    from platform_cli.runtime.sandbox import Sandbox
    from tests.eval_helpers import make_input, nested_runner

    runner, submission = nested_runner(), wasmtime.wat2wasm(SPIN_SUBMISSION)
    data, seed, sha = make_input(runner, submission)
    fuel = 3_000_000  # the runner asks submission_run for 10**9
    limits = ResourcePolicy(
        fuel=fuel, memory_bytes=1 << 20, wall_ms=5_000, max_input_bytes=1 << 16, max_output_bytes=4096
    )
    box = Sandbox()
    try:
        result = box.evaluate(runner, sha, "evaluate", data, limits, seed, (submission,))
    finally:
        box.close()
    assert result.outcome == "ok", result.message
    assert result.result.metrics["status"] == host.RUN_OUT_OF_FUEL
    assert result.result.metrics["fuel"] == fuel
    assert result.host_calls["nested_fuel"] == fuel
