"""From evaluations to weights: reports published by validators feed the aggregation.

Two validators evaluate the same submission deterministically in their own data dirs;
validator-1's signed report reaches validator-0 through the real admission path of the
P2P node, and validator-0's weights then pay the miner its share of the challenge.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from platform_cli.cli import cli
from platform_cli.core.scores import ReportError, parse_report
from platform_cli.state import open_state
from tests.chain_helpers import hotkey, import_args, uid
from tests.conftest import FIXTURES, REPO

PREDICT = REPO / "challenges" / "predict"
GOOD = FIXTURES / "submissions" / "predict" / "good_linear.bin"


def cli_in(data_dir: Path, *args: str) -> dict | list:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return lines[0] if len(lines) == 1 else lines


def share_chain(data_dir: Path, chain_db: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "platform.toml").write_text(f'[chain]\ndev_db = "{chain_db}"\n')


def validator(data_dir: Path, wallet_hotkey: str, chain_db: Path) -> None:
    """A validator's data dir on the shared dev chain, with the predict challenge active."""
    from platform_cli import registry as reg
    from platform_cli.config import load_config

    share_chain(data_dir, chain_db)
    cli_in(data_dir, *import_args("validator", wallet_hotkey))
    update_id = cli_in(data_dir, "registry", "propose", str(PREDICT / "update.json"))["update_id"]
    with open_state(data_dir) as state:
        reg.commit_update(state, load_config(data_dir), update_id, effective_block=0)
    cli_in(data_dir, "chain", "sync")


def evaluate_and_publish(data_dir: Path, epoch: int) -> dict:
    (record,) = [
        cli_in(
            data_dir,
            "eval",
            "run",
            "predict",
            str(GOOD),
            "--miner",
            hotkey("miner-00"),
            "--epoch",
            str(epoch),
        )
    ]
    assert record["outcome"] == "ok" and record["miner"] == hotkey("miner-00")
    published = cli_in(data_dir, "eval", "publish", str(record["id"]), "--key", "validator")
    assert published["score"] == record["score"]
    return published


@pytest.fixture
def two_validators(tmp_path: Path) -> tuple[Path, Path, int]:
    chain_db = tmp_path / "devchain.db"
    first, second = tmp_path / "v0", tmp_path / "v1"
    share_chain(first, chain_db)
    cli_in(first, "chain", "dev", "init", "--block-time-ms", "0")
    validator(first, "validator-0", chain_db)
    validator(second, "validator-1", chain_db)
    epoch = cli_in(first, "chain", "status", "--offline")["epoch"]
    return first, second, epoch


def test_published_reports_of_two_validators_become_weights(two_validators: tuple[Path, Path, int]) -> None:
    from platform_cli.config import load_config
    from platform_cli.p2p.admission import Admission
    from platform_cli.p2p.store import queued_outgoing

    first, second, epoch = two_validators
    own = evaluate_and_publish(first, epoch)
    theirs = evaluate_and_publish(second, epoch)
    assert own["score"] == theirs["score"] > 0

    with open_state(second) as state:
        ((_, topic, wire),) = queued_outgoing(state)
    config = load_config(first)
    with open_state(first) as state:
        admission = Admission(state, config.network.network, config.network.sudo, rate=100, burst=100)
        assert admission.receive(topic, wire, "12D3KooWpeer")
        assert not admission.receive(topic, wire, "12D3KooWpeer")  # a replay is not stored twice

    vector = cli_in(first, "weights", "compute", "--epoch", str(epoch))
    assert vector["scored"] == 1
    with open_state(first) as state:
        reports = state.execute(
            "SELECT validator, score FROM score_reports WHERE epoch = ?", [epoch]
        ).fetchall()
        weights = json.loads(
            state.execute("SELECT weights FROM weight_vectors WHERE epoch = ?", [epoch]).fetchone()[0]
        )
    assert sorted(reports) == sorted(
        [(hotkey("validator-0"), own["score"]), (hotkey("validator-1"), theirs["score"])]
    )
    # predict pays 300_000 ppm of the emission; the only scored miner takes all of it.
    assert dict(weights)[uid("miner-00")] == 300_000_000


