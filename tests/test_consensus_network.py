"""Consensus between real validator processes (a devnet of 4 on 127.0.0.1).

Twenty sudo-signed registry updates proposed at one validator commit in order on all;
the leader of the round being decided, killed with SIGKILL, leaves the others committing
(the round times out: a view change) and, restarted, catches up through sync; one paused with SIGSTOP
beyond the round timeout rejoins; every certificate of a log verifies offline, and one
with a signature removed or altered does not, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from platform_cli.node.health import pid_alive
from tests.conftest import FIXTURES
from tests.p2p_helpers import wait_for

WAIT_S = 180
UPDATES = 20


def platform(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "platform_cli", *args], capture_output=True, text=True, timeout=timeout
    )


def ok(*args: str, timeout: float = 240) -> str:
    result = platform(*args, timeout=timeout)
    assert result.returncode == 0, f"platform {' '.join(args)}: {result.stderr}"
    return result.stdout


def lines(data_dir: Path, *args: str) -> list[dict[str, Any]]:
    out = ok("--data-dir", str(data_dir), "--json", *args)
    return [json.loads(line) for line in out.splitlines()]


def log_of(data_dir: Path) -> list[dict[str, Any]]:
    return lines(data_dir, "consensus", "log", "--limit", "100000")


def signed_updates(tmp_path: Path, sudo_dir: Path, count: int = UPDATES) -> list[Path]:
    """``count`` sudo-signed 'add' updates of distinct challenges, 5,000 ppm each (the
    shipped challenges hold 900,000 of mechanism 0's 1,000,000)."""
    ok("--data-dir", str(sudo_dir), "keys", "import", "--name", "sudo", "--wallet", "devnet",
       "--hotkey", "sudo", "--wallet-path", str(FIXTURES / "wallets"))  # fmt: skip
    paths = []
    for index in range(count):
        folder = tmp_path / f"challenge-{index:02d}"
        shutil.copytree(FIXTURES / "challenge", folder)
        toml = folder / "challenge.toml"
        text = re.sub(r'^id = "hello"', f'id = "t{index:02d}"', toml.read_text(), flags=re.M)
        toml.write_text(re.sub(r"emission_ppm = [0-9_]+", "emission_ppm = 5_000", text))
        out = tmp_path / f"update-{index:02d}.json"
        ok("--data-dir", str(sudo_dir), "registry", "sign", str(toml), "--key", "sudo", "--action", "add",
           "-o", str(out))  # fmt: skip
        paths.append(out)
    return paths


def hotkey_of(data_dir: Path) -> str:
    return lines(data_dir, "keys", "show", "validator")[0]["ss58"]


def leading(data_dir: Path) -> str | None:
    """The proposer of the round ``data_dir``'s validator is in (the devnet's set is the same
    every epoch: its members in hotkey order, rotating with height + round)."""
    import sqlite3

    with sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True) as conn:
        at = conn.execute("SELECT height, round FROM consensus_resume").fetchone()
        members = sorted(
            hotkey
            for (hotkey,) in conn.execute(
                "SELECT hotkey FROM metagraph_neurons WHERE block = 1000 AND validator_permit = 1 AND stake_rao > 0"
            )
        )
    return members[(at[0] + at[1]) % len(members)] if at and members else None


@pytest.fixture
def devnet(tmp_path: Path) -> Any:
    root = tmp_path / "devnet"
    ok(
        "devnet",
        "up",
        "-n",
        "4",
        "--miners",
        "0",
        "--block-time-ms",
        "250",
        "--tempo",
        "40",
        "--dir",
        str(root),
    )
    manifest = json.loads((root / "devnet.json").read_text())
    try:
        yield root, manifest
    finally:
        platform("devnet", "down", "--dir", str(root), timeout=120)
        for entry in json.loads((root / "devnet.json").read_text())["validators"]:
            assert not pid_alive(entry["pid"])
        for log in root.glob("*/node.log"):
            assert "Traceback" not in log.read_text(), log


