"""Reading the WebAssembly binary format: LEB128 integers, sections, and one pass over
each function body.

:func:`scan_body` walks a body's instructions once and returns what the static limits,
the compile-cost estimate and the call-depth instrumentation need: counts of the
instructions that make compilation expensive, the deepest block nesting, the deepest
operand stack, and where the ``return`` instructions are. It only accepts the
instructions our engine enables (MVP, sign extension, non-trapping conversions, bulk
memory, reference types, multi-value). Anything it cannot read is refused with
:class:`ModuleRefused`; wasmtime's validator still checks types afterwards, so the walk
only has to be exact about instruction boundaries, and an upper bound on stack heights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_TABLE_TARGETS = 65_520  # wasmtime's own limit on the labels of one br_table
VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x70: "funcref", 0x6F: "externref"}


class ModuleRefused(Exception):
    """The module's shape is outside the published limits."""

    def __init__(self, message: str, outcome: str = "abi_error") -> None:
        super().__init__(message)
        self.outcome = outcome


def uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


class Reader:
    """A cursor over ``data[pos:end]`` that refuses whatever runs past ``end``."""

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

    def valtype(self) -> int:
        code = self.byte()
        if code == 0x7B:
            raise ModuleRefused("v128 (SIMD) values are not allowed")
        if code not in VALTYPES:
            raise ModuleRefused(f"value type 0x{code:02x} is not allowed")
        return code

    def limits(self, what: str) -> tuple[int, int | None]:
        flags = self.byte()
        if flags & 0x02:
            raise ModuleRefused(f"shared {what} is not allowed (threads are off)")
        if flags & ~0x01:
            raise ModuleRefused(f"{what} limits flag 0x{flags:02x} is not allowed (memory64, custom pages)")
        low = self.uleb()
        high = self.uleb() if flags & 0x01 else None
        return low, high


@dataclass(frozen=True)
class FuncType:
    params: bytes
    results: bytes


@dataclass
class Body:
    """One function body: where it is, and what one walk over it found."""

    index: int
    start: int  # the body's size field
    code: int  # the first instruction, after the local declarations
    end: int  # just past the final `end`
    params: int
    locals: int
    max_height: int = 0
    max_depth: int = 0
    instructions: int = 0
    loops: int = 0
    ifs: int = 0
    branches: int = 0  # br, br_if, br_table
    calls: int = 0
    indirect_calls: int = 0
    table_targets: int = 0
    returns: list[int] = field(default_factory=list)

    @property
    def variables(self) -> int:
        return self.params + self.locals

    @property
    def control(self) -> int:
        """What splits the function into blocks that Cranelift must join up."""
        return self.loops + self.ifs + self.branches + self.indirect_calls


# Immediates: "" none, "u" one LEB, "uu" two LEBs (a memarg, or two indices), "4"/"8" raw
# bytes. The stack effect is (values popped, values pushed). Control instructions, calls
# and typed select are handled where they are walked.
_PLAIN: dict[int, tuple[str, int, int]] = {
    0x01: ("", 0, 0),
    0x1A: ("", 1, 0),
    0x1B: ("", 3, 1),
    0x20: ("u", 0, 1),
    0x21: ("u", 1, 0),
    0x22: ("u", 1, 1),
    0x23: ("u", 0, 1),
    0x24: ("u", 1, 0),
    0x25: ("u", 1, 1),
    0x26: ("u", 2, 0),
    **dict.fromkeys(range(0x28, 0x36), ("uu", 1, 1)),
    **dict.fromkeys(range(0x36, 0x3F), ("uu", 2, 0)),
    0x3F: ("u", 0, 1),
    0x40: ("u", 1, 1),
    0x41: ("u", 0, 1),  # a signed LEB: skipped the same way
    0x42: ("u", 0, 1),
    0x43: ("4", 0, 1),
    0x44: ("8", 0, 1),
    0x45: ("", 1, 1),
    **dict.fromkeys(range(0x46, 0x50), ("", 2, 1)),
    0x50: ("", 1, 1),
    **dict.fromkeys(range(0x51, 0x67), ("", 2, 1)),
    **dict.fromkeys(range(0x67, 0x6A), ("", 1, 1)),
    **dict.fromkeys(range(0x6A, 0x79), ("", 2, 1)),
    **dict.fromkeys(range(0x79, 0x7C), ("", 1, 1)),
    **dict.fromkeys(range(0x7C, 0x8B), ("", 2, 1)),
    **dict.fromkeys(range(0x8B, 0x92), ("", 1, 1)),
    **dict.fromkeys(range(0x92, 0x99), ("", 2, 1)),
    **dict.fromkeys(range(0x99, 0xA0), ("", 1, 1)),
    **dict.fromkeys(range(0xA0, 0xA7), ("", 2, 1)),
    **dict.fromkeys(range(0xA7, 0xC5), ("", 1, 1)),
    0xD0: ("u", 0, 1),
    0xD1: ("", 1, 1),
    0xD2: ("u", 0, 1),
}
_PREFIXED: dict[int, tuple[str, int, int]] = {
    **dict.fromkeys(range(8), ("", 1, 1)),
    8: ("uu", 3, 0),
    9: ("u", 0, 0),
    10: ("uu", 3, 0),
    11: ("u", 3, 0),
    12: ("uu", 3, 0),
    13: ("u", 0, 0),
    14: ("uu", 3, 0),
    15: ("u", 2, 1),
    16: ("u", 0, 1),
    17: ("u", 3, 0),
}
_BLOCKS = frozenset({0x02, 0x03, 0x04})
# What an opcode outside the enabled set belongs to, for the refusal message.
_FORBIDDEN = {
    0xFD: "SIMD",
    0xFE: "atomic (threads)",
    0xFB: "GC",
    0x12: "tail call",
    0x13: "tail call",
    0x14: "typed function reference",
    0x15: "tail call",
    **dict.fromkeys((0x06, 0x07, 0x08, 0x09, 0x0A, 0x18, 0x19, 0x1F), "exception handling"),
    **dict.fromkeys(range(0xD3, 0xD7), "typed function reference"),
}


