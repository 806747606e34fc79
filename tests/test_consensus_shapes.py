"""The consensus schemas at their edges, each refusal with the message an operator reads:
timeouts, the signing guard, entries, actions and round messages."""

from __future__ import annotations

from typing import Any

import pytest

from platform_cli.core.consensus import guard
from platform_cli.core.consensus.actions import ActionError, RegistryAction, ValidatorsAction, parse_action
from platform_cli.core.consensus.entry import MAX_ACTIONS, Entry, EntryError, embed, parse_entry, unembed
from platform_cli.core.consensus.messages import (
    MAX_HEIGHT,
    MAX_ROUND,
    PRECOMMIT,
    PREVOTE,
    PROPOSAL,
    MessageError,
    Proposal,
    Step,
    Vote,
    parse,
)
from platform_cli.core.consensus.params import Timeouts
from platform_cli.core.envelope import EnvelopeError
from tests.consensus_helpers import keys, prevote, sign, validator_set

K = keys(4)
VSET = validator_set(K)
SET = VSET.set_id
VID = "ab" * 32


def refused(error: type[Exception], call: Any, *args: Any) -> str:
    with pytest.raises(error) as info:
        call(*args)
    return str(info.value)


# ---------------------------------------------------------------- timeouts


def test_timeouts_grow_by_delta_each_round() -> None:
    t = Timeouts(propose_ms=1000, prevote_ms=300, precommit_ms=200, delta_ms=50)
    assert [t.propose(r) for r in (0, 1, 4)] == [1000, 1050, 1200]
    assert [t.prevote(r) for r in (0, 1, 4)] == [300, 350, 500]
    assert [t.precommit(r) for r in (0, 1, 4)] == [200, 250, 400]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "100"])
def test_every_timeout_must_be_a_positive_integer(bad: Any) -> None:
    for name in (
        "propose_ms",
        "prevote_ms",
        "precommit_ms",
        "delta_ms",
        "rebroadcast_ms",
        "idle_poll_ms",
        "catchup_ms",
    ):
        with pytest.raises(ValueError) as info:
            Timeouts(**{name: bad})
        assert str(info.value) == f"timeout {name} = {bad!r} must be a positive integer (ms)"
    assert Timeouts(propose_ms=1).propose(0) == 1


# ---------------------------------------------------------------- the signing guard


def test_guard_decisions_and_reasons() -> None:
    envelope = prevote(K[0], 2, 1, VSET, None)
    signed = guard.Signed((2, 1, 1), b"body", envelope)
    reuse = guard.decide((2, 1, 1), b"body", at_slot=signed, highest=(2, 1, 1))
    assert (reuse.verdict, reuse.envelope, reuse.reason) == (guard.Verdict.REUSE, envelope, "")
    other = guard.decide((2, 1, 1), b"other", at_slot=signed, highest=(2, 1, 1))
    assert (other.verdict, other.envelope) == (guard.Verdict.REFUSE, None)
    assert other.reason == "a different message was already signed at (2, 1, 1)"
    same = guard.decide((2, 1, 1), b"x", at_slot=None, highest=(2, 1, 1))
    assert same.verdict is guard.Verdict.REFUSE
    assert same.reason == "slot (2, 1, 1) is not above the last signed slot (2, 1, 1)"
    below = guard.decide((2, 0, 2), b"x", at_slot=None, highest=(2, 1, 1))
    assert below.reason == "slot (2, 0, 2) is not above the last signed slot (2, 1, 1)"
    sign_ = guard.decide((2, 1, 2), b"x", at_slot=None, highest=(2, 1, 1))
    assert (sign_.verdict, sign_.envelope, sign_.reason) == (guard.Verdict.SIGN, None, "")


# ---------------------------------------------------------------- entries


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "an entry is a map with exactly 'height', 'prev' and 'actions'"),
        ({"height": 1, "prev": VID}, "an entry is a map with exactly 'height', 'prev' and 'actions'"),
        ({"height": 0, "prev": VID, "actions": []}, "entry height 0 is not a positive integer"),
        (
            {"height": MAX_HEIGHT + 1, "prev": VID, "actions": []},
            f"entry height {MAX_HEIGHT + 1} is not a positive integer",
        ),
        ({"height": True, "prev": VID, "actions": []}, "entry height True is not a positive integer"),
        ({"height": "1", "prev": VID, "actions": []}, "entry height '1' is not a positive integer"),
        ({"height": 1, "prev": "AB" * 32, "actions": []}, "entry prev is not a hash (64 hex digits)"),
        ({"height": 1, "prev": VID, "actions": {}}, f"entry actions must be a list of at most {MAX_ACTIONS}"),
        (
            {"height": 1, "prev": VID, "actions": [{"type": "x"}] * (MAX_ACTIONS + 1)},
            f"entry actions must be a list of at most {MAX_ACTIONS}",
        ),
        (
            {"height": 1, "prev": VID, "actions": [{"type": "x"}, ["type"]]},
            "action 1 is not a map with a 'type'",
        ),
        ({"height": 1, "prev": VID, "actions": [{"type": 5}]}, "action 0 is not a map with a 'type'"),
    ],
)
def test_entry_refusals(value: Any, message: str) -> None:
    assert refused(EntryError, parse_entry, value) == message


def test_entries_at_their_bounds() -> None:
    actions = [{"type": "x"}] * MAX_ACTIONS
    entry = parse_entry({"height": MAX_HEIGHT, "prev": VID, "actions": actions})
    assert (entry.height, entry.prev, len(entry.actions)) == (MAX_HEIGHT, VID, MAX_ACTIONS)
    assert parse_entry(Entry(1, VID).to_canonical()) == Entry(1, VID)


