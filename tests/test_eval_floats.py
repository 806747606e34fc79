"""Float determinism: every scalar WASM float instruction over many seeded inputs (raw
bit patterns: NaNs with payloads, infinities, subnormals; and ordinary values), folded
into one hash that must equal a committed constant on every machine and every run."""

from __future__ import annotations

import wasmtime

from platform_cli.runtime.engine import make_config
from platform_cli.runtime.sandbox import Sandbox

ITERATIONS = 3000
EXPECTED_HASH = 0x3D031EB174E1CA4E  # wasmtime 50.0.1, x86_64, NaN canonicalisation on

UNARY = ["abs", "neg", "ceil", "floor", "trunc", "nearest", "sqrt"]
BINARY = ["add", "sub", "mul", "div", "min", "max", "copysign"]
COMPARE = ["eq", "ne", "lt", "gt", "le", "ge"]
# (source type, target int, signed) -> exclusive magnitude bounds for the trapping truncations
TRUNC_BOUNDS = {
    ("f32", "i32", "s"): ("-2147483904", "2147483648"),
    ("f32", "i32", "u"): ("-1", "4294967296"),
    ("f32", "i64", "s"): ("-9223373136366403584", "9223372036854775808"),
    ("f32", "i64", "u"): ("-1", "18446744073709551616"),
    ("f64", "i32", "s"): ("-2147483649", "2147483648"),
    ("f64", "i32", "u"): ("-1", "4294967296"),
    ("f64", "i64", "s"): ("-9223372036854777856", "9223372036854775808"),
    ("f64", "i64", "u"): ("-1", "18446744073709551616"),
}


def bits(t: str, expr: str) -> str:
    return (
        f"(i64.extend_i32_u (i32.reinterpret_f32 {expr}))" if t == "f32" else f"(i64.reinterpret_f64 {expr})"
    )


def widen(i: str, expr: str) -> str:
    return f"(i64.extend_i32_u {expr})" if i == "i32" else expr


def float_ops() -> list[str]:
    mixes = []
    for t in ("f32", "f64"):
        x, y = f"(local.get $x_{t})", f"(local.get $y_{t})"
        mixes += [bits(t, f"({t}.{op} {x})") for op in UNARY]
        mixes += [bits(t, f"({t}.{op} {x} {y})") for op in BINARY]
        mixes += [f"(i64.extend_i32_u ({t}.{op} {x} {y}))" for op in COMPARE]
        for i in ("i32", "i64"):
            for sign in ("s", "u"):
                mixes.append(bits(t, f"({t}.convert_{i}_{sign} (local.get $a_{i}))"))
                mixes.append(widen(i, f"({i}.trunc_sat_{t}_{sign} {x})"))
                low, high = TRUNC_BOUNDS[(t, i, sign)]
                guard = f"(i32.and ({t}.gt {x} ({t}.const {low})) ({t}.lt {x} ({t}.const {high})))"
                mixes.append(f"(if {guard} (then (call $mix {widen(i, f'({i}.trunc_{t}_{sign} {x})')})))")
    mixes.append(bits("f32", "(f32.demote_f64 (local.get $x_f64))"))
    mixes.append(bits("f64", "(f64.promote_f32 (local.get $x_f32))"))
    mixes.append(bits("f64", "(f64.load (i32.const 0))"))
    mixes.append(bits("f32", "(f32.load (i32.const 8))"))
    return [m if m.startswith("(if") else f"(call $mix {m})" for m in mixes]


def module_text() -> str:
    body = "\n        ".join(float_ops())
    return f"""
(module
  (memory (export "memory") 1)
  (global $acc (mut i64) (i64.const 0xcbf29ce484222325))
  (global $rng (mut i64) (i64.const 0x9e3779b97f4a7c15))
  (func $rand (result i64)
    (local $v i64)
    (local.set $v (global.get $rng))
    (local.set $v (i64.xor (local.get $v) (i64.shl (local.get $v) (i64.const 13))))
    (local.set $v (i64.xor (local.get $v) (i64.shr_u (local.get $v) (i64.const 7))))
    (local.set $v (i64.xor (local.get $v) (i64.shl (local.get $v) (i64.const 17))))
    (global.set $rng (local.get $v))
    (local.get $v))
  (func $mix (param $v i64)
    (global.set $acc (i64.mul (i64.xor (global.get $acc) (local.get $v)) (i64.const 0x100000001b3))))
  (func (export "run") (param $n i32) (result i64)
    (local $i i32) (local $r i64)
    (local $x_f32 f32) (local $y_f32 f32) (local $x_f64 f64) (local $y_f64 f64)
    (local $a_i32 i32) (local $a_i64 i64)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $r (call $rand))
      (local.set $a_i32 (i32.wrap_i64 (local.get $r)))
      (local.set $a_i64 (call $rand))
      (if (i32.and (local.get $i) (i32.const 1))
        (then
          (local.set $x_f32 (f32.reinterpret_i32 (i32.wrap_i64 (local.get $r))))
          (local.set $y_f32 (f32.reinterpret_i32 (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32)))))
          (local.set $x_f64 (f64.reinterpret_i64 (call $rand)))
          (local.set $y_f64 (f64.reinterpret_i64 (call $rand))))
        (else
          (local.set $x_f64 (f64.div (f64.convert_i64_s (i64.shr_s (local.get $r) (i64.const 40))) (f64.const 1000)))
          (local.set $y_f64 (f64.div (f64.convert_i64_s (i64.shr_s (call $rand) (i64.const 44))) (f64.const 7)))
          (local.set $x_f32 (f32.demote_f64 (local.get $x_f64)))
          (local.set $y_f32 (f32.demote_f64 (local.get $y_f64)))))
      (i64.store (i32.const 0) (local.get $a_i64))
      (i32.store (i32.const 8) (local.get $a_i32))
        {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (global.get $acc))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
)"""


def run_hash(engine: wasmtime.Engine) -> int:
    module = wasmtime.Module(engine, module_text())
    store = wasmtime.Store(engine)
    store.set_fuel(10**10)
    store.set_epoch_deadline(10**9)
    instance = wasmtime.Linker(engine).instantiate(store, module)
    return instance.exports(store)["run"](store, ITERATIONS) & (2**64 - 1)


def float_hash() -> int:
    sandbox = Sandbox()
    try:
        return run_hash(sandbox.engine.wasm)
    finally:
        sandbox.close()


def test_module_covers_every_scalar_float_instruction():
    text = module_text()
    for t in ("f32", "f64"):
        for op in UNARY + BINARY + COMPARE:
            assert f"({t}.{op} " in text
    assert text.count(".trunc_sat_") == 8 and text.count(".convert_") >= 8


def test_float_results_match_committed_constant():
    assert float_hash() == EXPECTED_HASH


def test_inputs_reach_nan_payloads():
    """Without NaN canonicalisation the hash changes: the inputs do exercise NaN bits."""
    config = make_config()
    config.cranelift_nan_canonicalization = False
    assert run_hash(wasmtime.Engine(config)) != EXPECTED_HASH
