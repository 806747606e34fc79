"""``platform weights`` end to end: the real SDK against the dev chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from platform_cli.chain.dev.chain import DevChain
from platform_cli.core.aggregation import ScoreReport
from platform_cli.state import open_state
from platform_cli.state.audit import entries as audit_entries
from tests.chain_helpers import (
    NETUID,
    Run,
    activate_challenge,
    as_json,
    hotkey,
    import_key,
    ok,
    sdk_read,
    uid,
)
from tests.score_helpers import record_bound

HONEST = {"miner-00": 600, "miner-01": 300, "miner-02": 100}
# 0.8 of the emission split 6:3:1, 0.2 burned to the owner (uid 0), then four one-in-65535
# pads because the subnet's min_allowed_weights is 8.
EXPECTED_U16 = {0: 27306, 6: 65535, 7: 32768, 8: 10922, 9: 1, 10: 1, 11: 1, 12: 1}


def epoch_now(run: Run) -> int:
    return as_json(run("--json", "chain", "status", "--offline"))["epoch"]


@pytest.fixture
def network(run: Run, data_dir: Path, challenge_dir: Path) -> int:
    """Dev chain, our validator key, an active challenge, a snapshot, and the epoch's reports."""
    ok(run("chain", "dev", "init", "--block-time-ms", "0"))
    import_key(run, "validator", "validator-0")
    activate_challenge(run, challenge_dir, data_dir, emission_ppm=800_000, min_validators=2)
    ok(run("chain", "sync"))
    epoch = epoch_now(run)
    reports = [
        ScoreReport(hotkey(v), "hello", hotkey(m), s)
        for v in ("validator-0", "validator-1", "validator-2", "validator-3")
        for m, s in HONEST.items()
    ]
    # validator-4 (8% of the stake) lies: it zeroes the best miner and boosts one nobody else scored.
    reports += [
        ScoreReport(hotkey("validator-4"), "hello", hotkey("miner-00"), 0),
        ScoreReport(hotkey("validator-4"), "hello", hotkey("miner-35"), 10**9),
    ]
    with open_state(data_dir) as state:
        record_bound(state, epoch, reports)
    return epoch


def test_compute_show_submit_and_read_back(run: Run, data_dir: Path, network: int) -> None:
    computed = as_json(run("--json", "weights", "compute"))
    assert computed["epoch"] == network and computed["withheld"] == [["hello", hotkey("miner-35"), 1, 2]]
    assert computed["padded"] == [9, 10, 11, 12] and computed["burned_units"] == 200_000_000
    rows = [json.loads(line) for line in ok(run("--json", "weights", "show")).stdout.splitlines()]
    assert {r["uid"]: r["u16"] for r in rows} == EXPECTED_U16
    # units: 480M, 240M, 80M, 200M burned, and 4 pads of ceil(480M / 65535) = 7325 each
    assert {r["uid"]: r["units"] for r in rows} == {
        0: 200_000_000,
        6: 480_000_000,
        7: 240_000_000,
        8: 80_000_000,
        9: 7325,
        10: 7325,
        11: 7325,
        12: 7325,
    }

    planned = as_json(run("--json", "weights", "submit", "--dry-run"))
    assert planned["outcome"] == "planned" and "submission path: direct plaintext set" in planned["effects"]
    assert run("weights", "history").stdout == ""  # a dry run submits and records nothing

    submitted = as_json(run("--json", "weights", "submit"))
    assert submitted["outcome"] == "confirmed" and submitted["vector_hash"] == computed["vector_hash"]
    assert submitted["message"] == f"chain holds the computed 8-uid vector, last update {submitted['block']}"

    async def read(client: Any) -> tuple[Any, Any]:
        raw = await client.query(("SubtensorModule", "Weights"), [NETUID, uid("validator-0")])
        return raw, await client.weights.weights(NETUID)

    raw, fractions = sdk_read(data_dir / "devchain.db", read)
    assert {d: w for d, w in raw} == EXPECTED_U16
    assert fractions[uid("validator-0")][6] == pytest.approx(65535 / sum(EXPECTED_U16.values()))
    (entry,) = [json.loads(line) for line in ok(run("--json", "weights", "history")).stdout.splitlines()]
    assert entry["outcome"] == "confirmed" and entry["epoch"] == network


