"""The deterministic wasmtime engine: one per process, with its epoch ticker.

Every setting that can change what a module computes, how much fuel it burns or how its
code is generated is pinned here and recorded with each evaluation (``engine_info``):
the wasmtime version, the compiler and its optimisation level, the target triple and
the CPU features Cranelift may use (a fixed baseline, never the host's own: Cranelift
would otherwise pick instructions, and so stack frame sizes, from the CPU it runs on),
the call-depth instrumentation and the clock's tick. Their fingerprint keys the module
cache, and replay compares them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform as host_platform
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from typing import Any

import wasmtime

from platform_cli.errors import PlatformError
from platform_cli.runtime import instrument
from platform_cli.runtime.diagnostics import one_line

log = logging.getLogger("platform.runtime")

TICK_MS = 5
MAX_WASM_STACK = 2 * 1024 * 1024
"""Native stack for wasm frames (wasmtime's most without async support): twice the most
the call-depth limit lets frames use (16 bytes per stack unit, measured by
``bench/bench_eval.py``), so the machine-independent limit always traps first."""
ENGINE_SETTINGS: dict[str, Any] = {
    "strategy": "cranelift",
    "consume_fuel": True,
    "epoch_interruption": True,
    "cranelift_nan_canonicalization": True,
    "cranelift_opt_level": "none",
    "max_wasm_stack": MAX_WASM_STACK,
    "wasm_threads": False,
    "wasm_simd": False,
    "wasm_relaxed_simd": False,
    "wasm_multi_memory": False,
    "wasm_memory64": False,
    "wasm_tail_call": False,
    "wasm_gc": False,
    "wasm_function_references": False,
    "wasm_exceptions": False,
    "wasm_wide_arithmetic": False,
    "wasm_custom_page_sizes": False,
    "wasm_bulk_memory": True,
    "wasm_multi_value": True,
    "wasm_reference_types": True,
    "parallel_compilation": False,
}
# x86-64-v2 (the psABI level every x86-64 server of the last fifteen years meets): SSE3,
# SSSE3, SSE4.1/4.2, POPCNT, CMPXCHG16B; nothing from AVX, BMI, LZCNT, FMA or later.
X86_64_BASELINE: dict[str, bool] = {
    "has_sse3": True,
    "has_ssse3": True,
    "has_cmpxchg16b": True,
    "has_sse41": True,
    "has_sse42": True,
    "has_popcnt": True,
    "has_avx": False,
    "has_avx2": False,
    "has_fma": False,
    "has_avx_vnni": False,
    "has_avx512bitalg": False,
    "has_avx512dq": False,
    "has_avx512vl": False,
    "has_avx512vbmi": False,
    "has_avx512f": False,
    "has_avx512vnni": False,
    "has_apx": False,
    "has_bmi1": False,
    "has_bmi2": False,
    "has_lzcnt": False,
}
_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
_SYSTEMS = {"Linux": "unknown-linux-gnu", "Darwin": "apple-darwin", "Windows": "pc-windows-msvc"}


@cache
def wasmtime_version() -> str:
    return metadata.version("wasmtime")


def arch() -> str:
    machine = host_platform.machine()
    return _ARCHES.get(machine.lower(), machine)


def target_triple() -> str:
    """The host's triple, set explicitly: it turns off wasmtime's CPU feature detection."""
    return f"{arch()}-{_SYSTEMS.get(host_platform.system(), 'unknown-linux-gnu')}"


def baseline_isa_flags() -> dict[str, bool]:
    """The pinned CPU features. Elsewhere than x86-64 the triple's defaults are the
    baseline: setting the target already turns every optional feature off."""
    return dict(X86_64_BASELINE) if arch() == "x86_64" else {}


def engine_info(isa_flags: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """What an evaluation record stores about the engine that produced it."""
    return {
        "wasmtime": wasmtime_version(),
        "arch": arch(),
        "target": target_triple(),
        "isa_flags": dict(baseline_isa_flags() if isa_flags is None else isa_flags),
        "settings": dict(ENGINE_SETTINGS),
        "stack_limit": {"version": instrument.VERSION, "units": instrument.STACK_LIMIT},
        "tick_ms": TICK_MS,
    }


def fingerprint(info: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()


def engine_fingerprint() -> str:
    return fingerprint(engine_info())


def make_config(isa_flags: Mapping[str, bool] | None = None) -> wasmtime.Config:
    """The pinned configuration; ``isa_flags`` replaces the CPU baseline (tests compare two)."""
    config = wasmtime.Config()
    # Order matters: turning SIMD off while relaxed SIMD is on aborts the process.
    config.wasm_relaxed_simd = False
    for name, value in ENGINE_SETTINGS.items():
        setattr(config, name, value)
    config.target = target_triple()
    # An unknown flag name aborts the process inside wasmtime: only pinned names get here.
    for name, enabled in (baseline_isa_flags() if isa_flags is None else isa_flags).items():
        config.cranelift_flag_set(name, "true" if enabled else "false")
    return config


@cache
def validation_engine() -> wasmtime.Engine:
    """The process's engine for validating modules (no store ever runs on it, so no ticker)."""
    return wasmtime.Engine(make_config())


class Engine:
    """A wasmtime engine plus the ticker thread that drives epoch deadlines; refused with
    one clear error on a host whose CPU lacks the pinned baseline."""

    def __init__(self, isa_flags: Mapping[str, bool] | None = None) -> None:
        self.info = engine_info(isa_flags)
        self.fingerprint = fingerprint(self.info)
        self.wasm = wasmtime.Engine(make_config(isa_flags))
        try:  # wasmtime checks the settings against the host at the first compile
            wasmtime.Module(self.wasm, b"\0asm\x01\0\0\0")
        except wasmtime.WasmtimeError as exc:
            raise PlatformError(
                f"this machine cannot run the pinned engine ({self.info['target']}, CPU baseline "
                f"{sorted(k for k, v in self.info['isa_flags'].items() if v)}): {one_line(exc)}"
            ) from None
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="platform-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        """One epoch per TICK_MS of running time, however late this thread wakes up: a
        tick counter that slept 7 ms per 5 ms tick would stretch every deadline by 40%."""
        running = 0.0
        ticks = 0
        last = time.monotonic()
        while not self._stop.wait(TICK_MS / 1000):
            now = time.monotonic()
            if not self._paused.is_set():
                running += now - last
            last = now
            due = int(running * 1000 // TICK_MS)
            for _ in range(due - ticks):
                self.wasm.increment_epoch()
            ticks = due

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the epoch clock while the host compiles: compile time never counts as
        guest time, so no outcome depends on compile speed or cache state. One
        evaluation runs at a time per engine (the pool gives each worker its own)."""
        self._paused.set()
        try:
            yield
        finally:
            self._paused.clear()

    @staticmethod
    def deadline_ticks(wall_ms: int) -> int:
        """Epoch ticks for a wall-clock budget (at least one full tick of margin)."""
        return -(-wall_ms // TICK_MS) + 1

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=1)
