"""The static validator's limits, each exactly at its bound and one past it, with the
message an author reads. Modules are built byte by byte here, so that each test names
the one thing it changes."""

from __future__ import annotations

import pytest

from platform_cli.runtime import validate as v
from platform_cli.runtime.validate import ModuleRefused, validate
from platform_cli.runtime.wasmbin import uleb

HEADER = b"\0asm\x01\0\0\0"
EMPTY_TYPE = b"\x60\x00\x00"  # () -> ()
EMPTY_BODY = b"\x02\x00\x0b"  # size 2: no locals, end
CAP = 16 * v.PAGE


def section(number: int, payload: bytes) -> bytes:
    return bytes([number]) + uleb(len(payload)) + payload


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(text: str) -> bytes:
    return uleb(len(text.encode())) + text.encode()


def module(*sections: bytes) -> bytes:
    return HEADER + b"".join(sections)


def functions(bodies: list[bytes], types: list[bytes] | None = None) -> bytes:
    """Type section, function section (all of type 0) and code section for ``bodies``
    (each a full body: size, locals, code)."""
    return (
        section(1, vec(types or [EMPTY_TYPE]))
        + section(3, vec([b"\x00"] * len(bodies)))
        + section(10, vec(bodies))
    )


def body(code: bytes, local_groups: list[tuple[int, int]] = ()) -> bytes:  # type: ignore[assignment]
    inner = vec([uleb(n) + bytes([t]) for n, t in local_groups]) + code + b"\x0b"
    return uleb(len(inner)) + inner


def check(data: bytes, *, submission: bool = False, imports: frozenset[str] = v.HOST_IMPORTS, **kw: int):
    max_bytes = kw.pop("max_bytes", v.MAX_CHALLENGE_MODULE_BYTES)
    max_memory = kw.pop("max_memory_bytes", CAP)
    return validate(
        data,
        max_bytes=max_bytes,
        max_memory_bytes=max_memory,
        allowed_imports=imports,
        submission=submission,
        **kw,
    )


def refused(data: bytes, **kw: object) -> ModuleRefused:
    with pytest.raises(ModuleRefused) as info:
        check(data, **kw)  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------- header and sections


def test_size_limit_is_exact() -> None:
    data = module(functions([EMPTY_BODY]))
    assert check(data, max_bytes=len(data)).functions == 1
    error = refused(data, max_bytes=len(data) - 1)
    assert str(error) == f"module of {len(data)} bytes exceeds the limit of {len(data) - 1}"
    assert error.outcome == "abi_error"


def test_header_is_checked() -> None:
    assert str(refused(b"\0asn\x01\0\0\0")) == "malformed module: no \\0asm magic"
    assert str(refused(b"\0asm\x02\0\0\0")) == "malformed module: not a core wasm version 1 module"
    assert str(refused(b"\0asm\x01\0\0\x01")) == "malformed module: not a core wasm version 1 module"
    assert check(HEADER).functions == 0  # the empty module


def test_a_section_running_past_the_end_is_refused() -> None:
    data = HEADER + b"\x01" + uleb(10) + b"\x01\x60\x00\x00"
    assert str(refused(data)) == "malformed module: section 1 runs past the end"
    exact = HEADER + section(1, vec([EMPTY_TYPE]))
    assert check(exact).types[0].params == b""


def test_sections_are_recorded_in_order() -> None:
    data = module(functions([EMPTY_BODY]))
    shape = check(data)
    assert [s[0] for s in shape.sections] == [1, 3, 10]
    assert shape.sections[0][1] == len(HEADER)
    assert shape.sections[-1][2] == len(data)


@pytest.mark.parametrize("number", [0, 11, 12])
def test_allowed_extra_sections(number: int) -> None:
    payload = name("x") if number == 0 else uleb(0)
    assert check(module(section(number, payload)))


@pytest.mark.parametrize("number", [13, 14, 255])
def test_unknown_sections_are_refused(number: int) -> None:
    error = refused(module(section(number, b"")))
    assert str(error) == f"section {number} is not allowed (exceptions, tags)"


# ---------------------------------------------------------------- types


def test_type_count_limit() -> None:
    assert len(check(module(section(1, vec([EMPTY_TYPE] * v.MAX_TYPES)))).types) == v.MAX_TYPES
    error = refused(module(section(1, vec([EMPTY_TYPE] * (v.MAX_TYPES + 1)))))
    assert str(error) == f"{v.MAX_TYPES + 1} types exceed the limit of {v.MAX_TYPES}"


