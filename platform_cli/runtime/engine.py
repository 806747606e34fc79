"""The deterministic wasmtime engine: one per process, with its epoch ticker.

Every setting that can change what a module computes, or how much fuel it burns, is
listed in :data:`ENGINE_SETTINGS` and recorded with each evaluation, together with the
wasmtime version and the CPU architecture: together they define "the same result".
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform as host_platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from typing import Any

import wasmtime

log = logging.getLogger("platform.runtime")

TICK_MS = 5
ENGINE_SETTINGS: dict[str, Any] = {
    "consume_fuel": True,
    "epoch_interruption": True,
    "cranelift_nan_canonicalization": True,
    "cranelift_opt_level": "speed",
    "max_wasm_stack": 512 * 1024,
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


@cache
def wasmtime_version() -> str:
    return metadata.version("wasmtime")


def engine_info() -> dict[str, Any]:
    """What an evaluation record stores about the engine that produced it."""
    return {
        "wasmtime": wasmtime_version(),
        "arch": host_platform.machine(),
        "settings": dict(ENGINE_SETTINGS),
        "tick_ms": TICK_MS,
    }


def engine_fingerprint() -> str:
    return hashlib.sha256(json.dumps(engine_info(), sort_keys=True).encode()).hexdigest()


def make_config() -> wasmtime.Config:
    config = wasmtime.Config()
    # Order matters: turning SIMD off while relaxed SIMD is on aborts the process.
    config.wasm_relaxed_simd = False
    for name, value in ENGINE_SETTINGS.items():
        setattr(config, name, value)
    return config


@cache
def validation_engine() -> wasmtime.Engine:
    """The process's engine for validating modules (no store ever runs on it, so no ticker)."""
    return wasmtime.Engine(make_config())


class Engine:
    """A wasmtime engine plus the ticker thread that drives epoch deadlines."""

    def __init__(self) -> None:
        self.wasm = wasmtime.Engine(make_config())
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="platform-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_MS / 1000):
            if not self._paused.is_set():
                self.wasm.increment_epoch()

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
