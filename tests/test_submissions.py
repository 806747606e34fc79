"""Miners' submissions end to end: ``platform submit`` on a miner's node, a validator
(``platform up``) takes it, fetches the file from the DHT, evaluates it and publishes
its report; what the rules refuse is never evaluated."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from platform_cli.cli import cli
from platform_cli.state import open_state
from tests.chain_helpers import hotkey, import_args
from tests.conftest import FIXTURES, REPO
from tests.p2p_helpers import _read_line, wait_for

PREDICT = REPO / "challenges" / "predict"
GOOD = FIXTURES / "submissions" / "predict" / "good_linear.bin"
POOR = FIXTURES / "submissions" / "predict" / "poor_zeros.bin"


def cli_in(data_dir: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    return json.loads(lines[0]) if len(lines) == 1 else [json.loads(line) for line in lines]


def fails_in(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1
    return result.stderr


def configure(data_dir: Path, chain_db: Path, key: str, wallet_hotkey: str, bootstrap: str = "") -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    boot = f'bootstrap = ["{bootstrap}"]\n' if bootstrap else ""
    (data_dir / "platform.toml").write_text(
        f'[chain]\ndev_db = "{chain_db}"\n[weights]\nhotkey = "{key}"\n'
        f'[p2p]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n{boot}'
    )
    cli_in(data_dir, *import_args(key, wallet_hotkey))


def start(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    with open(log, "ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "platform_cli", *args], stdout=subprocess.PIPE, stderr=sink
        )
    line = _read_line(proc, 90)
    if not line:
        proc.kill()
        raise AssertionError(f"{args} did not start:\n{log.read_text()[-3000:]}")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def network(tmp_path: Path) -> Any:
    """A validator running ``platform up`` with predict active, and a miner's node beside it."""
    chain_db = tmp_path / "devchain.db"
    validator, miner = tmp_path / "validator", tmp_path / "miner"
    configure(validator, chain_db, "validator", "validator-0")
    cli_in(validator, "chain", "dev", "init", "--block-time-ms", "0")
    update_id = cli_in(validator, "registry", "propose", str(PREDICT / "update.json"))["update_id"]
    from platform_cli import registry
    from platform_cli.config import load_config

    with open_state(validator) as state:  # what consensus does once the update is agreed
        registry.commit_update(state, load_config(validator), update_id, effective_block=0)
    cli_in(validator, "chain", "sync")
    procs = []
    try:
        up, ready = start(["--data-dir", str(validator), "up"], tmp_path / "validator.log")
        procs.append(up)
        configure(miner, chain_db, "miner", "miner-00", bootstrap=ready["addrs"][0])
        cli_in(miner, "chain", "sync")
        node, _ = start(["--data-dir", str(miner), "peer", "run", "--key", "miner"], tmp_path / "miner.log")
        procs.append(node)
        wait_for(
            lambda: cli_connected(miner), 60, interval=0.5, what="the miner's node to reach the validator"
        )
        yield validator, miner
    finally:
        for proc in procs:
            stop(proc)
    for log in ("validator.log", "miner.log"):
        assert "Traceback" not in (tmp_path / log).read_text()


def cli_connected(data_dir: Path) -> bool:
    peers = cli_in(data_dir, "peer", "list")
    peers = peers if isinstance(peers, list) else [peers]
    return any(p.get("connected") for p in peers)


def test_a_miners_submission_is_fetched_evaluated_and_reported(network: tuple[Path, Path]) -> None:
    validator, miner = network
    sent = cli_in(miner, "submit", "predict", str(GOOD), "--key", "miner")
    assert sent["sha256"] == hashlib.sha256(GOOD.read_bytes()).hexdigest()
    assert sent["dht_key"] == f"/sub/{sent['sha256']}"

    def evaluated() -> Any:
        rows = cli_in(validator, "submissions", "list")
        rows = rows if isinstance(rows, list) else [rows]
        return rows if rows and rows[0]["evaluations"] == 1 else None

    (row,) = wait_for(evaluated, 120, interval=1, what="the validator to evaluate the submission")
    assert row["miner"] == hotkey("miner-00") and row["challenge_id"] == "predict" and row["held"]
    shown = cli_in(validator, "submissions", "show", sent["sha256"])
    (evaluation,) = shown["evaluations"]
    assert (
        evaluation["outcome"] == "ok"
        and evaluation["score"] > 0
        and evaluation["miner"] == hotkey("miner-00")
    )
    with open_state(validator) as state:
        reports = state.execute(
            "SELECT validator, miner, score, submission_sha256 FROM score_reports"
        ).fetchall()
        queued = state.execute(
            "SELECT count(*) FROM p2p_outbox WHERE topic LIKE '%/evaluations/%'"
        ).fetchone()[0]
    assert reports == [(hotkey("validator-0"), hotkey("miner-00"), evaluation["score"], sent["sha256"])]
    assert queued == 1  # the signed report went out on the evaluations topic


def test_submit_refuses_what_the_network_would_refuse(network: tuple[Path, Path], tmp_path: Path) -> None:
    _, miner = network
    assert "not a challenge id" in fails_in(miner, "submit", "Predict!", str(GOOD), "--key", "miner")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert "empty" in fails_in(miner, "submit", "predict", str(empty), "--key", "miner")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (256 * 1024 + 1))
    assert "at most" in fails_in(miner, "submit", "predict", str(big), "--key", "miner")
    cli_in(miner, "keys", "new", "--name", "stranger")
    assert "wrong_role" in fails_in(miner, "submit", "predict", str(POOR), "--key", "stranger")


def test_submit_needs_a_running_node(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely"
    configure(lonely, tmp_path / "devchain.db", "miner", "miner-00")
    cli_in(lonely, "chain", "dev", "init", "--block-time-ms", "0")
    cli_in(lonely, "chain", "sync")
    assert "node" in fails_in(lonely, "submit", "predict", str(GOOD), "--key", "miner")
