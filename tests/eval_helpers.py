"""Shared helpers for the evaluation tests: the hostile manifest, challenges, inputs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli.config import tomllib
from platform_cli.core import abi
from platform_cli.core.challenge import ResourcePolicy

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


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _nest(depth: int) -> bytes:
    """``depth`` nested blocks, then a ``br_if`` to each of them: slow to compile."""
    inner = b"".join(
        b"\x20\x00\x41" + _sleb(k) + b"\x6a\x21\x00\x20\x00\x0d" + _uleb(k) for k in range(depth)
    )
    return b"\x02\x40" * depth + inner + b"\x0b" * depth


def code_module(bodies: list[bytes]) -> bytes:
    """A module of ``() -> ()`` functions with these bodies (each one i32 local, then code)."""
    code = b"".join(_uleb(len(b) + 4) + b"\x01\x01\x7f" + b + b"\x0b" for b in bodies)
    funcs = _uleb(len(bodies)) + b"\x00" * len(bodies)
    code = _uleb(len(bodies)) + code
    return (
        b"\0asm\x01\0\0\0\x01\x04\x01\x60\x00\x00"
        + b"\x03"
        + _uleb(len(funcs))
        + funcs
        + b"\x0a"
        + _uleb(len(code))
        + code
    )


def generate(kind: str) -> bytes:
    if kind == "oversize":  # a valid empty module padded past the 8 MiB cap by a custom section
        payload = b"\x03pad" + bytes(9 * 1024 * 1024)
        return b"\0asm\x01\0\0\0" + b"\x00" + _uleb(len(payload)) + payload
    if kind == "compile_bomb":  # one function, 20,000 nested blocks: seconds to compile
        return code_module([_nest(20_000)])
    if kind == "heavy_legal":  # just inside every submission limit, the slowest we found to compile
        return code_module([_nest(255) * 16] * 4)
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
