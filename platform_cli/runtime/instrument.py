"""A call-depth limit that does not depend on the machine: modules are instrumented on load.

Native stack frames depend on the compiler's choices (CPU features, register allocation,
wasmtime version), so a byte limit on the native stack (``max_wasm_stack``) traps at
different depths on different machines. Like Substrate's ``wasm-instrument`` stack-height
limiter, every function is rewritten to charge its frame to a counter in a new global
on entry and to give it back on every exit:

    global.get $depth  i32.const COST  i32.add  global.set $depth
    global.get $depth  i32.const LIMIT i32.gt_u  if  call $overflow  end
    block (result ...)   <the original body>   end
    global.get $depth  i32.const COST  i32.sub  global.set $depth

``return`` gets the same epilogue in front of it; a branch to the function's own label
now leaves the wrapping block, which has the function's results. ``$overflow`` is one new
function (appended, so no index moves) that executes ``unreachable``: a trap whose top
frame is ``$overflow`` is a stack overflow. A frame's cost, in stack units, is
``params + locals + deepest operand stack + FRAME_UNITS``, all read from the module's
bytes: the same on every machine. The added instructions consume fuel like any other
(12 units per call), so the limit is also paid for in fuel terms.
"""

from __future__ import annotations

from platform_cli.runtime.validate import ModuleShape
from platform_cli.runtime.wasmbin import Body, FuncType, Reader, sleb, uleb

VERSION = 1
STACK_LIMIT = 65_536
"""Stack units one instance may hold at once (see docs/challenge-abi.md)."""
FRAME_UNITS = 4
"""Per frame: return address, frame pointer, and the two values the epilogue pushes."""

# The position of each section id in the order the binary format requires.
_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}
_NEW_GLOBAL = b"\x7f\x01\x41\x00\x0b"  # (global (mut i32) (i32.const 0))
_OVERFLOW_BODY = b"\x03\x00\x00\x0b"  # no locals; unreachable; end


def frame_units(body: Body) -> int:
    return body.params + body.locals + body.max_height + FRAME_UNITS


def overflow_index(shape: ModuleShape) -> int | None:
    """The index of ``$overflow`` in the instrumented module (None: no function to limit)."""
    return len(shape.function_types) if shape.bodies else None


def instrument(data: bytes, shape: ModuleShape) -> bytes:
    """The module with the call-depth limit; ``shape`` is what validation read from it."""
    if not shape.bodies:
        return data
    types = list(shape.types)

    def type_index(kind: FuncType) -> int:
        if kind not in types:
            types.append(kind)
        return types.index(kind)

    empty = type_index(FuncType(b"", b""))
    imported = len(shape.imports)
    block_types = []
    for body in shape.bodies:
        results = shape.types[shape.function_types[imported + body.index]].results
        if len(results) == 0:
            block_types.append(b"\x40")
        elif len(results) == 1:
            block_types.append(results)
        else:
            block_types.append(sleb(type_index(FuncType(b"", results))))
    depth = uleb(shape.globals)
    overflow = uleb(len(shape.function_types))
    code = [
        _rewrite(data, body, bt, depth, overflow) for body, bt in zip(shape.bodies, block_types, strict=True)
    ]
    code.append(_OVERFLOW_BODY)
    payloads = {
        1: _vector(
            [b"\x60" + uleb(len(k.params)) + k.params + uleb(len(k.results)) + k.results for k in types]
        ),
        3: _vector([uleb(i) for i in [*shape.function_types[imported:], empty]]),
        10: _vector(code),
    }
    out = [data[:8]]
    has_globals = any(section == 6 for section, _, _ in shape.sections)
    for section, start, end in shape.sections:
        if not has_globals and _ORDER.get(section, 0) > _ORDER[6]:
            out.append(_section(6, _vector([_NEW_GLOBAL])))
            has_globals = True
        if section == 6:
            out.append(_section(6, _append_global(data, start, end)))
        elif section in payloads:
            out.append(_section(section, payloads[section]))
        else:
            out.append(data[start:end])
    return b"".join(out)


def _vector(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def _section(section: int, payload: bytes) -> bytes:
    return bytes([section]) + uleb(len(payload)) + payload


def _append_global(data: bytes, start: int, end: int) -> bytes:
    reader = Reader(data, start + 1, end)
    reader.uleb()  # the section size
    count = reader.uleb()
    return uleb(count + 1) + data[reader.pos : end] + _NEW_GLOBAL


def _rewrite(data: bytes, body: Body, block_type: bytes, depth: bytes, overflow: bytes) -> bytes:
    cost = sleb(frame_units(body))
    enter = (
        b"\x23" + depth + b"\x41" + cost + b"\x6a\x24" + depth
        + b"\x23" + depth + b"\x41" + sleb(STACK_LIMIT) + b"\x4b\x04\x40\x10" + overflow + b"\x0b"
    )  # fmt: skip
    leave = b"\x23" + depth + b"\x41" + cost + b"\x6b\x24" + depth
    reader = Reader(data, body.start, body.end)
    reader.uleb()  # the body's size
    parts = [data[reader.pos : body.code], enter, b"\x02", block_type]
    at = body.code
    for offset in body.returns:
        parts += [data[at:offset], leave]
        at = offset
    parts += [data[at : body.end - 1], b"\x0b", leave, b"\x0b"]
    rewritten = b"".join(parts)
    return uleb(len(rewritten)) + rewritten
