"""Epochs as the chain counts them: the pallet's scheduler on the dev chain, the SDK's
reading of it, our projection of that reading, and the epoch loop driving the real SDK."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_cli.chain.adapter import ChainClient
from platform_cli.chain.dev import epochs
from platform_cli.chain.dev.chain import DevChain
from platform_cli.chain.dev.seed import init_dev_chain
from platform_cli.chain.dev.substrate import DevSubstrate
from platform_cli.chain.records import history
from platform_cli.chain.runner import WeightSetter
from platform_cli.chain.settings import ChainSettings, WeightSettings
from platform_cli.chain.weights import submit_with
from platform_cli.core.epoch import MIN_LEAD_BLOCKS, Action, Schedule, Step, backoff_ms, ms_until, next_step
from platform_cli.errors import PlatformError
from platform_cli.identity import KeyStore
from platform_cli.state import open_state
from tests.chain_helpers import NETUID, Run, import_key, ok
from tests.conftest import FIXTURES


# --- the pallet's scheduler, block by block ---------------------------------------------------
@dataclass
class PalletSubnet:
    """``drain_pending`` and ``should_run_epoch`` of opentensor/subtensor 14bc6f9f
    (pallets/subtensor/src/coinbase/run_coinbase.rs), one block at a time."""

    tempo: int
    last_epoch_block: int
    pending_epoch_at: int = 0
    epoch_index: int = 0
    blocks_since_last_step: int = 0

    def should_run_epoch(self, block: int) -> bool:
        if self.tempo == 0:
            return False
        if self.pending_epoch_at > 0 and block >= self.pending_epoch_at:
            return True
        if self.blocks_since_last_step > epochs.MAX_TEMPO:
            return True
        return max(0, block - self.last_epoch_block) >= self.tempo

    def on_initialize(self, block: int) -> None:
        self.blocks_since_last_step += 1
        if self.should_run_epoch(block):
            self.blocks_since_last_step = 0
            self.last_epoch_block = block
            self.pending_epoch_at = 0
            self.epoch_index += 1


def same(state: epochs.EpochState, pallet: PalletSubnet) -> bool:
    return (state.tempo, state.last_epoch_block, state.pending_epoch_at, state.epoch_index) == (
        pallet.tempo,
        pallet.last_epoch_block,
        pallet.pending_epoch_at,
        pallet.epoch_index,
    ) and state.blocks_since_last_step == pallet.blocks_since_last_step


@settings(max_examples=200, deadline=None)
@given(
    netuid=st.integers(1, 4095),
    tempo=st.sampled_from([1, 2, 7, 20, 360, 50_400, 50_401, 65_535]),
    ops=st.lists(
        st.tuples(st.sampled_from(["advance", "tempo", "trigger"]), st.integers(0, 400), st.integers(1, 400)),
        max_size=12,
    ),
)
def test_the_dev_chains_closed_form_equals_the_pallet_block_by_block(
    netuid: int, tempo: int, ops: list[tuple[str, int, int]]
) -> None:
    block = 1000
    state = epochs.created(block, netuid, tempo)
    pallet = PalletSubnet(tempo, state.last_epoch_block)
    for op, blocks, value in ops:
        for _ in range(blocks):
            block += 1
            pallet.on_initialize(block)
        state, _ = epochs.roll(state, block)
        assert same(state, pallet), (op, block)
        if op == "tempo":  # apply_tempo_with_cycle_reset
            state = epochs.with_tempo(state, value)
            pallet.tempo, pallet.last_epoch_block = value, block
        elif op == "trigger" and epochs.trigger_refusal(state, False, 10) is None:
            state = epochs.triggered(state, 10)
            pallet.pending_epoch_at = block + 10
    block += 60_000  # long enough for the MAX_TEMPO safety net on huge tempos
    for b in range(block - 60_000 + 1, block + 1):
        pallet.on_initialize(b)
    assert same(epochs.roll(state, block)[0], pallet)


def test_permits_follow_is_topk_nonzero() -> None:
    # k = 2 of 4: the lowest stakes lose theirs; among equal stakes the lower uid loses first
    assert epochs.permits([5, 9, 9, 1], 2, 0, None) == [False, True, True, False]
    assert epochs.permits([7, 7, 7], 2, 0, None) == [False, True, True]
    assert epochs.permits([0, 3, 3], 5, 0, 0) == [True, True, True]  # the owner always holds one
    assert epochs.permits([10, 2, 30], 5, 5, None) == [True, False, True]  # below the stake threshold


# --- our reading of the chain, against the SDK's --------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def chain(tmp_path: Path) -> Any:
    dev = init_dev_chain(
        tmp_path / "dev.db", FIXTURES / "metagraph" / "devnet.json", block_time_ms=0, tempo=20
    )
    yield dev
    dev.release()


def read_both(dev: DevChain) -> tuple[Schedule, dict[str, Any], int]:
    """Our Schedule (through the adapter), the SDK's epoch_status and next_epoch_start_block."""

    async def go() -> tuple[Schedule, dict[str, Any], int]:
        async with ChainClient(ChainSettings(dev_db=dev.path), DevSubstrate(dev)) as client:
            ours = await client.schedule(NETUID)
            status = await client.call("status", lambda c: c.read("epoch_status", netuid=NETUID))
            next_start = await client.call("next", lambda c: c.epochs.next_epoch_start_block(NETUID))
            return ours, status, next_start

    return asyncio.run(go())


