"""The ledger folds decided entries into state the same way everywhere: each rule's
refusal by name, what an applied entry leaves behind, the challenge shares it yields."""

from __future__ import annotations

from typing import Any

import pytest

from platform_cli.consensus.sim_world import NETWORK, World, _spec
from platform_cli.core import envelope as env
from platform_cli.core import registry as reg
from platform_cli.core.challenge import spec_from_canonical
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.actions import RegistryAction, ValidatorsAction
from platform_cli.core.consensus.entry import Entry
from platform_cli.core.consensus.ledger import (
    Ledger,
    LedgerError,
    WeightsCommit,
    apply_value,
    challenge_shares,
)
from platform_cli.core.consensus.validators import ValidatorSet


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=13, count=4, heights=3, spread=0.0)


def weights_action(epoch: int = 3, mechid: int = 0) -> wt.WeightsAction:
    inputs = {
        "netuid": NETWORK.netuid,
        "mechid": mechid,
        "epoch": epoch,
        "snapshot_block": 500,
        "challenges": [],
        "burn_uid": 0,
    }
    return wt.WeightsAction(inputs, (), ((0, 10**9),), "cd" * 32)


def refusal(ledger: Ledger, entry: Entry) -> str:
    with pytest.raises(LedgerError) as info:
        ledger.apply(entry)
    return str(info.value)


def test_an_applied_entry_moves_height_and_head(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    entry = Entry(1, ledger.head, (weights_action().to_canonical(),))
    after = apply_value(ledger, entry.to_canonical())
    assert (after.height, after.head) == (1, entry.id)
    assert after.weights[(0, 3)] == WeightsCommit(1, weights_action())
    assert after.validators == ledger.validators and after.pending_validators is None
    assert ledger.height == 0 and dict(ledger.weights) == {}  # the old ledger is untouched
    second = Entry(2, after.head, (weights_action(epoch=4).to_canonical(),))
    again = after.apply(second)
    assert again.weights[(0, 4)] == WeightsCommit(2, weights_action(epoch=4))
    assert again.weights[(0, 3)] == WeightsCommit(1, weights_action())


def test_entry_refusals_by_name(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    assert refusal(ledger, Entry(3, ledger.head)) == "entry is for height 3, the next height is 1"
    prev = "ef" * 32
    assert refusal(ledger, Entry(1, prev)) == (
        f"entry does not extend the log: prev {prev[:16]}…, head {ledger.head[:16]}…"
    )
    assert refusal(ledger, Entry(1, ledger.head, ({"type": "mint"},))).startswith("action 0: ")
    with pytest.raises(LedgerError) as info:
        apply_value(ledger, {"height": 1})
    assert str(info.value) and str(info.value) != "None"
    decided = ledger.apply(Entry(1, ledger.head, (weights_action().to_canonical(),)))
    twice = Entry(2, decided.head, (weights_action().to_canonical(),))
    assert refusal(decided, twice) == "action 0: weights of mechanism 0 epoch 3 are already decided"
    other_mechanism = Entry(2, decided.head, (weights_action(mechid=1).to_canonical(),))
    assert decided.apply(other_mechanism).weights[(1, 3)].height == 2


def test_a_validator_set_change_is_in_force_from_the_next_height(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    block = world.validators.block
    newer = ValidatorSet.from_stakes(block + 1, {k.ss58: 5 for k in world.keys[:3]})
    after = ledger.apply(Entry(1, ledger.head, (ValidatorsAction(newer).to_canonical(),)))
    assert after.validators == newer and after.pending_validators is None
    same = ValidatorSet.from_stakes(block, {k.ss58: 5 for k in world.keys[:3]})
    assert refusal(ledger, Entry(1, ledger.head, (ValidatorsAction(same).to_canonical(),))) == (
        f"action 0: validator set of block {block} is not newer than block {block}"
    )
    newest = ValidatorSet.from_stakes(block + 2, {k.ss58: 7 for k in world.keys[:2]})
    both = Entry(
        1, ledger.head, (ValidatorsAction(newer).to_canonical(), ValidatorsAction(newer).to_canonical())
    )
    assert refusal(ledger, both) == (
        f"action 1: validator set of block {block + 1} is not newer than block {block + 1}"
    )
    chained = Entry(
        1, ledger.head, (ValidatorsAction(newer).to_canonical(), ValidatorsAction(newest).to_canonical())
    )
    assert ledger.apply(chained).validators == newest


def test_a_registry_update_applies_once(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    update = RegistryAction.of(world.updates[0], 900)
    after = ledger.apply(Entry(1, ledger.head, (update.to_canonical(),)))
    assert after.committed_update(update.update_id) and not ledger.committed_update(update.update_id)
    assert after.last_effective_block == 900
    assert refusal(after, Entry(2, after.head, (update.to_canonical(),))) == (
        f"action 0: registry update {update.update_id[:16]}… is already in the log"
    )


def sudo_update(world: World, challenge: str, mechanism: int, ppm: int, minimum: int) -> env.Envelope:
    spec = _spec(challenge, "1.0.0")
    spec["scoring"] = {"emission_ppm": ppm, "mechanism": mechanism}
    spec["min_validators"] = minimum
    return env.seal(
        network=NETWORK, kind=reg.UPDATE_KIND, signer=world.sudo.ss58, scheme=world.sudo.scheme,
        seq=100 + mechanism, ts_ms=1, body={"action": "add", "challenge": spec_from_canonical(spec).to_canonical()},
        sign=world.sudo.sign,
    )  # fmt: skip


def test_challenge_shares_are_those_of_the_mechanism_active_at_the_block(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    actions: list[Any] = [
        RegistryAction.of(sudo_update(world, "zeta", 1, 300_000, 2), 50),
        RegistryAction.of(sudo_update(world, "alpha", 0, 200_000, 3), 60),
    ]
    after = ledger.apply(Entry(1, ledger.head, tuple(a.to_canonical() for a in actions)))
    before = challenge_shares(after.registry, 59, 0)
    assert "alpha" not in [s.challenge for s in before]
    shares = challenge_shares(after.registry, 60, 0)
    alpha = next(s for s in shares if s.challenge == "alpha")
    assert (alpha.emission_ppm, alpha.min_validators) == (200_000, 3)
    assert [s.challenge for s in shares] == sorted(s.challenge for s in shares)
    assert "zeta" not in [s.challenge for s in shares]
    (zeta,) = challenge_shares(after.registry, 60, 1)
    assert (zeta.challenge, zeta.emission_ppm, zeta.min_validators) == ("zeta", 300_000, 2)