def test_rate_limit_is_a_clear_error_and_not_recorded_as_submitted(
    run: Run, data_dir: Path, network: int
) -> None:
    ok(run("weights", "submit"))
    again = run("weights", "submit")
    assert again.exit_code == 1
    assert again.stderr.startswith("error: the chain would refuse epoch")
    assert "SettingWeightsTooFast: uid 1 last set weights at block" in again.stderr
    outcomes = [
        json.loads(line)["outcome"] for line in ok(run("--json", "weights", "history")).stdout.splitlines()
    ]
    assert outcomes == ["failed", "confirmed"]
    ok(run("chain", "dev", "advance", "100"))
    assert as_json(run("--json", "weights", "submit"))["outcome"] == "confirmed"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("stranger", "is not registered on netuid 100"),
        ("miner", "NeuronNoValidatorPermit: uid 6 holds no validator permit"),
    ],
)
def test_unregistered_or_unpermitted_hotkey_is_refused(
    run: Run, data_dir: Path, network: int, key: str, message: str
) -> None:
    if key == "stranger":
        ok(run("keys", "new", "--name", "stranger"))
    else:
        import_key(run, "miner", "miner-00")
    result = run("weights", "submit", "--key", key)
    assert result.exit_code == 1 and message in result.stderr
    with open_state(data_dir) as state:
        outcomes = [r[0] for r in state.execute("SELECT outcome FROM weight_submissions")]
    assert outcomes == ["failed"]
    assert sdk_read(data_dir / "devchain.db", lambda c: c.weights.weights(NETUID)) == {}


def test_commit_reveal_subnet_gets_a_timelocked_commit(run: Run, data_dir: Path, network: int) -> None:
    chain = DevChain(data_dir / "devchain.db")
    chain.put("SubtensorModule", "CommitRevealWeightsEnabled", [NETUID], True)
    chain.release()
    submitted = as_json(run("--json", "weights", "submit"))
    assert submitted["outcome"] == "confirmed" and submitted["path"] == "commit"
    assert "the dev chain never reveals timelocked commits" in submitted["message"]
    commits = sdk_read(data_dir / "devchain.db", lambda c: c.weights.timelocked_weight_commits(NETUID))
    assert [c["hotkey"] for group in commits.values() for c in group] == [hotkey("validator-0")]


def test_compute_needs_a_snapshot_and_show_needs_a_vector(run: Run) -> None:
    result = run("weights", "compute")
    assert result.exit_code == 1 and "run `platform chain sync` first" in result.stderr
    result = run("weights", "show")
    assert result.exit_code == 1 and "no weight vector computed" in result.stderr
    history = run("weights", "history")
    assert history.exit_code == 0 and "no weight submissions yet" in history.stderr


def test_huge_integer_options_are_usage_errors(run: Run) -> None:
    huge = str(10**20)
    for args in (
        ("weights", "compute", "--epoch", huge),
        ("weights", "show", "--epoch", huge),
        ("weights", "submit", "--dry-run", "--epoch", huge),
        ("weights", "history", "--limit", huge),
    ):
        result = run(*args)
        assert result.exit_code == 2 and "is not in the range" in result.stderr, args