def test_the_schedule_equals_the_sdks_reading_across_a_tempo_change_and_a_trigger(chain: DevChain) -> None:
    def check(projection: Schedule | None = None) -> Schedule:
        ours, status, next_start = read_both(chain)
        head = chain.head()
        assert ours.block == head and ours.index == status["epoch_index"]
        assert ours.next_start == next_start == status["next_epoch_start_block"]
        assert ours.start == head - status["blocks_since_last_step"]
        assert ours.epoch_of(head) == chain.read("SubtensorModule", "SubnetEpochIndex", [NETUID])
        if projection is not None:  # an older reading projects to what the chain says now
            assert projection.epoch_of(head) == ours.index and projection.start_of(ours.index) == ours.start
        return ours

    first = check()
    for _ in range(45):  # two epochs and a bit, one block at a time
        chain.advance(1)
        check(first)
    chain.set_tempo(NETUID, 30)  # the cycle restarts at this block
    changed = check()
    assert changed.next_start == chain.head() + 30 and changed.tempo == 30
    legacy_runs, chain_runs = [], []
    for _ in range(35):
        chain.advance(1)
        head = chain.head()
        if (head + NETUID + 1) % 31 == 0:  # the old modular formula's epoch blocks
            legacy_runs.append(head)
        if check(changed).start == head:
            chain_runs.append(head)
    assert chain_runs == [changed.next_start] and legacy_runs != chain_runs
    state = chain.trigger_epoch(NETUID)  # the owner triggers one 10 blocks from now (AdminFreezeWindow)
    assert check().next_start == state.pending_epoch_at == chain.head() + 10
    before = check()
    chain.advance(10)
    after = check()
    assert after.index == before.index + 1 and after.start == before.next_start
    assert chain.read("SubtensorModule", "LastEpochBlock", [NETUID]) == after.start
    for _ in range(15):
        chain.advance(1)
        check(after)


def test_tempo_changes_and_triggers_follow_the_pallets_checks(chain: DevChain) -> None:
    state = chain.epoch(NETUID)
    assert state is not None
    chain.advance(state.next_epoch_start_block() - 3 - chain.head())  # inside the admin freeze window
    with pytest.raises(PlatformError, match="AdminActionProhibitedDuringWeightsWindow"):
        chain.set_tempo(NETUID, 50)
    with pytest.raises(PlatformError, match="AutoEpochAlreadyImminent"):
        chain.trigger_epoch(NETUID)
    chain.advance(5)
    chain.trigger_epoch(NETUID)
    with pytest.raises(PlatformError, match="EpochTriggerAlreadyPending"):
        chain.trigger_epoch(NETUID)
    chain.advance(20)
    chain.put("SubtensorModule", "CommitRevealWeightsEnabled", [NETUID], True)
    with pytest.raises(PlatformError, match="DynamicTempoBlockedByCommitReveal"):
        chain.trigger_epoch(NETUID)


