"""The vector ``platform weights`` sends: built from the consensus-agreed units or our own,
padded for the chain's minimum onto miners (never onto ourselves), converted to u16 with
the chain's limit, and the burn uid found or refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_cli.chain import weights as cw
from platform_cli.chain.adapter import Hyperparams
from platform_cli.chain.records import Committed
from platform_cli.chain.settings import WeightSettings
from platform_cli.core import aggregation
from platform_cli.core.epoch import Schedule
from platform_cli.errors import PlatformError
from platform_cli.state.db import open_state
from platform_cli.state.metagraph import Neuron, Snapshot

NETUID = 7
OWNER = "owner-hotkey"
ME = "validator-hotkey"


def neurons() -> tuple[Neuron, ...]:
    return (
        Neuron(0, OWNER, "c0", 0, False),
        Neuron(1, ME, "c1", 10**12, True),
        Neuron(2, "miner-a", "c2", 0, False),
        Neuron(3, "miner-b", "c3", 0, False),
        Neuron(4, "other-validator", "c4", 10**12, True),
        Neuron(5, "miner-c", "c5", 0, False),
    )


SNAPSHOT = Snapshot(NETUID, 1000, 360, neurons())


def hyper(min_allowed: int = 0, max_limit: int = aggregation.U16_MAX, owner: str = OWNER) -> Hyperparams:
    return Hyperparams(NETUID, 1000, 360, max_limit, min_allowed, 100, False, 1, owner)


@pytest.fixture
def state(tmp_path: Path):
    with open_state(tmp_path / "data") as opened:
        yield opened


def test_an_agreed_vector_is_sent_as_agreed(state) -> None:
    agreed = Committed(9, "ab" * 32, ((0, 200), (2, 500), (3, 300)))
    vector = cw.build(state, SNAPSHOT, hyper(), WeightSettings(), epoch=4, own=ME, agreed=agreed)
    assert vector.weights == {0: 200, 2: 500, 3: 300}
    assert vector.detail["source"] == "consensus height 9"
    assert vector.detail["vector_hash"] == "ab" * 32
    assert vector.detail["scored"] == 2  # the burn uid (the owner's, 0) is not a scored miner
    assert vector.detail["padded"] == []
    assert (vector.netuid, vector.mechid, vector.epoch, vector.snapshot_block) == (NETUID, 0, 4, 1000)
    assert vector.u16 == aggregation.to_u16(vector.weights, aggregation.U16_MAX, 1)
    no_burn = cw.build(state, SNAPSHOT, hyper(), WeightSettings(burn=False), epoch=4, own=ME, agreed=agreed)
    assert no_burn.detail["scored"] == 3
    zero = Committed(9, "ab" * 32, ((0, 200), (2, 0), (3, 300)))
    assert (
        cw.build(state, SNAPSHOT, hyper(), WeightSettings(), epoch=4, own=ME, agreed=zero).detail["scored"]
        == 1
    )


def test_padding_goes_to_miners_lowest_uid_first_never_to_ourselves(state) -> None:
    agreed = Committed(9, "ab" * 32, ((2, 1000),))
    vector = cw.build(state, SNAPSHOT, hyper(min_allowed=4), WeightSettings(), epoch=4, own=ME, agreed=agreed)
    assert vector.detail["padded"] == [0, 3, 5]  # miners (no permit) first: 0, 3, 5; then validators
    assert ME not in [n.hotkey for n in SNAPSHOT.neurons if n.uid in vector.detail["padded"]]
    more = cw.build(state, SNAPSHOT, hyper(min_allowed=5), WeightSettings(), epoch=4, own=ME, agreed=agreed)
    assert more.detail["padded"] == [0, 3, 5, 4]  # then the other validator, never uid 1 (us)
    without_limits = cw.build(
        state, SNAPSHOT, None, WeightSettings(burn=False), epoch=4, own=ME, agreed=agreed
    )
    assert without_limits.detail["padded"] == []
    assert without_limits.u16 == {2: aggregation.U16_MAX}


def test_the_u16_row_uses_the_chains_limit_and_our_uid(state) -> None:
    agreed = Committed(9, "ab" * 32, ((2, 700), (3, 200), (5, 100)))
    limited = cw.build(
        state, SNAPSHOT, hyper(max_limit=30000), WeightSettings(), epoch=4, own=ME, agreed=agreed
    )
    assert limited.u16 == aggregation.to_u16(limited.weights, 30000, 1)
    assert limited.u16 != aggregation.to_u16(limited.weights, aggregation.U16_MAX, 1)
    stranger = cw.build(
        state, SNAPSHOT, hyper(max_limit=30000), WeightSettings(), epoch=4, own="nobody", agreed=agreed
    )
    assert stranger.u16 == aggregation.to_u16(stranger.weights, 30000, None)
    two = Committed(9, "ab" * 32, ((2, 900), (3, 100)))
    with pytest.raises(PlatformError) as info:
        cw.build(
            state, SNAPSHOT, hyper(max_limit=30000), WeightSettings(burn=False), epoch=4, own=ME, agreed=two
        )
    assert str(info.value).startswith("cannot compute weights for epoch 4: the subnet's max_weight_limit")


def test_the_burn_uid_is_the_owners_or_the_configured_one(state) -> None:
    assert cw._burn_uid(WeightSettings(), SNAPSHOT, hyper()) == 0
    assert cw._burn_uid(WeightSettings(burn_uid=5), SNAPSHOT, hyper()) == 5
    assert cw._burn_uid(WeightSettings(burn=False, burn_uid=5), SNAPSHOT, hyper()) is None
    with pytest.raises(PlatformError) as info:
        cw._burn_uid(WeightSettings(), SNAPSHOT, hyper(owner="gone"))
    assert str(info.value) == (
        "the subnet owner's hotkey gone is not in the snapshot at block 1000: "
        "set weights.burn_uid or weights.burn = false"
    )
    with pytest.raises(PlatformError) as info:
        cw._burn_uid(WeightSettings(), SNAPSHOT, None)
    assert str(info.value).startswith(
        "the subnet owner's hotkey (unknown) is not in the snapshot at block 1000"
    )


def test_an_epoch_starts_where_the_schedule_or_an_earlier_sync_says(state) -> None:
    newest = Schedule(netuid=NETUID, block=1200, tempo=360, index=5, start=1100, next_start=1461)
    assert cw._epoch_start(state, NETUID, 5, newest) == 1100
    with pytest.raises(PlatformError) as info:
        cw._epoch_start(state, NETUID, 6, newest)
    assert str(info.value) == "epoch 6 has not begun: the chain was in epoch 5 at block 1200"
    with pytest.raises(PlatformError) as info:
        cw._epoch_start(state, NETUID, 4, newest)
    assert str(info.value) == (
        "no sync during epoch 4 recorded where it began: its vector is computed over the metagraph at that block"
    )