def test_an_unattributed_or_timed_out_evaluation_is_not_published(
    two_validators: tuple[Path, Path, int],
) -> None:
    first, _, epoch = two_validators
    (record,) = [cli_in(first, "eval", "run", "predict", str(GOOD), "--epoch", str(epoch))]
    result = CliRunner().invoke(cli, ["--data-dir", str(first), "eval", "publish", str(record["id"])])
    assert result.exit_code == 1 and "not attributed to a miner" in result.stderr
    bad_miner = CliRunner().invoke(
        cli, ["--data-dir", str(first), "eval", "run", "predict", str(GOOD), "--miner", "nobody"]
    )
    assert bad_miner.exit_code == 1 and "--miner 'nobody' is not an ss58 address" in bad_miner.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": 10**9 + 1}, "score must be"),
        ({"outcome": "timeout", "score": 0}, "cannot be reported"),
        ({"outcome": "invalid", "score": 5}, "must score 0"),
        ({"miner": "not-an-address"}, "not an ss58"),
        ({"extra": 1}, "exactly the fields"),
        ({"epoch": -1}, "epoch must be"),
    ],
)
def test_report_bodies_are_validated(change: dict, message: str) -> None:
    body = {
        "challenge": "predict",
        "version": "1.0.0",
        "module_sha256": "a" * 64,
        "submission_sha256": "b" * 64,
        "miner": hotkey("miner-00"),
        "epoch": 3,
        "outcome": "ok",
        "score": 5,
        "output_sha256": "c" * 64,
        "fuel": 10,
    }
    assert parse_report(body).score == 5
    with pytest.raises(ReportError, match=message):
        parse_report({**body, **change})


def test_an_older_report_never_replaces_a_newer_one(data_dir: Path) -> None:
    from platform_cli.core.aggregation import ScoreReport
    from platform_cli.scores import record_reports, reports_for

    def report(score: int) -> list[ScoreReport]:
        return [ScoreReport(hotkey("validator-1"), "predict", hotkey("miner-00"), score)]

    with open_state(data_dir) as state:
        record_reports(state, 3, report(500), seq=10)
        record_reports(state, 3, report(900), seq=5)  # replayed from before: ignored
        assert [r.score for r in reports_for(state, 3)] == [500]
        record_reports(state, 3, report(100), seq=11)
        assert [r.score for r in reports_for(state, 3)] == [100]


def test_ingest_keeps_the_latest_signed_report_whatever_the_arrival_order(data_dir: Path) -> None:
    """validator-1's report signed at seq 10 arrives by gossip, its seq 5 one later by sync:
    the score stays the one signed last."""
    from platform_cli.core import envelope as env
    from platform_cli.core import gossip
    from platform_cli.core.scores import EVALUATION_KIND
    from platform_cli.identity import KeyStore
    from platform_cli.p2p import store
    from platform_cli.scores import ingest, reports_for

    cli_in(data_dir, *import_args("v1", "validator-1"))
    signer = KeyStore(data_dir).signer("v1")
    topic = gossip.topic_name(100, "evaluations")

    def report(seq: int, score: int) -> env.Envelope:
        body = {
            "challenge": "predict", "version": "1.0.0", "module_sha256": "a" * 64, "submission_sha256": "b" * 64,
            "miner": hotkey("miner-00"), "epoch": 3, "outcome": "ok", "score": score, "output_sha256": "c" * 64,
            "fuel": 1,
        }  # fmt: skip
        return env.seal(
            network=env.Network(100, "platform-devnet"), kind=EVALUATION_KIND, signer=signer.ss58,
            scheme=signer.scheme, seq=seq, ts_ms=1, body=body, sign=signer.sign,
        )  # fmt: skip

    with open_state(data_dir) as state:
        for seq, score in ((10, 500), (5, 900)):
            envelope = report(seq, score)
            assert store.store_received(state, topic, envelope, envelope.to_wire(), "peer", "sync")
            assert ingest(state) == 1
        assert [r.score for r in reports_for(state, 3)] == [500]
