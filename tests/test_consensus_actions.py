"""What goes through consensus: registry updates, weight vectors, validator sets."""

from __future__ import annotations

import dataclasses

import pytest

from platform_cli.chain.records import Vector
from platform_cli.consensus.sim_node import BundleMessage, SimView
from platform_cli.consensus.sim_world import NETWORK, World
from platform_cli.core.consensus import validity
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.actions import RegistryAction, ValidatorsAction, parse_action
from platform_cli.core.consensus.entry import Entry
from platform_cli.core.consensus.ledger import Ledger, LedgerError
from platform_cli.core.consensus.messages import BUNDLE
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.registry import Lifecycle

EPOCH = 1


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=3, count=4, heights=3, spread=0.0)


class Clock:
    now = 10_000


def view_with_bundles(world: World, signers: list[int], at_ms: int = 50) -> SimView:
    clock = Clock()
    view = SimView(world, lambda: clock.now)
    for index in signers:
        key = world.keys[index]
        reports = world.honest_reports(key.ss58, EPOCH)
        envelope = _bundle(key, reports)
        clock.now = at_ms
        assert view.take_bundle(BundleMessage(envelope, reports))
    clock.now = 10_000
    return view


def _bundle(key, reports):
    from platform_cli.core import envelope as env

    return env.seal(
        network=NETWORK,
        kind=BUNDLE,
        signer=key.ss58,
        scheme=key.scheme,
        seq=1,
        ts_ms=1,
        body=wt.bundle_body(reports),
        sign=key.sign,
    )


def checker(world: World) -> validity.Checker:
    return validity.Checker(NETWORK, world.verifier)


def value_of(ledger: Ledger, *actions) -> dict:
    return Entry(ledger.height + 1, ledger.head, tuple(a.to_canonical() for a in actions)).to_canonical()


def test_the_agreed_vector_hash_is_the_one_weights_submits(world: World) -> None:
    weights = {0: 5, 3: 10**9 - 5}
    vector = Vector(4242, 0, 7, 123, weights, {})
    assert wt.vector_hash(4242, 0, 7, 123, weights) == vector.vector_hash


