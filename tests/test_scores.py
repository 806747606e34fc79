"""From evaluations to weights: reports published by validators feed the aggregation,
and only the reports bound to what the network agreed to evaluate count.

Validators evaluate the same submission deterministically in their own data dirs;
signed reports and the miners' signed submissions reach a validator through the real
admission path of the P2P node, and its weights then pay only for reports against the
version active in the epoch, on files their miners submitted.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from platform_cli.cli import cli
from platform_cli.core.submission import SUBMISSION_KIND, Submission
from platform_cli.state import open_state
from tests.chain_helpers import hotkey, import_args, uid
from tests.conftest import FIXTURES, REPO

PREDICT = REPO / "challenges" / "predict"
GOOD = FIXTURES / "submissions" / "predict" / "good_linear.bin"
PREDICT_PPM_UNITS = 300_000_000  # predict pays 300_000 ppm of the 10**9 units


def cli_in(data_dir: Path, *args: str) -> dict | list:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return lines[0] if len(lines) == 1 else lines


def rows_in(data_dir: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def share_chain(data_dir: Path, chain_db: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "platform.toml").write_text(f'[chain]\ndev_db = "{chain_db}"\n')


def commit(data_dir: Path, update_id: str, effective_block: int = 0) -> None:
    """What the consensus engine does once the update is agreed."""
    from platform_cli import registry as reg
    from platform_cli.config import load_config

    with open_state(data_dir) as state:
        reg.commit_update(state, load_config(data_dir), update_id, effective_block=effective_block)


def validator(data_dir: Path, wallet_hotkey: str, chain_db: Path) -> None:
    """A validator's data dir on the shared dev chain, with the predict challenge active."""
    share_chain(data_dir, chain_db)
    cli_in(data_dir, *import_args("validator", wallet_hotkey))
    commit(data_dir, cli_in(data_dir, "registry", "propose", str(PREDICT / "update.json"))["update_id"])
    cli_in(data_dir, "chain", "sync")


def submit(miner_dir: Path, wallet_hotkey: str, content: bytes, *validators: Path) -> Submission:
    """The miner signs a submission of ``content`` for predict; each validator's node
    admits it (signature, network, registered miner) as if gossiped."""
    from platform_cli.config import load_config
    from platform_cli.identity import KeyStore
    from platform_cli.p2p import outgoing
    from platform_cli.p2p.admission import Admission

    miner_dir.mkdir(parents=True, exist_ok=True)
    if not (miner_dir / "keys" / "miner.json").exists():
        cli_in(miner_dir, *import_args("miner", wallet_hotkey))
    submission = Submission.of("predict", content)
    network = load_config(miner_dir).network
    with open_state(miner_dir) as state:
        envelope = outgoing.seal_for(
            state, network.network, KeyStore(miner_dir).signer("miner"), SUBMISSION_KIND, submission.to_body()
        )
    topic = outgoing.resolve_topic(network.netuid, "submissions")[1]
    for data_dir in validators:
        with open_state(data_dir) as state:
            admission = Admission(state, network.network, network.sudo, rate=100, burst=100)
            assert admission.receive(topic, envelope.to_wire(), "12D3KooWminer")
    return submission


def evaluate(data_dir: Path, challenge: str, miner: str, epoch: int) -> int:
    (record,) = [
        cli_in(data_dir, "eval", "run", challenge, str(GOOD), "--miner", hotkey(miner), "--epoch", str(epoch))
    ]
    assert record["outcome"] == "ok" and record["miner"] == hotkey(miner)
    return record["id"]


def evaluate_and_publish(
    data_dir: Path, epoch: int, challenge: str = "predict", miner: str = "miner-00"
) -> dict:
    eval_id = evaluate(data_dir, challenge, miner, epoch)
    published = cli_in(data_dir, "eval", "publish", str(eval_id), "--key", "validator")
    assert published["miner"] == hotkey(miner)
    return published