def test_registry_updates_commit_in_order_through_kills_and_pauses(tmp_path: Path, devnet: Any) -> None:
    root, manifest = devnet
    dirs = [Path(v["data_dir"]) for v in manifest["validators"]]
    updates = signed_updates(tmp_path, tmp_path / "sudo")

    def propose(batch: list[Path]) -> list[str]:
        return [json.loads(ok("--data-dir", str(dirs[0]), "--json", "consensus", "propose", str(u)))["update_id"]
                for u in batch]  # fmt: skip

    # validator-3 (12% of the stake: the others keep a quorum) is killed while it leads the
    # round being decided: the round times out and the next round's proposer takes over.
    ids = propose(updates[: UPDATES // 2])
    victim = manifest["validators"][3]
    wait_for(
        lambda: leading(dirs[0]) == hotkey_of(dirs[3]), WAIT_S, interval=0.02, what="validator-3 to lead"
    )
    killed_at = len(log_of(dirs[0]))
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim["pid"]), 10, what="validator-3 to be gone")
    ids += propose(updates[UPDATES // 2 :])

    def all_applied(data_dir: Path) -> bool:
        rows = lines(data_dir, "registry", "history")
        return {r["update_id"] for r in rows} >= set(ids)

    wait_for(
        lambda: all(all_applied(d) for d in dirs[:3]), WAIT_S, interval=1, what="the updates on 3 validators"
    )
    after_kill = log_of(dirs[0])[killed_at:]
    assert any(entry["round"] >= 1 for entry in after_kill), "no view change while validator-3 was down"

    # In the order proposed, everywhere.
    history = [r for r in lines(dirs[0], "registry", "history") if r["update_id"] in ids]
    assert [r["update_id"] for r in sorted(history, key=lambda r: r["seq"])] == ids

    # validator-3 comes back and catches up through sync.
    restarted = platform("devnet", "up", "--dir", str(root))
    assert restarted.returncode == 0, restarted.stderr
    height = len(log_of(dirs[0]))
    wait_for(lambda: len(log_of(dirs[3])) >= height, WAIT_S, interval=1, what="validator-3 to catch up")
    wait_for(lambda: all_applied(dirs[3]), WAIT_S, interval=1, what="the updates on validator-3")

    # validator-2 paused beyond the round timeout, then resumed, rejoins.
    paused = json.loads((root / "devnet.json").read_text())["validators"][2]["pid"]
    os.kill(paused, signal.SIGSTOP)
    try:
        time.sleep(4)  # rounds start with 800 ms to propose: several time out meanwhile
    finally:
        os.kill(paused, signal.SIGCONT)
    height = len(log_of(dirs[0]))
    wait_for(lambda: len(log_of(dirs[2])) >= height, WAIT_S, interval=1, what="validator-2 to rejoin")

    # One log, one registry.
    logs = [[e["value_id"] for e in log_of(d)] for d in dirs]
    common = min(len(log) for log in logs)
    assert common >= 3 and all(log[:common] == logs[0][:common] for log in logs)
    registries = [
        json.dumps(
            [{k: v for k, v in row.items() if k != "updated_ms"} for row in lines(d, "registry", "list")]
        )
        for d in dirs
    ]
    assert len(set(registries)) == 1

    # Every certificate of a log verifies offline; a tampered one does not.
    for height in range(1, common + 1):
        cert = tmp_path / f"cert-{height}.json"
        ok("--data-dir", str(dirs[1]), "consensus", "show", str(height), "-o", str(cert))
        ok("--data-dir", str(dirs[3]), "consensus", "verify", str(cert))
    doc = json.loads((tmp_path / "cert-1.json").read_text())
    missing = dict(doc, precommits=doc["precommits"][:1])
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    refused = platform("--data-dir", str(dirs[3]), "consensus", "verify", str(tmp_path / "missing.json"))
    assert refused.returncode == 1 and "quorum needs more than 2/3" in refused.stderr
    altered = json.loads(json.dumps(doc))
    altered["precommits"][0]["signature"] = altered["precommits"][1]["signature"]
    (tmp_path / "altered.json").write_text(json.dumps(altered))
    refused = platform("--data-dir", str(dirs[3]), "consensus", "verify", str(tmp_path / "altered.json"))
    assert refused.returncode == 1 and "signature does not verify" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_a_second_process_with_a_validators_key_becomes_evidence_never_a_second_vote(
    tmp_path: Path, devnet: Any
) -> None:
    """validator-1's key in a second process, with an update only that process holds: on
    validator-1's turns both propose, with different values, at the same slot. The others
    keep one vote per signer (every certificate verifies) and keep the conflict as evidence."""
    _, manifest = devnet
    dirs = [Path(v["data_dir"]) for v in manifest["validators"]]
    twin = tmp_path / "twin"
    twin.mkdir()
    config = (dirs[1] / "platform.toml").read_text()
    boot = lines(dirs[0], "peer", "id")[0]["addrs"][0]
    config = re.sub(r"listen = \[.*\]", 'listen = ["/ip4/127.0.0.1/tcp/0"]', config)
    config = re.sub(r"bootstrap = \[.*\]", f'bootstrap = ["{boot}"]', config)
    (twin / "platform.toml").write_text(config)
    ok("--data-dir", str(twin), "keys", "import", "--name", "validator", "--wallet", "devnet", "--hotkey",
       "validator-1", "--wallet-path", str(FIXTURES / "wallets"))  # fmt: skip
    ok("--data-dir", str(twin), "chain", "sync")
    (update,) = signed_updates(tmp_path, tmp_path / "sudo", count=1)
    with open(twin / "up.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "platform_cli", "--data-dir", str(twin), "-v", "up"],
            stdout=log,
            stderr=log,
        )
    try:
        wait_for(lambda: lines(twin, "status")[0]["node"]["running"], 90, interval=1, what="the twin to run")
        # Pending at the twin only ('registry propose' does not gossip it, as 'consensus
        # propose' would): on validator-1's turns the two propose different values.
        ok("--data-dir", str(twin), "registry", "propose", str(update))
        hotkey = lines(twin, "keys", "show", "validator")[0]["ss58"]

        def evidence() -> list[dict[str, Any]]:
            held = [e for d in (dirs[0], dirs[2], dirs[3]) for e in lines(d, "consensus", "evidence")]
            return [e for e in held if e["signer"] == hotkey]

        found = wait_for(evidence, WAIT_S, interval=1, what="evidence against validator-1's key")
        assert found[0]["messages"][0] != found[0]["messages"][1]

        def refused_as_equivocator() -> bool:
            rejections = [r for d in (dirs[0], dirs[2], dirs[3]) for r in lines(d, "peer", "rejections")]
            return any(r["reason"] == "equivocator" for r in rejections)

        wait_for(refused_as_equivocator, 60, interval=1, what="validator-1's consensus messages refused")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    height = len(log_of(dirs[0]))
    for h in range(max(1, height - 5), height + 1):
        cert = tmp_path / f"cert-{h}.json"
        ok("--data-dir", str(dirs[0]), "consensus", "show", str(h), "-o", str(cert))
        ok("--data-dir", str(dirs[2]), "consensus", "verify", str(cert))
    logs = [[e["value_id"] for e in log_of(d)] for d in dirs]
    common = min(len(log) for log in logs)
    assert all(log[:common] == logs[0][:common] for log in logs)
