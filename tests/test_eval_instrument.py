"""The call-depth instrumentation keeps what modules compute, and gives back on every
way out of a function what it charged on the way in."""

from __future__ import annotations

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platform_cli.runtime.engine import make_config
from platform_cli.runtime.instrument import STACK_LIMIT, frame_units, instrument, overflow_index
from platform_cli.runtime.validate import HOST_IMPORTS, validate
from platform_cli.runtime.wasmbin import FuncType

ENGINE = wasmtime.Engine(make_config())
CALLS = 20_000  # enough that any unbalanced exit would pile up past the limit


def shape_of(module: bytes):
    return validate(module, max_bytes=1 << 22, max_memory_bytes=1 << 30, allowed_imports=HOST_IMPORTS)


def run(module: bytes, name: str, *args: int, imports: list | None = None) -> list:
    store = wasmtime.Store(ENGINE)
    store.set_fuel(10**9)
    store.set_epoch_deadline(10**9)
    instance = wasmtime.Instance(store, wasmtime.Module(ENGINE, module), imports or [])
    result = instance.exports(store)[name](store, *args)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def both(wat: str, name: str, *args: int, imports=None) -> tuple[list, list]:
    module = wasmtime.wat2wasm(wat)
    return run(module, name, *args, imports=imports), run(
        instrument(module, shape_of(module)), name, *args, imports=imports
    )


# Every way out of a multi-value function: falling through, return, br to the function's
# label from nested blocks, br_if and br_table to it, and blocks left by branches.
EXITS = """(module
  (func $f (export "f") (param $k i32) (result i32 i64)
    (block $a
      (block $b
        (br_if $a (i32.eq (local.get $k) (i32.const 0)))
        (if (i32.eq (local.get $k) (i32.const 1)) (then (return (i32.const 11) (i64.const 1))))
        (if (i32.eq (local.get $k) (i32.const 2)) (then (br 3 (i32.const 12) (i64.const 2))))
        (br_if 2 (i32.const 13) (i64.const 3) (i32.eq (local.get $k) (i32.const 3)))
        (drop) (drop)
        (if (i32.ge_u (local.get $k) (i32.const 6)) (then (br_table 2 1 (i32.sub (local.get $k) (i32.const 6)))))
        (br_table 2 2 (i32.const 14) (i64.const 4) (i32.sub (local.get $k) (i32.const 4))))
      (return (i32.const 15) (i64.const 5)))
    (i32.const 10) (i64.const 0))
  (func (export "many") (param $k i32) (param $n i32) (result i32) (local $i i32) (local $sum i32)
    (loop $again
      (call $f (local.get $k))
      (drop)
      (local.get $sum) (i32.add) (local.set $sum)
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $sum)))"""


@pytest.mark.parametrize("k", range(9))
def test_every_exit_keeps_results_and_gives_back_its_charge(k):
    plain, instrumented = both(EXITS, "f", k)
    assert plain == instrumented
    assert plain[0] == [10, 11, 12, 13, 14, 14, 10, 15, 15][k]
    assert both(EXITS, "many", k, CALLS) == ([plain[0] * CALLS], [plain[0] * CALLS])


def test_block_types_past_index_63_imports_and_a_start_function():
    """A wrapping block for multi-value results needs a type index, here one that takes
    two LEB bytes; imported functions keep their indices; the start function is limited."""
    types = "\n".join(
        f"(type (func (param {'i32 ' * (1 + i % 4)}) (result {'i64 ' * (i % 3)})))" for i in range(70)
    )
    wat = f"""(module {types}
      (import "platform" "seed" (func $seed (param i32)))
      (global $started (mut i32) (i32.const 0))
      (func $start (global.set $started (i32.const 7)))
      (start $start)
      (func $p (result i64 i64) (i64.const 5) (i64.const 6))
      (func (export "g") (result i64) (call $p) (i64.add) (i64.extend_i32_u (global.get $started)) (i64.add)))"""
    module = wasmtime.wat2wasm(wat)
    shape = shape_of(module)
    store = wasmtime.Store(ENGINE)
    store.set_fuel(10**9)
    store.set_epoch_deadline(10**6)
    stub = wasmtime.Func(store, wasmtime.FuncType([wasmtime.ValType.i32()], []), lambda _: None)
    results = []
    for compiled in (module, instrument(module, shape)):
        instance = wasmtime.Instance(store, wasmtime.Module(ENGINE, compiled), [stub])
        results.append(instance.exports(store)["g"](store))
    assert results == [18, 18]
    assert overflow_index(shape) == 1 + 3  # one import, three defined functions
    assert shape.types.index(FuncType(b"", b"\x7e\x7e")) >= 64  # $p's wrapping block: a two-byte index