def test_embedded_envelopes() -> None:
    envelope = prevote(K[0], 2, 1, VSET, None)
    assert unembed(embed(envelope)) == envelope
    with pytest.raises(EnvelopeError) as info:
        unembed(7)
    assert (info.value.reason, str(info.value)) == (
        "malformed",
        "an embedded envelope is the hex of its wire form",
    )
    with pytest.raises(EnvelopeError) as info:
        unembed("zz")
    assert (info.value.reason, str(info.value)) == ("malformed", "an embedded envelope is not hex")


# ---------------------------------------------------------------- actions


def registry_value(**changes: Any) -> dict[str, Any]:
    update = sign(K[0], "registry.update", {"action": "add"})
    return {**RegistryAction.of(update, 100).to_canonical(), **changes}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "an action is a map with a 'type'"),
        ({"kind": "x"}, "an action is a map with a 'type'"),
        ({"type": 3}, "an action is a map with a 'type'"),
        ({"type": "mint"}, "unknown action type 'mint'"),
        (
            registry_value(extra=1),
            "a registry.update action has exactly 'type', 'update' and 'effective_block'",
        ),
        (registry_value(effective_block=-1), "effective_block -1 is not a block number"),
        (registry_value(effective_block=2**32), f"effective_block {2**32} is not a block number"),
        (registry_value(effective_block=True), "effective_block True is not a block number"),
        (registry_value(effective_block="7"), "effective_block '7' is not a block number"),
        ({"type": "validators", "set": {}, "x": 1}, "a validators action has exactly 'type' and 'set'"),
        ({"type": "validators", "set": []}, "a validator set is a map with 'block' and 'validators'"),
        (
            {"type": "weights"},
            "a weights action has exactly the fields ['bundles', 'burn_uid', 'challenges', 'epoch', 'mechid', 'netuid', 'snapshot_block', 'type', 'vector_hash', 'weights']",
        ),
    ],
)
def test_action_refusals(value: Any, message: str) -> None:
    assert refused(ActionError, parse_action, value) == message


def test_actions_at_their_bounds() -> None:
    for block in (0, 2**32 - 1):
        action = parse_action(registry_value(effective_block=block))
        assert isinstance(action, RegistryAction) and action.effective_block == block
    assert refused(ActionError, parse_action, registry_value(update=7)) == (
        "the update is not a signed envelope: an embedded envelope is the hex of its wire form"
    )
    assert parse_action(ValidatorsAction(VSET).to_canonical()) == ValidatorsAction(VSET)


# ---------------------------------------------------------------- round messages


def vote_body(**changes: Any) -> dict[str, Any]:
    return {"height": 1, "round": 0, "set": SET, "value": VID, **changes}


def proposal_body(**changes: Any) -> dict[str, Any]:
    return {"height": 1, "round": 0, "set": SET, "valid_round": -1, "value": {"v": 1}, **changes}


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("consensus.bundle", vote_body(), "kind 'consensus.bundle' is not a proposal or a vote"),
        (PREVOTE, vote_body(height=0), "height starts at 1"),
        (
            PREVOTE,
            vote_body(height=MAX_HEIGHT + 1),
            f"height {MAX_HEIGHT + 1} is not an integer in 0..{MAX_HEIGHT}",
        ),
        (
            PREVOTE,
            vote_body(round=MAX_ROUND + 1),
            f"round {MAX_ROUND + 1} is not an integer in 0..{MAX_ROUND}",
        ),
        (PREVOTE, vote_body(set="AB" * 32), "set is not a validator set id (64 hex digits)"),
        (PRECOMMIT, vote_body(value="x"), "a vote's value is a value id (64 hex digits) or null"),
        (PROPOSAL, proposal_body(value=[1]), "a proposal's value is a map"),
        (PROPOSAL, proposal_body(valid_round=-2), "valid_round -2 is not -1 or a round below 0"),
        (PROPOSAL, proposal_body(round=3, valid_round=3), "valid_round 3 is not -1 or a round below 3"),
        (PROPOSAL, proposal_body(round=3, valid_round=True), "valid_round True is not -1 or a round below 3"),
        (PROPOSAL, proposal_body(round=3, valid_round="1"), "valid_round '1' is not -1 or a round below 3"),
        (
            PROPOSAL,
            vote_body(),
            f"a {PROPOSAL} body has exactly the fields ['height', 'round', 'set', 'valid_round', 'value']",
        ),
    ],
)
def test_message_refusals(kind: str, body: Any, message: str) -> None:
    assert refused(MessageError, parse, kind, body) == message


def test_messages_at_their_bounds_round_trip() -> None:
    vote = parse(PRECOMMIT, vote_body(height=MAX_HEIGHT, round=MAX_ROUND, value=None))
    assert vote == Vote(Step.PRECOMMIT, MAX_HEIGHT, MAX_ROUND, SET, None)
    assert vote.body() == vote_body(height=MAX_HEIGHT, round=MAX_ROUND, value=None)
    assert (vote.kind, vote.slot) == (PRECOMMIT, (MAX_HEIGHT, MAX_ROUND, Step.PRECOMMIT))
    proposal = parse(PROPOSAL, proposal_body(round=3, valid_round=2))
    assert proposal == Proposal(1, 3, SET, 2, {"v": 1})
    assert proposal.body() == proposal_body(round=3, valid_round=2)
    assert parse(PROPOSAL, proposal.body()) == proposal
    assert proposal.slot == (1, 3, Step.PROPOSE)
