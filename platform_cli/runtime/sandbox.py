"""One sandboxed evaluation: validate, instrument, compile (cached), instantiate, call.

Per evaluation a fresh ``Store`` gets the challenge's memory cap (and table, instance
limits), its fuel budget and an epoch deadline for its wall-clock budget. Every module is
validated statically (its compile time estimated and bounded), checked by wasmtime's
validator, instrumented with the call-depth limit and compiled. Submission modules
named up front are compiled before the clock starts; any other module a challenge hands
to ``submission_run`` is compiled with the epoch clock paused and charged, by its
estimate, against the evaluation's compile budget. Whatever the module does,
:meth:`Sandbox.evaluate` returns a :class:`RunResult` with one outcome: ``ok``,
``invalid``, ``trap:<code>``, ``out_of_fuel``, ``timeout``, ``memory_limit``,
``abi_error`` or ``failed``. Fuel used and output bytes are deterministic; wall time and
compile time are not.

Wasm frames take up to ``MAX_WASM_STACK`` of native stack twice (the challenge, then a
nested submission) plus the host's frames between them: an evaluation runs on the
calling thread when that is the main thread with a stack limit of at least
``NEEDED_STACK_BYTES``, and otherwise on a thread of the sandbox's own with a stack that
large (handing over costs tens of microseconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from platform_cli.core import abi
from platform_cli.core.challenge import ResourcePolicy
from platform_cli.runtime import compile_cost, host
from platform_cli.runtime.cache import ModuleCache
from platform_cli.runtime.diagnostics import one_line
from platform_cli.runtime.engine import MAX_WASM_STACK, Engine
from platform_cli.runtime.instrument import STACK_LIMIT, instrument, overflow_index
from platform_cli.runtime.validate import (
    HOST_IMPORTS,
    MAX_CHALLENGE_MODULE_BYTES,
    MAX_SUBMISSION_MODULE_BYTES,
    MAX_TABLE_ELEMENTS,
    ModuleRefused,
    ModuleShape,
    validate,
)

PAGE = 65_536
NEEDED_STACK_BYTES = 2 * MAX_WASM_STACK + 4 * 1024 * 1024


class _Refused(Exception):
    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class RunResult:
    outcome: str
    message: str
    fuel_used: int | None
    """None when it cannot be known: a timeout interrupts code that keeps its fuel
    counter in a register, and a killed worker reports nothing."""
    wall_ms: int
    peak_memory: int
    output: bytes | None = None
    result: abi.Result | None = None
    host_calls: dict[str, int] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    compile_ms: int = 0
    """Time spent validating, instrumenting and compiling (not part of ``wall_ms``)."""

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


class _Runner:
    """A thread with a known stack size that runs one call at a time for its caller."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[Any]] | None] = (
            queue.SimpleQueue()
        )
        previous = threading.stack_size(NEEDED_STACK_BYTES)
        try:
            self._thread = threading.Thread(target=self._serve, name="platform-eval", daemon=True)
            self._thread.start()
        finally:
            threading.stack_size(previous)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, reply = job
            try:
                reply.put((True, call()))
            except BaseException as exc:  # handed back to the caller's thread
                reply.put((False, exc))

    def run(self, call: Callable[[], Any]) -> Any:
        reply: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._jobs.put((call, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)


def _stack_is_big_enough() -> bool:
    """The main thread's stack grows up to RLIMIT_STACK; other threads' sizes are unknown."""
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        import resource
    except ImportError:  # not a Unix: the main thread's stack is small (1 MiB on Windows)
        return False
    soft, _hard = resource.getrlimit(resource.RLIMIT_STACK)
    return soft == resource.RLIM_INFINITY or soft >= NEEDED_STACK_BYTES


GUEST_FAILURES = (wasmtime.Trap, wasmtime.WasmtimeError, host.HostTrap, ModuleRefused, _Refused, abi.AbiError)


def _outcome(exc: BaseException, overflow: int | None) -> tuple[str, str]:
    if isinstance(exc, wasmtime.Trap):
        code = exc.trap_code
        lines = [line.strip() for line in (exc.message or "trap").splitlines() if line.strip()]
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return "out_of_fuel", "fuel budget exhausted"
        if code == wasmtime.TrapCode.INTERRUPT:
            return "timeout", "wall-clock budget exhausted"
        if _overflowed(exc, overflow):
            return "trap:stack_overflow", f"call stack over the limit of {STACK_LIMIT} units"
        if code == wasmtime.TrapCode.STACK_OVERFLOW:
            return "failed", "native stack exhausted before the call-depth limit (an engine bound was wrong)"
        return f"trap:{code.name.lower() if code is not None else 'unknown'}", lines[-1]
    if isinstance(exc, host.HostTrap):
        return {"timeout": "timeout", "native_stack": "failed"}.get(exc.code, f"trap:{exc.code}"), str(exc)
    if isinstance(exc, (ModuleRefused, _Refused)):
        return exc.outcome, str(exc)
    if isinstance(exc, abi.AbiError):
        return "abi_error", str(exc)
    text = one_line(exc)
    if "memory" in text and ("limit" in text or "minimum" in text):
        return "memory_limit", text
    return "abi_error", text


def _overflowed(exc: wasmtime.Trap, overflow: int | None) -> bool:
    """The trap is the call-depth limit's: ``unreachable`` in the ``$overflow`` function."""
    if overflow is None or exc.trap_code != wasmtime.TrapCode.UNREACHABLE:
        return False
    frames = exc.frames
    return bool(frames) and frames[0].func_index == overflow


def _func(
    exports: Mapping[str, Any], store: wasmtime.Store, name: str, params: list[str], results: list[str]
) -> wasmtime.Func:
    item = exports.get(name)
    if not isinstance(item, wasmtime.Func):
        raise _Refused("abi_error", f"missing export function {name!r}")
    kind = item.type(store)
    if [str(p) for p in kind.params] != params or [str(r) for r in kind.results] != results:
        raise _Refused(
            "abi_error", f"export {name!r} must have type ({', '.join(params)}) -> ({', '.join(results)})"
        )
    return item


def _call_guest(
    store: wasmtime.Store,
    instance: wasmtime.Instance,
    entrypoint: str,
    data: bytes,
    max_output: int,
) -> tuple[bytes, wasmtime.Memory]:
    exports = instance.exports(store)
    memory = exports.get("memory")
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


@dataclass(frozen=True)
class _Loaded:
    pre: wasmtime.InstancePre
    overflow: int | None


class Sandbox:
    """One engine, its module cache and a linker with the ABI v1 host functions.

    ``isa_flags`` replaces the pinned CPU baseline (to compare engines in tests).
    """

    def __init__(self, cache_dir: Path | None = None, isa_flags: Mapping[str, bool] | None = None) -> None:
        self.engine = Engine(isa_flags)
        self.cache = ModuleCache(self.engine.wasm, self.engine.fingerprint, cache_dir)
        self.linker = wasmtime.Linker(self.engine.wasm)
        host.define_host(self.linker)
        self.bare_linker = wasmtime.Linker(self.engine.wasm)
        self._loaded: OrderedDict[tuple[int, str], _Loaded] = OrderedDict()
        self._shapes: OrderedDict[tuple[str, int, bool], ModuleShape] = OrderedDict()
        self._runner: _Runner | None = None

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self.engine.close()

    def _shape(self, module: bytes, sha: str, max_memory: int, *, challenge: bool) -> ModuleShape:
        """Static validation, remembered per (module, memory cap, role) once it passed."""
        key = (sha, max_memory, challenge)
        shape = self._shapes.get(key)
        if shape is None:
            shape = validate(
                module,
                max_bytes=MAX_CHALLENGE_MODULE_BYTES if challenge else MAX_SUBMISSION_MODULE_BYTES,
                max_memory_bytes=max_memory,
                allowed_imports=HOST_IMPORTS if challenge else frozenset(),
                submission=not challenge,
            )
            self._shapes[key] = shape
            if len(self._shapes) > 256:
                self._shapes.popitem(last=False)
        return shape

    def _load(
        self, linker: wasmtime.Linker, sha: str, data: bytes, shape: ModuleShape, *, persist: bool = True
    ) -> _Loaded:
        key = (id(linker), sha)
        loaded = self._loaded.get(key)
        if loaded is None:

            def source() -> bytes:
                wasmtime.Module.validate(self.engine.wasm, data)  # its errors name the original offsets
                return instrument(data, shape)

            module = self.cache.get(sha, source, persist=persist)
            loaded = _Loaded(linker.instantiate_pre(module), overflow_index(shape))
            self._loaded[key] = loaded
            if len(self._loaded) > 64:
                self._loaded.popitem(last=False)
        return loaded

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
        call = lambda: self._evaluate(module, module_sha256, entrypoint, data, limits, seed, nested)  # noqa: E731
        if _stack_is_big_enough():
            return call()
        if self._runner is None:
            self._runner = _Runner()
        return self._runner.run(call)

    def _evaluate(
        self,
        module: bytes,
        module_sha256: str,
        entrypoint: str,
        data: bytes,
        limits: ResourcePolicy,
        seed: bytes,
        nested: tuple[bytes, ...],
    ) -> RunResult:
        begun = time.perf_counter()
        for submission in nested:
            self._prepare_nested(submission, hashlib.sha256(submission).hexdigest())
        compile_s = time.perf_counter() - begun
        clock = _Clock(limits.wall_ms)
        ctx = host.HostContext(
            seed=seed,
            nested_fuel_budget=limits.fuel,
            compile_budget_ms=compile_cost.nested_budget_ms(limits.wall_ms),
            run_nested=lambda m, d, f: self._run_nested(m, d, f, clock, ctx),
        )
        store: wasmtime.Store | None = None
        instance: wasmtime.Instance | None = None
        memory: wasmtime.Memory | None = None
        output: bytes | None = None
        overflow: int | None = None
        host.set_current(ctx)
        try:
            if len(data) > limits.max_input_bytes:
                raise _Refused("abi_error", f"input of {len(data)} bytes exceeds max_input_bytes")
            if hashlib.sha256(module).hexdigest() != module_sha256:
                raise _Refused("abi_error", f"module bytes do not hash to {module_sha256}")
            with self.engine.paused(), clock.paused():
                shape = self._shape(module, module_sha256, limits.memory_bytes, challenge=True)
                loaded = self._load(self.linker, module_sha256, module, shape)
            overflow = loaded.overflow
            store = self._store(limits.fuel, limits.memory_bytes, limits.wall_ms)
            instance = loaded.pre.instantiate(store)
            output, memory = _call_guest(store, instance, entrypoint, data, limits.max_output_bytes)
            result = abi.decode_output(output)
            outcome, message = ("ok" if result.valid else "invalid"), result.message
        except GUEST_FAILURES as exc:  # what guest code can cause is an outcome, not a crash
            outcome, message = _outcome(exc, overflow)
            result = None
        finally:
            host.set_current(None)
        fuel_used = limits.fuel - store.get_fuel() if store is not None else 0
        peak = 0
        if store is not None:
            memory = memory or _instance_memory(store, instance)
            peak = memory.data_len(store) if memory is not None else 0
        # A failure this close to the cap is blamed on it (a refused memory.grow is what
        # usually precedes it): within a sixteenth of the cap, and never less than a page,
        # so that under a small cap a module's own trap keeps its name.
        near_cap = limits.memory_bytes - max(PAGE, limits.memory_bytes // 16)
        if outcome not in ("ok", "invalid", "timeout", "out_of_fuel", "failed") and peak > near_cap:
            outcome, message = (
                "memory_limit",
                f"memory reached the cap of {limits.memory_bytes} bytes ({message})",
            )
        if outcome in ("timeout", "failed"):
            fuel_used = None
        if outcome == "timeout":
            message += " (the fuel used until the interruption is not observable)"
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
            compile_ms=int((compile_s + clock.excluded) * 1000),
        )

    def _prepare_nested(self, module: bytes, sha: str) -> tuple[ModuleShape, _Loaded] | None:
        """Validated and compiled (in memory only), or None when the module is refused."""
        try:
            shape = self._shape(module, sha, host.NESTED_MEMORY_CAP, challenge=False)
            return shape, self._load(self.bare_linker, sha, module, shape, persist=False)
        except (ModuleRefused, wasmtime.WasmtimeError):
            return None

    def _run_nested(
        self, module: bytes, data: bytes, fuel: int, clock: _Clock, ctx: host.HostContext
    ) -> host.NestedResult:
        sha = hashlib.sha256(module).hexdigest()
        first = ctx.admit_module(sha)
        with self.engine.paused(), clock.paused():
            prepared = self._prepare_nested(module, sha)
        if prepared is None:
            return host.NestedResult(host.RUN_INVALID_MODULE, b"", 0)
        shape, loaded = prepared
        if first:
            ctx.charge_compile(sha, shape.compile_ms)
        remaining_ms = int((clock.deadline - time.perf_counter()) * 1000)
        if remaining_ms <= 0:
            raise host.HostTrap("timeout", "wall-clock budget exhausted in submission_run")
        store = self._store(fuel, host.NESTED_MEMORY_CAP, remaining_ms)
        try:
            instance = loaded.pre.instantiate(store)
            output, _ = _call_guest(store, instance, "run", data, host.NESTED_OUTPUT_CAP)
            status = host.RUN_OK
        except wasmtime.Trap as exc:
            if exc.trap_code == wasmtime.TrapCode.INTERRUPT:
                raise host.HostTrap("timeout", "wall-clock budget exhausted in submission_run") from None
            if exc.trap_code == wasmtime.TrapCode.STACK_OVERFLOW:
                raise host.HostTrap(
                    "native_stack", "native stack exhausted before the call-depth limit in submission_run"
                ) from None
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
