"""Static validation of a module's shape, before wasmtime ever compiles it.

A hostile module is refused by reading its section headers: size, imports, counts of
types, functions, parameters, locals, tables and memories, and the initial memory. The
limits are published in docs/challenge-abi.md. Submission modules (run nested through
``submission_run``) also get caps on each function body, on the total code size and on
block nesting depth, found by walking the opcodes: a "compile bomb" (thousands of nested
blocks) takes seconds to compile, and compilation cannot be interrupted. Other
instruction-level checks are left to wasmtime's validator under our engine configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
PAGE = 65_536
# Submission modules only: compile time must stay small and bounded, because wasmtime's
# compiler cannot be interrupted. The body walk that checks nesting depth is linear.
MAX_SUBMISSION_FUNCTION_BYTES = 64 * 1024
MAX_SUBMISSION_CODE_BYTES = 256 * 1024
MAX_SUBMISSION_NESTING = 256

HOST_NAMESPACE = "platform"
HOST_IMPORTS = frozenset({"log", "seed", "submission_run"})

_VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x70: "funcref", 0x6F: "externref"}


class ModuleRefused(Exception):
    """The module's shape is outside the published limits."""

    def __init__(self, message: str, outcome: str = "abi_error") -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class ModuleShape:
    imports: list[tuple[str, str]] = field(default_factory=list)
    exports: dict[str, int] = field(default_factory=dict)
    functions: int = 0
    initial_memory: int = 0
    has_start: bool = False


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ModuleRefused("malformed module: unexpected end of section")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uleb(self, bits: int = 32) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift >= bits + 7:
                raise ModuleRefused("malformed module: LEB128 integer too long")
        if result >= 1 << bits:
            raise ModuleRefused("malformed module: LEB128 integer out of range")
        return result

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise ModuleRefused("malformed module: length runs past the section")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def name(self) -> str:
        try:
            return self.take(self.uleb()).decode()
        except UnicodeDecodeError:
            raise ModuleRefused("malformed module: a name is not UTF-8") from None

    def count(self, what: str, limit: int) -> int:
        n = self.uleb()
        if n > limit:
            raise ModuleRefused(f"{n} {what} exceed the limit of {limit}")
        return n

    def valtype(self) -> str:
        code = self.byte()
        if code == 0x7B:
            raise ModuleRefused("v128 (SIMD) values are not allowed")
        if code not in _VALTYPES:
            raise ModuleRefused(f"value type 0x{code:02x} is not allowed")
        return _VALTYPES[code]

    def limits(self, what: str) -> tuple[int, int | None]:
        flags = self.byte()
        if flags & 0x02:
            raise ModuleRefused(f"shared {what} is not allowed (threads are off)")
        if flags & ~0x01:
            raise ModuleRefused(f"{what} limits flag 0x{flags:02x} is not allowed (memory64, custom pages)")
        low = self.uleb()
        high = self.uleb() if flags & 0x01 else None
        return low, high


def validate(
    data: bytes,
    *,
    max_bytes: int,
    max_memory_bytes: int,
    allowed_imports: frozenset[str],
    submission: bool = False,
) -> ModuleShape:
    """Check ``data`` against the limits; ``allowed_imports`` are names in the host namespace.

    ``submission`` adds the code-size and nesting limits of nested submission modules.
    """
    if len(data) > max_bytes:
        raise ModuleRefused(f"module of {len(data)} bytes exceeds the limit of {max_bytes}")
    if data[:4] != b"\0asm":
        raise ModuleRefused("malformed module: no \\0asm magic")
    if data[4:8] != b"\x01\0\0\0":
        raise ModuleRefused("malformed module: not a core wasm version 1 module")
    shape = ModuleShape()
    memories = tables = 0
    types: list[int] = []
    reader = _Reader(data, 8)
    while reader.pos < len(data):
        section = reader.byte()
        size = reader.uleb()
        body = _Reader(data, reader.pos, reader.pos + size)
        if body.end > len(data):
            raise ModuleRefused(f"malformed module: section {section} runs past the end")
        reader.pos = body.end
        if section == 1:
            for _ in range(body.count("types", MAX_TYPES)):
                if body.byte() != 0x60:
                    raise ModuleRefused("only function types are allowed (no GC types)")
                params = body.count("parameters", MAX_PARAMS)
                for _ in range(params):
                    body.valtype()
                for _ in range(body.count("results", MAX_RESULTS)):
                    body.valtype()
                types.append(params)
        elif section == 2:
            for _ in range(body.count("imports", 64)):
                module, name = body.name(), body.name()
                kind = body.byte()
                if kind != 0:
                    raise ModuleRefused(f"import {module}.{name}: only functions may be imported")
                body.uleb()
                if module != HOST_NAMESPACE or name not in allowed_imports:
                    raise ModuleRefused(f"import {module}.{name} is not in the host whitelist")
                shape.imports.append((module, name))
        elif section == 3:
            shape.functions = body.count("functions", MAX_FUNCTIONS)
            for _ in range(shape.functions):
                if body.uleb() >= len(types):
                    raise ModuleRefused("malformed module: function type index out of range")
        elif section == 4:
            tables = body.count("tables", MAX_TABLES)
            for _ in range(tables):
                body.valtype()
                low, _high = body.limits("table")
                if low > MAX_TABLE_ELEMENTS:
                    raise ModuleRefused(f"table of {low} elements exceeds {MAX_TABLE_ELEMENTS}")
        elif section == 5:
            memories = body.count("memories", MAX_MEMORIES)
            for _ in range(memories):
                low, _high = body.limits("memory")
                shape.initial_memory = low * PAGE
                if shape.initial_memory > max_memory_bytes:
                    raise ModuleRefused(
                        f"initial memory of {shape.initial_memory} bytes exceeds the cap of {max_memory_bytes}",
                        outcome="memory_limit",
                    )
        elif section == 6:
            body.count("globals", MAX_GLOBALS)
        elif section == 7:
            for _ in range(body.count("exports", MAX_EXPORTS)):
                name = body.name()
                shape.exports[name] = body.byte()
                body.uleb()
        elif section == 8:
            shape.has_start = True
        elif section == 10:
            if submission and size > MAX_SUBMISSION_CODE_BYTES:
                raise ModuleRefused(
                    f"code section of {size} bytes exceeds the limit of {MAX_SUBMISSION_CODE_BYTES}"
                )
            for index in range(body.count("function bodies", MAX_FUNCTIONS)):
                func_size = body.uleb()
                if submission and func_size > MAX_SUBMISSION_FUNCTION_BYTES:
                    raise ModuleRefused(
                        f"function {index} body of {func_size} bytes exceeds the limit of "
                        f"{MAX_SUBMISSION_FUNCTION_BYTES}"
                    )
                func = _Reader(data, body.pos, body.pos + func_size)
                body.take(func_size)
                locals_total = 0
                for _ in range(func.count("local groups", MAX_LOCALS)):
                    locals_total += func.uleb()
                    func.valtype()
                    if locals_total > MAX_LOCALS:
                        raise ModuleRefused(f"function {index} declares more than {MAX_LOCALS} locals")
                if submission:
                    _check_nesting(func, index)
        elif section > 12:
            raise ModuleRefused(f"section {section} is not allowed (exceptions, tags)")
    return shape


