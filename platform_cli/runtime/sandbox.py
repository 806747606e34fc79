"""One sandboxed evaluation: validate, compile (cached), instantiate with limits, call.

Per evaluation a fresh ``Store`` gets the challenge's memory cap (and table, instance
limits), its fuel budget and an epoch deadline for its wall-clock budget. Submission
modules named up front are compiled before the clock starts; any other module a challenge
hands to ``submission_run`` is compiled with the epoch clock paused. Whatever the
module does, :meth:`Sandbox.evaluate` returns a :class:`RunResult` with one outcome:
``ok``, ``invalid``, ``trap:<code>``, ``out_of_fuel``, ``timeout``, ``memory_limit`` or
``abi_error``. Fuel used and output bytes are deterministic; wall time is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from platform_cli.core import abi
from platform_cli.core.challenge import ResourcePolicy
from platform_cli.runtime import host
from platform_cli.runtime.cache import ModuleCache
from platform_cli.runtime.engine import Engine, engine_fingerprint
from platform_cli.runtime.validate import (
    HOST_IMPORTS,
    MAX_CHALLENGE_MODULE_BYTES,
    MAX_SUBMISSION_MODULE_BYTES,
    MAX_TABLE_ELEMENTS,
    ModuleRefused,
    validate,
)

PAGE = 65_536


class _Refused(Exception):
    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class RunResult:
    outcome: str
    message: str
    fuel_used: int
    wall_ms: int
    peak_memory: int
    output: bytes | None = None
    result: abi.Result | None = None
    host_calls: dict[str, int] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)

    @property
    def output_sha256(self) -> str | None:
        return None if self.output is None else hashlib.sha256(self.output).hexdigest()


class _Clock:
    """The wall-clock deadline of one evaluation, minus the time spent compiling."""

    def __init__(self, wall_ms: int) -> None:
        self.started = time.perf_counter()
        self.deadline = self.started + wall_ms / 1000
        self.excluded = 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        begun = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - begun
            self.deadline += spent
            self.excluded += spent

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started - self.excluded) * 1000)


GUEST_FAILURES = (wasmtime.Trap, wasmtime.WasmtimeError, host.HostTrap, ModuleRefused, _Refused, abi.AbiError)


def _outcome(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, wasmtime.Trap):
        code = exc.trap_code
        lines = [line.strip() for line in (exc.message or "trap").splitlines() if line.strip()]
        first = lines[-1]
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return "out_of_fuel", "fuel budget exhausted"
        if code == wasmtime.TrapCode.INTERRUPT:
            return "timeout", "wall-clock budget exhausted"
        return f"trap:{code.name.lower() if code is not None else 'unknown'}", first
    if isinstance(exc, host.HostTrap):
        return ("timeout" if exc.code == "timeout" else f"trap:{exc.code}"), str(exc)
    if isinstance(exc, (ModuleRefused, _Refused)):
        return exc.outcome, str(exc)
    if isinstance(exc, abi.AbiError):
        return "abi_error", str(exc)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "memory" in text and ("limit" in text or "minimum" in text):
        return "memory_limit", text
    return "abi_error", text


def _func(exports: Any, store: Any, name: str, params: list[str], results: list[str]) -> wasmtime.Func:
    item = exports.get(name) if hasattr(exports, "get") else None
    if not isinstance(item, wasmtime.Func):
        raise _Refused("abi_error", f"missing export function {name!r}")
    kind = item.type(store)
    if [str(p) for p in kind.params] != params or [str(r) for r in kind.results] != results:
        raise _Refused("abi_error", f"export {name!r} must have type ({', '.join(params)}) -> {results}")
    return item


def _call_guest(
    store: wasmtime.Store,
    instance: wasmtime.Instance,
    entrypoint: str,
    data: bytes,
    max_output: int,
) -> tuple[bytes, wasmtime.Memory]:
    exports = instance.exports(store)
    memory = exports.get("memory") if hasattr(exports, "get") else None
    if not isinstance(memory, wasmtime.Memory):
        raise _Refused("abi_error", "missing export 'memory'")
    alloc = _func(exports, store, "alloc", ["i32"], ["i32"])
    entry = _func(exports, store, entrypoint, ["i32", "i32"], ["i64"])
    ptr = alloc(store, len(data)) & 0xFFFFFFFF
    if ptr == 0 or ptr + len(data) > memory.data_len(store):
        raise _Refused("abi_error", f"alloc({len(data)}) returned {ptr}, outside usable memory")
    memory.write(store, data, ptr)
    out_ptr, out_len = abi.unpack_pointer(entry(store, ptr, len(data)))
    if out_len > max_output:
        raise _Refused("abi_error", f"output of {out_len} bytes exceeds max_output_bytes {max_output}")
    if out_ptr + out_len > memory.data_len(store):
        raise _Refused("abi_error", f"output range {out_ptr}+{out_len} is outside guest memory")
    return bytes(memory.read(store, out_ptr, out_ptr + out_len)), memory


class Sandbox:
    """One engine, its module cache and a linker with the ABI v1 host functions."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.engine = Engine()
        self.cache = ModuleCache(self.engine.wasm, engine_fingerprint(), cache_dir)
        self.linker = wasmtime.Linker(self.engine.wasm)
        host.define_host(self.linker)
        self.bare_linker = wasmtime.Linker(self.engine.wasm)
        self._pre: OrderedDict[tuple[int, str], wasmtime.InstancePre] = OrderedDict()
        self._validated: set[tuple[str, int, bool]] = set()

    def _validate(self, module: bytes, sha: str, max_memory: int, *, challenge: bool) -> None:
        """Static validation, remembered per (module, memory cap, role) once it passed."""
        key = (sha, max_memory, challenge)
        if key in self._validated:
            return
        validate(
            module,
            max_bytes=MAX_CHALLENGE_MODULE_BYTES if challenge else MAX_SUBMISSION_MODULE_BYTES,
            max_memory_bytes=max_memory,
            allowed_imports=HOST_IMPORTS if challenge else frozenset(),
            submission=not challenge,
        )
        if len(self._validated) > 1024:
            self._validated.clear()
        self._validated.add(key)

    def close(self) -> None:
        self.engine.close()

    def _instance_pre(
        self, linker: wasmtime.Linker, sha: str, data: bytes, *, persist: bool = True
    ) -> wasmtime.InstancePre:
        key = (id(linker), sha)
        pre = self._pre.get(key)
        if pre is None:
            pre = linker.instantiate_pre(self.cache.get(sha, data, persist=persist))
            self._pre[key] = pre
            if len(self._pre) > 64:
                self._pre.popitem(last=False)
        return pre

    def _store(self, fuel: int, memory_bytes: int, wall_ms: int) -> wasmtime.Store:
        store = wasmtime.Store(self.engine.wasm)
        store.set_limits(
            memory_size=memory_bytes,
            table_elements=MAX_TABLE_ELEMENTS,
            instances=1,
            tables=1,
            memories=1,
        )
        store.set_fuel(fuel)
        store.set_epoch_deadline(self.engine.deadline_ticks(max(1, wall_ms)))
        return store

    def evaluate(
        self,
        module: bytes,
        module_sha256: str,
        entrypoint: str,
        data: bytes,
        limits: ResourcePolicy,
        seed: bytes,
        nested: tuple[bytes, ...] = (),
    ) -> RunResult:
        """Run ``entrypoint`` on ``data`` (an encoded ABI v1 input) under ``limits``.

        ``nested`` are submission modules the challenge will likely pass to
        ``submission_run``: they are validated and compiled before the clock starts.
        """
        for submission in nested:
            self._prepare_nested(submission, hashlib.sha256(submission).hexdigest())
        clock = _Clock(limits.wall_ms)
        ctx = host.HostContext(
            seed=seed,
            nested_fuel_budget=limits.fuel,
            run_nested=lambda m, d, f: self._run_nested(m, d, f, clock),
        )
        store: wasmtime.Store | None = None
        instance: wasmtime.Instance | None = None
        memory: wasmtime.Memory | None = None
        output: bytes | None = None
        host.set_current(ctx)
        try:
            if len(data) > limits.max_input_bytes:
                raise _Refused("abi_error", f"input of {len(data)} bytes exceeds max_input_bytes")
            if hashlib.sha256(module).hexdigest() != module_sha256:
                raise _Refused("abi_error", f"module bytes do not hash to {module_sha256}")
            with self.engine.paused(), clock.paused():
                self._validate(module, module_sha256, limits.memory_bytes, challenge=True)
                pre = self._instance_pre(self.linker, module_sha256, module)
            store = self._store(limits.fuel, limits.memory_bytes, limits.wall_ms)
            instance = pre.instantiate(store)
            output, memory = _call_guest(store, instance, entrypoint, data, limits.max_output_bytes)
            result = abi.decode_output(output)
            outcome, message = ("ok" if result.valid else "invalid"), result.message
        except GUEST_FAILURES as exc:  # what guest code can cause is an outcome, not a crash
            outcome, message = _outcome(exc)
            result = None
        finally:
            host.set_current(None)
        fuel_used = limits.fuel - store.get_fuel() if store is not None else 0
        peak = 0
        if store is not None:
            memory = memory or _instance_memory(store, instance)
            peak = memory.data_len(store) if memory is not None else 0
        near_cap = limits.memory_bytes - max(16 * PAGE, limits.memory_bytes // 16)
        if outcome not in ("ok", "invalid", "timeout", "out_of_fuel") and peak > near_cap:
            outcome, message = (
                "memory_limit",
                f"memory reached the cap of {limits.memory_bytes} bytes ({message})",
            )
        return RunResult(
            outcome=outcome,
            message=message,
            fuel_used=fuel_used,
            wall_ms=clock.elapsed_ms(),
            peak_memory=peak,
            output=output if outcome in ("ok", "invalid") else None,
            result=result,
            host_calls=ctx.counters(),
            logs=ctx.logs,
        )

    def _prepare_nested(self, module: bytes, sha: str) -> wasmtime.InstancePre | None:
        """Validated and compiled (in memory only), or None when the module is refused."""
        try:
            self._validate(module, sha, host.NESTED_MEMORY_CAP, challenge=False)
            return self._instance_pre(self.bare_linker, sha, module, persist=False)
        except (ModuleRefused, wasmtime.WasmtimeError):
            return None

    def _run_nested(self, module: bytes, data: bytes, fuel: int, clock: _Clock) -> host.NestedResult:
        sha = hashlib.sha256(module).hexdigest()
        with self.engine.paused(), clock.paused():
            pre = self._prepare_nested(module, sha)
        if pre is None:
            return host.NestedResult(host.RUN_INVALID_MODULE, b"", 0)
        remaining_ms = int((clock.deadline - time.perf_counter()) * 1000)
        if remaining_ms <= 0:
            raise host.HostTrap("timeout", "wall-clock budget exhausted in submission_run")
        store = self._store(fuel, host.NESTED_MEMORY_CAP, remaining_ms)
        try:
            instance = pre.instantiate(store)
            output, _ = _call_guest(store, instance, "run", data, host.NESTED_OUTPUT_CAP)
            status = host.RUN_OK
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.INTERRUPT:
                raise host.HostTrap("timeout", "wall-clock budget exhausted in submission_run") from None
            output = b""
            status = host.RUN_OUT_OF_FUEL if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL else host.RUN_TRAP
        except _Refused:
            output, status = b"", host.RUN_BAD_OUTPUT
        except wasmtime.WasmtimeError:
            output, status = b"", host.RUN_MEMORY
        return host.NestedResult(status, output, fuel - store.get_fuel())


def _instance_memory(store: wasmtime.Store, instance: wasmtime.Instance | None) -> wasmtime.Memory | None:
    if instance is None:
        return None
    item = instance.exports(store).get("memory")
    return item if isinstance(item, wasmtime.Memory) else None
