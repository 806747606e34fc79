"""The vector ``platform weights`` sends: built from the consensus-agreed units or our own,
padded for the chain's minimum onto miners (never onto ourselves), converted to u16 with
the chain's limit, and the burn uid found or refused by name."""

from __future__ import annotations

import dataclasses
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


def test_a_lone_self_weight_is_sent_uncapped_only_by_ourselves(state) -> None:
    alone = Committed(9, "ab" * 32, ((1, 1000),))
    limited = hyper(max_limit=30000)
    ours = cw.build(state, SNAPSHOT, limited, WeightSettings(burn=False), epoch=4, own=ME, agreed=alone)
    assert ours.u16 == {1: aggregation.U16_MAX}
    with pytest.raises(
        PlatformError, match=r"refuses every vector but a lone self-weight|needs weight on at least"
    ):
        cw.build(state, SNAPSHOT, limited, WeightSettings(burn=False), epoch=4, own="nobody", agreed=alone)
    # At the head, the same: our uid there decides whether the lone weight is ours.
    head = Snapshot(NETUID, 1100, 360, neurons())
    converted = cw._for_the_chain_now(
        state, dataclasses.replace(ours, u16={}), head, limited, ME, dry_run=True
    )
    assert converted.u16 == {1: aggregation.U16_MAX}
    with pytest.raises(cw.WeightsRefused) as info:
        cw._for_the_chain_now(state, ours, head, limited, "nobody", dry_run=True)
    assert str(info.value).startswith(f"epoch 4's weights cannot be sent to netuid {NETUID}: the subnet's")


def test_a_weight_of_one_unit_is_scored_and_without_limits_nothing_is_padded(state) -> None:
    tiny = Committed(9, "ab" * 32, ((0, 200), (2, 1), (3, 300)))
    assert (
        cw.build(state, SNAPSHOT, hyper(), WeightSettings(), epoch=4, own=ME, agreed=tiny).detail["scored"]
        == 2
    )
    nothing = Committed(9, "ab" * 32, ((2, 0),))
    with pytest.raises(PlatformError, match="all weights are zero"):
        cw.build(state, SNAPSHOT, None, WeightSettings(burn=False), epoch=4, own=ME, agreed=nothing)


def test_padding_counts_what_survives_under_the_chains_limit(state) -> None:
    # Under a cap of 40000 the one-unit weight of uid 3 survives quantisation; uncapped it does not.
    agreed = Committed(9, "ab" * 32, ((2, 1_000_000), (3, 1)))
    limited = cw.build(
        state,
        SNAPSHOT,
        hyper(min_allowed=3, max_limit=40000),
        WeightSettings(),
        epoch=4,
        own=ME,
        agreed=agreed,
    )
    assert (limited.weights, limited.detail["padded"]) == ({0: 16, 2: 1_000_000, 3: 1}, [0])
    uncapped = cw.build(
        state, SNAPSHOT, hyper(min_allowed=3), WeightSettings(), epoch=4, own=ME, agreed=agreed
    )
    assert uncapped.detail["padded"] == [0, 5]


@pytest.mark.parametrize(
    ("snapshot_block", "hyper_block", "found"),
    [(1000, 1000, True), (1000, 999, False), (999, 1000, False), (999, 999, False)],
)
def test_an_epochs_snapshot_is_the_one_taken_exactly_where_it_began(
    state, snapshot_block: int, hyper_block: int, found: bool
) -> None:
    from platform_cli.chain.sync import save_hyperparams
    from platform_cli.state.metagraph import save_snapshot

    save_snapshot(state, Snapshot(NETUID, snapshot_block, 360, neurons()))
    save_hyperparams(state, dataclasses.replace(hyper(), block=hyper_block))
    stored = cw.stored_epoch_snapshot(state, NETUID, 1000)
    assert (stored is not None) is found
    if found:
        assert (stored[0].block, stored[1].block) == (1000, 1000)