def test_a_module_without_functions_is_left_alone():
    module = wasmtime.wat2wasm('(module (memory (export "memory") 1))')
    assert instrument(module, shape_of(module)) == module
    assert overflow_index(shape_of(module)) is None


def test_frame_cost_counts_parameters_locals_and_the_deepest_stack():
    module = wasmtime.wat2wasm(
        "(module (func (param i32 i64) (local f32 f64 f64) "
        "(drop (i32.add (i32.const 1) (i32.mul (i32.const 2) (i32.const 3))))))"
    )
    (body,) = shape_of(module).bodies
    assert (body.params, body.locals, body.max_height) == (2, 3, 3)
    assert frame_units(body) == 2 + 3 + 3 + 4


def _statement(labels: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Statements over a function's two i32 locals inside ``labels`` (innermost first:
    "block", "loop", and last the function's own): blocks, ifs, loops, and exits. A loop
    is never branched to, so every program ends."""
    targets = [depth for depth, kind in enumerate(labels) if kind != "loop"]
    own = len(labels) - 1

    def branch(label: int, condition: str) -> str:
        if condition:
            return (
                f"(br_if {label} (local.get 1) {condition}) (drop)"
                if label == own
                else f"(br_if {label} {condition})"
            )
        return f"(br {label} (local.get 1))" if label == own else f"(br {label})"

    leaf = st.one_of(
        st.integers(0, 99).map(lambda n: f"(local.set 1 (i32.add (local.get 1) (i32.const {n})))"),
        st.integers(0, 7).map(
            lambda n: f"(if (i32.eq (local.get 0) (i32.const {n})) (then (return (local.get 1))))"
        ),
        st.sampled_from(targets).map(lambda label: branch(label, "")),
        st.tuples(st.sampled_from(targets), st.integers(0, 7)).map(
            lambda t: branch(t[0], f"(i32.eq (local.get 0) (i32.const {t[1]}))")
        ),
    )
    if len(labels) > 4:
        return leaf

    def inner(kind: str) -> st.SearchStrategy[str]:
        return st.lists(st.deferred(lambda: _statement((kind, *labels))), max_size=4).map(" ".join)

    nested = st.one_of(
        inner("block").map(lambda body: f"(block {body})"),
        inner("loop").map(lambda body: f"(loop {body})"),
        st.tuples(st.integers(0, 7), inner("block"), inner("block")).map(
            lambda t: f"(if (i32.gt_u (local.get 0) (i32.const {t[0]})) (then {t[1]}) (else {t[2]}))"
        ),
    )
    return st.one_of(leaf, nested)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_statement(("function",)), min_size=1, max_size=6).map(" ".join))
def test_random_control_flow_computes_the_same_and_stays_balanced(body):
    wat = f"""(module
      (func $f (export "f") (param i32) (result i32) (local i32) {body} (local.get 1))
      (func (export "many") (param $k i32) (result i32) (local $i i32) (local $sum i32)
        (loop $again
          (local.set $sum (i32.add (local.get $sum) (call $f (local.get $k))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const {CALLS}))))
        (local.get $sum)))"""
    module = wasmtime.wat2wasm(wat)
    instrumented = instrument(module, shape_of(module))
    for k in range(9):
        assert run(module, "f", k) == run(instrumented, "f", k)
    assert run(module, "many", 3) == run(instrumented, "many", 3)
    assert STACK_LIMIT < CALLS * 7  # an exit that kept its 7-unit charge would trap in "many"
