"""``platform chain``: the dev chain commands, sync into snapshots, status, config errors."""

from __future__ import annotations

import json
from pathlib import Path

from platform_cli.chain.sync import latest_hyperparams
from platform_cli.state import open_state
from platform_cli.state.metagraph import latest_snapshot
from tests.chain_helpers import NETUID, SEED, Run, as_json, hotkey, ok


def test_dev_init_status_advance(run: Run, data_dir: Path) -> None:
    info = as_json(run("--json", "chain", "dev", "init", "--block-time-ms", "0", "--tempo", "99"))
    assert info["head"] == SEED["start_block"] and info["tempo"] == 99
    assert info["neurons"] == len(SEED["neurons"]) and info["validators"] == 6  # 5 staked + the owner
    assert Path(info["path"]) == data_dir / "devchain.db"
    assert as_json(run("--json", "chain", "dev", "advance", "25"))["head"] == SEED["start_block"] + 25
    status = as_json(run("--json", "chain", "dev", "status"))
    assert status["head"] == SEED["start_block"] + 25
    again = run("chain", "dev", "init")
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_sync_writes_a_snapshot_and_hyperparameters(run: Run, data_dir: Path) -> None:
    ok(run("chain", "dev", "init", "--block-time-ms", "0", "--rate-limit", "7", "--commit-reveal"))
    ok(run("chain", "dev", "advance", "3"))
    synced = as_json(run("--json", "chain", "sync"))
    assert synced == {
        "network": "dev",
        "netuid": NETUID,
        "block": SEED["start_block"] + 3,
        "neurons": len(SEED["neurons"]),
        "validators": 6,
        "epoch": 0,
        "epoch_start": SEED["start_block"],  # epoch 0 began with the subnet
    }
    with open_state(data_dir) as state:
        snapshot = latest_snapshot(state, NETUID)
        hyper = latest_hyperparams(state, NETUID)
    assert snapshot is not None and hyper is not None
    assert snapshot.validators()[hotkey("validator-0")] == 40_000 * 10**9
    assert hyper.weights_rate_limit == 7 and hyper.commit_reveal and hyper.min_allowed_weights == 8
    status = as_json(run("--json", "chain", "status"))
    assert status["head"] == status["snapshot_block"] == SEED["start_block"] + 3
    assert status["commit_reveal"] is True and status["owner_hotkey"] == SEED["owner"]["hotkey"]


def test_commands_without_a_dev_chain_say_what_to_do(run: Run) -> None:
    for args in (("chain", "sync"), ("chain", "dev", "status"), ("chain", "dev", "advance", "1")):
        result = run(*args)
        assert result.exit_code == 1 and "platform chain dev init" in result.stderr, args
    offline = as_json(run("--json", "chain", "status", "--offline"))
    assert offline["snapshot_block"] is None and offline["head"] is None


def test_bad_chain_config_names_file_and_field(run: Run, data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "platform.toml").write_text('[chain]\nnetwork = "mainnet"\n')
    result = run("chain", "sync")
    assert result.exit_code == 1
    assert "platform.toml: chain.network = 'mainnet'" in result.stderr
    (data_dir / "platform.toml").write_text("[chain]\ntimeout_s = 0\n")
    assert "chain.timeout_s = 0" in run("chain", "sync").stderr
    (data_dir / "platform.toml").write_text("[chain]\nspeed = 1\n")
    assert "chain.speed is not a known setting" in run("chain", "sync").stderr


def test_bad_seed_is_a_clear_error(run: Run, tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    owner = json.dumps(SEED["owner"])
    seed.write_text(
        f'{{"netuid": 1, "owner": {owner}, "hyperparameters": {{}}, "neurons": [{{"hotkey": 5}}]}}'
    )
    result = run("chain", "dev", "init", "--seed", str(seed))
    assert result.exit_code == 1 and "neurons[0]: hotkey = 5 must be a string" in result.stderr
    neuron = {**SEED["neurons"][1], "stake_tao": 10**20}
    seed.write_text(
        json.dumps({"netuid": 1, "owner": SEED["owner"], "hyperparameters": {}, "neurons": [neuron]})
    )
    result = run("chain", "dev", "init", "--seed", str(seed))
    assert (
        result.exit_code == 1 and "neurons[0]: stake_tao = 100000000000000000000 must be in" in result.stderr
    )


def test_dev_register_then_sync_sees_the_new_neuron(run: Run, data_dir: Path) -> None:
    from bittensor.sp_core import Keypair

    ok(run("chain", "dev", "init", "--block-time-ms", "0"))
    newcomer = Keypair.create_from_uri("//Newcomer").ss58_address
    registered = as_json(run("--json", "chain", "dev", "register", newcomer, "--stake-tao", "50000"))
    assert registered["uid"] == len(SEED["neurons"])
    ok(run("chain", "sync"))
    with open_state(data_dir) as state:
        snapshot = latest_snapshot(state, NETUID)
    assert snapshot is not None and newcomer not in snapshot.validators()  # permits come with an epoch
    assert [n.stake_rao for n in snapshot.neurons if n.hotkey == newcomer] == [50_000 * 10**9]
    bad = run("chain", "dev", "register", "not-an-address")
    assert bad.exit_code == 1 and "hotkey 'not-an-address' is not an ss58 address" in bad.stderr


HUGE = str(10**20)


def test_advance_is_bounded_and_sync_keeps_working(run: Run, data_dir: Path) -> None:
    ok(run("chain", "dev", "init", "--block-time-ms", "0"))
    huge = run("chain", "dev", "advance", HUGE)
    assert huge.exit_code == 2 and "is not in the range 0<=x<=4294967295" in huge.stderr
    past = run("chain", "dev", "advance", str(2**32 - 1))
    assert past.exit_code == 1
    assert f"cannot advance by {2**32 - 1} blocks from block {SEED['start_block']}" in past.stderr
    assert as_json(run("--json", "chain", "dev", "status"))["head"] == SEED["start_block"]
    assert as_json(run("--json", "chain", "sync"))["block"] == SEED["start_block"]


def test_huge_integer_options_are_usage_errors(run: Run, data_dir: Path) -> None:
    for args in (
        ("chain", "dev", "init", "--tempo", HUGE),
        ("chain", "dev", "init", "--rate-limit", HUGE),
        ("chain", "dev", "init", "--block-time-ms", HUGE),
    ):
        result = run(*args)
        assert result.exit_code == 2 and "is not in the range" in result.stderr, args
    assert not (data_dir / "devchain.db").exists()
    ok(run("chain", "dev", "init", "--block-time-ms", "0"))
    for args in (
        ("chain", "dev", "status", "--extrinsics", HUGE),
        ("chain", "dev", "register", hotkey("miner-00"), "--stake-tao", HUGE),
    ):
        result = run(*args)
        assert result.exit_code == 2 and "is not in the range" in result.stderr, args
