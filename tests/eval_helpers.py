"""Shared helpers for the evaluation tests: the hostile manifest, challenges, inputs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from platform_cli.config import tomllib
from platform_cli.core import abi
from platform_cli.core.challenge import ResourcePolicy
from platform_cli.runtime.wasmbin import sleb, uleb

REPO = Path(__file__).resolve().parent.parent
CHALLENGES = REPO / "challenges"
HOSTILE = REPO / "fixtures" / "hostile"
SUBMISSIONS = REPO / "fixtures" / "submissions"
SHIPPED = ("sort", "predict", "compress")
GOOD = {
    "sort": SUBMISSIONS / "sort" / "good_shell.wasm",
    "predict": SUBMISSIONS / "predict" / "good_linear.bin",
    "compress": SUBMISSIONS / "compress" / "good_rle.wasm",
}


@dataclass
class HostileCase:
    name: str
    expect: str
    module: bytes
    limits: ResourcePolicy
    submission: bytes
    metrics: dict[str, int]


def _nest(depth: int) -> bytes:
    """``depth`` nested blocks, then a ``br_if`` to each of them: slow to compile."""
    inner = b"".join(b"\x20\x00\x41" + sleb(k) + b"\x6a\x21\x00\x20\x00\x0d" + uleb(k) for k in range(depth))
    return b"\x02\x40" * depth + inner + b"\x0b" * depth


def raw_module(
    bodies: list[bytes], *, memory: bool = False, table: bool = False, custom: bytes = b""
) -> bytes:
    """A module of ``() -> ()`` functions with these raw bodies (local declarations, code
    and the final ``end``), optionally a memory, a one-element table, a custom section."""

    def section(number: int, payload: bytes) -> bytes:
        return bytes([number]) + uleb(len(payload)) + payload

    parts = [
        b"\0asm\x01\0\0\0",
        section(1, b"\x01\x60\x00\x00"),
        section(3, uleb(len(bodies)) + b"\x00" * len(bodies)),
        section(4, b"\x01\x70\x00\x01") if table else b"",
        section(5, b"\x01\x00\x01") if memory else b"",
        section(10, uleb(len(bodies)) + b"".join(uleb(len(b)) + b for b in bodies)),
        section(0, b"\x04salt" + custom) if custom else b"",
    ]
    return b"".join(parts)


def code_module(bodies: list[bytes]) -> bytes:
    """A module of ``() -> ()`` functions with these bodies (each one i32 local, then code)."""
    return raw_module([b"\x01\x01\x7f" + b + b"\x0b" for b in bodies])


def _locals_used(count: int, joins: int, op: bytes) -> bytes:
    """``count`` i64 locals, ``joins`` loops or ifs (``op``) that update four of them each."""
    body = b"\x01" + uleb(count) + b"\x7e"
    for k in range(joins):
        body += b"\x41\x00\x04\x40" if op == b"\x04" else op + b"\x40"
        for j in range(4):
            i = (k * 4 + j) % count
            body += (
                b"\x20"
                + uleb(i)
                + b"\x20"
                + uleb((i * 7 + 1) % count)
                + b"\x7c\x21"
                + uleb((i * 13 + 5) % count)
            )
        body += b"\x41\x00\x0d\x00\x0b" if op == b"\x03" else b"\x0b"  # a loop branches back
    return body + b"\x0b"


# Function bodies that are slow to compile per byte, each the worst of its kind we found,
# kept just inside the per-function limits: (body, needs a memory, needs a table).
COMPILE_SHAPES: dict[str, tuple[bytes, bool, bool]] = {
    "many functions": (b"\x00\x0b", False, False),
    "many locals": (b"\x01\xd0\x0f\x7c\x0b", False, False),
    "deep nesting": (b"\x01\x01\x7f" + _nest(255) + b"\x0b", False, False),
    "nested loops": (
        b"\x00" + b"\x03\x40" * 255 + b"".join(b"\x41\x00\x0d" + uleb(k) for k in range(255)) + b"\x0b" * 256,
        False,
        False,
    ),
    "big br_table": (
        b"\x00"
        + b"\x02\x40" * 255
        + b"\x41\x00\x0e"
        + uleb(30_000)
        + b"".join(uleb(i % 255) for i in range(30_001))
        + b"\x0b" * 256,
        False,
        False,
    ),
    "branch fan-in": (b"\x00\x02\x40" + b"\x41\x00\x0d\x00" * 2047 + b"\x0b\x0b", False, False),
    "loops": (b"\x00" + b"\x03\x40\x0b" * 2048 + b"\x0b", False, False),
    "locals x loops": (_locals_used(100, 1024, b"\x03"), False, False),
    "locals x ifs": (_locals_used(500, 1024, b"\x04"), False, False),
    "calls": (b"\x00" + b"\x10\x00" * 16_000 + b"\x0b", False, False),
    "indirect calls": (b"\x00" + b"\x41\x00\x11\x00\x00" * 2048 + b"\x0b", False, True),
    "memory operations": (
        b"\x00" + b"\x41\x00\x41\x00\x28\x02\x00\x36\x02\x00" * 6000 + b"\x0b",
        True,
        False,
    ),
}


def compile_shape(name: str, functions: int, custom: bytes = b"") -> bytes:
    body, memory, table = COMPILE_SHAPES[name]
    return raw_module([body] * functions, memory=memory, table=table, custom=custom)


def filling(name: str, budget_ms: int, custom: bytes = b"") -> bytes:
    """The biggest submission module of one compile shape whose estimate fits ``budget_ms``."""
    from platform_cli.runtime import compile_cost
    from platform_cli.runtime.validate import MAX_SUBMISSION_CODE_BYTES, validate

    body = COMPILE_SHAPES[name][0]
    one = validate(
        compile_shape(name, 1), max_bytes=1 << 30, max_memory_bytes=1 << 30, allowed_imports=frozenset()
    )
    fits = int(budget_ms * 1000 // compile_cost.function_us(one.bodies[0]))
    return compile_shape(
        name, max(1, min(10_000, fits, (MAX_SUBMISSION_CODE_BYTES - 16) // (len(body) + 3))), custom
    )


def flood_challenge(submission: bytes, calls: int) -> bytes:
    """A challenge that runs ``submission`` ``calls`` times through ``submission_run``, each
    time with a different last byte (``submission`` must end in a custom section), then
    scores 1: every call is a different module to validate and compile."""
    base = 65_536
    pages = (base + len(submission)) // 65_536 + 2
    data = "".join(f"\\{b:02x}" for b in submission)
    return wasmtime.wat2wasm(
        f"""(module
  (import "platform" "submission_run" (func $run (param i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") {pages})
  (data (i32.const 512) "\\01\\01\\00\\00\\01\\00\\00\\00\\00\\00")
  (data (i32.const {base}) "{data}")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "evaluate") (param i32 i32) (result i64) (local $i i32)
    (loop $again
      (i32.store8 (i32.const {base + len(submission) - 1}) (local.get $i))
      (drop (call $run (i32.const {base}) (i32.const {len(submission)}) (i32.const 0) (i32.const 0)
                       (i32.const 2048) (i32.const 1024) (i64.const 1000000) (i32.const 4096)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {calls}))))
    (i64.const {(512 << 32) | 10})))"""
    )


def write_challenge(
    directory: Path, module: bytes, *, submission_format: str = "bytes", **resources: int
) -> Path:
    """A challenge.toml (with its module) in ``directory``; ``resources`` override the defaults."""
    limits = {
        "fuel": 50_000_000,
        "memory_bytes": 16_777_216,
        "wall_ms": 500,
        "max_input_bytes": 2_000_000,
        "max_output_bytes": 4_096,
        **resources,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "challenge.wasm").write_bytes(module)
    toml = directory / "challenge.toml"
    toml.write_text(
        '[challenge]\nid = "hostile"\nversion = "1.0.0"\nname = "hostile"\n'
        'description = "a hostile challenge"\nabi = 1\nentrypoint = "evaluate"\nmin_validators = 1\n'
        f'[module]\npath = "challenge.wasm"\nsha256 = "{hashlib.sha256(module).hexdigest()}"\n'
        "[resources]\n"
        + "".join(f"{k} = {v}\n" for k, v in limits.items())
        + '[network]\npolicy = "none"\n[scoring]\nemission_ppm = 1\nmechanism = 0\n'
        f'[params]\nsubmission_format = "{submission_format}"\n'
    )
    return toml


_BUMP = (
    "(global.set $d (i32.add (global.get $d) (i32.const 1)))"
    "(if (i32.gt_u (global.get $d) (global.get $max)) (then (global.set $max (global.get $d))))"
)


def _live(count: int, kind: str, op: str) -> str:
    """``$rec`` keeping ``count`` loaded values live across its recursive call."""
    names = " ".join(f"(local $v{i} {kind})" for i in range(count))
    loads = " ".join(f"(local.set $v{i} ({kind}.load (i32.const {8 * i})))" for i in range(count))
    total = f"({kind}.const 0)"
    for i in range(count):
        total = f"({kind}.add {total} ({op} (local.get $v{i}) (local.get $v{(i * 7 + 3) % count})))"
    recursive = "(call $rec (i32.sub (local.get $n) (i32.const 1)))"
    if kind == "f64":
        recursive = f"(f64.convert_i64_s {recursive})"
    value = f"({kind}.add {total} ({kind}.add {recursive} {total}))"
    if kind == "f64":
        value = f"(i64.trunc_sat_f64_s {value})"
    return f"""(func $rec (param $n i32) (result i64) {names} {_BUMP}
  (if (i32.eqz (local.get $n)) (then (return (i64.const 0))))
  {loads} {value})"""


def _operand_stack(count: int) -> str:
    pushes = " ".join(f"(f64.load (i32.const {8 * i}))" for i in range(count))
    return f"""(func $rec (param $n i32) (result i64) {_BUMP}
  (if (i32.eqz (local.get $n)) (then (return (i64.const 0))))
  {pushes} (f64.convert_i64_s (call $rec (i32.sub (local.get $n) (i32.const 1))))
  {"f64.add " * count} i64.trunc_sat_f64_s)"""


def _params(count: int) -> str:
    params = " ".join("(param i64)" for _ in range(count))
    passed = " ".join(f"(i64.add (local.get {i + 1}) (i64.const 1))" for i in range(count))
    mixed = "(local.get 1)"
    for i in range(2, count + 1):
        mixed = f"(i64.xor {mixed} (local.get {i}))"
    return f"""(func $p (param $n i32) {params} (result i64) {_BUMP}
  (if (i32.eqz (local.get $n)) (then (return (i64.const 0))))
  (i64.add (call $p (i32.sub (local.get $n) (i32.const 1)) {passed}) {mixed}))
