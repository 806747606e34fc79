"""``platform eval`` as a user runs it: run, list, show, replay, conformance, errors."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from platform_cli.state.db import DB_FILENAME
from tests.conftest import FIXTURES
from tests.eval_helpers import CHALLENGES, GOOD, HOSTILE, SUBMISSIONS

SORT = str(CHALLENGES / "sort" / "challenge.toml")


def count_evaluations(data_dir) -> int:
    path = data_dir / DB_FILENAME
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM evaluations").fetchone()[0]


def run_json(run, *args):
    result = run("--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_run_records_and_shows_an_evaluation(run, data_dir):
    (record,) = run_json(run, "eval", "run", SORT, str(GOOD["sort"]))
    assert record["outcome"] == "ok" and record["score"] == 1_000_000_000
    shown = run_json(run, "eval", "show", str(record["id"]))[0]
    assert shown["engine"]["wasmtime"] == "50.0.1"
    assert shown["engine"]["settings"]["wasm_simd"] is False
    assert shown["host_calls"]["submission_run"] == 12
    assert shown["metrics"]["cases"] == 6
    listed = run_json(run, "eval", "list")
    assert [r["id"] for r in listed] == [record["id"]]
    text = run("eval", "list")
    assert "sort" in text.stdout and "OUTCOME" in text.stdout


def test_replay_is_identical_then_detects_tampering(run, data_dir):
    (record,) = run_json(run, "eval", "run", str(CHALLENGES / "compress"), str(GOOD["compress"]))
    replay = run("eval", "replay", str(record["id"]))
    assert replay.exit_code == 0 and "identical" in replay.stdout
    with sqlite3.connect(data_dir / DB_FILENAME) as conn:
        conn.execute("UPDATE evaluations SET fuel_used = fuel_used + 1 WHERE id = ?", [record["id"]])
    tampered = run("eval", "replay", str(record["id"]))
    assert tampered.exit_code == 1
    assert "DIFFERS" in tampered.stderr and "fuel_used" in tampered.stderr


@pytest.mark.slow
def test_jobs_run_several_submissions(run, data_dir):
    subs = [
        str(SUBMISSIONS / "sort" / n) for n in ("good_shell.wasm", "good_insertion.wasm", "bad_unsorted.wasm")
    ]
    records = run_json(run, "eval", "run", "--jobs", "2", SORT, *subs)
    assert [r["outcome"] for r in records] == ["ok", "ok", "invalid"]
    assert records[1]["score"] == 500_000_000


@pytest.mark.parametrize(
    ("submission", "message"),
    [
        ("malformed.wasm", "not an acceptable WASM submission"),
        ("bad_wasi.wasm", "not in the host whitelist"),
    ],
)
def test_malformed_submission_is_refused_and_the_batch_goes_on(run, data_dir, submission, message):
    bad, good = str(SUBMISSIONS / "sort" / submission), str(GOOD["sort"])
    result = run("--json", "eval", "run", SORT, bad, good)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {bad}: ") and message in line
    (evaluated,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert evaluated["outcome"] == "ok" and evaluated["score"] > 0
    assert count_evaluations(data_dir) == 1


def test_unknown_challenge_and_missing_files(run, data_dir):
    unknown = run("eval", "run", "no-such-challenge", str(GOOD["sort"]))
    assert unknown.exit_code == 1 and "no challenge 'no-such-challenge'" in unknown.stderr
    missing = run("eval", "run", SORT, "/nonexistent/sub.wasm")
    assert missing.exit_code == 1 and "cannot read submission" in missing.stderr
    assert run("eval", "show", "42").exit_code == 1
    assert count_evaluations(data_dir) == 0


def test_module_hash_mismatch_is_refused(run, data_dir, tmp_path):
    copy = tmp_path / "sort"
    shutil.copytree(CHALLENGES / "sort", copy)
    module = copy / "challenge.wasm"
    module.write_bytes(module.read_bytes() + b"\0")
    result = run("eval", "run", str(copy / "challenge.toml"), str(GOOD["sort"]))
    assert result.exit_code == 1 and "module.sha256" in result.stderr
    assert count_evaluations(data_dir) == 0


def test_oversized_submission_is_refused(run, data_dir, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\1" * 2_000_000)
    result = run("eval", "run", str(CHALLENGES / "predict"), str(big))
    assert result.exit_code == 1 and "max_input_bytes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert count_evaluations(data_dir) == 0


def test_run_by_registry_id(run, data_dir, sudo_key):
    proposed = run("registry", "propose", str(CHALLENGES / "predict" / "update.json"))
    assert proposed.exit_code == 0, proposed.output
    (record,) = run_json(run, "eval", "run", "predict@1.0.0", str(GOOD["predict"]))
    assert record["outcome"] == "ok" and record["metrics"]["mae_milli"] == 155


@pytest.mark.parametrize("name", ["sort", "predict", "compress"])
def test_conformance_passes_for_shipped_challenges(run, name):
    toml = CHALLENGES / name / "challenge.toml"
    result = run("eval", "conformance", str(CHALLENGES / name / "challenge.wasm"), "--challenge", str(toml))
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout and result.stdout.count("pass") == 8


def test_conformance_reports_failures(run):
    result = run("eval", "conformance", str(HOSTILE / "alloc_zero.wasm"))
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "conformance checks failed" in result.stderr
    refused = run("eval", "conformance", str(HOSTILE / "wasi_import.wasm"))
    assert refused.exit_code == 1 and "not in the host whitelist" in refused.stdout


def test_fixture_hello_challenge_is_abi_v1_shaped(run):
    """The foundation's sample module returns (0, 0): conformance says so."""
    result = run("eval", "conformance", str(FIXTURES / "challenge" / "hello.wasm"))
    assert result.exit_code == 1 and "evaluates a sample submission" in result.stdout


@pytest.mark.slow
def test_runtime_jobs_from_config(run, data_dir):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "platform.toml").write_text("[runtime]\njobs = 0\n")
    result = run("eval", "run", SORT, str(GOOD["sort"]))
    assert result.exit_code == 1 and "runtime.jobs = 0" in result.stderr
    (data_dir / "platform.toml").write_text("[runtime]\njobs = 2\n")
    records = run_json(run, "eval", "run", SORT, str(GOOD["sort"]), str(GOOD["sort"]))
    assert [r["outcome"] for r in records] == ["ok", "ok"]
    assert records[0]["output_sha256"] == records[1]["output_sha256"]