# Immediates of every opcode our engine accepts (MVP, sign extension, multi-value,
# bulk memory, reference types): "u" an unsigned LEB, "s" a signed LEB, "b" one byte,
# "m" a memarg (two LEBs), a digit that many raw bytes.
_IMMEDIATES: dict[int, str] = {
    **dict.fromkeys([0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1], ""),
    **dict.fromkeys(range(0x45, 0xC5), ""),
    **dict.fromkeys([0x0C, 0x0D, 0x10, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2], "u"),
    **dict.fromkeys(range(0x28, 0x3F), "m"),
    0x11: "uu",
    0x3F: "b",
    0x40: "b",
    0x41: "s",
    0x42: "s",
    0x43: "4",
    0x44: "8",
    0xD0: "b",
}
_FC_IMMEDIATES: dict[int, str] = {
    **dict.fromkeys(range(8), ""),
    8: "ub",
    9: "u",
    10: "bb",
    11: "b",
    12: "uu",
    13: "u",
    14: "uu",
    15: "u",
    16: "u",
    17: "u",
}
_BLOCKS = frozenset({0x02, 0x03, 0x04})
_SHORT_BLOCKTYPES = frozenset({0x40, *_VALTYPES})


def _skip_leb(func: _Reader) -> None:
    for _ in range(10):
        if not func.byte() & 0x80:
            return
    raise ModuleRefused("malformed module: LEB128 integer too long")


def _check_nesting(func: _Reader, index: int) -> None:
    """Walk one function body's opcodes; refuse nesting deeper than the submission limit."""
    depth = 1
    while depth:
        op = func.byte()
        if op in _BLOCKS:
            depth += 1
            if depth > MAX_SUBMISSION_NESTING:
                raise ModuleRefused(
                    f"function {index} nests blocks deeper than the limit of {MAX_SUBMISSION_NESTING}"
                )
            if func.byte() not in _SHORT_BLOCKTYPES:  # a type index (s33)
                func.pos -= 1
                _skip_leb(func)
            continue
        if op == 0x0B:
            depth -= 1
            continue
        if op == 0x0E:  # br_table: a vector of labels and a default
            for _ in range(func.uleb() + 1):
                _skip_leb(func)
            continue
        if op == 0x1C:  # typed select
            for _ in range(func.uleb()):
                func.valtype()
            continue
        if op == 0xFC:
            sub = func.uleb()
            immediates = _FC_IMMEDIATES.get(sub)
            if immediates is None:
                raise ModuleRefused(f"function {index}: instruction 0xfc {sub} is not allowed")
        else:
            immediates = _IMMEDIATES.get(op)
            if immediates is None:
                what = {0xFD: "SIMD", 0xFE: "atomic"}.get(op, f"0x{op:02x}")
                raise ModuleRefused(f"function {index}: {what} instructions are not allowed")
        for kind in immediates:
            if kind in "us":
                _skip_leb(func)
            elif kind == "m":
                _skip_leb(func)
                _skip_leb(func)
            elif kind == "b":
                func.byte()
            else:
                func.take(int(kind))
    if func.pos != func.end:
        raise ModuleRefused(f"malformed module: function {index} continues after its final end")
