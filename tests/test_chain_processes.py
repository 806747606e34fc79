"""Two validator processes on one machine share one dev chain file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from platform_cli.chain.records import history
from platform_cli.state import open_state
from tests.chain_helpers import NETUID, import_args, sdk_read, uid


def platform(data_dir: Path, *args: str, wait: bool = True) -> subprocess.Popen[str] | dict:
    env = dict(os.environ, PLATFORM_DATA_DIR=str(data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "platform_cli", "--json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return proc
    return finish(proc)


def finish(proc: subprocess.Popen[str]) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[0])


@pytest.mark.slow
def test_two_validators_see_the_same_blocks_and_each_others_weights(tmp_path: Path) -> None:
    shared = tmp_path / "shared-devchain.db"
    nodes = {name: tmp_path / name for name in ("validator-0", "validator-1")}
    for name, data_dir in nodes.items():
        data_dir.mkdir()
        (data_dir / "platform.toml").write_text(f'[chain]\ndev_db = "{shared}"\n')
        platform(data_dir, *import_args("validator", name))
    first, second = nodes["validator-0"], nodes["validator-1"]
    platform(first, "chain", "dev", "init", "--block-time-ms", "0")
    advanced = platform(first, "chain", "dev", "advance", "40")
    assert platform(second, "chain", "dev", "status")["head"] == advanced["head"]

    running = [platform(d, "weights", "submit", wait=False) for d in nodes.values()]
    outcomes = [finish(proc) for proc in running]
    assert [o["outcome"] for o in outcomes] == ["confirmed", "confirmed"]
    assert outcomes[0]["block"] == outcomes[1]["block"] == advanced["head"]

    rows = sdk_read(shared, lambda c: c.weights.weights(NETUID))
    assert set(rows) == {uid("validator-0"), uid("validator-1")}
    for data_dir in nodes.values():
        assert platform(data_dir, "chain", "status")["head"] == advanced["head"]


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.slow
def test_weights_run_sets_weights_on_the_block_clock_and_stops_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    (data_dir / "platform.toml").write_text("[weights]\nlead_blocks = 3\n")
    platform(data_dir, *import_args("validator", "validator-0"))
    platform(data_dir, "chain", "dev", "init", "--block-time-ms", "100", "--tempo", "10", "--rate-limit", "2")
    loop = platform(data_dir, "weights", "run", wait=False)
    assert isinstance(loop, subprocess.Popen)

    def confirmed_epochs() -> set[int]:
        with open_state(data_dir) as state:
            return {r["epoch"] for r in history(state, NETUID) if r["outcome"] == "confirmed"}

    try:
        landed = wait_for(lambda: len(confirmed_epochs()) >= 2, 60)
    finally:
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=30)
    assert landed, err
    assert loop.returncode == 0, err