def test_a_sudo_signed_update_is_approved_and_applied_at_its_block(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    view = view_with_bundles(world, [])
    update = RegistryAction.of(world.updates[0], world.chain_head(10_000) + 10)
    value = value_of(ledger, update)
    assert validity.validate(ledger, view, checker(world), value, 10_000) is None
    after = ledger.apply(Entry(1, ledger.head, (update.to_canonical(),)))
    c1 = {r.spec.version: r.state for r in after.registry.of("c1")}
    assert c1 == {"1.0.0": Lifecycle.DEPRECATED, "1.1.0": Lifecycle.ACTIVE}
    assert after.registry.active_at(update.effective_block - 1)["c1"].spec.version == "1.0.0"
    assert after.registry.active_at(update.effective_block)["c1"].spec.version == "1.1.0"


def test_registry_actions_that_must_not_pass(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    view = view_with_bundles(world, [])
    head = world.chain_head(10_000)
    forged = value_of(ledger, RegistryAction.of(world.forged_update, head + 10))
    assert "not by the sudo owner" in validity.validate(ledger, view, checker(world), forged, 10_000)
    tampered = dataclasses.replace(world.updates[0], body={**world.updates[0].body, "action": "add"})
    bad_sig = value_of(ledger, RegistryAction.of(tampered, head + 10))
    assert "signature" in validity.validate(ledger, view, checker(world), bad_sig, 10_000)
    far = value_of(ledger, RegistryAction.of(world.updates[0], head + 1000))
    assert "ahead of our chain head" in validity.validate(ledger, view, checker(world), far, 10_000)
    second = world.updates[1]  # adds c3: fine alone
    once = ledger.apply(Entry(1, ledger.head, (RegistryAction.of(second, head + 10).to_canonical(),)))
    again = value_of(once, RegistryAction.of(second, head + 10))
    assert "already in the log" in validity.validate(once, view, checker(world), again, 10_000)
    earlier = value_of(once, RegistryAction.of(world.updates[0], head + 5))
    assert "is before block" in validity.validate(once, view, checker(world), earlier, 10_000)


def test_entries_must_extend_the_log(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    view = view_with_bundles(world, [])
    assert "extend" in validity.validate(
        ledger, view, checker(world), {**value_of(ledger), "prev": "00" * 32}, 0
    )
    assert "height" in validity.validate(
        ledger, view, checker(world), Entry(5, ledger.head).to_canonical(), 0
    )
    assert "unknown action" in validity.validate(
        ledger, view, checker(world), Entry(1, ledger.head, ({"type": "mint"},)).to_canonical(), 0
    )
    with pytest.raises(LedgerError, match="extend"):
        ledger.apply(Entry(1, "11" * 32))


def weights_value(world: World, ledger: Ledger, view: SimView) -> tuple[dict, wt.WeightsAction]:
    value = validity.propose(ledger, view, checker(world), 10_000)
    actions = [parse_action(a) for a in value["actions"]]
    [action] = [a for a in actions if isinstance(a, wt.WeightsAction)]
    return value, action


def test_a_weights_proposal_names_a_quorum_and_every_validator_recomputes_it(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    view = view_with_bundles(world, [0, 1, 2, 3])
    value, action = weights_value(world, ledger, view)
    assert len(action.bundles) == 4 and sum(w for _, w in action.weights) == 10**9
    assert validity.validate(ledger, view, checker(world), value, 10_000) is None
    too_early = validity.validate(ledger, view, checker(world), value, 100)
    assert "cutoff has not passed" in too_early
    changed = {
        **action.to_canonical(),
        "weights": [[u, w + (i == 0)] for i, (u, w) in enumerate(action.weights)],
    }
    bad = {**value, "actions": [a if a["type"] != wt.WEIGHTS else changed for a in value["actions"]]}
    assert "recomputed vector_hash" in validity.validate(ledger, view, checker(world), bad, 10_000)


def test_a_proposal_that_leaves_out_a_bundle_held_before_the_cutoff_is_refused(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    censor = view_with_bundles(world, [0, 1, 2])  # the proposer lacks validator 3's bundle
    value, _action = weights_value(world, ledger, censor)
    holder = view_with_bundles(world, [0, 1, 2, 3])
    reason = validity.validate(ledger, holder, checker(world), value, 10_000)
    assert reason is not None and world.keys[3].ss58 in reason and "leaves out" in reason
    late = view_with_bundles(world, [0, 1, 2])
    reports = world.honest_reports(world.keys[3].ss58, EPOCH)
    late.clock = lambda: 5_000  # after the cutoff: the proposal may leave it out
    late.take_bundle(BundleMessage(_bundle(world.keys[3], reports), reports))
    assert validity.validate(ledger, late, checker(world), value, 10_000) is None


def test_weights_need_a_quorum_of_bundles_and_the_report_sets_they_commit_to(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    few = view_with_bundles(world, [0, 1])
    assert all(
        a["type"] != wt.WEIGHTS for a in validity.propose(ledger, few, checker(world), 10_000)["actions"]
    )
    full = view_with_bundles(world, [0, 1, 2, 3])
    value, action = weights_value(world, ledger, full)
    short = {**action.to_canonical(), "bundles": action.to_canonical()["bundles"][:2]}
    no_quorum = {**value, "actions": [a if a["type"] != wt.WEIGHTS else short for a in value["actions"]]}
    assert "quorum" in validity.validate(ledger, few, checker(world), no_quorum, 10_000)
    lacking = view_with_bundles(world, [0, 1, 2, 3])
    del lacking.report_sets[wt.parse_bundle(action.bundles[0]).root]
    assert "missing the report sets" in validity.validate(ledger, lacking, checker(world), value, 10_000)


def test_a_validator_set_change_takes_effect_at_the_next_height(world: World) -> None:
    ledger = Ledger.start(world.genesis)
    newer = ValidatorSet.from_stakes(world.validators.block + 10, {k.ss58: 5 for k in world.keys[:3]})
    after = ledger.apply(Entry(1, ledger.head, (ValidatorsAction(newer).to_canonical(),)))
    assert ledger.validators == world.validators and after.validators == newer
    view = view_with_bundles(world, [])
    value = value_of(after, ValidatorsAction(world.validators))
    assert "not newer" in validity.validate(after, view, checker(world), value, 0)
    unknown = value_of(ledger, ValidatorsAction(newer))
    assert "no snapshot" in validity.validate(ledger, view, checker(world), unknown, 0)


def test_a_named_bundle_whose_bytes_were_altered_is_refused(world: World) -> None:
    from platform_cli.core.consensus.entry import embed, unembed

    ledger = Ledger.start(world.genesis)
    view = view_with_bundles(world, [0, 1, 2, 3])
    value, action = weights_value(world, ledger, view)
    raw = action.to_canonical()
    first = unembed(raw["bundles"][0])
    raw["bundles"][0] = embed(
        dataclasses.replace(first, body={**first.body, "count": first.body["count"] + 1})
    )
    altered = {**value, "actions": [a if a["type"] != wt.WEIGHTS else raw for a in value["actions"]]}
    assert "signature does not verify" in validity.validate(ledger, view, checker(world), altered, 10_000)
