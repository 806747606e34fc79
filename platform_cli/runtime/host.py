"""Host functions of ABI v1, namespace ``platform``: ``log``, ``seed``, ``submission_run``.

The linker is built once per sandbox (so ``InstancePre`` can be reused); the functions
find the running evaluation through a thread-local :class:`HostContext`. A host function
that must stop the guest raises :class:`HostTrap`, which the sandbox turns into the
outcome ``trap:<code>`` (or ``timeout``).
"""

from __future__ import annotations

import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import wasmtime

MAX_LOG_CALLS = 64
MAX_LOG_BYTES = 8 * 1024
MAX_NESTED_CALLS = 256
MAX_NESTED_MODULES = 4
NESTED_MEMORY_CAP = 32 * 1024 * 1024
NESTED_OUTPUT_CAP = 1024 * 1024

# submission_run status codes (returned to the challenge)
RUN_OK = 0
RUN_OUT_OF_FUEL = -1
RUN_TRAP = -2
RUN_INVALID_MODULE = -3
RUN_BAD_OUTPUT = -4
RUN_MEMORY = -5


class HostTrap(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class NestedResult:
    status: int
    output: bytes
    fuel_used: int


@dataclass
class HostContext:
    """One evaluation's host state. Nested modules are charged per distinct module, by
    their compile-time estimate, whether or not a cache spares the compile: what is
    charged depends on the modules' bytes only."""

    seed: bytes
    nested_fuel_budget: int
    compile_budget_ms: int
    run_nested: Callable[[bytes, bytes, int], NestedResult]
    calls: Counter[str] = field(default_factory=Counter)
    logs: list[str] = field(default_factory=list)
    log_bytes: int = 0
    nested_fuel_used: int = 0
    modules: dict[str, int] = field(default_factory=dict)
    """Distinct nested modules by sha256: the compile time charged for each, in ms."""

    def admit_module(self, sha: str) -> bool:
        """True the first time ``sha`` is seen; beyond MAX_NESTED_MODULES distinct, a trap."""
        if sha in self.modules:
            return False
        if len(self.modules) >= MAX_NESTED_MODULES:
            raise HostTrap(
                "nested_modules", f"more than {MAX_NESTED_MODULES} distinct modules in submission_run"
            )
        self.modules[sha] = 0
        return True

    def charge_compile(self, sha: str, estimate_ms: int) -> None:
        charged = sum(self.modules.values())
        if charged + estimate_ms > self.compile_budget_ms:
            raise HostTrap(
                "compile_budget",
                f"compiling the modules of submission_run is estimated at {charged + estimate_ms} ms, "
                f"over the budget of {self.compile_budget_ms} ms",
            )
        self.modules[sha] = estimate_ms

    def counters(self) -> dict[str, int]:
        return {
            **dict(sorted(self.calls.items())),
            "nested_fuel": self.nested_fuel_used,
            "nested_modules": len(self.modules),
            "nested_compile_ms": sum(self.modules.values()),
        }


_current = threading.local()


def set_current(ctx: HostContext | None) -> None:
    _current.ctx = ctx


def _ctx() -> HostContext:
    ctx = getattr(_current, "ctx", None)
    if ctx is None:
        raise HostTrap("no_context", "host function called outside an evaluation")
    return ctx


def _memory(caller: wasmtime.Caller) -> wasmtime.Memory:
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory):
        raise HostTrap("bad_pointer", "the calling module exports no memory")
    return memory


def _read(caller: wasmtime.Caller, ptr: int, length: int) -> bytes:
    memory = _memory(caller)
    ptr &= 0xFFFFFFFF
    length &= 0xFFFFFFFF
    if ptr + length > memory.data_len(caller):
        raise HostTrap("bad_pointer", f"range {ptr}+{length} is outside guest memory")
    return bytes(memory.read(caller, ptr, ptr + length))


def _write(caller: wasmtime.Caller, ptr: int, data: bytes) -> None:
    memory = _memory(caller)
    ptr &= 0xFFFFFFFF
    if ptr + len(data) > memory.data_len(caller):
        raise HostTrap("bad_pointer", f"range {ptr}+{len(data)} is outside guest memory")
    memory.write(caller, data, ptr)


def host_log(caller: wasmtime.Caller, ptr: int, length: int) -> None:
    ctx = _ctx()
    ctx.calls["log"] += 1
    if ctx.calls["log"] > MAX_LOG_CALLS or ctx.log_bytes + (length & 0xFFFFFFFF) > MAX_LOG_BYTES:
        raise HostTrap("log_limit", f"more than {MAX_LOG_CALLS} log calls or {MAX_LOG_BYTES} bytes")
    data = _read(caller, ptr, length)
    ctx.log_bytes += len(data)
    ctx.logs.append(data.decode(errors="replace"))


def host_seed(caller: wasmtime.Caller, ptr: int) -> None:
    ctx = _ctx()
    ctx.calls["seed"] += 1
    _write(caller, ptr, ctx.seed)


def host_submission_run(
    caller: wasmtime.Caller,
    module_ptr: int,
    module_len: int,
    input_ptr: int,
    input_len: int,
    out_ptr: int,
    out_cap: int,
    fuel: int,
    info_ptr: int,
) -> int:
    """Run a miner module nested; writes ``u64 fuel_used, u32 output_len`` at info_ptr."""
    ctx = _ctx()
    ctx.calls["submission_run"] += 1
    if ctx.calls["submission_run"] > MAX_NESTED_CALLS:
        raise HostTrap("nested_limit", f"more than {MAX_NESTED_CALLS} submission_run calls")
    module = _read(caller, module_ptr, module_len)
    data = _read(caller, input_ptr, input_len)
    budget = ctx.nested_fuel_budget - ctx.nested_fuel_used
    if budget <= 0:
        raise HostTrap("nested_budget", "submission_run fuel budget exhausted")
    result = ctx.run_nested(module, data, max(0, min(fuel, budget)))
    ctx.nested_fuel_used += result.fuel_used
    output = result.output
    if result.status == RUN_OK and len(output) > (out_cap & 0xFFFFFFFF):
        result, output = NestedResult(RUN_BAD_OUTPUT, b"", result.fuel_used), b""
    _write(caller, out_ptr, output)
    _write(caller, info_ptr, struct.pack("<QI", result.fuel_used, len(output)))
    return result.status


def define_host(linker: wasmtime.Linker) -> None:
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    functions: list[tuple[str, list[Any], list[Any], Callable[..., Any]]] = [
        ("log", [i32, i32], [], host_log),
        ("seed", [i32], [], host_seed),
        ("submission_run", [i32, i32, i32, i32, i32, i32, i64, i32], [i32], host_submission_run),
    ]
    for name, params, results, func in functions:
        linker.define_func("platform", name, wasmtime.FuncType(params, results), func, access_caller=True)
