"""Review fixes: compile bombs, the module cache on a full disk, unsafe submission files,
registry versions, huge integers on the command line, and the shared validation engine."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest
import wasmtime

from platform_cli import evaluation
from platform_cli.registry import load_challenge
from platform_cli.runtime import host
from platform_cli.runtime.engine import validation_engine
from platform_cli.runtime.sandbox import Sandbox
from platform_cli.runtime.validate import (
    MAX_SUBMISSION_MODULE_BYTES,
    MAX_SUBMISSION_NESTING,
    ModuleRefused,
    validate,
)
from tests.eval_helpers import CHALLENGES, GOOD, SUBMISSIONS, _nest, code_module, generate, make_input

SORT_TOML = CHALLENGES / "sort" / "challenge.toml"


def validate_submission(module: bytes) -> None:
    validate(
        module,
        max_bytes=MAX_SUBMISSION_MODULE_BYTES,
        max_memory_bytes=host.NESTED_MEMORY_CAP,
        allowed_imports=frozenset(),
        submission=True,
    )


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (generate("compile_bomb"), "code section of"),
        (code_module([b"\x01" * 70_000]), "function 0 body of"),
        (code_module([b"\x02\x40" * 300 + b"\x0b" * 300]), "nests blocks deeper"),
        (code_module([b"\xfd\x0c" + bytes(16) + b"\x1a"]), "SIMD instructions"),
    ],
    ids=["code_size", "function_size", "nesting", "simd"],
)
def test_submission_limits_refuse_compile_bombs_cheaply(module, message):
    started = time.perf_counter()
    with pytest.raises(ModuleRefused, match=message):
        validate_submission(module)
    assert time.perf_counter() - started < 0.5


def test_submission_limits_accept_the_shipped_submissions_and_the_deepest_legal_nesting():
    for path in sorted(SUBMISSIONS.glob("*/good_*.wasm")):
        validate_submission(path.read_bytes())
    validate_submission(code_module([_nest(MAX_SUBMISSION_NESTING - 1)]))
    validate_submission(generate("heavy_legal"))


def sort_run(sandbox: Sandbox, submission: bytes, wall_ms: int, *, precompile: bool) -> tuple:
    spec, module = load_challenge(SORT_TOML)
    limits = dataclasses.replace(spec.resources, wall_ms=wall_ms, max_input_bytes=2_000_000)
    data, seed, sha = make_input(module, submission)
    nested = (submission,) if precompile else ()
    result = sandbox.evaluate(module, sha, spec.entrypoint, data, limits, seed, nested)
    return result.outcome, result.message, result.fuel_used, result.output_sha256


@pytest.mark.parametrize(
    ("kind", "expect"), [("compile_bomb", "invalid"), ("heavy_legal", "trap:compile_budget")]
)
@pytest.mark.parametrize("precompile", [True, False], ids=["precompiled", "compiled_in_host_call"])
def test_outcome_does_not_depend_on_cache_state_or_compile_speed(tmp_path, kind, expect, precompile):
    """heavy_legal is estimated at 1,000 ms, over the compile budget of a 250 ms
    evaluation, and takes ~0.4 s to compile here: it is charged by its estimate, whether
    the job compiled it up front, the host call did, or a cache spared the compile."""
    submission = generate(kind)
    cold_box = Sandbox(tmp_path)
    try:
        cold = sort_run(cold_box, submission, 250, precompile=precompile)
        warm = sort_run(cold_box, submission, 250, precompile=precompile)
    finally:
        cold_box.close()
    fresh_box = Sandbox(tmp_path)  # challenge from the disk cache, submission compiled again
    try:
        fresh = sort_run(fresh_box, submission, 250, precompile=precompile)
    finally:
        fresh_box.close()
    assert cold == warm == fresh
    assert cold[0] == expect, cold


def test_submission_modules_never_reach_the_disk_cache(run, data_dir):
    subs = [
        str(SUBMISSIONS / "sort" / n) for n in ("good_shell.wasm", "good_insertion.wasm", "bad_unsorted.wasm")
    ]
    result = run("eval", "run", str(SORT_TOML), *subs)
    assert result.exit_code == 0, result.output
    cached = sorted(p.name for p in evaluation.cache_dir(data_dir).iterdir())
    # the sort challenge itself, and the node secret; no submission, no reference module
    assert len(cached) == 2 and cached[1] == "secret" and cached[0].endswith(".cwasm")


def test_cache_write_failure_only_costs_the_caching(data_dir, caplog):
    """The artifact's temporary file is /dev/full: the write fails with ENOSPC."""
    from platform_cli.runtime.cache import ModuleCache
    from platform_cli.runtime.engine import engine_fingerprint

    spec, module = load_challenge(SORT_TOML)
    cache = evaluation.cache_dir(data_dir)
    cache.mkdir(parents=True)
    key = ModuleCache(validation_engine(), engine_fingerprint(), cache).key(spec.module_sha256)
    (cache / f"{key}.cwasm.{os.getpid()}.tmp").symlink_to("/dev/full")
    prepared = [evaluation.prepare(spec, module, GOOD["sort"].read_bytes(), 1, "s") for _ in range(2)]
    with caplog.at_level("WARNING", logger="platform.runtime.cache"):
        runs = evaluation.execute(prepared, 1, data_dir)
    assert [r.outcome for r in runs] == ["ok", "ok"]
    assert "event=cache_write_failed" in caplog.text
    assert sorted(p.name for p in cache.iterdir()) == ["secret"]


