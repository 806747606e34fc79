"""A module refused by the static check or by wasmtime says why, in one line, whatever
its role: as a challenge (``eval run``), as a submission, and in ``eval conformance``."""

from __future__ import annotations

import json

import pytest
import wasmtime

from platform_cli.runtime.diagnostics import one_line
from platform_cli.runtime.engine import validation_engine
from platform_cli.runtime.wasmbin import uleb
from tests.eval_helpers import CHALLENGES, raw_module, write_challenge

GOOD = wasmtime.wat2wasm(
    """(module (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "evaluate") (param i32 i32) (result i64) (i64.const 0))
  (func (export "run") (param i32 i32) (result i64) (i64.const 0))
  (data (i32.const 0) "abc"))"""
)
TAIL_CALL = raw_module([b"\x00\x12\x00\x0b"])
BR_TABLE = raw_module([b"\x00\x02\x40\x41\x00\x0e" + uleb(199_999) + b"\x00" * 200_000 + b"\x0b\x0b"])
_SEGMENTS = uleb(100_001) + b"\x01\x00" * 100_001
DATA_SEGMENTS = b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01\x0b" + uleb(len(_SEGMENTS)) + _SEGMENTS
STRING_SIZE = b"\0asm\x01\0\0\0\x00\x05\xff\xff\xff\xff\x0f"

# module, and the cause that must be said (by our static check or by wasmtime); a
# submission's function body is refused at 64 KiB, before its br_table is read
CASES = {
    "tail_call": (TAIL_CALL, "function 0: tail call instructions are not allowed"),
    "br_table_200000_targets": (BR_TABLE, "br_table has 200000 targets, over the limit of 65520"),
    "truncated": (GOOD[:-3], "malformed module: section 11 runs past the end"),
    "trailing_section_header": (GOOD + b"\x00\x01", "malformed module: section 0 runs past the end"),
    "trailing_name": (GOOD + b"\x00\x01\x05", "unexpected end-of-file (at offset 0x67)"),
    "data_segments": (DATA_SEGMENTS, "data segments count exceeds limit of 100000"),
    "string_size": (STRING_SIZE, "string size out of bounds"),
}
SUBMISSION_CAUSES = {"br_table_200000_targets": "function 0 body of 200011 bytes exceeds the limit of 65536"}
IDS = list(CASES)


@pytest.mark.parametrize("case", IDS)
def test_challenge_role_keeps_the_cause(run, tmp_path, case):
    module, cause = CASES[case]
    toml = write_challenge(tmp_path / case, module)
    (tmp_path / "s").write_bytes(b"s")
    result = run("--json", "eval", "run", str(toml), str(tmp_path / "s"))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["outcome"] == "abi_error"
    assert cause in record["message"] and "\n" not in record["message"]


@pytest.mark.parametrize("case", IDS)
def test_submission_role_keeps_the_cause(run, tmp_path, case):
    module, cause = CASES[case]
    cause = SUBMISSION_CAUSES.get(case, cause)
    (tmp_path / "sub.wasm").write_bytes(module)
    result = run("eval", "run", str(CHALLENGES / "sort" / "challenge.toml"), str(tmp_path / "sub.wasm"))
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "not an acceptable WASM submission" in line and cause in line


@pytest.mark.parametrize("case", IDS)
def test_conformance_keeps_the_cause(run, tmp_path, case):
    module, cause = CASES[case]
    (tmp_path / "m.wasm").write_bytes(module)
    result = run("--json", "eval", "conformance", str(tmp_path / "m.wasm"))
    assert result.exit_code == 1
    (failed,) = [json.loads(line) for line in result.stdout.splitlines() if '"FAIL"' in line]
    assert cause in failed["detail"]
    assert len(result.stderr.splitlines()) == 1


def test_wasmtime_errors_keep_their_whole_chain():
    """What our static check would refuse first, wasmtime says too: in one line."""
    with pytest.raises(wasmtime.WasmtimeError) as compiled:
        wasmtime.Module(validation_engine(), BR_TABLE)
    text = one_line(compiled.value)
    assert text.startswith("failed to compile: wasm[0]::function[0]: WebAssembly translation error")
    assert text.endswith("`br_table` has 199999 targets, which exceeds the implementation limit of 65520")
    with pytest.raises(wasmtime.WasmtimeError) as parsed:
        wasmtime.Module(validation_engine(), GOOD[:-3])  # our check says "section 11 runs past the end"
    assert (
        one_line(parsed.value)
        == "failed to parse WebAssembly module: unexpected end-of-file (at offset 0x5b)"
    )
