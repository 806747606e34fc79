"""What an honest proposer proposes, and the edges of what a validator approves: the
validator-set change, registry updates (their effective block, their number, the ones
skipped), the entry's size."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from platform_cli.consensus.sim_node import SimView
from platform_cli.consensus.sim_world import NETWORK, World
from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core import registry as reg
from platform_cli.core.consensus import validity
from platform_cli.core.consensus.actions import RegistryAction, ValidatorsAction, parse_action
from platform_cli.core.consensus.entry import Entry
from platform_cli.core.consensus.ledger import Ledger
from platform_cli.core.consensus.validators import ValidatorSet

EARLY_MS = 0
"""Before any epoch opens: no weights action is proposed."""


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=5, count=4, heights=8, spread=0.0)


class View(SimView):
    """A node's view with a settable newest snapshot and registry inbox."""

    def __init__(
        self, world: World, newest: ValidatorSet | None = None, pool: Iterable[env.Envelope] = ()
    ) -> None:
        super().__init__(world, lambda: EARLY_MS)
        self.newest = newest
        self.pool = list(pool)

    def newest_validator_set(self) -> ValidatorSet | None:
        return self.newest


def checker(world: World, **rules: int) -> validity.Checker:
    return validity.Checker(NETWORK, world.verifier, validity.ActionRules(**rules))


def proposed(world: World, ledger: Ledger, view: View, **rules: int) -> list:
    value = validity.propose(ledger, view, checker(world, **rules), EARLY_MS)
    assert (value["height"], value["prev"]) == (ledger.height + 1, ledger.head)
    assert validity.validate(ledger, view, checker(world, **rules), value, EARLY_MS) is None
    return [parse_action(a) for a in value["actions"]]