def test_parameter_and_result_limits() -> None:
    def functype(params: int, results: int) -> bytes:
        return b"\x60" + vec([b"\x7f"] * params) + vec([b"\x7e"] * results)

    shape = check(module(section(1, vec([functype(v.MAX_PARAMS, v.MAX_RESULTS)]))))
    assert shape.types[0].params == b"\x7f" * v.MAX_PARAMS
    assert shape.types[0].results == b"\x7e" * v.MAX_RESULTS
    error = refused(module(section(1, vec([functype(v.MAX_PARAMS + 1, 0)]))))
    assert str(error) == f"{v.MAX_PARAMS + 1} parameters exceed the limit of {v.MAX_PARAMS}"
    error = refused(module(section(1, vec([functype(0, v.MAX_RESULTS + 1)]))))
    assert str(error) == f"{v.MAX_RESULTS + 1} results exceed the limit of {v.MAX_RESULTS}"


def test_only_function_types() -> None:
    error = refused(module(section(1, vec([b"\x5f\x00"]))))
    assert str(error) == "only function types are allowed (no GC types)"


def test_function_type_index_must_exist() -> None:
    data = module(section(1, vec([EMPTY_TYPE])), section(3, vec([b"\x01"])))
    assert str(refused(data)) == "malformed module: function type index out of range"
    data = module(section(3, vec([b"\x00"])))  # no type section at all
    assert str(refused(data)) == "malformed module: function type index out of range"


# ---------------------------------------------------------------- imports


def imports(*entries: tuple[str, str, bytes]) -> bytes:
    return section(1, vec([EMPTY_TYPE])) + section(
        2, vec([name(m) + name(n) + kind for m, n, kind in entries])
    )


def test_whitelisted_imports_are_recorded() -> None:
    shape = check(module(imports(("platform", "log", b"\x00\x00"), ("platform", "seed", b"\x00\x00"))))
    assert shape.imports == [("platform", "log"), ("platform", "seed")]
    assert shape.function_types == [0, 0]


@pytest.mark.parametrize(
    ("module_name", "field", "allowed"),
    [
        ("platform", "submission_run", frozenset({"log", "seed"})),
        ("env", "log", v.HOST_IMPORTS),
        ("wasi_snapshot_preview1", "fd_write", v.HOST_IMPORTS),
        ("platform", "Log", v.HOST_IMPORTS),
    ],
)
def test_imports_outside_the_whitelist_are_refused(
    module_name: str, field: str, allowed: frozenset[str]
) -> None:
    error = refused(module(imports((module_name, field, b"\x00\x00"))), imports=allowed)
    assert str(error) == f"import {module_name}.{field} is not in the host whitelist"


@pytest.mark.parametrize("kind", [b"\x01\x70\x00\x01", b"\x02\x00\x01", b"\x03\x7f\x00"])
def test_only_functions_may_be_imported(kind: bytes) -> None:
    error = refused(module(imports(("platform", "log", kind))))
    assert str(error) == "import platform.log: only functions may be imported"


def test_import_count_limit() -> None:
    entries = [("platform", "log", b"\x00\x00")] * 64
    assert len(check(module(imports(*entries))).imports) == 64
    error = refused(module(imports(*entries, ("platform", "log", b"\x00\x00"))))
    assert str(error) == "65 imports exceed the limit of 64"


# ---------------------------------------------------------------- functions and code


def test_function_count_limit() -> None:
    assert check(module(functions([EMPTY_BODY] * v.MAX_FUNCTIONS))).functions == v.MAX_FUNCTIONS
    error = refused(module(functions([EMPTY_BODY] * (v.MAX_FUNCTIONS + 1))))
    assert str(error) == f"{v.MAX_FUNCTIONS + 1} functions exceed the limit of {v.MAX_FUNCTIONS}"


def test_function_body_count_limit() -> None:
    data = module(section(1, vec([EMPTY_TYPE])), section(10, uleb(v.MAX_FUNCTIONS + 1)))
    error = refused(data)
    assert str(error) == f"{v.MAX_FUNCTIONS + 1} function bodies exceed the limit of {v.MAX_FUNCTIONS}"


def test_bodies_must_match_functions() -> None:
    data = module(
        section(1, vec([EMPTY_TYPE])), section(3, vec([b"\x00", b"\x00"])), section(10, vec([EMPTY_BODY]))
    )
    assert str(refused(data)) == "malformed module: 1 function bodies for 2 functions"