def test_cache_directory_that_cannot_exist(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    box = Sandbox(blocker / "cache")  # under a regular file: every cache I/O fails
    try:
        assert sort_run(box, GOOD["sort"].read_bytes(), 2_000, precompile=True)[0] == "ok"
        assert box.cache.stats["write_failures"] == 1
    finally:
        box.close()


@pytest.fixture
def unsafe_files(tmp_path):
    fifo = tmp_path / "fifo.wasm"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.wasm"
    zero.symlink_to("/dev/zero")
    return {"fifo": fifo, "zero": zero}


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_run_refuses_special_files(run, data_dir, unsafe_files, kind):
    result = run("eval", "run", str(SORT_TOML), str(unsafe_files[kind]))
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "is not a regular file" in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_conformance_refuses_special_files(run, unsafe_files, kind):
    result = run("eval", "conformance", str(unsafe_files[kind]))
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "is not a regular file" in result.stderr


def commit(data_dir: Path, update_id: str) -> None:
    from platform_cli import registry as reg
    from platform_cli.config import load_config
    from platform_cli.state import open_state

    with open_state(data_dir) as state:
        reg.commit_update(state, load_config(data_dir), update_id, effective_block=0)


def propose(run, path: Path) -> str:
    result = run("--json", "registry", "propose", str(path))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["update_id"]


def sign(run, action: str, out: Path) -> Path:
    result = run(
        "registry",
        "sign",
        str(CHALLENGES / "predict" / "challenge.toml"),
        "--key",
        "sudo",
        "--action",
        action,
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    return out


def test_bare_id_runs_only_the_active_version(run, data_dir, sudo_key, tmp_path):
    good = str(GOOD["predict"])
    update = propose(run, CHALLENGES / "predict" / "update.json")
    draft = run("eval", "run", "predict", good)
    assert draft.exit_code == 1 and "no active version" in draft.stderr and "predict@VERSION" in draft.stderr
    explicit = run("--json", "eval", "run", "predict@1.0.0", good)
    assert explicit.exit_code == 0, explicit.output
    assert json.loads(explicit.stdout)["challenge_state"] == "draft"
    assert "is draft, not active" in explicit.stderr
    commit(data_dir, update)
    active = run("--json", "eval", "run", "predict", good)
    assert active.exit_code == 0 and json.loads(active.stdout)["challenge_state"] == "active"
    assert "warning" not in active.stderr
    commit(data_dir, propose(run, sign(run, "deprecate", tmp_path / "deprecate.json")))
    assert "no active version" in run("eval", "run", "predict", good).stderr
    deprecated = run("--json", "eval", "run", "predict@1.0.0", good)
    assert json.loads(deprecated.stdout)["challenge_state"] == "deprecated"
    commit(data_dir, propose(run, sign(run, "retire", tmp_path / "retire.json")))
    retired = run("eval", "run", "predict@1.0.0", good)
    assert retired.exit_code == 1 and "retired" in retired.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("eval", "list", "--limit", "1e20"),
        ("eval", "list", "--limit", str(2**63)),
        ("eval", "show", "99999999999999999999"),
        ("eval", "replay", "99999999999999999999"),
        ("eval", "show", "0"),
        ("eval", "run", "--epoch", str(2**64), str(SORT_TOML), str(GOOD["sort"])),
    ],
)
def test_huge_integers_are_usage_errors(run, args):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.stderr


def test_check_submission_reuses_the_process_engine(monkeypatch):
    spec, _ = load_challenge(SORT_TOML)
    validation_engine()
    created = []

    class Counting(wasmtime.Engine):
        def __init__(self, *args, **kwargs):
            created.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(wasmtime, "Engine", Counting)
    for _ in range(3):
        evaluation.check_submission(spec, GOOD["sort"].read_bytes(), "good")
    assert created == []