def paid_miners(data_dir: Path, epoch: int) -> dict[int, int]:
    """uid -> units of the epoch's weights earned by scores (not the subnet owner's burn,
    nor the smallest weights padded on to meet the chain's min_allowed_weights)."""
    computed = cli_in(data_dir, "weights", "compute", "--epoch", str(epoch))
    with open_state(data_dir) as state:
        row = state.execute("SELECT weights FROM weight_vectors WHERE epoch = ?", [epoch]).fetchone()
    weights = dict(json.loads(row[0]))
    return {u: w for u, w in weights.items() if u != uid("sudo") and u not in computed["padded"]}


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


def test_published_reports_of_two_validators_become_weights_once_the_miner_submitted(
    tmp_path: Path, two_validators: tuple[Path, Path, int]
) -> None:
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

    # Nobody submitted that file: both reports are refused, nobody is paid.
    listed = rows_in(first, "scores", "list", "--epoch", str(epoch))
    assert {(r["validator"], r["status"], r["reason"]) for r in listed} == {
        (hotkey("validator-0"), "refused", "no_submission"),
        (hotkey("validator-1"), "refused", "no_submission"),
    }
    assert paid_miners(first, epoch) == {}

    # miner-00 submits it (the decision is taken when the epoch is read, not on arrival).
    submit(tmp_path / "miner", "miner-00", GOOD.read_bytes(), first)
    listed = rows_in(first, "scores", "list", "--epoch", str(epoch))
    assert sorted((r["validator"], r["status"], r["score"]) for r in listed) == sorted(
        [
            (hotkey("validator-0"), "counted", own["score"]),
            (hotkey("validator-1"), "counted", theirs["score"]),
        ]
    )
    # The only scored miner takes all of predict's share.
    assert paid_miners(first, epoch) == {uid("miner-00"): PREDICT_PPM_UNITS}