def test_locals_limit_counts_every_group() -> None:
    at_limit = body(b"", [(v.MAX_LOCALS - 1, 0x7F), (1, 0x7E)])
    assert check(module(functions([at_limit]))).bodies[0].locals == v.MAX_LOCALS
    over = body(b"", [(v.MAX_LOCALS, 0x7F), (1, 0x7E)])
    assert str(refused(module(functions([over])))) == f"function 0 declares more than {v.MAX_LOCALS} locals"
    second = body(b"", [(v.MAX_LOCALS + 1, 0x7F)])
    error = refused(module(functions([EMPTY_BODY, second])))
    assert str(error) == f"function 1 declares more than {v.MAX_LOCALS} locals"


def test_local_groups_limit() -> None:
    groups = [(0, 0x7F)] * (v.MAX_LOCALS + 1)
    error = refused(module(functions([body(b"", groups)])))
    assert str(error) == f"{v.MAX_LOCALS + 1} local groups exceed the limit of {v.MAX_LOCALS}"


def test_bodies_are_recorded_with_their_offsets() -> None:
    data = module(functions([EMPTY_BODY, body(b"\x01", [(3, 0x7F)])]))
    shape = check(data)
    first, second = shape.bodies
    assert (first.index, second.index) == (0, 1)
    assert (first.locals, second.locals) == (0, 3)
    assert data[first.start : first.end] == EMPTY_BODY
    assert second.code == second.end - 2  # `nop end` after its locals
    assert shape.compile_ms >= 0


def test_each_body_is_read_with_its_own_type() -> None:
    """Imported functions come first in the index space: a body's type is found after them."""
    types = [EMPTY_TYPE, b"\x60\x02\x7f\x7f\x00", b"\x60\x01\x7e\x00"]
    data = module(
        section(1, vec(types)),
        section(2, vec([name("platform") + name("log") + b"\x00\x00"])),
        section(3, vec([b"\x01", b"\x02"])),
        section(10, vec([EMPTY_BODY, EMPTY_BODY])),
    )
    shape = check(data)
    assert shape.function_types == [0, 1, 2]
    assert [b.params for b in shape.bodies] == [2, 1]


def nested(depth: int) -> bytes:
    return body(b"\x02\x40" * depth + b"\x0b" * depth)


def test_nesting_limit_depends_on_the_role() -> None:
    """The limit counts the function's own block: ``limit - 1`` nested blocks inside it."""
    sub, challenge = v.MAX_SUBMISSION_NESTING, v.MAX_NESTING
    assert check(module(functions([nested(sub - 1)])), submission=True)
    error = refused(module(functions([nested(sub)])), submission=True)
    assert str(error) == f"function 0 nests blocks deeper than the limit of {sub}"
    assert check(module(functions([nested(sub)])))
    assert check(module(functions([nested(challenge - 1)])))
    error = refused(module(functions([nested(challenge)])))
    assert str(error) == f"function 0 nests blocks deeper than the limit of {challenge}"


def big_body(size: int) -> bytes:
    """A body of exactly ``size`` bytes after its size prefix: nops."""
    inner = b"\x00" + b"\x01" * (size - 2) + b"\x0b"
    return uleb(len(inner)) + inner


def test_submission_function_size_limit() -> None:
    limit = v.MAX_SUBMISSION_FUNCTION_BYTES
    plain = validate(
        module(functions([big_body(limit + 1)])),
        max_bytes=v.MAX_CHALLENGE_MODULE_BYTES,
        max_memory_bytes=CAP,
        allowed_imports=v.HOST_IMPORTS,
    )
    assert plain.functions == 1  # the challenge role is the default
    assert check(module(functions([big_body(limit)])), submission=True)
    error = refused(module(functions([EMPTY_BODY, big_body(limit + 1)])), submission=True)
    assert str(error) == f"function 1 body of {limit + 1} bytes exceeds the limit of {limit}"
    assert check(module(functions([big_body(limit + 1)])))  # a challenge has no such cap


def code_of_size(total: int) -> bytes:
    """A code section payload of exactly ``total`` bytes, in bodies under the function cap."""
    chunk = v.MAX_SUBMISSION_FUNCTION_BYTES // 2
    bodies: list[bytes] = []
    while True:
        count_bytes = len(uleb(len(bodies) + 1))
        used = count_bytes + sum(len(b) for b in bodies)
        left = total - used
        if left <= chunk + 3:
            size = left - len(uleb(left))
            size = left - len(uleb(size))
            bodies.append(big_body(size))
            break
        bodies.append(big_body(chunk))
    payload = vec(bodies)
    assert len(payload) == total
    return payload


def code_module(total: int) -> bytes:
    payload = code_of_size(total)
    count = int.from_bytes(payload[:1], "little") if payload[0] < 0x80 else None
    assert count is not None
    return module(section(1, vec([EMPTY_TYPE])), section(3, vec([b"\x00"] * count)), section(10, payload))