(func $rec (param $n i32) (result i64) (call $p (local.get $n) {"(i64.const 1) " * count}))"""


RECURSION_FRAMES: dict[str, str] = {
    "minimal": f"""(func $rec (param $n i32) (result i64) {_BUMP}
  (if (result i64) (i32.eqz (local.get $n)) (then (i64.const 0))
    (else (i64.add (call $rec (i32.sub (local.get $n) (i32.const 1))) (i64.const 1)))))""",
    "live i64 shifts": _live(16, "i64", "i64.shl"),
    "live f64": _live(64, "f64", "f64.mul"),
    "f64 operand stack": _operand_stack(64),
    "many parameters": _params(31),
}
"""Recursive functions whose frames use the most native stack per call-depth unit; the
shifts are compiled to different frames with and without BMI2."""


def recursion_module(frame: str, role: str = "bare", depth: int = 0) -> bytes:
    """``$rec`` of one frame shape, wrapped as a ``bare`` module (``f(n)`` and the deepest
    depth reached, ``max``), a ``challenge`` recursing as deep as its 4-byte submission
    says, or a ``submission`` module whose ``run`` recurses ``depth`` deep."""
    wrappers = {
        "bare": '(func (export "f") (param i32) (result i64) (call $rec (local.get 0)))',
        "challenge": """(func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "evaluate") (param $p i32) (param $len i32) (result i64)
    (i64.store (i32.const 526) (call $rec (i32.load (i32.add (local.get $p) (i32.const 37)))))
    (i64.const 2199023255574))
  (data (i32.const 512) "\\01\\01\\00\\00\\01\\00\\00\\00\\01\\00\\03sum")""",
        "submission": f"""(func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "run") (param i32 i32) (result i64)
    (i64.store (i32.const 512) (call $rec (i32.const {depth})))
    (i64.const 2199023255560))""",
    }
    return wasmtime.wat2wasm(
        f"""(module (memory (export "memory") 1)
  (global $d (mut i32) (i32.const 0)) (global $max (mut i32) (i32.const 0))
  (func (export "max") (result i32) (global.get $max))
  {RECURSION_FRAMES[frame]}
  {wrappers[role]})"""
    )


def nested_runner() -> bytes:
    """A challenge that runs its submission module (a "wasm" submission) once through
    ``submission_run`` and reports the status, the fuel, the output length and the first
    eight output bytes as metrics."""
    return wasmtime.wat2wasm(
        """(module
  (import "platform" "submission_run" (func $run (param i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 512) "\\01\\01\\00\\00\\01\\00\\00\\00\\04\\00")
  (data (i32.const 522) "\\06status\\00\\00\\00\\00\\00\\00\\00\\00\\04fuel")
  (data (i32.const 550) "\\03len\\00\\00\\00\\00\\00\\00\\00\\00\\05value")
  (func (export "alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "evaluate") (param $p i32) (param $len i32) (result i64) (local $at i32) (local $size i32)
    (if (i32.eq (i32.load8_u (i32.add (local.get $p) (i32.const 36))) (i32.const 0x58))
      (then (local.set $size (i32.load8_u (i32.add (local.get $p) (i32.const 37))))
            (local.set $at (i32.add (local.get $p) (i32.const 38))))
      (else (local.set $size (i32.or (i32.shl (i32.load8_u (i32.add (local.get $p) (i32.const 37))) (i32.const 8))
                                     (i32.load8_u (i32.add (local.get $p) (i32.const 38)))))
            (local.set $at (i32.add (local.get $p) (i32.const 39)))))
    (i64.store (i32.const 529)
      (i64.extend_i32_s (call $run (local.get $at) (local.get $size) (i32.const 0) (i32.const 0)
                                   (i32.const 2048) (i32.const 64) (i64.const 1000000000) (i32.const 4096))))
    (i64.store (i32.const 542) (i64.load (i32.const 4096)))
    (i64.store (i32.const 554) (i64.load32_u (i32.const 4104)))
    (i64.store (i32.const 568) (i64.load (i32.const 2048)))
    (i64.const 2199023255616)))"""
    )


def native_depth(module: bytes, isa_flags: dict[str, bool] | None = None) -> int:
    """How deep a ``bare`` recursion module gets before wasmtime's native stack limit, as
    compiled (not instrumented) by an engine with the pinned settings or ``isa_flags``."""
    from platform_cli.runtime.engine import make_config

    engine = wasmtime.Engine(make_config(isa_flags))
    store = wasmtime.Store(engine)
    store.set_fuel(10**13)
    store.set_epoch_deadline(10**9)
    exports = wasmtime.Linker(engine).instantiate(store, wasmtime.Module(engine, module)).exports(store)
    try:
        exports["f"](store, 10**7)
    except wasmtime.Trap as trap:
        assert trap.trap_code == wasmtime.TrapCode.STACK_OVERFLOW, trap
    return exports["max"](store)


def generate(kind: str) -> bytes:
    if kind == "oversize":  # a valid empty module padded past the 8 MiB cap by a custom section
        payload = b"\x03pad" + bytes(9 * 1024 * 1024)
        return b"\0asm\x01\0\0\0" + b"\x00" + uleb(len(payload)) + payload
    if kind == "compile_bomb":  # one function, 20,000 nested blocks: seconds to compile
        return code_module([_nest(20_000)])
    if kind == "heavy_legal":  # estimated at the whole submission budget: ~0.4 s to compile here
        from platform_cli.runtime.compile_cost import SUBMISSION_BUDGET_MS

        return filling("many locals", SUBMISSION_BUDGET_MS)
    raise ValueError(kind)


def hostile_cases() -> list[HostileCase]:
    manifest = tomllib.loads((HOSTILE / "manifest.toml").read_text())
    defaults = manifest["defaults"]
    cases = []
    for entry in manifest["module"]:
        limits = ResourcePolicy(**{k: entry.get(k, v) for k, v in defaults.items()})
        if "generate" in entry:
            module = generate(entry["generate"])
        else:
            module = (HOSTILE / entry.get("module", f"{entry['name']}.wasm")).read_bytes()
        if "generate_submission" in entry:
            submission = generate(entry["generate_submission"])
        elif "submission" in entry:
            submission = (HOSTILE / entry["submission"]).read_bytes()
        else:
            submission = b"hostile"
        cases.append(
            HostileCase(entry["name"], entry["expect"], module, limits, submission, entry.get("metrics", {}))
        )
    return cases


def make_input(
    module: bytes, submission: bytes, params: dict[str, Any] | None = None
) -> tuple[bytes, bytes, str]:
    sha = hashlib.sha256(module).hexdigest()
    seed = abi.derive_seed(7, hashlib.sha256(submission).digest(), bytes.fromhex(sha))
    data = abi.encode_input(
        challenge_id="test",
        version="1.0.0",
        module_sha256=bytes.fromhex(sha),
        submission=submission,
        seed=seed,
        params=params or {},
    )
    return data, seed, sha


def run_case(sandbox: Any, case: HostileCase) -> Any:
    data, seed, sha = make_input(case.module, case.submission)
    return sandbox.evaluate(case.module, sha, "evaluate", data, case.limits, seed)


def good_job() -> Any:
    """A job that must succeed: the predict challenge on its good sample submission."""
    from platform_cli.registry import load_challenge
    from platform_cli.runtime.pool import Job

    spec, module = load_challenge(CHALLENGES / "predict" / "challenge.toml")
    data, seed, sha = make_input(module, GOOD["predict"].read_bytes())
    return Job(module, sha, spec.entrypoint, data, spec.resources, seed)