def state_rows(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("weight_vectors", "weight_submissions", "metagraph_snapshots", "audit_log")
    with open_state(data_dir) as state:
        return {t: state.execute(f"SELECT * FROM {t}").fetchall() for t in tables}


def test_dry_run_writes_nothing(run: Run, data_dir: Path, network: int) -> None:
    ok(run("chain", "dev", "advance", "3"))  # a dry run reads the new head without storing it
    before = state_rows(data_dir)
    planned = as_json(run("--json", "weights", "submit", "--dry-run"))
    assert planned["outcome"] == "planned" and planned["epoch"] == network
    assert state_rows(data_dir) == before
    ok(run("keys", "new", "--name", "stranger"))
    before = state_rows(data_dir)
    refused = run("weights", "submit", "--dry-run", "--key", "stranger")
    assert refused.exit_code == 1 and "is not registered on netuid 100" in refused.stderr
    assert state_rows(data_dir) == before
    computed = as_json(run("--json", "weights", "compute"))
    # the dry run read the chain at a newer block; the epoch's vector is the same
    assert computed["vector_hash"] == planned["vector_hash"]


def test_a_submitted_vector_is_never_replaced(run: Run, data_dir: Path, network: int) -> None:
    submitted = as_json(run("--json", "weights", "submit"))
    with open_state(data_dir) as state:  # a late report would change the epoch's vector
        late = [ScoreReport(hotkey(f"validator-{i}"), "hello", hotkey("miner-03"), 10**9) for i in range(4)]
        record_bound(state, network, late)
    again = run("weights", "compute")
    assert again.exit_code == 1
    assert f"epoch {network}'s vector {submitted['vector_hash'][:16]}" in again.stderr
    assert "submission #1 (confirmed)" in again.stderr
    shown = [json.loads(line) for line in ok(run("--json", "weights", "show")).stdout.splitlines()]
    assert {r["uid"]: r["u16"] for r in shown} == EXPECTED_U16
    with open_state(data_dir) as state:
        (row,) = state.execute("SELECT vector_hash FROM weight_submissions").fetchall()
        (stored,) = state.execute("SELECT vector_hash FROM weight_vectors").fetchall()
        (sent,) = [e for e in audit_entries(state) if e.action == "weights.pending"]
    assert row == stored == (submitted["vector_hash"],)
    assert sent.detail["vector_hash"] == submitted["vector_hash"]
    assert {u: w for u, w in sent.detail["u16"]} == EXPECTED_U16
    # a later submission in the same epoch (outside the rate limit) sends the same vector
    ok(run("chain", "dev", "advance", "100"))
    resent = as_json(run("--json", "weights", "submit"))
    assert resent["outcome"] == "confirmed" and resent["vector_hash"] == submitted["vector_hash"]


def test_a_refusal_before_sending_fixes_nothing(run: Run, data_dir: Path, network: int) -> None:
    ok(run("keys", "new", "--name", "ghost"))
    ghost = run("weights", "submit", "--key", "ghost")
    assert ghost.exit_code == 1 and "is not registered on netuid 100" in ghost.stderr
    (row,) = [json.loads(line) for line in ok(run("--json", "weights", "history")).stdout.splitlines()]
    assert row["outcome"] == "failed" and row["message"].startswith("refused before sending:")
    with open_state(data_dir) as state:  # reports that arrive after the refusal still count
        late = [ScoreReport(hotkey(f"validator-{i}"), "hello", hotkey("miner-03"), 10**9) for i in range(4)]
        record_bound(state, network, late)
    recomputed = as_json(run("--json", "weights", "compute"))
    submitted = as_json(run("--json", "weights", "submit"))
    assert submitted["outcome"] == "confirmed" and submitted["vector_hash"] == recomputed["vector_hash"]
    raw = sdk_read(
        data_dir / "devchain.db",
        lambda c: c.query(("SubtensorModule", "Weights"), [NETUID, uid("validator-0")]),
    )
    assert uid("miner-03") in {d for d, _ in raw}


def test_a_rate_limited_attempt_fixes_nothing(run: Run, data_dir: Path, network: int) -> None:
    to_next = as_json(run("--json", "chain", "status"))["blocks_to_next_epoch"]
    ok(run("chain", "dev", "advance", str(to_next - 2)))
    assert as_json(run("--json", "weights", "submit"))["epoch"] == network
    ok(run("chain", "dev", "advance", "3"))  # the next epoch, inside the rate limit
    limited = run("weights", "submit")
    assert limited.exit_code == 1 and "SettingWeightsTooFast" in limited.stderr
    rows = [json.loads(line) for line in ok(run("--json", "weights", "history")).stdout.splitlines()]
    assert [(r["epoch"], r["outcome"]) for r in rows] == [(network + 1, "failed"), (network, "confirmed")]
    assert rows[0]["message"].startswith("refused before sending:") and "sent it" not in rows[0]["message"]
    with open_state(data_dir) as state:
        late = [ScoreReport(hotkey(f"validator-{i}"), "hello", hotkey("miner-04"), 10**9) for i in range(4)]
        record_bound(state, network + 1, late)
    recomputed = as_json(run("--json", "weights", "compute"))
    assert recomputed["epoch"] == network + 1 and recomputed["scored"] == 1


def test_a_pending_submission_fixes_the_vector_without_claiming_it_was_sent(data_dir: Path) -> None:
    from platform_cli.chain import records
    from platform_cli.chain.records import Vector
    from platform_cli.errors import PlatformError

    vector = Vector(NETUID, 0, 7, 100, {1: 10}, {1: 65535})
    with open_state(data_dir) as state:
        records.store(state, vector)
        records.begin(state, vector, hotkey("validator-0"))
        with pytest.raises(PlatformError, match=r"submission #1 may have sent it \(its outcome is unknown\)"):
            records.store(state, Vector(NETUID, 0, 7, 100, {2: 10}, {2: 65535}))
        records.refused(state, Vector(NETUID, 0, 8, 100, {1: 10}, {1: 65535}), hotkey("validator-0"), "no")
        assert records.fixed_by(state, NETUID, 0, 8) is None


def test_a_dry_run_reports_every_refusal_the_chain_would_give(run: Run, data_dir: Path, network: int) -> None:
    ok(run("weights", "submit"))  # now inside the rate limit
    chain = DevChain(data_dir / "devchain.db")
    chain.put("SubtensorModule", "WeightsVersionKey", [NETUID], 5)
    chain.put("SubtensorModule", "StakeThreshold", [], 50_000 * 10**9)
    chain.release()
    before = state_rows(data_dir)
    refused = run("weights", "submit", "--dry-run")
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    line = refused.stderr
    assert line.startswith(
        f"error: dry run: the chain would refuse epoch {network}'s weights on netuid {NETUID}: "
    )
    order = ["NotEnoughStakeToSetWeights", "SettingWeightsTooFast", "IncorrectWeightVersionKey"]
    assert [line.index(name) for name in order] == sorted(line.index(name) for name in order)
    assert "version_key 0 is older than the subnet's 5" in line
    assert state_rows(data_dir) == before  # nothing written, nothing sent
    (data_dir / "platform.toml").write_text("[weights]\nversion_key = 5\n")
    chain = DevChain(data_dir / "devchain.db")
    chain.put("SubtensorModule", "StakeThreshold", [], 0)
    chain.advance(100)
    chain.release()
    assert as_json(run("--json", "weights", "submit", "--dry-run"))["outcome"] == "planned"


def test_a_limit_lowered_within_the_epoch_still_gets_a_vector_the_pallet_accepts(
    run: Run, data_dir: Path, network: int
) -> None:
    computed = as_json(run("--json", "weights", "compute"))  # under the epoch's limit, 65535
    ok(run("chain", "dev", "advance", "1"))
    chain = DevChain(data_dir / "devchain.db")
    chain.put("SubtensorModule", "MaxWeightsLimit", [NETUID], 21845)  # a third at most, from now on
    chain.release()
    submitted = as_json(run("--json", "weights", "submit"))
    assert submitted["outcome"] == "confirmed" and submitted["vector_hash"] == computed["vector_hash"]
    raw = sdk_read(
        data_dir / "devchain.db",
        lambda c: c.query(("SubtensorModule", "Weights"), [NETUID, uid("validator-0")]),
    )
    values = [w for _, w in raw]
    from platform_cli.core import weightrules

    assert max(values) == 65535 and weightrules.max_share_ok(values, 21845)
    assert not weightrules.max_share_ok(list(EXPECTED_U16.values()), 21845)
    shown = [json.loads(line) for line in ok(run("--json", "weights", "show")).stdout.splitlines()]
    assert [r["u16"] for r in shown] == values


def test_a_commit_reveal_dry_run_reports_what_the_reveal_would_refuse(
    run: Run, data_dir: Path, network: int
) -> None:
    chain = DevChain(data_dir / "devchain.db")
    chain.put("SubtensorModule", "CommitRevealWeightsEnabled", [NETUID], True)
    chain.put("SubtensorModule", "MinAllowedWeights", [NETUID], 40)
    chain.release()
    refused = run("weights", "submit", "--dry-run")
    assert refused.exit_code == 1
    assert (
        "WeightVecLengthIsLow: 8 weights, the subnet requires 40 (at reveal: the chain drops the commit)"
        in (refused.stderr)
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unregistered", "rate-limited", "dry-run"])
def test_a_refusal_prints_one_line_and_logs_only_with_verbose(
    case: str, run: Run, data_dir: Path, network: int
) -> None:
    import os
    import subprocess
    import sys

    if case == "rate-limited":
        ok(run("weights", "submit"))
    args = {"unregistered": ["--key", "stranger"], "rate-limited": [], "dry-run": ["--dry-run"]}[case]
    ok(run("keys", "new", "--name", "stranger"))
    if case == "dry-run":
        args += ["--key", "stranger"]
    env = dict(os.environ, PLATFORM_DATA_DIR=str(data_dir))
    for verbose, lines in (([], 1), (["-v"], None)):
        proc = subprocess.run(
            [sys.executable, "-m", "platform_cli", *verbose, "weights", "submit", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1
        if lines is not None:
            assert len(proc.stderr.splitlines()) == lines, proc.stderr
        else:
            assert "weights.refused" in proc.stderr and proc.stderr.splitlines()[-1].startswith("error: ")


def confirm_again(data_dir: Path, epoch: int, u16: dict[int, int] | None, done: Any) -> tuple[str, str]:
    """Read the chain back for our stored vector (its u16 row replaced when given)."""
    import asyncio
    from dataclasses import replace

    from platform_cli.chain import records
    from platform_cli.chain.adapter import ChainClient
    from platform_cli.chain.settings import ChainSettings
    from platform_cli.chain.weights import _confirm

    with open_state(data_dir) as state:
        vector = records.load(state, NETUID, 0, epoch)
    assert vector is not None
    if u16 is not None:
        vector = replace(vector, u16=u16)

    async def read() -> tuple[str, str]:
        async with ChainClient(ChainSettings(dev_db=data_dir / "devchain.db")) as client:
            return await _confirm(client, vector, done, hotkey("validator-0"), 0)

    return asyncio.run(read())


def test_a_read_back_of_another_row_with_our_last_update_is_not_confirmed(
    run: Run, data_dir: Path, network: int, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from platform_cli.chain.adapter import Submission

    submitted = as_json(run("--json", "weights", "submit"))
    assert submitted["outcome"] == "confirmed"
    done = Submission("set", submitted["block"], EXPECTED_U16, (), "")
    assert confirm_again(data_dir, network, None, done)[0] == "confirmed"
    other = {**EXPECTED_U16, 7: EXPECTED_U16[7] + 1}
    with caplog.at_level(logging.ERROR, logger="platform.weights"):
        outcome, message = confirm_again(data_dir, network, other, done)
    assert weights_log(caplog, "mismatch") == [
        f"weights.mismatch epoch={network} hotkey={hotkey('validator-0')} on_chain={EXPECTED_U16}"
    ]
    assert outcome == "submitted"
    assert message == f"read-back differs: 8 uids on chain, last update {submitted['block']}"


def test_a_timelocked_commit_not_found_on_read_back_is_not_confirmed(
    run: Run, data_dir: Path, network: int
) -> None:
    from platform_cli.chain.adapter import Submission

    chain = DevChain(data_dir / "devchain.db")
    chain.put("SubtensorModule", "CommitRevealWeightsEnabled", [NETUID], True)
    chain.release()
    submitted = as_json(run("--json", "weights", "submit"))
    assert submitted["outcome"] == "confirmed" and submitted["path"] == "commit"
    commits = sdk_read(data_dir / "devchain.db", lambda c: c.weights.timelocked_weight_commits(NETUID))
    (commit,) = [c for group in commits.values() for c in group]
    block, reveal = commit["commit_block"], commit["reveal_round"]
    assert confirm_again(data_dir, network, None, Submission("commit", block, {}, (), "", reveal))[0] == (
        "confirmed"
    )
    for wrong in (
        Submission("commit", block + 1, {}, (), "", reveal),
        Submission("commit", block, {}, (), "", reveal + 1),
    ):
        assert confirm_again(data_dir, network, None, wrong) == ("submitted", "commit not found on read-back")


def test_an_sdk_plan_with_another_u16_row_is_refused_before_anything_is_written(
    data_dir: Path, network: int
) -> None:
    import asyncio

    from platform_cli.chain import records
    from platform_cli.chain.adapter import ChainClient
    from platform_cli.chain.dev.substrate import DevSubstrate
    from platform_cli.chain.settings import ChainSettings, WeightSettings
    from platform_cli.chain.weights import submit_with
    from platform_cli.errors import PlatformError
    from platform_cli.identity import KeyStore

    class SkewingSubstrate(DevSubstrate):
        """Composes weight calls with every weight one lower: an SDK whose u16 conversion
        disagrees with ours."""

        async def compose(self, call: Any) -> Any:
            module, function, params = await super().compose(call)
            if "weights" in params:
                params = {**params, "weights": [max(0, w - 1) for w in params["weights"]]}
            return module, function, params

    chain = DevChain(data_dir / "devchain.db")

    async def submit() -> None:
        async with ChainClient(
            ChainSettings(dev_db=data_dir / "devchain.db"), SkewingSubstrate(chain)
        ) as client:
            with open_state(data_dir) as state:
                signer = KeyStore(data_dir).signer("validator")
                await submit_with(client, state, WeightSettings(), signer, NETUID)

    try:
        with pytest.raises(
            PlatformError,
            match=f"the SDK would submit a different u16 vector than computed for epoch {network}",
        ):
            asyncio.run(submit())
        assert [e for e in chain.extrinsics() if "weights" in e["function"]] == []
    finally:
        chain.release()
    with open_state(data_dir) as state:
        assert state.execute("SELECT count(*) FROM weight_submissions").fetchone()[0] == 0
        assert [e.action for e in audit_entries(state) if e.action.startswith("weights.")] == [
            "weights.compute"
        ]
        assert records.fixed_by(state, NETUID, 0, network) is None  # the computed vector is not fixed


def submit_in_process(data_dir: Path, substrate: type | None = None, key: str = "validator", **options: Any):
    """``submit_with`` over the dev chain, through ``substrate`` (a DevSubstrate subclass)."""
    import asyncio

    from platform_cli.chain.adapter import ChainClient
    from platform_cli.chain.dev.substrate import DevSubstrate
    from platform_cli.chain.settings import ChainSettings, WeightSettings
    from platform_cli.chain.weights import submit_with
    from platform_cli.identity import KeyStore

    chain = DevChain(data_dir / "devchain.db")

    async def submit():
        link = (substrate or DevSubstrate)(chain)
        async with ChainClient(ChainSettings(dev_db=data_dir / "devchain.db"), link) as client:
            with open_state(data_dir) as state:
                signer = KeyStore(data_dir).signer(key)
                return await submit_with(client, state, WeightSettings(), signer, NETUID, **options)

    try:
        return asyncio.run(submit())
    finally:
        chain.release()


def weights_log(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"weights.{event} ")]


def test_a_chain_refusal_after_the_preflight_is_a_failed_row_with_the_chains_reason(
    data_dir: Path, network: int, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from platform_cli.chain.dev.substrate import DevSubstrate
    from platform_cli.chain.records import history
    from platform_cli.errors import PlatformError

    class RacingSubstrate(DevSubstrate):
        """The same weights land just before ours (another process on our key), so the
        chain refuses ours although the preflight passed."""

        async def submit(self, call: Any, keypair: Any, **kw: Any) -> Any:
            await super().submit(call, keypair, **kw)
            return await super().submit(call, keypair, **kw)

    with caplog.at_level(logging.INFO, logger="platform.weights"), pytest.raises(PlatformError) as raised:
        submit_in_process(data_dir, RacingSubstrate)
    assert "SettingWeightsTooFast" in str(raised.value)
    assert weights_log(caplog, "failed") == [
        f"weights.failed epoch={network} hotkey={hotkey('validator-0')} error={raised.value}"
    ]
    with open_state(data_dir) as state:
        [row] = history(state, NETUID)
        [entry] = [e for e in audit_entries(state) if e.action == "weights.failed"]
    assert (row["epoch"], row["outcome"], row["path"], row["block"]) == (network, "failed", "set", None)
    assert row["message"] == f"the chain refused it: {raised.value}"
    assert entry.detail["message"] == row["message"] and entry.detail["id"] == row["id"]


def test_a_refusal_before_sending_is_logged_and_recorded_with_its_reason(
    run: Run, data_dir: Path, network: int, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from platform_cli.chain.records import history
    from platform_cli.errors import PlatformError
    from platform_cli.identity import KeyStore

    ok(run("keys", "new", "--name", "stranger"))
    stranger = KeyStore(data_dir).signer("stranger").ss58
    with caplog.at_level(logging.INFO, logger="platform.weights"), pytest.raises(PlatformError) as raised:
        submit_in_process(data_dir, key="stranger")
    assert weights_log(caplog, "refused") == [
        f"weights.refused epoch={network} hotkey={stranger} error={raised.value}"
    ]
    with open_state(data_dir) as state:
        [row] = history(state, NETUID)
    assert (row["hotkey"], row["outcome"]) == (stranger, "failed")
    assert row["message"] == f"refused before sending: {raised.value}"


def test_a_submission_says_where_its_vector_came_from_and_audits_the_block(
    data_dir: Path, network: int
) -> None:
    from platform_cli.chain.records import history

    vector, done, outcome = submit_in_process(data_dir, source="consensus height 3")
    assert outcome == "confirmed" and vector.epoch == network and vector.u16 == EXPECTED_U16
    assert done.message.startswith("consensus height 3; ")
    with open_state(data_dir) as state:
        [row] = history(state, NETUID)
        actions = {e.action: e.detail for e in audit_entries(state) if e.action.startswith("weights.")}
    assert (row["outcome"], row["path"], row["block"], row["message"]) == (
        "confirmed",
        "set",
        done.block,
        done.message,
    )
    assert actions["weights.submitted"]["block"] == done.block > 0
    assert actions["weights.submitted"]["path"] == "set"
    assert actions["weights.confirmed"]["message"] == done.message


def test_a_miner_too_few_validators_scored_is_withheld_and_logged(
    data_dir: Path, network: int, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from platform_cli.chain import weights as cw
    from platform_cli.chain.settings import WeightSettings

    with caplog.at_level(logging.INFO, logger="platform.weights"), open_state(data_dir) as state:
        vector = cw.compute(state, NETUID, WeightSettings(), own=hotkey("validator-0"))
    assert weights_log(caplog, "withheld") == [
        f"weights.withheld epoch={network} challenge=hello miner={hotkey('miner-35')} validators=1 required=2"
    ]
    assert vector.detail == {
        "withheld": [["hello", hotkey("miner-35"), 1, 2]],
        "dropped": [],
        "burned_units": 200_000_000,
        "scored": 3,
        "padded": [9, 10, 11, 12],
    }
    assert vector.u16 == EXPECTED_U16


def test_a_past_epoch_is_planned_with_the_vector_a_submission_fixed(
    run: Run, data_dir: Path, network: int
) -> None:
    submitted = as_json(run("--json", "weights", "submit"))
    assert submitted["outcome"] == "confirmed" and submitted["epoch"] == network
    status = as_json(run("--json", "chain", "status", "--offline"))
    ok(run("chain", "dev", "advance", str(status["blocks_to_next_epoch"] + 1)))
    ok(run("chain", "sync"))
    assert epoch_now(run) == network + 1
    newer = as_json(run("--json", "weights", "compute"))
    assert newer["epoch"] == network + 1
    planned = as_json(run("--json", "weights", "submit", "--epoch", str(network), "--dry-run"))
    assert (planned["outcome"], planned["epoch"]) == ("planned", network)
    assert planned["vector_hash"] == submitted["vector_hash"]


def test_a_dry_run_under_a_lowered_limit_converts_in_memory_only(
    run: Run, data_dir: Path, network: int
) -> None:
    ok(run("weights", "compute"))
    with open_state(data_dir) as state:
        before = state.execute("SELECT u16 FROM weight_vectors").fetchall()
    chain = DevChain(data_dir / "devchain.db")
    chain.put("SubtensorModule", "MaxWeightsLimit", [NETUID], 30000)
    chain.release()
    planned = as_json(run("--json", "weights", "submit", "--dry-run"))
    assert planned["outcome"] == "planned" and planned["epoch"] == network
    with open_state(data_dir) as state:
        assert state.execute("SELECT u16 FROM weight_vectors").fetchall() == before


def test_the_uid_of_a_hotkey_that_left_the_subnet_is_a_clear_error(
    run: Run, data_dir: Path, network: int
) -> None:
    import asyncio

    from platform_cli.chain.adapter import ChainClient
    from platform_cli.chain.dev.substrate import DevSubstrate
    from platform_cli.chain.settings import ChainSettings
    from platform_cli.chain.weights import uid_of
    from platform_cli.errors import PlatformError
    from platform_cli.identity import KeyStore

    ok(run("keys", "new", "--name", "stranger"))
    stranger = KeyStore(data_dir).show("stranger").ss58
    chain = DevChain(data_dir / "devchain.db")

    async def lookup(hotkey_: str) -> int:
        async with ChainClient(ChainSettings(dev_db=data_dir / "devchain.db"), DevSubstrate(chain)) as client:
            return await uid_of(client, NETUID, hotkey_)

    try:
        assert asyncio.run(lookup(hotkey("validator-0"))) == uid("validator-0")
        with pytest.raises(PlatformError) as info:
            asyncio.run(lookup(stranger))
    finally:
        chain.release()
    assert str(info.value) == f"hotkey {stranger} is no longer registered on netuid {NETUID}"


def test_the_vector_consensus_agreed_is_the_one_the_chain_gets(data_dir: Path, network: int) -> None:
    """``submit_with(agreed=...)``, as the epoch loop calls it: the agreed units go out (not
    our own aggregate), converted with our own uid's row excluded from the padding."""
    from platform_cli.chain.records import Committed

    miner = uid("miner-01")
    agreed = Committed(7, "cd" * 32, ((0, 100), (miner, 900)))
    vector, done, outcome = submit_in_process(data_dir, agreed=agreed, source="consensus height 7")
    assert outcome == "confirmed" and done.message.startswith("consensus height 7; chain holds")
    assert {u: w for u, w in vector.weights.items() if w > 1} == {0: 100, miner: 900}
    assert vector.detail["source"] == "consensus height 7" and vector.detail["vector_hash"] == "cd" * 32
    assert uid("validator-0") not in vector.u16  # never padded onto ourselves

    async def read(client: Any) -> Any:
        return await client.query(("SubtensorModule", "Weights"), [NETUID, uid("validator-0")])

    assert {d: w for d, w in sdk_read(data_dir / "devchain.db", read)} == vector.u16
    assert vector.u16[miner] == 65535 and vector.u16 != EXPECTED_U16