def test_a_new_registration_gets_its_permit_at_the_next_epoch(chain: DevChain) -> None:
    from bittensor.sp_core import Keypair

    whale = Keypair.create_from_uri("//Whale").ss58_address
    uid = chain.register(NETUID, whale, whale, 10**18)
    assert not chain.read("SubtensorModule", "ValidatorPermit", [NETUID])[uid]
    block = chain.head()
    state = chain.epoch(NETUID)
    assert state is not None
    chain.advance(state.next_epoch_start_block() - chain.head())
    assert chain.read("SubtensorModule", "ValidatorPermit", [NETUID])[uid]
    assert not chain.read("SubtensorModule", "ValidatorPermit", [NETUID], block)[uid]  # history is kept


# --- the pure projection and decisions --------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    tempo=st.integers(1, 1000),
    start=st.integers(0, 10**6),
    into=st.integers(0, 999),
    gap=st.integers(1, 1000),
    later=st.integers(0, 10**5),
)
def test_a_reading_projects_consistently(tempo: int, start: int, into: int, gap: int, later: int) -> None:
    block = start + into
    schedule = Schedule(1, block, tempo, 5, start, block + gap)
    b = block + later
    epoch = schedule.epoch_of(b)
    assert schedule.start_of(epoch) <= b <= schedule.deadline(epoch)
    assert schedule.start_of(epoch + 1) - schedule.start_of(epoch) == (
        tempo if epoch > 5 else schedule.next_start - start
    )
    assert schedule.blocks_until_next(b) == schedule.deadline(epoch) + 1 - b


def test_next_step_waits_submits_and_skips() -> None:
    schedule = Schedule(1, 100, 100, 1, 97, 197)  # epoch 1 runs 97..196; epochs of 100 blocks after
    kw = {"rate_limit": 10, "lead": 5}
    wait = next_step(schedule, 100, last_done_epoch=None, last_update_block=None, **kw)
    assert (wait.action, wait.epoch, wait.at_block) == (Action.WAIT, 1, 192)
    submit = next_step(schedule, 192, last_done_epoch=0, last_update_block=90, **kw)
    assert (submit.action, submit.epoch) == (Action.SUBMIT, 1)
    done = next_step(schedule, 195, last_done_epoch=1, last_update_block=192, **kw)
    assert (done.action, done.epoch, done.at_block) == (Action.WAIT, 2, 292)
    limited = next_step(schedule, 192, last_done_epoch=0, last_update_block=190, rate_limit=50, lead=5)
    assert limited.action is Action.SKIP and "rate limit of 50 blocks" in limited.reason
    late = next_step(schedule, 196, last_done_epoch=0, last_update_block=None, **kw)
    assert late.action is Action.SKIP and "land in the next epoch" in late.reason
    one_block = Schedule(1, 100, 1, 1, 100, 101)
    short = next_step(one_block, 100, last_done_epoch=0, last_update_block=None, **kw)
    assert short.action is Action.SKIP and "lasts 1 block(s)" in short.reason
    assert backoff_ms(0) == 1_000 and backoff_ms(3) == 8_000 and backoff_ms(50) == 60_000
    assert ms_until(10, 13, 12_000) == 36_000 and ms_until(13, 10, 12_000) == 0


EPOCH_1 = Schedule(1, 100, 100, 1, 97, 197)  # epoch 1 runs 97..196 (deadline 196); 100 blocks after