def signed_version(data_dir: Path, tmp_path: Path, version: str, *, sign: bool = True) -> Path:
    """A copy of the predict challenge at ``version``; with ``sign``, the sudo owner's
    signed update to it (else the local, unsigned challenge.toml)."""
    folder = tmp_path / f"predict-{version}-{'signed' if sign else 'local'}"
    shutil.copytree(PREDICT, folder)
    toml = folder / "challenge.toml"
    toml.write_text(re.sub(r'version = "[^"]*"', f'version = "{version}"', toml.read_text(), count=1))
    if not sign:
        return toml
    out = folder / "update.json"
    result = CliRunner().invoke(
        cli,
        [
            "--data-dir",
            str(data_dir),
            "registry",
            "sign",
            str(toml),
            "--key",
            "sudo",
            "--action",
            "update",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.stderr
    return out


def test_four_reports_of_one_file_only_the_active_version_for_a_submitting_miner_counts(
    tmp_path: Path, two_validators: tuple[Path, Path, int]
) -> None:
    """The reproduction of the review: one file evaluated under four miner hotkeys against
    a deprecated version, a draft never applied, a local challenge.toml the sudo owner
    never signed, and the active version. One report counts; three are refused."""
    first, _, epoch = two_validators
    cli_in(first, *import_args("sudo", "sudo"))
    commit(
        first,
        cli_in(first, "registry", "propose", str(signed_version(first, tmp_path, "1.1.0")))["update_id"],
    )
    cli_in(
        first, "registry", "propose", str(signed_version(first, tmp_path, "1.2.0"))
    )  # a draft, never applied
    local = signed_version(first, tmp_path, "1.1.0", sign=False)
    local.write_text(local.read_text().replace("fuel = 10_000_000", "fuel = 20_000_000"))
    assert {(r["version"], r["state"]) for r in rows_in(first, "registry", "list")} == {
        ("1.0.0", "deprecated"),
        ("1.1.0", "active"),
        ("1.2.0", "draft"),
    }
    for miner in ("miner-01", "miner-02", "miner-03", "miner-04"):
        submit(tmp_path / miner, miner, GOOD.read_bytes(), first)

    published = {
        "miner-01": evaluate_and_publish(first, epoch, "predict@1.0.0", "miner-01"),
        "miner-02": evaluate_and_publish(first, epoch, "predict@1.2.0", "miner-02"),
        "miner-03": evaluate_and_publish(first, epoch, str(local), "miner-03"),
        "miner-04": evaluate_and_publish(first, epoch, "predict", "miner-04"),
    }
    assert len({p["score"] for p in published.values()}) == 1  # the same file, the same score

    listed = {r["miner"]: r for r in rows_in(first, "scores", "list", "--epoch", str(epoch))}
    assert {m: (r["version"], r["status"], r.get("reason")) for m, r in listed.items()} == {
        hotkey("miner-01"): ("1.0.0", "refused", "version_inactive"),
        hotkey("miner-02"): ("1.2.0", "refused", "version_inactive"),
        hotkey("miner-03"): ("1.1.0", "refused", "spec_mismatch"),
        hotkey("miner-04"): ("1.1.0", "counted", None),
    }
    assert "predict 1.0.0 is deprecated" in listed[hotkey("miner-01")]["detail"]
    assert "predict 1.2.0 is a draft" in listed[hotkey("miner-02")]["detail"]
    assert "is not the signed metadata of predict 1.1.0" in listed[hotkey("miner-03")]["detail"]
    summary = cli_in(first, "scores", "summary", "--epoch", str(epoch))
    assert summary["counted"] == 1 and summary["refused"] == 3 and summary["active"] == {"predict": "1.1.0"}
    assert summary["refused_by_reason"] == {"version_inactive": 2, "spec_mismatch": 1}
    assert paid_miners(first, epoch) == {uid("miner-04"): PREDICT_PPM_UNITS}

    # The active version, but a miner that never submitted the file: refused too.
    evaluate_and_publish(first, epoch, "predict", "miner-05")
    refused = rows_in(first, "scores", "list", "--epoch", str(epoch), "--refused")
    assert {(r["miner"], r["reason"]) for r in refused} >= {(hotkey("miner-05"), "no_submission")}
    assert len(refused) == 4
    assert paid_miners(first, epoch) == {uid("miner-04"): PREDICT_PPM_UNITS}

    # The human table says the same.
    table = CliRunner().invoke(cli, ["--data-dir", str(first), "scores", "list", "--epoch", str(epoch)])
    assert table.exit_code == 0 and table.stdout.count("refused") == 4 and table.stdout.count("counted") == 1


def test_what_counts_follows_the_committed_history_not_the_newest_state(
    tmp_path: Path, two_validators: tuple[Path, Path, int]
) -> None:
    """predict 1.1.0 is committed now but takes effect at the first block of the next
    epoch: this epoch still counts 1.0.0 reports, the next counts 1.1.0 ones."""
    from platform_cli import scores
    from platform_cli.core.scores import EvaluationReport

    first, _, epoch = two_validators
    cli_in(first, *import_args("sudo", "sudo"))
    with open_state(first) as state:
        next_start = scores.epoch_first_block(state, epoch + 1)
        assert scores.epoch_first_block(state, epoch) < next_start
    update = signed_version(first, tmp_path, "1.1.0")
    commit(first, cli_in(first, "registry", "propose", str(update))["update_id"], effective_block=next_start)
    history = rows_in(first, "registry", "history", "predict")
    assert [(h["version"], h["previous"], h["state"], h["effective_block"]) for h in history] == [
        ("1.0.0", "draft", "active", 0),
        ("1.0.0", "active", "deprecated", next_start),
        ("1.1.0", "draft", "active", next_start),
    ]
    submitted = submit(tmp_path / "miner", "miner-00", GOOD.read_bytes(), first)

    from platform_cli import registry as reg

    with open_state(first) as state:
        specs = {r.spec.version: r.spec for r in reg.registry_state(state).of("predict")}
        for seq, (version, report_epoch) in enumerate(
            [("1.0.0", epoch), ("1.1.0", epoch + 1), ("1.0.0", epoch + 1), ("1.1.0", epoch)], start=1
        ):
            spec = specs[version]
            report = EvaluationReport(
                challenge="predict", version=version, module_sha256=spec.module_sha256,
                spec_sha256=spec.spec_sha256(), submission_sha256=submitted.sha256, miner=hotkey("miner-00"),
                epoch=report_epoch, outcome="ok", score=500, output_sha256="", fuel=1,
            )  # fmt: skip
            scores.record_report(state, hotkey(f"validator-{seq}"), report, seq)

    def statuses(at_epoch: int) -> dict[str, tuple[str, str]]:
        rows = rows_in(first, "scores", "list", "--epoch", str(at_epoch))
        return {r["version"]: (r["status"], r.get("detail", "")) for r in rows}

    now = statuses(epoch)
    assert now["1.0.0"] == ("counted", "")
    assert now["1.1.0"][0] == "refused" and "predict 1.1.0 is not yet in effect at block" in now["1.1.0"][1]
    later = statuses(epoch + 1)
    assert later["1.1.0"] == ("counted", "")
    assert (
        later["1.0.0"][0] == "refused"
        and f"predict 1.0.0 is deprecated at block {next_start}" in later["1.0.0"][1]
    )
    assert cli_in(first, "scores", "summary", "--epoch", str(epoch))["active"] == {"predict": "1.0.0"}
    assert cli_in(first, "scores", "summary", "--epoch", str(epoch + 1))["active"] == {"predict": "1.1.0"}


def test_an_older_report_never_replaces_a_newer_one(data_dir: Path) -> None:
    from platform_cli.core.scores import EvaluationReport
    from platform_cli.scores import record_report, stored_reports

    def report(score: int) -> EvaluationReport:
        return EvaluationReport(
            "predict", "1.0.0", "a" * 64, "e" * 64, "b" * 64, hotkey("miner-00"), 3, "ok", score, "", 1
        )

    with open_state(data_dir) as state:
        record_report(state, hotkey("validator-1"), report(500), seq=10)
        record_report(state, hotkey("validator-1"), report(900), seq=5)  # replayed from before: ignored
        assert [r.score for r in stored_reports(state, 3)] == [500]
        record_report(state, hotkey("validator-1"), report(100), seq=11)
        assert [r.score for r in stored_reports(state, 3)] == [100]


def _seal(data_dir: Path, kind: str, seq: int, body: dict, key: str = "v1"):  # -> Envelope
    from platform_cli.core import envelope as env
    from platform_cli.identity import KeyStore

    signer = KeyStore(data_dir).signer(key)
    return env.seal(
        network=env.Network(100, "platform-devnet"), kind=kind, signer=signer.ss58, scheme=signer.scheme,
        seq=seq, ts_ms=1, body=body, sign=signer.sign,
    )  # fmt: skip


def _report_body(score: int) -> dict:
    return {
        "challenge": "predict", "version": "1.0.0", "module_sha256": "a" * 64, "spec_sha256": "e" * 64,
        "submission_sha256": "b" * 64, "miner": hotkey("miner-00"), "epoch": 3, "outcome": "ok",
        "score": score, "output_sha256": "c" * 64, "fuel": 1,
    }  # fmt: skip


def test_ingest_keeps_the_latest_signed_report_whatever_the_arrival_order(data_dir: Path) -> None:
    """validator-1's report signed at seq 10 arrives by gossip, its seq 5 one later by sync:
    the score stays the one signed last."""
    from platform_cli.core import gossip
    from platform_cli.core.scores import EVALUATION_KIND
    from platform_cli.p2p import store
    from platform_cli.scores import ingest, stored_reports

    cli_in(data_dir, *import_args("v1", "validator-1"))
    topic = gossip.topic_name(100, "evaluations")
    with open_state(data_dir) as state:
        for seq, score in ((10, 500), (5, 900)):
            envelope = _seal(data_dir, EVALUATION_KIND, seq, _report_body(score))
            assert store.store_received(state, topic, envelope, envelope.to_wire(), "peer", "sync")
            assert ingest(state) == 1
        assert [r.score for r in stored_reports(state, 3)] == [500]


def test_unusable_messages_are_counted_and_skipped(tmp_path: Path) -> None:
    """An admitted message whose body breaks its schema (here: a report from before
    reports named their metadata, and a submission with no size) is counted by reason."""
    from platform_cli.core import gossip
    from platform_cli.core.scores import EVALUATION_KIND
    from platform_cli.p2p import store
    from platform_cli.scores import ingest, ingest_refusals, stored_reports

    data_dir = tmp_path / "v0"
    share_chain(data_dir, tmp_path / "devchain.db")
    cli_in(data_dir, "chain", "dev", "init", "--block-time-ms", "0")
    validator(data_dir, "validator-0", tmp_path / "devchain.db")
    cli_in(data_dir, *import_args("v1", "validator-1"))
    old_format = {k: v for k, v in _report_body(5).items() if k != "spec_sha256"}
    messages = [
        ("evaluations", _seal(data_dir, EVALUATION_KIND, 1, old_format)),
        ("submissions", _seal(data_dir, SUBMISSION_KIND, 2, {"challenge": "predict", "sha256": "b" * 64})),
        ("submissions", _seal(data_dir, SUBMISSION_KIND, 3, Submission("predict", "b" * 64, 9).to_body())),
    ]
    with open_state(data_dir) as state:
        for short, envelope in messages:
            assert store.store_received(
                state, gossip.topic_name(100, short), envelope, envelope.to_wire(), "p"
            )
        assert ingest(state) == 1
        assert ingest(state) == 0  # the cursors moved past everything
        assert stored_reports(state, 3) == []
        refusals = {(r["kind"], r["reason"]): r for r in ingest_refusals(state)}
        rows = state.execute("SELECT miner, challenge_id, sha256, size FROM miner_submissions").fetchall()
    assert set(refusals) == {("evaluation", "malformed"), ("submission", "malformed")}
    assert "exactly the fields" in refusals[("evaluation", "malformed")]["last_detail"]
    assert refusals[("submission", "malformed")]["count"] == 1
    assert rows == [(hotkey("validator-1"), "predict", "b" * 64, 9)]


def test_submissions_are_taken_only_from_registered_miners_for_active_challenges_within_limits(
    tmp_path: Path,
) -> None:
    """Each acceptance rule refuses with its own reason; what is refused is never recorded,
    so no report can count for it."""
    from platform_cli.core import gossip
    from platform_cli.core.challenge import DEFAULT_SUBMISSIONS_PER_EPOCH
    from platform_cli.p2p import store
    from platform_cli.scores import ingest, ingest_refusals

    data_dir = tmp_path / "v0"
    share_chain(data_dir, tmp_path / "devchain.db")
    cli_in(data_dir, "chain", "dev", "init", "--block-time-ms", "0")
    validator(data_dir, "validator-0", tmp_path / "devchain.db")
    cli_in(data_dir, "keys", "new", "--name", "stranger")  # a fresh hotkey, never registered
    registered = [f"miner-{i:02d}" for i in range(2)]
    for name in registered:
        cli_in(data_dir, *import_args(name, name))
    max_input = 1_100_000  # predict's resources.max_input_bytes
    cases = [
        ("miner-00", Submission("predict", "a" * 64, 100), None),
        ("miner-00", Submission("predict", "a" * 64, 100), None),  # the same file again: a no-op
        ("stranger", Submission("predict", "b" * 64, 100), "unregistered_miner"),
        ("miner-01", Submission("sort", "c" * 64, 100), "inactive_challenge"),
        ("miner-01", Submission("predict", "d" * 64, max_input + 1), "too_large"),
        ("miner-01", Submission("predict", "e" * 64, max_input), None),
    ]
    extra = [
        (
            "miner-00",
            Submission("predict", f"{i:064x}", 10),
            None if i < DEFAULT_SUBMISSIONS_PER_EPOCH - 1 else "over_epoch_limit",
        )
        for i in range(DEFAULT_SUBMISSIONS_PER_EPOCH + 1)
    ]
    topic = gossip.topic_name(100, "submissions")
    with open_state(data_dir) as state:
        for seq, (key, submission, _) in enumerate(cases + extra, start=1):
            envelope = _seal(data_dir, SUBMISSION_KIND, seq, submission.to_body(), key=key)
            assert store.store_received(state, topic, envelope, envelope.to_wire(), "p")
        ingest(state)
        rows = state.execute("SELECT miner, sha256 FROM miner_submissions ORDER BY rowid").fetchall()
        refusals = {r["reason"]: r["count"] for r in ingest_refusals(state) if r["kind"] == "submission"}
    taken = [(hotkey(k), s.sha256) for k, s, reason in cases + extra if reason is None]  # no stranger
    assert rows == list(dict.fromkeys(taken))
    assert refusals == {
        "unregistered_miner": 1,
        "inactive_challenge": 1,
        "too_large": 1,
        "over_epoch_limit": 2,
    }


def test_reports_stored_before_binding_are_refused_as_unbound(
    two_validators: tuple[Path, Path, int],
) -> None:
    first, _, epoch = two_validators
    with open_state(first) as state:  # a row as the migration leaves an older report
        state.execute(
            "INSERT INTO score_reports (validator, challenge_id, miner, epoch, score, received_ms) "
            "VALUES (?, 'predict', ?, ?, 500, 0)",
            [hotkey("validator-1"), hotkey("miner-00"), epoch],
        )
    (row,) = rows_in(first, "scores", "list", "--epoch", str(epoch))
    assert (row["status"], row["reason"]) == ("refused", "unbound")
    assert paid_miners(first, epoch) == {}


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


def test_scores_need_a_sync_to_know_the_epoch(run, data_dir: Path) -> None:
    result = run("scores", "summary")
    assert result.exit_code == 1
    assert result.stderr == "error: no epoch schedule, so no current epoch: run `platform chain sync` first\n"


def test_weights_replay_rederives_the_epoch_and_names_a_report_the_sandbox_does_not_reproduce(
    tmp_path: Path, two_validators: tuple[Path, Path, int]
) -> None:
    from platform_cli.config import load_config
    from platform_cli.p2p.admission import Admission
    from platform_cli.p2p.store import queued_outgoing

    first, second, epoch = two_validators
    submit(tmp_path / "miner", "miner-00", GOOD.read_bytes(), first)
    own = evaluate_and_publish(first, epoch)
    evaluate_and_publish(second, epoch)
    with open_state(second) as state:
        ((_, topic, wire),) = queued_outgoing(state)
    config = load_config(first)
    with open_state(first) as state:
        assert Admission(state, config.network.network, config.network.sudo, rate=100, burst=100).receive(
            topic, wire, "12D3KooWpeer"
        )
    computed = cli_in(first, "weights", "compute", "--epoch", str(epoch))

    replayed = cli_in(first, "weights", "replay", "--epoch", str(epoch))
    assert replayed["matches"] and replayed["reports"] == 2 and replayed["evaluations_rerun"] == 1
    assert replayed["stored_hash"] == replayed["from_sandbox_hash"] == computed["vector_hash"]
    assert {c["verdict"] for c in replayed["checked"]} == {"match"}

    # validator-1 (the smaller stake) reported a score its evaluation does not give: the
    # stake-weighted median does not move, the vector still replays, the report is named.
    with open_state(first) as state:
        state.execute("UPDATE score_reports SET score = 1 WHERE validator = ?", [hotkey("validator-1")])
    cli_in(first, "weights", "compute", "--epoch", str(epoch))
    replayed = cli_in(first, "weights", "replay", "--epoch", str(epoch))
    assert replayed["matches"]
    (differing,) = replayed["differing"]
    assert differing["validator"] == hotkey("validator-1") and differing["reported"] == 1
    assert differing["verdict"] == f"differs: the sandbox gives {own['score']} (ok)"

    # Both did: the vector computed from the reports is not the one the sandbox gives.
    with open_state(first) as state:
        state.execute("UPDATE score_reports SET score = 0")  # one miner: only 0 changes its share
    cli_in(first, "weights", "compute", "--epoch", str(epoch))
    result = CliRunner().invoke(
        cli, ["--data-dir", str(first), "--json", "weights", "replay", "--epoch", str(epoch)]
    )
    assert result.exit_code == 1 and "does not replay" in result.stderr and result.stderr.count("\n") == 1
    report = json.loads(result.stdout)
    assert report["from_reports_hash"] == report["stored_hash"] != report["from_sandbox_hash"]
    assert {d["validator"] for d in report["differing"]} == {hotkey("validator-0"), hotkey("validator-1")}


def test_weights_replay_of_an_epoch_without_a_vector_says_so(two_validators: tuple[Path, Path, int]) -> None:
    first, _, epoch = two_validators
    result = CliRunner().invoke(
        cli, ["--data-dir", str(first), "weights", "replay", "--epoch", str(epoch + 5)]
    )
    assert result.exit_code == 1 and "no vector stored" in result.stderr and result.stderr.count("\n") == 1
