"""The shipped challenges: reproducible builds, signed updates, sample submissions, and
the same result in separate processes with the module cache cold and warm."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys

import pytest

from platform_cli import evaluation
from platform_cli.registry import load_challenge
from platform_cli.runtime.pool import run_job
from platform_cli.runtime.sandbox import Sandbox
from tests.eval_helpers import CHALLENGES, GOOD, REPO, SHIPPED, SUBMISSIONS

EXPECTED = [
    ("sort", "sort/good_shell.wasm", "ok", 1_000_000_000),
    ("sort", "sort/good_insertion.wasm", "ok", 500_000_000),
    ("sort", "sort/bad_unsorted.wasm", "invalid", 0),
    ("sort", "sort/bad_spin.wasm", "invalid", 0),
    ("sort", "sort/bad_trap.wasm", "invalid", 0),
    ("predict", "predict/good_linear.bin", "ok", 865_800_865),
    ("predict", "predict/poor_zeros.bin", "ok", 8_687_719),
    ("predict", "predict/bad_length.bin", "invalid", 0),
    ("compress", "compress/good_rle.wasm", "ok", 886_718_750),
    ("compress", "compress/literal.wasm", "ok", 0),
    ("compress", "compress/bad_identity.wasm", "invalid", 0),
]


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def evaluate(sandbox, name, submission_path):
    spec, module = load_challenge(CHALLENGES / name / "challenge.toml")
    prepared = evaluation.prepare(spec, module, submission_path.read_bytes(), 0, str(submission_path))
    job = prepared.job()
    return sandbox.evaluate(job.module, job.module_sha256, job.entrypoint, job.data, job.limits, job.seed)


def test_build_reproduces_committed_files_byte_for_byte():
    spec = importlib.util.spec_from_file_location("challenge_build", CHALLENGES / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    files = build.outputs()
    assert len(files) >= 40
    differ = [str(p.relative_to(REPO)) for p, data in files.items() if p.read_bytes() != data]
    assert differ == []


@pytest.mark.parametrize("name", SHIPPED)
def test_signed_update_matches_the_module(run, name):
    result = run("--json", "registry", "verify", str(CHALLENGES / name / "update.json"))
    assert result.exit_code == 0, result.output
    verified = json.loads(result.stdout)
    module = (CHALLENGES / name / "challenge.wasm").read_bytes()
    assert verified["module_sha256"] == hashlib.sha256(module).hexdigest()
    assert verified["challenge"] == name


@pytest.mark.parametrize(("name", "submission", "outcome", "score"), EXPECTED, ids=[e[1] for e in EXPECTED])
def test_sample_submissions(sandbox, name, submission, outcome, score):
    result = evaluate(sandbox, name, SUBMISSIONS / submission)
    assert result.outcome == outcome, result.message
    assert result.result.score == score


DETERMINISM_SCRIPT = """
import json, sys
from pathlib import Path
from platform_cli import evaluation
from platform_cli.registry import load_challenge
from platform_cli.runtime.pool import run_job
from platform_cli.runtime.sandbox import Sandbox
box = Sandbox(Path(sys.argv[1]))
out = {}
for name, path in json.loads(sys.argv[2]).items():
    spec, module = load_challenge(Path(sys.argv[3]) / name / "challenge.toml")
    job = evaluation.prepare(spec, module, Path(path).read_bytes(), 5, path).job()
    r = box.evaluate(
        job.module, job.module_sha256, job.entrypoint, job.data, job.limits, job.seed, job.nested
    )
    out[name] = [r.outcome, r.output_sha256, r.fuel_used]
out["cache"] = box.cache.stats
print(json.dumps(out))
"""


def in_new_process(cache_dir) -> dict:
    args = [str(cache_dir), json.dumps({k: str(v) for k, v in GOOD.items()}), str(CHALLENGES)]
    done = subprocess.run(
        [sys.executable, "-c", DETERMINISM_SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.slow
def test_same_result_in_two_processes_cold_and_warm_cache(tmp_path, sandbox):
    cold = in_new_process(tmp_path / "cache")
    warm = in_new_process(tmp_path / "cache")
    # challenge modules come from disk when warm; submission modules are never written
    assert cold["cache"]["disk_hits"] == 0 and warm["cache"]["disk_hits"] == len(SHIPPED)
    assert warm["cache"]["compiles"] == cold["cache"]["compiles"] - len(SHIPPED)
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [""] + [".cwasm"] * len(SHIPPED)
    for name in SHIPPED:
        assert cold[name][0] == "ok"
        assert cold[name] == warm[name], name
        spec, module = load_challenge(CHALLENGES / name / "challenge.toml")
        job = evaluation.prepare(spec, module, GOOD[name].read_bytes(), 5, name).job()
        here = run_job(sandbox, job)
        assert [here.outcome, here.output_sha256, here.fuel_used] == cold[name]