@pytest.mark.parametrize(
    ("schedule", "block", "done", "last_update", "rate_limit", "lead", "step"),
    [
        # A lead under MIN_LEAD_BLOCKS is raised to it: sent at deadline - 1 at the latest.
        (EPOCH_1, 100, None, None, 10, 1, Step(Action.WAIT, 1, 195)),
        (EPOCH_1, 195, None, None, 10, 1, Step(Action.SUBMIT, 1, 195)),  # the last block that lands
        (EPOCH_1, 100, None, None, 10, 500, Step(Action.SUBMIT, 1, 100)),  # a lead past the start
        # No weights set yet: nothing to wait for, even at block 0.
        (Schedule(1, 0, 100, 0, 0, 100), 0, None, None, 10, 500, Step(Action.SUBMIT, 0, 0)),
        (EPOCH_1, 100, 0, None, 10, 5, Step(Action.WAIT, 1, 192)),
        (EPOCH_1, 100, 1, None, 10, 5, Step(Action.WAIT, 2, 292)),  # epoch 1 done: the next
        # LastUpdate 0 is "never": no rate limit to wait for.
        (EPOCH_1, 150, None, 0, 1000, 5, Step(Action.WAIT, 1, 192)),
        # The rate limit ends exactly at the last useful block: wait for it, then submit.
        (EPOCH_1, 190, None, 185, 10, 5, Step(Action.WAIT, 1, 195)),
        (EPOCH_1, 195, None, 185, 10, 5, Step(Action.SUBMIT, 1, 195)),
        (
            EPOCH_1,
            190,
            None,
            186,
            10,
            5,
            Step(
                Action.SKIP, 1, 196, "rate limit of 10 blocks since block 186 passes epoch 1's deadline 196"
            ),
        ),
        (
            EPOCH_1,
            196,
            None,
            None,
            10,
            5,
            Step(Action.SKIP, 1, 196, "block 196 is epoch 1's last: weights sent now land in the next epoch"),
        ),
        # An epoch of two blocks leaves exactly one to send in.
        (Schedule(1, 100, 2, 1, 100, 102), 100, None, None, 0, 5, Step(Action.SUBMIT, 1, 100)),
        (
            Schedule(1, 100, 1, 1, 100, 101),
            100,
            None,
            None,
            0,
            5,
            Step(Action.SKIP, 1, 100, "epoch 1 lasts 1 block(s): weights sent in it land in the next"),
        ),
    ],
)
def test_next_step_decides_exactly_at_the_limits(
    schedule: Schedule,
    block: int,
    done: int | None,
    last_update: int | None,
    rate_limit: int,
    lead: int,
    step: Step,
) -> None:
    assert MIN_LEAD_BLOCKS == 2
    got = next_step(
        schedule, block, last_done_epoch=done, last_update_block=last_update, rate_limit=rate_limit, lead=lead
    )
    assert got == step