@pytest.mark.parametrize(
    ("submission", "limit"), [(True, v.MAX_SUBMISSION_CODE_BYTES), (False, v.MAX_CHALLENGE_CODE_BYTES)]
)
def test_code_section_size_limit(submission: bool, limit: int) -> None:
    budget = {"max_compile_ms": 10**9}
    with pytest.raises(ModuleRefused) as info:  # past the code cap, whatever the compile budget
        check(code_module(limit + 1), submission=submission, **budget)
    assert str(info.value) == f"code section of {limit + 1} bytes exceeds the limit of {limit}"
    try:
        check(code_module(limit), submission=submission, **budget)
    except ModuleRefused as exc:  # at the cap, only the compile estimate may refuse it
        assert "compiling this module is estimated" in str(exc)


# ---------------------------------------------------------------- tables, memories, globals, exports


def test_table_limits() -> None:
    def table(low: int) -> bytes:
        return section(4, vec([b"\x70\x00" + uleb(low)]))

    assert check(module(table(v.MAX_TABLE_ELEMENTS)))
    error = refused(module(table(v.MAX_TABLE_ELEMENTS + 1)))
    assert str(error) == f"table of {v.MAX_TABLE_ELEMENTS + 1} elements exceeds {v.MAX_TABLE_ELEMENTS}"
    error = refused(module(section(4, vec([b"\x70\x00\x01"] * 2))))
    assert str(error) == f"2 tables exceed the limit of {v.MAX_TABLES}"


def test_memory_limits() -> None:
    def memory(pages: int) -> bytes:
        return section(5, vec([b"\x00" + uleb(pages)]))

    shape = check(module(memory(CAP // v.PAGE)))
    assert shape.initial_memory == CAP
    error = refused(module(memory(CAP // v.PAGE + 1)))
    assert str(error) == f"initial memory of {CAP + v.PAGE} bytes exceeds the cap of {CAP}"
    assert error.outcome == "memory_limit"
    error = refused(module(section(5, vec([b"\x00\x01"] * 2))))
    assert str(error) == f"2 memories exceed the limit of {v.MAX_MEMORIES}"
    assert check(module(section(5, vec([b"\x01\x01\x02"])))).initial_memory == v.PAGE


def test_limits_flags_name_what_they_limit() -> None:
    shared = refused(module(section(5, vec([b"\x03\x01\x01"]))))
    assert str(shared) == "shared memory is not allowed (threads are off)"
    wide = refused(module(section(5, vec([b"\x04\x01"]))))
    assert str(wide) == "memory limits flag 0x04 is not allowed (memory64, custom pages)"
    table = refused(module(section(4, vec([b"\x70\x04\x01"]))))
    assert str(table) == "table limits flag 0x04 is not allowed (memory64, custom pages)"
    shared_table = refused(module(section(4, vec([b"\x70\x03\x01\x01"]))))
    assert str(shared_table) == "shared table is not allowed (threads are off)"


def test_global_and_export_limits() -> None:
    globals_ok = module(section(6, uleb(v.MAX_GLOBALS)))
    assert check(globals_ok).globals == v.MAX_GLOBALS
    error = refused(module(section(6, uleb(v.MAX_GLOBALS + 1))))
    assert str(error) == f"{v.MAX_GLOBALS + 1} globals exceed the limit of {v.MAX_GLOBALS}"
    exports = [name(f"e{i}") + b"\x00" + uleb(i) for i in range(v.MAX_EXPORTS)]
    assert len(check(module(section(7, vec(exports)))).exports) == v.MAX_EXPORTS
    error = refused(module(section(7, vec([*exports, name("one-more") + b"\x00\x00"]))))
    assert str(error) == f"{v.MAX_EXPORTS + 1} exports exceed the limit of {v.MAX_EXPORTS}"


def test_exports_and_start_are_recorded() -> None:
    data = module(
        functions([EMPTY_BODY]),
        section(7, vec([name("run") + b"\x00\x00", name("memory") + b"\x02\x00"])),
        section(8, uleb(0)),
    )
    shape = check(data)
    assert shape.exports == {"run": 0, "memory": 2}
    assert shape.has_start
    assert not check(module(functions([EMPTY_BODY]))).has_start


# ---------------------------------------------------------------- compile budget


def test_compile_budget_is_the_lower_of_role_and_caller() -> None:
    data = module(functions([nested(200)] * 50))
    estimate = check(data).compile_ms
    assert estimate > 1
    assert check(data, max_compile_ms=estimate).compile_ms == estimate
    error = refused(data, max_compile_ms=estimate - 1)
    assert str(error).startswith(
        f"compiling this module is estimated at {estimate} ms, over the budget of {estimate - 1} ms ("
    )
