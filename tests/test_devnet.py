"""``platform devnet`` end to end: four real validator processes on the dev chain, miners
submitting, identical weights set on the chain by every validator, a validator killed
with SIGKILL and restarted that catches up, and a clean ``down``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from platform_cli.core.consensus.weights import compute
from platform_cli.node.health import pid_alive
from tests.p2p_helpers import wait_for

EPOCH_WAIT_S = 240


def platform(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "platform_cli", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status(root: Path) -> dict[str, Any]:
    result = platform("devnet", "status", "--dir", str(root), timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def consensus_log(data_dir: Path) -> list[str]:
    args = ["--data-dir", str(data_dir), "--json", "consensus", "log", "--limit", "1000"]
    result = subprocess.run(
        [sys.executable, "-m", "platform_cli", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["value_id"] for line in result.stdout.splitlines()]


def committed_epochs(data_dir: Path) -> set[int]:
    """Epochs whose weights this validator set from the vector consensus committed."""
    args = ["--data-dir", str(data_dir), "--json", "weights", "history", "--limit", "20"]
    result = subprocess.run(
        [sys.executable, "-m", "platform_cli", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {
        r["epoch"]
        for r in rows
        if r["outcome"] == "confirmed" and r["message"].startswith("committed by consensus at height")
    }


def committed_everywhere(manifest: dict[str, Any], after_epoch: int) -> set[int]:
    epochs = [committed_epochs(Path(v["data_dir"])) for v in manifest["validators"]]
    return {e for e in set.intersection(*epochs) if e > after_epoch}


def agreed_after(root: Path, epoch: int) -> dict[str, Any] | None:
    report = status(root)
    agreement = report["agreement"]
    if (
        agreement["weights_set_by_all"]
        and agreement["epoch"] > epoch
        and len(agreement["vector_hashes"]) == 1
    ):
        return report
    return None


def test_a_devnet_agrees_on_weights_survives_a_sigkill_and_stops_clean(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    started = platform(
        "devnet",
        "up",
        "-n",
        "4",
        "--miners",
        "6",
        "--block-time-ms",
        "250",
        "--tempo",
        "30",
        "--dir",
        str(root),
    )
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["submissions"] == 6
    assert "validator-3 up" in started.stderr and "6 miners submitted" in started.stderr
    manifest = json.loads((root / "devnet.json").read_text())
    pids = [v["pid"] for v in manifest["validators"]] + [manifest["miners"]["pid"]]
    try:

        def evaluating() -> dict[str, Any] | None:
            report = status(root)
            rows = report["validators"]
            return report if all(v["evaluations"] > 0 and v["peers"] >= 3 for v in rows) else None

        busy = wait_for(evaluating, EPOCH_WAIT_S, interval=1, what="every validator to evaluate")
        assert all(v["running"] and v["services_up"] == v["services"] == 5 for v in busy["validators"])
        evaluated_epoch = max(v["epoch"] for v in busy["validators"])
        agreed = wait_for(
            lambda: agreed_after(root, evaluated_epoch),
            EPOCH_WAIT_S,
            interval=1,
            what="weights from every validator",
        )
        # The miners' scores, not only the burn: good files on the three challenges score.
        assert all(v["weights_scored"] and v["weights_scored"] >= 3 for v in agreed["validators"])

        victim = manifest["validators"][2]
        victim_dir = Path(victim["data_dir"])
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: not pid_alive(victim["pid"]), 10, what="the killed validator to be gone")
        down_epoch = status(root)["validators"][0]["epoch"]
        restarted = platform("devnet", "up", "--dir", str(root))
        assert restarted.returncode == 0, restarted.stderr
        assert "validator-2 up" in restarted.stderr and "validator-0 up" not in restarted.stderr
        pids.append(json.loads((root / "devnet.json").read_text())["validators"][2]["pid"])

        later = wait_for(
            lambda: agreed_after(root, down_epoch),
            EPOCH_WAIT_S,
            interval=1,
            what="agreement after the restart",
        )
        assert all(v["running"] for v in later["validators"])
        # One log: the restarted validator caught up and holds the same entries as the others.
        logs = [consensus_log(Path(v["data_dir"])) for v in manifest["validators"]]
        common = min(len(log) for log in logs)
        assert common >= 4 and all(log[:common] == logs[0][:common] for log in logs)
        # Every validator set the vector consensus committed, for the same epoch.
        wait_for(
            lambda: committed_everywhere(manifest, down_epoch),
            EPOCH_WAIT_S,
            interval=1,
            what="an epoch whose committed vector every validator set",
        )
        audit = subprocess.run(
            [sys.executable, "-m", "platform_cli", "--data-dir", str(victim_dir), "audit", "verify"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert audit.returncode == 0, audit.stderr
    finally:
        stopped = platform("devnet", "down", "--dir", str(root), timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not [pid for pid in pids if pid_alive(pid)]
    for log in root.glob("*/node.log"):
        assert "Traceback" not in log.read_text(), log


def test_devnet_commands_refuse_clearly(tmp_path: Path) -> None:
    missing = platform("devnet", "status", "--dir", str(tmp_path / "none"), timeout=60)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no devnet")
    assert missing.stderr.count("\n") == 1
    too_many = platform("devnet", "up", "-n", "6", "--dir", str(tmp_path / "x"), timeout=60)
    assert too_many.returncode == 2 and too_many.stderr.count("\n") == 1
    no_logs = platform("devnet", "logs", "validator-9", "--dir", str(tmp_path / "none"), timeout=60)
    assert no_logs.returncode == 1


def test_a_byzantine_validator_leaves_the_honest_weights_as_they_are(tmp_path: Path) -> None:
    """validator-3 reports inverted scores, signs conflicting votes and gossips garbage:
    the honest validators still commit and set one vector, and it pays the miners what
    the honest reports alone pay them."""
    root = tmp_path / "devnet"
    started = platform(
        "devnet", "up", "-n", "4", "--byzantine", "1", "--miners", "6",
        "--block-time-ms", "250", "--tempo", "30", "--dir", str(root),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    manifest = json.loads((root / "devnet.json").read_text())
    assert [v["byzantine"] for v in manifest["validators"]] == [False, False, False, True]
    honest = {**manifest, "validators": manifest["validators"][:3]}
    byzantine_dir = Path(manifest["validators"][3]["data_dir"])
    try:
        epochs = wait_for(
            lambda: {e for e in committed_everywhere(honest, -1) if scored(honest, e)},
            EPOCH_WAIT_S,
            interval=1,
            what="an epoch the honest validators set from a committed vector that pays miners",
        )
        epoch = max(epochs)
        first = Path(manifest["validators"][0]["data_dir"])
        byzantine_key = json.loads(
            ok_out("--data-dir", str(byzantine_dir), "--json", "keys", "show", "validator")
        )
        action, context, report_sets = committed_weights(first, epoch)
        honest_sets = [s for s in report_sets if s.validator != byzantine_key["ss58"]]
        weights, _ = compute(context, honest_sets)
        # The vector the four bundles decided is the one the honest bundles alone give.
        assert tuple(sorted(weights.items())) == action.weights
        assert paid([list(w) for w in action.weights])
        # Its garbage was refused (and cost it its standing).
        rejections = ok_out("--data-dir", str(first), "--json", "peer", "rejections")
        assert any(json.loads(line)["reason"] == "non_canonical" for line in rejections.splitlines())
    finally:
        stopped = platform("devnet", "down", "--dir", str(root), timeout=120)
    assert stopped.returncode == 0, stopped.stderr


def committed_weights(data_dir: Path, epoch: int) -> tuple[Any, Any, list[Any]]:
    """The committed weights action of ``epoch``, its inputs as validator-0 reads them, and
    the report sets its bundles name."""
    from platform_cli.core import canonical
    from platform_cli.core.consensus import weights as wt
    from platform_cli.core.consensus.actions import parse_action
    from platform_cli.state.db import open_state
    from platform_cli.state.metagraph import latest_snapshot

    with open_state(data_dir, readonly=True) as state:
        (height,) = state.execute("SELECT height FROM consensus_vectors WHERE epoch = ?", [epoch]).fetchone()
        (value,) = state.execute("SELECT value FROM consensus_log WHERE height = ?", [height]).fetchone()
        (action,) = [
            a
            for a in map(parse_action, canonical.decode(value)["actions"])
            if isinstance(a, wt.WeightsAction)
        ]
        snapshot = latest_snapshot(state, 100, action.inputs["snapshot_block"])
        sets = []
        for bundle in action.bundles:
            (body,) = state.execute(
                "SELECT body FROM consensus_report_sets WHERE root = ?", [wt.parse_bundle(bundle).root]
            ).fetchone()
            sets.append(wt.report_set_from_canonical(canonical.decode(body)))
    context = wt.WeightsContext(
        netuid=100,
        mechid=0,
        epoch=epoch,
        snapshot_block=snapshot.block,
        stakes=snapshot.validators(),
        uids={n.hotkey: n.uid for n in snapshot.neurons},
        challenges=tuple(wt.ChallengeShare(*c) for c in action.inputs["challenges"]),
        burn_uid=action.inputs["burn_uid"],
    )
    return action, context, sets


def ok_out(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "platform_cli", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def paid(weights: list[list[int]]) -> dict[int, int]:
    """uid -> units of the miners a vector pays (uid 0 is the devnet's burn; padding is tiny)."""
    return {uid: units for uid, units in weights if uid != 0 and units >= 10**6}


def scored(manifest: dict[str, Any], epoch: int) -> bool:
    """Whether the vector validator-0 set for ``epoch`` pays miners (not only the burn)."""
    args = [
        "--data-dir",
        manifest["validators"][0]["data_dir"],
        "--json",
        "weights",
        "show",
        "--epoch",
        str(epoch),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "platform_cli", *args], capture_output=True, text=True, timeout=60
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()] if result.returncode == 0 else []
    return bool(paid([[r["uid"], r["units"]] for r in rows]))