def test_a_reading_projects_exactly_at_epoch_edges() -> None:
    s = EPOCH_1
    assert [s.epoch_of(b) for b in (97, 196, 197, 296, 297)] == [1, 1, 2, 2, 3]
    assert [s.start_of(e) for e in (1, 2, 3)] == [97, 197, 297]
    assert [s.deadline(e) for e in (1, 2)] == [196, 296]
    assert [s.blocks_until_next(b) for b in (97, 196, 197)] == [100, 1, 100]
    assert Schedule(1, 5, 1, 0, 5, 6).epoch_of(7) == 2  # a tempo of one block is allowed


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Schedule(1, 100, 0, 1, 97, 197),
            "tempo 0 must be positive: epochs never run on this subnet",
        ),
        (
            lambda: Schedule(1, 197, 100, 1, 97, 197),
            "an epoch reading at block 197 must lie between its epoch's start 97 and the next epoch 197",
        ),
        (
            lambda: Schedule(1, 96, 100, 1, 97, 197),
            "an epoch reading at block 96 must lie between its epoch's start 97 and the next epoch 197",
        ),
        (lambda: EPOCH_1.epoch_of(96), "block 96 is before epoch 1 (block 97), where this reading begins"),
        (lambda: EPOCH_1.start_of(0), "epoch 0 is before epoch 1, where this reading begins"),
    ],
)
def test_a_reading_refuses_what_it_cannot_say_and_says_why(make: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message
    assert Schedule(1, 97, 100, 1, 97, 197).start == 97  # a reading at its epoch's first block


@pytest.mark.parametrize(
    ("attempt", "kwargs", "ms"),
    [
        (-5, {}, 1_000),
        (0, {}, 1_000),
        (1, {}, 2_000),
        (5, {}, 32_000),
        (6, {}, 60_000),
        (30, {"base_ms": 1, "cap_ms": 2**40}, 2**30),
        (31, {"base_ms": 1, "cap_ms": 2**40}, 2**30),
        (2, {"base_ms": 3, "cap_ms": 11}, 11),
    ],
)
def test_backoff_doubles_from_its_base_up_to_its_cap(attempt: int, kwargs: dict, ms: int) -> None:
    assert backoff_ms(attempt, **kwargs) == ms


def test_ms_until_counts_whole_blocks() -> None:
    assert [ms_until(10, t, 12_000) for t in (9, 10, 11, 13)] == [0, 0, 12_000, 36_000]


def test_a_lead_that_cannot_meet_the_deadline_is_refused(run: Run, data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    for lead in (0, 1):
        (data_dir / "platform.toml").write_text(f"[weights]\nlead_blocks = {lead}\n")
        result = run("weights", "compute")
        assert result.exit_code == 1
        assert f"weights.lead_blocks = {lead} cannot meet the deadline" in result.stderr
        assert "included at h + 1 at the earliest" in result.stderr


# --- the epoch loop on the dev chain -----------------------------------------------------------
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


def chain_schedule(data_dir: Path) -> Schedule:
    dev = DevChain(data_dir / "devchain.db")
    try:
        return read_both(dev)[0]
    finally:
        dev.release()


def test_loop_submits_once_per_epoch_before_the_deadline(run: Run, data_dir: Path) -> None:
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    schedule = chain_schedule(data_dir)
    drive(data_dir, schedule.block + 70, WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        rows = list(reversed(history(state, NETUID)))
    assert rows and all(r["outcome"] == "confirmed" for r in rows)
    epochs_done = [r["epoch"] for r in rows]
    assert (
        epochs_done == list(range(epochs_done[0], epochs_done[0] + len(epochs_done)))
        and len(epochs_done) >= 3
    )
    for row in rows:
        deadline = schedule.deadline(row["epoch"])
        assert deadline - 3 < row["block"] < deadline


def test_loop_follows_a_tempo_change(run: Run, data_dir: Path) -> None:
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    drive(data_dir, chain_schedule(data_dir).block + 25, WeightSettings(lead_blocks=3))
    ok(run("chain", "dev", "tempo", "12"))
    changed = chain_schedule(data_dir)
    drive(data_dir, changed.block + 40, WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        rows = [r for r in history(state, NETUID) if r["epoch"] >= changed.index]
    assert {r["outcome"] for r in rows} == {"confirmed"} and len(rows) >= 3
    for row in rows:
        assert changed.deadline(row["epoch"]) - 3 < row["block"] < changed.deadline(row["epoch"])


def test_loop_records_epochs_the_rate_limit_makes_it_miss(run: Run, data_dir: Path) -> None:
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "30"))
    import_key(run, "validator", "validator-0")
    drive(data_dir, chain_schedule(data_dir).block + 90, WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        outcomes = [r["outcome"] for r in reversed(history(state, NETUID))]
    assert "missed" in outcomes and "confirmed" in outcomes and "failed" not in outcomes


def test_loop_after_a_crash_mid_submission_does_not_resubmit(run: Run, data_dir: Path) -> None:
    """kill -9 between the write-ahead row and the answer: the chain has our weights, we do not."""
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    schedule = chain_schedule(data_dir)
    epoch = schedule.index
    ok(run("chain", "dev", "advance", str(schedule.deadline(epoch) - 2 - schedule.block)))
    ok(run("weights", "submit"))
    with open_state(data_dir) as state:  # rewind our record to what a crash would leave
        state.execute("UPDATE weight_submissions SET outcome = 'pending', block = NULL")
    drive(data_dir, schedule.deadline(epoch) + 1, WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        rows = history(state, NETUID)
    assert [(r["epoch"], r["outcome"]) for r in rows] == [(epoch, "submitted")]
    assert "interrupted submission" in rows[0]["message"]


def test_loop_retries_a_failed_submission_within_the_same_epoch(run: Run, data_dir: Path) -> None:
    from platform_cli.chain import records
    from platform_cli.chain.records import Vector

    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    schedule = chain_schedule(data_dir)
    epoch = schedule.index
    with open_state(data_dir) as state:
        signer = KeyStore(data_dir).signer("validator")
        records.refused(
            state, Vector(NETUID, 0, epoch, schedule.block, {1: 1}, {1: 65535}), signer.ss58, "test"
        )
    drive(data_dir, schedule.deadline(epoch), WeightSettings(lead_blocks=3))
    with open_state(data_dir) as state:
        rows = history(state, NETUID)
    assert [(r["epoch"], r["outcome"]) for r in rows] == [(epoch, "confirmed"), (epoch, "failed")]


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
    run: Run, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ok(run("chain", "dev", "init", "--tempo", "20", "--rate-limit", "5"))
    import_key(run, "validator", "validator-0")
    chain_file = data_dir / "devchain.db"
    schedule = chain_schedule(data_dir)
    epoch = schedule.index
    dev = DevChain(chain_file)
    dev.advance(schedule.deadline(epoch) - 2 - dev.head())

    async def submit() -> None:
        settings = ChainSettings(dev_db=chain_file, timeout_s=3.0, retries=0)
        async with ChainClient(settings, StallingSubstrate(dev)) as client:
            with open_state(data_dir) as state:
                signer = KeyStore(data_dir).signer("validator")
                await submit_with(client, state, WeightSettings(), signer, NETUID)

    with (
        caplog.at_level(logging.INFO, logger="platform.weights"),
        # The command's budget is 3 s in all (no retries): the submit call gets what the
        # reads before it left, 3 s or a little less on a loaded machine.
        pytest.raises(PlatformError, match=r"may or may not have landed \(.*no answer within (3|2\.\d) s"),
    ):
        asyncio.run(submit())
    me = KeyStore(data_dir).signer("validator").ss58
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("weights.unknown")]
    assert line.startswith(f"weights.unknown epoch={epoch} hotkey={me} error=") and re.search(
        r"no answer within (3|2\.\d) s", line
    )
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


# --- the snapshot an epoch names ---------------------------------------------------------------
def test_two_validators_that_synced_at_different_blocks_compute_the_same_past_vector(
    run: Run, tmp_path: Path, challenge_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from platform_cli.core.aggregation import ScoreReport
    from tests.chain_helpers import activate_challenge, as_json, hotkey
    from tests.score_helpers import record_bound

    shared = tmp_path / "shared.db"
    nodes = [tmp_path / "a", tmp_path / "b"]
    for node in nodes:
        node.mkdir()
        (node / "platform.toml").write_text(f'[chain]\ndev_db = "{shared}"\n')

    def in_node(node: Path, *args: str) -> Any:
        monkeypatch.setenv("PLATFORM_DATA_DIR", str(node))
        return run(*args)

    ok(in_node(nodes[0], "chain", "dev", "init", "--block-time-ms", "0", "--tempo", "40"))
    rng = random.Random(3)
    for node in nodes:
        activate_challenge(lambda *a, n=node: in_node(n, *a), challenge_dir, node, 800_000, 1)
    epoch = as_json(in_node(nodes[0], "--json", "chain", "sync"))["epoch"]
    dev = DevChain(shared)
    dev.advance(5)
    for i in range(5):  # stakes move within the epoch: the head snapshots differ
        dev.set_stake(NETUID, hotkey(f"validator-{i}"), rng.randrange(1, 10**6) * 10**9)
    dev.release()
    assert as_json(in_node(nodes[1], "--json", "chain", "sync"))["epoch"] == epoch
    reports = [ScoreReport(hotkey(f"validator-{i}"), "hello", hotkey("miner-00"), 10 + i) for i in range(5)]
    reports += [
        ScoreReport(hotkey(f"validator-{i}"), "hello", hotkey("miner-01"), 50 - 9 * i) for i in range(5)
    ]
    for node in nodes:
        with open_state(node) as state:
            record_bound(state, epoch, reports)
    dev = DevChain(shared)
    dev.advance(100)  # later epochs; node a syncs again there
    dev.release()
    ok(in_node(nodes[0], "chain", "sync"))
    vectors = [
        as_json(in_node(node, "--json", "weights", "compute", "--epoch", str(epoch))) for node in nodes
    ]
    assert vectors[0]["scored"] == 2
    assert vectors[0]["vector_hash"] == vectors[1]["vector_hash"]
    assert vectors[0]["snapshot_block"] == vectors[1]["snapshot_block"]
    later = as_json(in_node(nodes[0], "--json", "weights", "compute"))
    assert later["epoch"] > epoch and later["snapshot_block"] > vectors[0]["snapshot_block"]
    future = in_node(nodes[1], "weights", "compute", "--epoch", str(epoch + 50))
    assert future.exit_code == 1 and "has not begun" in future.stderr
