"""``platform consensus verify`` and ``simulate`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_cli.consensus.sim_world import NETWORK, START_BLOCK
from platform_cli.state.db import open_state
from platform_cli.state.metagraph import Neuron, Snapshot, save_snapshot


@pytest.fixture
def simulated(run, tmp_path: Path) -> Path:
    out = tmp_path / "sim"
    result = run(
        "consensus", "simulate", "--seed", "3", "--validators", "4", "--byzantine", "1", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["committed"] == 3
    assert json.loads((out / "summary.json").read_text()) == summary
    return out


def one_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_every_simulated_certificate_verifies_offline(run, simulated: Path) -> None:
    log = [json.loads(line) for line in (simulated / "log.jsonl").read_text().splitlines()]
    assert [entry["height"] for entry in log] == [1, 2, 3]
    for height in (1, 2, 3):
        result = run(
            "--json",
            "consensus",
            "verify",
            str(simulated / "certificates" / f"{height}.json"),
            "--snapshot",
            str(simulated / "validators.json"),
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["valid"] and report["height"] == height and report["value_checked"]
        assert report["value_id"] == log[height - 1]["value_id"]


def tampered(simulated: Path, tmp_path: Path, change) -> Path:
    doc = json.loads((simulated / "certificates" / "2.json").read_text())
    change(doc)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    return path


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def flip_signature(doc) -> None:
    signature = doc["precommits"][1]["signature"]
    doc["precommits"][1]["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(precommits=d["precommits"][:2]),
            "a quorum needs more than 2/3 of the stake and at least 3 validators",
        ),
        (flip_signature, "precommit 1 ("),
        (lambda d: d.update(height=9), "votes for height 2 round"),
        (lambda d: d["value"].update(prev="00" * 32), "the value's id is"),
        (lambda d: d["precommits"].append(d["precommits"][0]), "the signer appears twice"),
        (lambda d: d.update(set_id="00" * 32), "was signed under validator set 0000000000000000"),
        (lambda d: d.pop("round"), "missing 'round'"),
        (lambda d: d.update(value=nested(40)), "the value is not canonical"),
        (lambda d: d["network"].update(netuid="100"), "netuid must be an integer"),
    ],
)
def test_a_damaged_certificate_fails_with_exactly_what_is_wrong(
    run, simulated, tmp_path, change, message
) -> None:
    path = tampered(simulated, tmp_path, change)
    result = run("consensus", "verify", str(path), "--snapshot", str(simulated / "validators.json"))
    assert message in one_error(result)


def test_the_validator_set_can_come_from_the_state(run, simulated: Path, data_dir: Path) -> None:
    validators = json.loads((simulated / "validators.json").read_text())["validators"]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "platform.toml").write_text(
        f'[network]\nnetuid = {NETWORK.netuid}\ngenesis = "{NETWORK.genesis}"\n'
        f'sudo = "{validators[0]["hotkey"]}"\n'
    )
    cert = str(simulated / "certificates" / "1.json")
    assert "no metagraph snapshot of block" in one_error(run("consensus", "verify", cert))
    neurons = tuple(
        Neuron(uid, v["hotkey"], v["hotkey"], v["stake"], True) for uid, v in enumerate(validators)
    )
    with open_state(data_dir) as state:
        save_snapshot(state, Snapshot(NETWORK.netuid, START_BLOCK, 360, neurons))
    assert run("consensus", "verify", cert).exit_code == 0
    with open_state(data_dir) as state:
        save_snapshot(state, Snapshot(NETWORK.netuid, START_BLOCK, 360, neurons[1:]))
    assert "signed under validator set" in one_error(run("consensus", "verify", cert))


def test_a_certificate_of_another_network_is_refused(run, simulated: Path, tmp_path: Path) -> None:
    doc = json.loads((simulated / "validators.json").read_text())
    doc["network"]["genesis"] = "elsewhere"
    other = tmp_path / "set.json"
    other.write_text(json.dumps(doc))
    result = run("consensus", "verify", str(simulated / "certificates" / "1.json"), "--snapshot", str(other))
    assert "the validator set for netuid 4242 genesis 'elsewhere'" in one_error(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--seed", "1", "--validators", "4", "--byzantine", "2"), "--byzantine 2 exceeds f = 1"),
        (("--seed", "1", "--stake-spread", "1.5"), "--stake-spread"),
        (("--seed", "1", "--byzantine", "1", "--strategy", "nice"), "unknown strategy 'nice'"),
    ],
)
def test_simulate_refuses_impossible_schedules_in_one_line(run, args, message) -> None:
    result = run("consensus", "simulate", *args)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_a_malformed_validator_set_file_is_refused_in_one_line(run, simulated: Path, tmp_path: Path) -> None:
    doc = json.loads((simulated / "validators.json").read_text())
    doc["validators"][0]["stake"] = "1"
    bad = tmp_path / "set.json"
    bad.write_text(json.dumps(doc))
    result = run("consensus", "verify", str(simulated / "certificates" / "1.json"), "--snapshot", str(bad))
    assert "validator 0 needs a string hotkey and an integer stake" in one_error(result)
    doc["validators"][0]["stake"] = 0
    doc["validators"] = doc["validators"][:1]
    bad.write_text(json.dumps(doc))
    result = run("consensus", "verify", str(simulated / "certificates" / "1.json"), "--snapshot", str(bad))
    assert "the validator set is empty" in one_error(result)


def test_verify_refuses_unreadable_input_in_one_line(run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in one_error(run("consensus", "verify", str(bad), "--snapshot", str(bad)))
    assert "cannot read certificate" in one_error(run("consensus", "verify", str(tmp_path / "missing.json")))