def block_type(reader: Reader, types: list[FuncType]) -> tuple[int, int]:
    """(params, results) of a block type: empty, one value type, or a type index."""
    code = reader.data[reader.pos] if reader.pos < reader.end else -1
    if code == 0x40:
        reader.pos += 1
        return 0, 0
    if code in VALTYPES:
        reader.pos += 1
        return 0, 1
    if 0x40 <= code < 0x80:  # another one-byte (negative) s33: a value type we do not allow
        raise ModuleRefused(f"block type 0x{code:02x} is not allowed")
    index = reader.uleb(33)  # s33: a non-negative type index encodes like an unsigned LEB
    if index >= len(types):
        raise ModuleRefused(f"malformed module: block type index {index} out of range")
    return len(types[index].params), len(types[index].results)


def scan_body(
    body: Body, data: bytes, types: list[FuncType], functions: list[int], results: int, max_depth: int
) -> None:
    """Walk ``body``'s instructions, filling in its counts, heights and ``return`` offsets.

    ``functions`` are the type indices of every function (imports first); ``results`` is
    how many values the function returns; more than ``max_depth`` open blocks (the
    function's own included) are refused. After an instruction that never falls through
    (``unreachable``, ``br``, ``br_table``, ``return``) the stack is reset to its block's
    base: the heights are an upper bound, which is all they are used for.
    """
    reader = Reader(data, body.code, body.end)
    plain = _PLAIN
    height = peak = 0
    # One frame per open block: the stack height at entry, its parameters, its results.
    frames: list[tuple[int, int, int]] = [(0, 0, results)]
    while frames:
        at = reader.pos
        op = reader.byte()
        body.instructions += 1
        entry = plain.get(op)
        if entry is None and op == 0xFC:
            sub = reader.uleb()
            entry = _PREFIXED.get(sub)
            if entry is None:
                raise ModuleRefused(f"function {body.index}: instruction 0xfc {sub} is not allowed")
        if entry is None:
            height = _control(op, at, reader, body, types, functions, frames, height)
            if len(frames) > max_depth:
                raise ModuleRefused(
                    f"function {body.index} nests blocks deeper than the limit of {max_depth}"
                )
            body.max_depth = max(body.max_depth, len(frames))
        else:
            immediates, pops, pushes = entry
            for kind in immediates:
                if kind == "u":
                    while reader.byte() & 0x80:
                        pass
                else:
                    reader.take(int(kind))
            base = frames[-1][0]
            height = (height - pops if height - pops > base else base) + pushes
        if height > peak:
            peak = height
    if reader.pos != body.end:
        raise ModuleRefused(f"malformed module: function {body.index} continues after its final end")
    body.max_height = peak


def _control(
    op: int,
    at: int,
    reader: Reader,
    body: Body,
    types: list[FuncType],
    functions: list[int],
    frames: list[tuple[int, int, int]],
    height: int,
) -> int:
    """Read one control, call or typed-select instruction; the stack height after it."""
    base, params, ends_with = frames[-1]
    if op in _BLOCKS:
        block_params, block_results = block_type(reader, types)
        start = max(base, height - block_params - (op == 0x04))
        frames.append((start, block_params, block_results))
        body.loops += op == 0x03
        body.ifs += op == 0x04
        return start + block_params
    if op == 0x0B:
        frames.pop()
        return base + ends_with
    if op == 0x05:
        return base + params
    if op in (0x0C, 0x0D):
        reader.uleb()
        body.branches += 1
        return base if op == 0x0C else max(base, height - 1)
    if op == 0x0E:
        count = reader.uleb() + 1
        if count > MAX_TABLE_TARGETS:
            raise ModuleRefused(
                f"function {body.index}: br_table has {count} targets, over the limit of {MAX_TABLE_TARGETS}"
            )
        for _ in range(count):
            reader.uleb()
        body.branches += 1
        body.table_targets += count
        return base
    if op in (0x00, 0x0F):
        if op == 0x0F:
            body.returns.append(at)
        return base
    if op in (0x10, 0x11):
        body.calls += op == 0x10
        body.indirect_calls += op == 0x11
        index = reader.uleb()
        if op == 0x11:
            reader.uleb()
        else:
            index = functions[index] if index < len(functions) else len(types)
        if index >= len(types):
            raise ModuleRefused(f"malformed module: function {body.index} calls outside the module")
        kind = types[index]
        return max(base, height - len(kind.params) - (op == 0x11)) + len(kind.results)
    if op == 0x1C:
        for _ in range(reader.uleb()):
            reader.valtype()
        return max(base, height - 3) + 1
    raise ModuleRefused(
        f"function {body.index}: {_FORBIDDEN.get(op, f'0x{op:02x}')} instructions are not allowed"
    )