def test_nothing_to_propose_is_an_empty_entry(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    assert proposed(world, ledger, View(world)) == []
    assert proposed(world, ledger, View(world, newest=world.validators)) == []


def test_only_a_newer_snapshot_is_proposed(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    block = world.validators.block
    stakes = {k.ss58: 5 for k in world.keys[:3]}
    newer = ValidatorSet.from_stakes(block + 10, stakes)

    class Knows(View):
        def validator_set_at(self, at: int) -> ValidatorSet | None:
            return newer if at == newer.block else super().validator_set_at(at)

    assert proposed(world, ledger, Knows(world, newest=newer)) == [ValidatorsAction(newer)]
    same_block = ValidatorSet.from_stakes(block, stakes)
    assert proposed(world, ledger, View(world, newest=same_block)) == []
    older = ValidatorSet.from_stakes(block - 1, stakes)
    assert proposed(world, ledger, View(world, newest=older)) == []


def test_updates_take_effect_a_delay_after_the_head_or_after_the_last_one(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    head = world.chain_head(EARLY_MS)
    actions = proposed(world, ledger, View(world, pool=world.updates[:2]))
    assert [a.effective_block for a in actions] == [head + 10, head + 10]
    assert [a.envelope for a in actions] == world.updates[:2]
    actions = proposed(world, ledger, View(world, pool=world.updates[:1]), activation_delay=3)
    assert actions[0].effective_block == head + 3
    later = RegistryAction.of(world.updates[0], head + 50)
    after = ledger.apply(Entry(1, ledger.head, (later.to_canonical(),)))
    (next_one,) = proposed(world, after, View(world, pool=world.updates[1:2]))
    assert next_one.effective_block == head + 50  # never before the last update's block


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_at_most_max_updates_per_entry(world: World, limit: int) -> None:
    ledger = Ledger.start(world.genesis)
    actions = proposed(world, ledger, View(world, pool=world.updates[:5]), max_updates=limit)
    assert [a.envelope for a in actions] == world.updates[:limit]


def test_updates_that_cannot_pass_are_skipped_not_the_rest(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    head = world.chain_head(EARLY_MS)
    first = RegistryAction.of(world.updates[0], head + 10)
    once = ledger.apply(Entry(1, ledger.head, (first.to_canonical(),)))
    tampered = dataclasses.replace(world.updates[2], body={**world.updates[2].body, "action": "add"})
    pool = [world.forged_update, world.updates[0], tampered, world.updates[1]]
    assert [a.envelope for a in proposed(world, once, View(world, pool=pool))] == [world.updates[1]]
    # c1 1.2.0, then c1 1.1.0 (a downgrade: the ledger refuses it), then c3
    out_of_order = [world.updates[2], world.updates[0], world.updates[1]]
    assert [a.envelope for a in proposed(world, ledger, View(world, pool=out_of_order))] == [
        world.updates[2],
        world.updates[1],
    ]


def entry_size(world: World, ledger: Ledger, updates: list[env.Envelope]) -> int:
    head = world.chain_head(EARLY_MS)
    actions = tuple(RegistryAction.of(u, head + 10).to_canonical() for u in updates)
    return len(canonical.encode(Entry(ledger.height + 1, ledger.head, actions).to_canonical()))


def test_the_entry_is_trimmed_to_its_size_limit_exactly(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    pool = world.updates[:3]
    two = entry_size(world, ledger, pool[:2])
    three = entry_size(world, ledger, pool)
    assert len(proposed(world, ledger, View(world, pool=pool), max_value_bytes=three)) == 3
    assert len(proposed(world, ledger, View(world, pool=pool), max_value_bytes=three - 1)) == 2
    assert len(proposed(world, ledger, View(world, pool=pool), max_value_bytes=two - 1)) == 1


def test_a_validator_approves_an_entry_of_exactly_the_size_limit(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    head = world.chain_head(EARLY_MS)
    value = Entry(
        1, ledger.head, (RegistryAction.of(world.updates[0], head + 10).to_canonical(),)
    ).to_canonical()
    size = len(canonical.encode(value))
    view = View(world)
    assert validity.validate(ledger, view, checker(world, max_value_bytes=size), value, EARLY_MS) is None
    assert validity.validate(ledger, view, checker(world, max_value_bytes=size - 1), value, EARLY_MS) == (
        f"entry of {size} bytes exceeds {size - 1}"
    )


def test_the_activation_window_is_exact(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    head = world.chain_head(EARLY_MS)
    view = View(world)

    def verdict(block: int) -> str | None:
        value = Entry(
            1, ledger.head, (RegistryAction.of(world.updates[0], block).to_canonical(),)
        ).to_canonical()
        return validity.validate(ledger, view, checker(world), value, EARLY_MS)

    assert verdict(head + 100) is None
    assert verdict(head + 101) == (
        f"action 0 ({reg.UPDATE_KIND}): effective block {head + 101} is more than 100 blocks ahead of our chain head"
    )


def test_entries_for_another_height_or_log_are_refused_by_name(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    view = View(world)
    ahead = Entry(3, ledger.head).to_canonical()
    assert validity.validate(ledger, view, checker(world), ahead, EARLY_MS) == (
        "entry is for height 3, the next height is 1"
    )
    fork = Entry(1, "11" * 32).to_canonical()
    assert validity.validate(ledger, view, checker(world), fork, EARLY_MS) == "entry does not extend our log"
    garbled = {"height": 1}
    reason = validity.validate(ledger, view, checker(world), garbled, EARLY_MS)
    assert reason is not None and reason != "None" and "entry" in reason


def test_weights_refusals_name_every_validator_and_both_hashes() -> None:
    """Seven validators (a quorum is five): refusals list each validator concerned."""
    import re

    from platform_cli.core.consensus import weights as wt
    from tests.test_consensus_actions import Clock, view_with_bundles
    from tests.test_consensus_actions import checker as plain_checker

    seven = World(seed=11, count=7, heights=3, spread=0.0)
    ledger = Ledger.start(seven.genesis)
    censor = view_with_bundles(seven, [0, 1, 2, 3, 4])
    value = validity.propose(ledger, censor, plain_checker(seven), Clock.now)
    (action,) = [a for a in map(parse_action, value["actions"]) if isinstance(a, wt.WeightsAction)]
    holder = view_with_bundles(seven, list(range(7)))
    names = ", ".join(k.ss58 for k in seven.keys[5:])
    assert validity.validate(ledger, holder, plain_checker(seven), value, Clock.now) == (
        f"action 0 ({wt.WEIGHTS}): leaves out the bundle of {names}, held here since before the cutoff"
    )
    lacking = view_with_bundles(seven, [0, 1, 2, 3, 4])
    for bundle in action.bundles[:2]:
        del lacking.report_sets[wt.parse_bundle(bundle).root]
    missing = ", ".join(b.signer for b in action.bundles[:2])
    assert validity.validate(ledger, lacking, plain_checker(seven), value, Clock.now) == (
        f"action 0 ({wt.WEIGHTS}): missing the report sets of {missing}: fetch them first"
    )
    changed = {**action.to_canonical(), "vector_hash": "cd" * 32}
    bad = {**value, "actions": [changed]}
    reason = validity.validate(ledger, censor, plain_checker(seven), bad, Clock.now)
    assert reason is not None
    assert re.fullmatch(
        rf"action 0 \({wt.WEIGHTS}\): recomputed vector_hash [0-9a-f]{{16}}… differs from the proposed cdcdcdcdcdcdcdcd…",
        reason,
    )
    assert action.vector_hash[:16] in reason


def test_an_oversized_registry_update_is_not_proposed(world: World) -> None:
    """A sudo-signed update over the registry's 64 KiB cap is refused where it stands in the
    pool; taken in, it would push the updates after it out of the size-trimmed entry."""
    from platform_cli.consensus.sim_world import _spec
    from platform_cli.core.challenge import spec_from_canonical

    spec = _spec("cbig", "1.0.0")
    spec["description"] = "x" * (validity.REGISTRY_UPDATE_MAX_BYTES + 1)
    big = env.seal(
        network=NETWORK, kind=reg.UPDATE_KIND, signer=world.sudo.ss58, scheme=world.sudo.scheme, seq=999,
        ts_ms=1, body={"action": "add", "challenge": spec_from_canonical(spec).to_canonical()},
        sign=world.sudo.sign,
    )  # fmt: skip
    ledger = Ledger.start(world.genesis)
    actions = proposed(world, ledger, View(world, pool=[big, world.updates[1]]))
    assert [a.envelope for a in actions] == [world.updates[1]]
