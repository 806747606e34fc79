"""The epoch schedule (pure) and the epoch loop driving the real SDK on the dev chain."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_cli.chain.adapter import ChainClient
from platform_cli.chain.devchain import DevChain
from platform_cli.chain.devsubstrate import DevSubstrate
from platform_cli.chain.records import history
from platform_cli.chain.runner import WeightSetter
from platform_cli.chain.settings import ChainSettings, WeightSettings
from platform_cli.chain.weights import submit_with
from platform_cli.core.epoch import Action, Schedule, backoff_ms, ms_until, next_step
from platform_cli.errors import PlatformError
from platform_cli.identity import KeyStore
from platform_cli.state import open_state
from tests.chain_helpers import NETUID, Run, import_key, ok


@given(netuid=st.integers(0, 4095), tempo=st.integers(1, 1000), block=st.integers(0, 10**7))
def test_schedule_matches_the_pallet_formula(netuid: int, tempo: int, block: int) -> None:
    schedule = Schedule(netuid, tempo)
    # subtensor: blocks_until_next_epoch = tempo - (block + netuid + 1) % (tempo + 1)
    assert schedule.blocks_until_next(block) == tempo - (block + netuid + 1) % (tempo + 1)
    epoch = schedule.epoch_of(block)
    assert schedule.start(epoch) <= block <= schedule.deadline(epoch)
    # the pallet runs the epoch at the block where blocks_until_next is 0: that block opens ours
    until = schedule.blocks_until_next(block)
    if until == 0:
        assert schedule.start(epoch) == block
    else:
        assert schedule.start(epoch + 1) == block + until == schedule.deadline(epoch) + 1


def test_next_step_waits_submits_and_skips() -> None:
    schedule = Schedule(1, 99)  # epochs start at blocks 97, 197, ...; epoch 1 ends at 196
    kw = {"rate_limit": 10, "lead": 5}
    wait = next_step(schedule, 100, last_done_epoch=None, last_update_block=None, **kw)
    assert (wait.action, wait.epoch, wait.at_block) == (Action.WAIT, 1, 192)
    submit = next_step(schedule, 192, last_done_epoch=0, last_update_block=90, **kw)
    assert (submit.action, submit.epoch) == (Action.SUBMIT, 1)
    done = next_step(schedule, 195, last_done_epoch=1, last_update_block=192, **kw)
    assert (done.action, done.epoch, done.at_block) == (Action.WAIT, 2, 292)
    limited = next_step(schedule, 192, last_done_epoch=0, last_update_block=190, rate_limit=50, lead=5)
    assert limited.action is Action.SKIP and "rate limit of 50 blocks" in limited.reason
    assert backoff_ms(0) == 1_000 and backoff_ms(3) == 8_000 and backoff_ms(50) == 60_000
    assert ms_until(10, 13, 12_000) == 36_000 and ms_until(13, 10, 12_000) == 0


def drive(data_dir: Path, until_block: int, settings: WeightSettings) -> None:
    """Run the loop; every sleep advances the dev chain by the blocks it would take."""
    chain_file = data_dir / "devchain.db"
    dev = DevChain(chain_file)
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:
        dev.advance(max(1, -(-int(seconds * 1000) // 12_000)))
        if dev.head() >= until_block:
            stop.set()

    async def main() -> None:
        with open_state(data_dir) as state:
            signer = KeyStore(data_dir).signer("validator")
            setter = WeightSetter(
                state, ChainSettings(dev_db=chain_file), settings, signer, NETUID, stop, sleep
            )
            await asyncio.wait_for(setter.run(), 60)

    try:
        asyncio.run(main())
    finally:
        dev.release()


def test_loop_submits_once_per_epoch_before_the_deadline(run: Run, data_dir: Path) -> None:
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    schedule = Schedule(NETUID, 20)
    start = DevChain(data_dir / "devchain.db").head()
    drive(data_dir, start + 70, WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        rows = list(reversed(history(state, NETUID)))
    assert rows and all(r["outcome"] == "confirmed" for r in rows)
    epochs = [r["epoch"] for r in rows]
    assert epochs == list(range(epochs[0], epochs[0] + len(epochs))) and len(epochs) >= 3
    for row in rows:
        deadline = schedule.deadline(row["epoch"])
        assert deadline - 3 < row["block"] <= deadline


def test_loop_records_epochs_the_rate_limit_makes_it_miss(run: Run, data_dir: Path) -> None:
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "30"))
    import_key(run, "validator", "validator-0")
    start = DevChain(data_dir / "devchain.db").head()
    drive(data_dir, start + 90, WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        outcomes = [r["outcome"] for r in reversed(history(state, NETUID))]
    assert "missed" in outcomes and "confirmed" in outcomes and "failed" not in outcomes


def test_loop_after_a_crash_mid_submission_does_not_resubmit(run: Run, data_dir: Path) -> None:
    """kill -9 between the write-ahead row and the answer: the chain has our weights, we do not."""
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    dev = DevChain(data_dir / "devchain.db")
    schedule = Schedule(NETUID, 20)
    epoch = schedule.epoch_of(dev.head())
    dev.advance(schedule.deadline(epoch) - 2 - dev.head())
    dev.release()
    ok(run("weights", "submit"))
    with open_state(data_dir) as state:  # rewind our record to what a crash would leave
        state.execute("UPDATE weight_submissions SET outcome = 'pending', block = NULL")
    drive(data_dir, schedule.deadline(epoch) + 1, WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        rows = history(state, NETUID)
    assert [(r["epoch"], r["outcome"]) for r in rows] == [(epoch, "submitted")]
    assert "interrupted submission" in rows[0]["message"]


def test_loop_against_a_dead_endpoint_backs_off_and_stops(
    caplog: pytest.LogCaptureFixture, data_dir: Path
) -> None:
    data_dir.mkdir(parents=True)
    KeyStore(data_dir).new("validator", "sr25519")
    slept: list[float] = []
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            stop.set()

    async def main() -> None:
        with open_state(data_dir) as state:
            chain = ChainSettings(network="ws://127.0.0.1:9", timeout_s=0.5, retries=0)
            signer = KeyStore(data_dir).signer("validator")
            await WeightSetter(state, chain, WeightSettings(), signer, NETUID, stop, sleep).run()

    with caplog.at_level(logging.ERROR, logger="platform.weights"):
        asyncio.run(asyncio.wait_for(main(), 30))
    assert slept == [1.0, 2.0, 4.0]
    assert sum("weights.tick_failed" in r.message for r in caplog.records) == 3


class StallingSubstrate(DevSubstrate):
    """The extrinsic is included, then the answer never comes (a link lost mid-submission)."""

    async def submit(self, call: Any, keypair: Any, **kw: Any) -> Any:
        await super().submit(call, keypair, **kw)
        await asyncio.Event().wait()


def test_a_lost_answer_leaves_the_submission_pending_until_the_chain_shows_it(
    run: Run, data_dir: Path
) -> None:
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    chain_file = data_dir / "devchain.db"
    dev = DevChain(chain_file)
    schedule = Schedule(NETUID, 20)
    epoch = schedule.epoch_of(dev.head())
    dev.advance(schedule.deadline(epoch) - 2 - dev.head())

    async def submit() -> None:
        settings = ChainSettings(dev_db=chain_file, timeout_s=3.0, retries=0)
        async with ChainClient(settings, StallingSubstrate(dev)) as client:
            with open_state(data_dir) as state:
                signer = KeyStore(data_dir).signer("validator")
                await submit_with(client, state, WeightSettings(), signer, NETUID)

    with pytest.raises(PlatformError, match=r"may or may not have landed \(.*no answer within 3s\)"):
        asyncio.run(submit())
    landed = [e for e in dev.extrinsics() if e["function"] == "set_mechanism_weights"]
    dev.release()
    assert [e["success"] for e in landed] == [1]
    (row,) = [json.loads(line) for line in ok(run("--json", "weights", "history")).stdout.splitlines()]
    assert (row["epoch"], row["outcome"]) == (epoch, "pending")
    assert row["message"].startswith("outcome unknown, pending until the chain shows it")
    assert "pending (unknown)" in ok(run("weights", "history")).stdout
    drive(data_dir, schedule.deadline(epoch), WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        rows = history(state, NETUID)
    assert [(r["id"], r["outcome"]) for r in rows] == [(row["id"], "submitted")]
    assert "interrupted submission" in rows[0]["message"]
    dev = DevChain(chain_file)
    assert [e["id"] for e in dev.extrinsics() if e["function"] == "set_mechanism_weights"] == [
        landed[0]["id"]
    ]
    dev.release()
