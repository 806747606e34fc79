"""``platform eval conformance``: check a challenge author's module against ABI v1."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime

from platform_cli.core import abi
from platform_cli.core.challenge import ResourcePolicy
from platform_cli.runtime.diagnostics import one_line
from platform_cli.runtime.instrument import instrument
from platform_cli.runtime.sandbox import RunResult, Sandbox
from platform_cli.runtime.validate import (
    HOST_IMPORTS,
    MAX_CHALLENGE_MODULE_BYTES,
    ModuleRefused,
    ModuleShape,
    validate,
)

DEFAULT_LIMITS = ResourcePolicy(
    fuel=1_000_000_000,
    memory_bytes=64 * 1024 * 1024,
    wall_ms=5_000,
    max_input_bytes=1024 * 1024,
    max_output_bytes=64 * 1024,
)
FINISHED = ("ok", "invalid")


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def _input(sha: str, submission: bytes, params: dict[str, Any]) -> tuple[bytes, bytes]:
    seed = abi.derive_seed(0, hashlib.sha256(submission).digest(), bytes.fromhex(sha))
    data = abi.encode_input(
        challenge_id="conformance",
        version="0.0.0",
        module_sha256=bytes.fromhex(sha),
        submission=submission,
        seed=seed,
        params=params,
    )
    return data, seed


def check_module(
    module: bytes,
    *,
    entrypoint: str = "evaluate",
    limits: ResourcePolicy = DEFAULT_LIMITS,
    params: dict[str, Any] | None = None,
    sample: bytes = b"conformance",
) -> list[Check]:
    checks: list[Check] = []
    sha = hashlib.sha256(module).hexdigest()
    params = params or {}

    def add(name: str, test: Callable[[], str]) -> bool:
        try:
            checks.append(Check(name, True, test()))
        except (ModuleRefused, wasmtime.WasmtimeError, AssertionError) as exc:
            checks.append(Check(name, False, one_line(exc) if str(exc) else "failed"))
        return checks[-1].passed

    shapes: list[ModuleShape] = []

    def shape() -> str:
        found = validate(
            module,
            max_bytes=MAX_CHALLENGE_MODULE_BYTES,
            max_memory_bytes=limits.memory_bytes,
            allowed_imports=HOST_IMPORTS,
        )
        shapes.append(found)
        return f"{len(module)} bytes, {found.functions} functions, imports {[n for _, n in found.imports]}"

    if not add("static limits and import whitelist", shape):
        return checks
    sandbox = Sandbox()
    try:
        compiled: list[wasmtime.Module] = []
        if not add(
            "compiles under the deterministic engine", lambda: _compile(sandbox, module, shapes[0], compiled)
        ):
            return checks
        add(
            "exports memory, alloc and the entrypoint with ABI v1 types",
            lambda: _exports(compiled[0], entrypoint),
        )

        def run(submission: bytes) -> RunResult:
            data, seed = _input(sha, submission, params)
            return sandbox.evaluate(module, sha, entrypoint, data, limits, seed)

        first = run(sample)
        add("evaluates a sample submission", lambda: _finished(first))
        second = run(sample)
        add("deterministic across two runs", lambda: _same(first, second))
        add("handles an empty submission", lambda: _finished(run(b"")))
        overhead = len(_input(sha, b"", params)[0]) + 8
        biggest = b"\xa5" * max(0, limits.max_input_bytes - overhead)
        add(f"handles the largest submission ({len(biggest)} bytes)", lambda: _finished(run(biggest)))
        add(
            "an oversized input is refused before the module runs", lambda: _refused(run(biggest + bytes(16)))
        )
    finally:
        sandbox.close()
    return checks


def _compile(sandbox: Sandbox, module: bytes, shape: ModuleShape, out: list[wasmtime.Module]) -> str:
    started = time.perf_counter()
    wasmtime.Module.validate(sandbox.engine.wasm, module)
    out.append(wasmtime.Module(sandbox.engine.wasm, instrument(module, shape)))
    took = (time.perf_counter() - started) * 1000
    return f"estimated {shape.compile_ms} ms, compiled in {took:.0f} ms"


def _exports(module: wasmtime.Module, entrypoint: str) -> str:
    types = {e.name: e.type for e in module.exports}
    assert isinstance(types.get("memory"), wasmtime.MemoryType), "no exported memory"
    for name, params, results in (("alloc", ["i32"], ["i32"]), (entrypoint, ["i32", "i32"], ["i64"])):
        kind = types.get(name)
        assert isinstance(kind, wasmtime.FuncType), f"no exported function {name!r}"
        got = ([str(p) for p in kind.params], [str(r) for r in kind.results])
        assert got == (params, results), f"{name!r} has type {got}, expected {(params, results)}"
    return "ok"


def _finished(run: RunResult) -> str:
    assert run.outcome in FINISHED, f"outcome {run.outcome}: {run.message}"
    assert run.result is not None
    return f"{run.outcome}, score {run.result.score}, fuel {run.fuel_used}"


def _refused(run: RunResult) -> str:
    assert run.outcome == "abi_error" and run.fuel_used == 0, f"outcome {run.outcome}, fuel {run.fuel_used}"
    return run.message


def _same(a: RunResult, b: RunResult) -> str:
    assert (a.outcome, a.output_sha256, a.fuel_used) == (b.outcome, b.output_sha256, b.fuel_used), (
        f"run 1 gave {a.outcome}/{a.output_sha256}/{a.fuel_used}, run 2 {b.outcome}/{b.output_sha256}/{b.fuel_used}"
    )
    return f"output {a.output_sha256[:16] if a.output_sha256 else '-'}, fuel {a.fuel_used}"
