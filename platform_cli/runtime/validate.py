"""Static validation of a module's shape, before wasmtime ever compiles it.

A hostile module is refused by reading it once: size, imports, counts of types,
functions, parameters, locals, tables and memories, the initial memory, and one walk over
every function body (:func:`platform_cli.runtime.wasmbin.scan_body`) that refuses
instructions the engine does not enable and too deep block nesting. The walk also counts
what makes Cranelift slow, and :mod:`platform_cli.runtime.compile_cost` turns the counts
into an estimate of the compile time: a module whose estimate is over its budget is
refused here, in milliseconds, because wasmtime cannot interrupt a compile. Submission
modules (run nested through ``submission_run``) also get caps on each function body and
on the total code size. The limits are published in docs/challenge-abi.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from platform_cli.runtime import compile_cost
from platform_cli.runtime.wasmbin import Body, FuncType, ModuleRefused, Reader, scan_body

MAX_CHALLENGE_MODULE_BYTES = 8 * 1024 * 1024
MAX_SUBMISSION_MODULE_BYTES = 1024 * 1024
MAX_TYPES = 1_000
MAX_FUNCTIONS = 10_000
MAX_PARAMS = 32
MAX_RESULTS = 8
MAX_LOCALS = 2_000
MAX_TABLES = 1
MAX_TABLE_ELEMENTS = 10_000
MAX_MEMORIES = 1
MAX_GLOBALS = 1_000
MAX_EXPORTS = 1_000
MAX_NESTING = 1_024
PAGE = 65_536
MAX_CHALLENGE_CODE_BYTES = 2 * 1024 * 1024
# Submission modules only: they come from miners, as many as miners care to send.
MAX_SUBMISSION_FUNCTION_BYTES = 64 * 1024
MAX_SUBMISSION_CODE_BYTES = 256 * 1024
MAX_SUBMISSION_NESTING = 256

HOST_NAMESPACE = "platform"
HOST_IMPORTS = frozenset({"log", "seed", "submission_run"})


@dataclass
class ModuleShape:
    imports: list[tuple[str, str]] = field(default_factory=list)
    exports: dict[str, int] = field(default_factory=dict)
    functions: int = 0
    initial_memory: int = 0
    has_start: bool = False
    globals: int = 0
    types: list[FuncType] = field(default_factory=list)
    function_types: list[int] = field(default_factory=list)
    """The type index of every function, imported ones first."""
    sections: list[tuple[int, int, int]] = field(default_factory=list)
    """(section id, offset of its id byte, offset just past its end), in module order."""
    bodies: list[Body] = field(default_factory=list)
    compile_ms: int = 0
    """The estimated compile time (:mod:`platform_cli.runtime.compile_cost`)."""


def validate(
    data: bytes,
    *,
    max_bytes: int,
    max_memory_bytes: int,
    allowed_imports: frozenset[str],
    submission: bool = False,
    max_compile_ms: int | None = None,
) -> ModuleShape:
    """Check ``data`` against the limits; ``allowed_imports`` are names in the host namespace.

    ``submission`` adds the code-size and nesting limits of nested submission modules;
    ``max_compile_ms`` lowers the role's compile-time budget.
    """
    if len(data) > max_bytes:
        raise ModuleRefused(f"module of {len(data)} bytes exceeds the limit of {max_bytes}")
    if data[:4] != b"\0asm":
        raise ModuleRefused("malformed module: no \\0asm magic")
    if data[4:8] != b"\x01\0\0\0":
        raise ModuleRefused("malformed module: not a core wasm version 1 module")
    shape = ModuleShape()
    reader = Reader(data, 8)
    while reader.pos < len(data):
        at = reader.pos
        section = reader.byte()
        size = reader.uleb()
        body = Reader(data, reader.pos, reader.pos + size)
        if body.end > len(data):
            raise ModuleRefused(f"malformed module: section {section} runs past the end")
        reader.pos = body.end
        shape.sections.append((section, at, body.end))
        _section(section, body, shape, max_memory_bytes, allowed_imports, submission)
    limit = compile_cost.budget_ms(submission)
    if max_compile_ms is not None:
        limit = min(limit, max_compile_ms)
    shape.compile_ms = compile_cost.estimate_ms(shape.bodies)
    if shape.compile_ms > limit:
        raise ModuleRefused(
            f"compiling this module is estimated at {shape.compile_ms} ms, over the budget of {limit} ms "
            f"({compile_cost.describe(shape.bodies)})"
        )
    return shape


def _section(
    section: int,
    body: Reader,
    shape: ModuleShape,
    max_memory_bytes: int,
    allowed_imports: frozenset[str],
    submission: bool,
) -> None:
    if section == 1:
        for _ in range(body.count("types", MAX_TYPES)):
            if body.byte() != 0x60:
                raise ModuleRefused("only function types are allowed (no GC types)")
            params = bytes(body.valtype() for _ in range(body.count("parameters", MAX_PARAMS)))
            results = bytes(body.valtype() for _ in range(body.count("results", MAX_RESULTS)))
            shape.types.append(FuncType(params, results))
    elif section == 2:
        for _ in range(body.count("imports", 64)):
            module, name = body.name(), body.name()
            if body.byte() != 0:
                raise ModuleRefused(f"import {module}.{name}: only functions may be imported")
            shape.function_types.append(_type_index(body, shape))
            if module != HOST_NAMESPACE or name not in allowed_imports:
                raise ModuleRefused(f"import {module}.{name} is not in the host whitelist")
            shape.imports.append((module, name))
    elif section == 3:
        shape.functions = body.count("functions", MAX_FUNCTIONS)
        for _ in range(shape.functions):
            shape.function_types.append(_type_index(body, shape))
    elif section == 4:
        for _ in range(body.count("tables", MAX_TABLES)):
            body.valtype()
            low, _high = body.limits("table")
            if low > MAX_TABLE_ELEMENTS:
                raise ModuleRefused(f"table of {low} elements exceeds {MAX_TABLE_ELEMENTS}")
    elif section == 5:
        for _ in range(body.count("memories", MAX_MEMORIES)):
            low, _high = body.limits("memory")
            shape.initial_memory = low * PAGE
            if shape.initial_memory > max_memory_bytes:
                raise ModuleRefused(
                    f"initial memory of {shape.initial_memory} bytes exceeds the cap of {max_memory_bytes}",
                    outcome="memory_limit",
                )
    elif section == 6:
        shape.globals = body.count("globals", MAX_GLOBALS)
    elif section == 7:
        for _ in range(body.count("exports", MAX_EXPORTS)):
            name = body.name()
            shape.exports[name] = body.byte()
            body.uleb()
    elif section == 8:
        shape.has_start = True
    elif section == 10:
        _code(body, shape, submission)
    elif section > 12:
        raise ModuleRefused(f"section {section} is not allowed (exceptions, tags)")


def _type_index(body: Reader, shape: ModuleShape) -> int:
    index = body.uleb()
    if index >= len(shape.types):
        raise ModuleRefused("malformed module: function type index out of range")
    return index


def _code(body: Reader, shape: ModuleShape, submission: bool) -> None:
    size = body.end - body.pos
    code_limit = MAX_SUBMISSION_CODE_BYTES if submission else MAX_CHALLENGE_CODE_BYTES
    if size > code_limit:
        raise ModuleRefused(f"code section of {size} bytes exceeds the limit of {code_limit}")
    imported = len(shape.imports)
    count = body.count("function bodies", MAX_FUNCTIONS)
    if count != shape.functions:
        raise ModuleRefused(f"malformed module: {count} function bodies for {shape.functions} functions")
    nesting = MAX_SUBMISSION_NESTING if submission else MAX_NESTING
    for index in range(count):
        start = body.pos
        func_size = body.uleb()
        if submission and func_size > MAX_SUBMISSION_FUNCTION_BYTES:
            raise ModuleRefused(
                f"function {index} body of {func_size} bytes exceeds the limit of {MAX_SUBMISSION_FUNCTION_BYTES}"
            )
        func = Reader(body.data, body.pos, body.pos + func_size)
        body.take(func_size)
        locals_total = 0
        for _ in range(func.count("local groups", MAX_LOCALS)):
            locals_total += func.uleb()
            func.valtype()
            if locals_total > MAX_LOCALS:
                raise ModuleRefused(f"function {index} declares more than {MAX_LOCALS} locals")
        kind = shape.types[shape.function_types[imported + index]]
        found = Body(index, start, func.pos, func.end, len(kind.params), locals_total)
        scan_body(found, body.data, shape.types, shape.function_types, len(kind.results), nesting)
        compile_cost.check_function(found)
        shape.bodies.append(found)
