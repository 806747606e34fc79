"""``chain dev init --seed``: hostile and invalid seeds are one error line, and a failed
init leaves no chain behind (it is built in a temporary file and linked into place)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from platform_cli.chain.dev.chain import DevChain
from platform_cli.chain.dev.seed import MAX_SEED_BYTES
from platform_cli.errors import PlatformError
from tests.chain_helpers import SEED, Run, ok


def seed_with(**changes: object) -> dict[str, object]:
    doc = json.loads(json.dumps(SEED))
    doc.update(changes)
    return doc


def neuron(**changes: object) -> dict[str, object]:
    return {**SEED["neurons"][1], **changes}


def hostile(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"seed-{kind}"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00{\x81")
    elif kind == "huge":
        path.write_bytes(b" " * (MAX_SEED_BYTES + 1))
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "not-an-object":
        path.write_text("[1, 2]")
    return path


HOSTILE = ["empty", "binary", "huge", "deep", "fifo", "dev-zero", "directory", "dangling", "not-an-object"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_seed_files_are_one_error_line_and_build_nothing(
    kind: str, run: Run, data_dir: Path, tmp_path: Path
) -> None:
    result = run("chain", "dev", "init", "--seed", str(hostile(tmp_path, kind)))
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and f"seed-{kind}" in result.stderr
    assert not (data_dir / "devchain.db").exists()
    assert [p.name for p in data_dir.glob(".devchain*")] == []


INVALID: list[tuple[dict[str, object], str]] = [
    (seed_with(hyperparameters={"Tempo": "x"}), "hyperparameters: Tempo = 'x' must be an integer"),
    (seed_with(hyperparameters={"Tempo": 0}), "hyperparameters: Tempo = 0 must be in 1..65535"),
    (seed_with(hyperparameters={"MaxWeightsLimit": 70000}), "MaxWeightsLimit = 70000 must be in 0..65535"),
    (
        seed_with(hyperparameters={"CommitRevealWeightsEnabled": 1}),
        "CommitRevealWeightsEnabled = 1 must be a boolean",
    ),
    (seed_with(hyperparameters={"Speed": 1}), "'Speed' is not a dev chain hyperparameter"),
    (
        seed_with(hyperparameters={"SubnetEpochConsensus": "Fast"}),
        "SubnetEpochConsensus = 'Fast' must be one of",
    ),
    (
        seed_with(neurons=[neuron(hotkey="not-an-address")]),
        "neurons[0]: hotkey = 'not-an-address' is not an ss58",
    ),
    (seed_with(neurons=[neuron(coldkey=7)]), "neurons[0]: coldkey = 7 must be a string"),
    (seed_with(neurons=[neuron(), neuron()]), "neurons[1]: hotkey 5"),
    (seed_with(neurons=[neuron(stake_tao=-1)]), "neurons[0]: stake_tao = -1 must be in 0..21000000"),
    (
        seed_with(owner={"hotkey": "x", "coldkey": SEED["owner"]["coldkey"]}),
        "owner: hotkey = 'x' is not an ss58",
    ),
    ({"netuid": 1}, "owner is missing (it must be a JSON object)"),
    (seed_with(netuid=0), "netuid = 0 must be in 1..4095"),
    (seed_with(netuid=4096), "netuid = 4096 must be in 1..4095"),
    (seed_with(start_block=2**32), "start_block = 4294967296 must be in"),
    (seed_with(hyperparameters={"MaxAllowedUids": 2}), "neurons, more than MaxAllowedUids = 2"),
]


@pytest.mark.parametrize(("doc", "message"), INVALID, ids=[m for _, m in INVALID])
def test_every_seed_field_is_checked(
    doc: dict[str, object], message: str, run: Run, data_dir: Path, tmp_path: Path
) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(doc))
    result = run("chain", "dev", "init", "--seed", str(seed))
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert message in result.stderr and str(seed) in result.stderr
    assert not (data_dir / "devchain.db").exists()


def test_a_failed_init_leaves_no_chain_and_a_second_init_works(
    run: Run, data_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text(json.dumps(seed_with(hyperparameters={"Tempo": "x"})))
    assert run("chain", "dev", "init", "--seed", str(bad)).exit_code == 1
    status = run("chain", "dev", "status")
    assert status.exit_code == 1 and "run `platform chain dev init` first" in status.stderr
    ok(run("chain", "dev", "init"))
    assert ok(run("chain", "dev", "status"))


def test_a_failure_while_building_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "chain" / "dev.db"

    def half_built(chain: DevChain) -> None:
        chain.add_subnet(1, SEED["owner"]["hotkey"], SEED["owner"]["coldkey"], {})
        raise PlatformError("the disk is full")

    with pytest.raises(PlatformError, match="the disk is full"):
        DevChain.create(target, start_block=1, block_time_ms=0, setup=half_built)
    assert list(target.parent.iterdir()) == []


def test_concurrent_inits_build_one_chain(tmp_path: Path) -> None:
    target = tmp_path / "dev.db"
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def build(chain: DevChain) -> None:
        chain.add_subnet(1, SEED["owner"]["hotkey"], SEED["owner"]["coldkey"], {})

    def racer() -> None:
        barrier.wait()
        try:
            DevChain.create(target, start_block=1, block_time_ms=0, setup=build).release()
            outcomes.append("built")
        except PlatformError as exc:
            outcomes.append("exists" if "already exists" in str(exc) else str(exc))

    threads: list[threading.Thread] = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["built", "exists", "exists", "exists"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_old_format_file_is_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    old = tmp_path / "dev.db"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.commit()
    conn.close()
    with pytest.raises(PlatformError, match="is not a dev chain of this version"):
        DevChain(old)
    junk: Callable[[Path], None] = lambda p: p.write_bytes(b"not sqlite at all" * 100)  # noqa: E731
    junk(old)
    with pytest.raises(PlatformError, match="is not a dev chain of this version"):
        DevChain(old)
