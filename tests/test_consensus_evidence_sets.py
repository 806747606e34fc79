"""Equivocation evidence and validator sets at their edges: each refusal by name, the
thresholds (a quorum, an honest member, a blocking group) exactly where they turn."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from platform_cli.core import canonical
from platform_cli.core.consensus import evidence as ev
from platform_cli.core.consensus.validators import MAX_VALIDATORS, ValidatorSet, ValidatorSetError
from platform_cli.identity import verify_signature
from tests.consensus_helpers import NETWORK, keys, precommit, prevote, proposal, sign, validator_set

K = keys(4)
VSET = validator_set(K)
VID = "ab" * 32


def pair() -> tuple[Any, Any]:
    a, b = prevote(K[1], 4, 2, VSET, None), prevote(K[1], 4, 2, VSET, VID)
    return tuple(sorted((a, b), key=lambda e: e.message_id()))  # type: ignore[return-value]


def proof_problem(first: Any, second: Any, **kw: Any) -> str:
    with pytest.raises(ev.EvidenceError) as info:
        ev.verify(ev.Evidence(first, second), verify_signature, **kw)
    return str(info.value)


# ---------------------------------------------------------------- evidence


def test_conflicts_need_one_signer_network_kind_and_slot() -> None:
    a, b = pair()
    found = ev.conflict(a, b)
    assert found == ev.Evidence(a, b) == ev.conflict(b, a)
    assert ev.conflict(a, prevote(K[2], 4, 2, VSET, VID)) is None
    other_net = sign(K[1], b.kind, b.body, network=dataclasses.replace(NETWORK, netuid=7))
    assert ev.conflict(a, other_net) is None
    assert ev.conflict(a, precommit(K[1], 4, 2, VSET, VID)) is None  # another step's kind
    assert ev.conflict(a, prevote(K[1], 4, 3, VSET, VID)) is None
    assert ev.conflict(a, sign(K[1], a.kind, a.body, seq=5)) is None  # the same vote, signed again


def test_evidence_json_names_the_slot() -> None:
    a, b = pair()
    doc = ev.Evidence(a, b).to_json()
    assert {k: doc[k] for k in ("v", "signer", "height", "round", "step")} == {
        "v": 1,
        "signer": K[1].ss58,
        "height": 4,
        "round": 2,
        "step": 1,
    }
    assert ev.from_json(doc) == ev.Evidence(a, b)


def test_evidence_decoding_refusals() -> None:
    a, b = pair()
    good = ev.Evidence(a, b).to_canonical()

    def problem(data: bytes) -> str:
        with pytest.raises(ev.EvidenceError) as info:
            ev.decode(data)
        return str(info.value)

    assert problem(b"\x18\x01").startswith("evidence is not canonical CBOR: ")
    shape = "evidence is a version 1 map with 'v' and 'messages'"
    assert problem(canonical.encode([1])) == shape
    assert problem(canonical.encode({**good, "v": 2})) == shape
    assert problem(canonical.encode({**good, "x": 1})) == shape
    two = "evidence holds exactly two envelopes in wire form"
    assert problem(canonical.encode({**good, "messages": "xx"})) == two
    assert problem(canonical.encode({**good, "messages": good["messages"][:1]})) == two
    assert problem(canonical.encode({**good, "messages": [good["messages"][0], "x"]})) == two
    assert problem(canonical.encode({**good, "messages": [b"\x00", b"\x00"]})).startswith(
        "evidence message: "
    )
    swapped = {**good, "messages": good["messages"][::-1]}
    assert problem(canonical.encode(swapped)) == "evidence messages are not in message-id order"
    same = ev.decode(canonical.encode({**good, "messages": [good["messages"][0]] * 2}))
    assert same == ev.Evidence(a, a)  # decodes; verify says what is wrong with it

    def json_problem(doc: Any) -> str:
        with pytest.raises(ev.EvidenceError) as info:
            ev.from_json(doc)
        return str(info.value)

    doc = ev.Evidence(a, b).to_json()
    shape = "evidence is a JSON object with a 'messages' list of two signed envelopes"
    for bad in ([doc], {**doc, "messages": {}}, {**doc, "messages": doc["messages"][:1]}):
        assert json_problem(bad) == shape
    broken = {**doc, "messages": [doc["messages"][0], {**doc["messages"][1], "signature": "zz"}]}
    assert json_problem(broken) == "evidence message: signature must be 128 lowercase hex digits"


def test_evidence_verification_refusals() -> None:
    a, b = pair()
    assert proof_problem(a, a) == "the two messages are the same message, or not in message-id order"
    assert proof_problem(b, a) == "the two messages are the same message, or not in message-id order"
    stranger = prevote(K[2], 4, 2, VSET, VID)
    first, second = sorted((a, stranger), key=lambda e: e.message_id())
    assert (
        proof_problem(first, second)
        == f"the messages have different signers ({first.signer}, {second.signer})"
    )
    elsewhere = sign(K[1], b.kind, b.body, network=dataclasses.replace(NETWORK, netuid=7))
    first, second = sorted((a, elsewhere), key=lambda e: e.message_id())
    assert proof_problem(first, second) == "the messages belong to different networks"
    committed = precommit(K[1], 4, 2, VSET, VID)
    first, second = sorted((a, committed), key=lambda e: e.message_id())
    assert proof_problem(first, second) == (
        f"kinds {first.kind!r} and {second.kind!r} are not the same proposal or vote kind"
    )
    bundles = sorted(
        (sign(K[1], "consensus.bundle", {"n": 1}), sign(K[1], "consensus.bundle", {"n": 2})),
        key=lambda e: e.message_id(),
    )
    assert proof_problem(*bundles) == (
        "kinds 'consensus.bundle' and 'consensus.bundle' are not the same proposal or vote kind"
    )
    garbled = sign(K[1], a.kind, {"height": 4})
    first, second = sorted((a, garbled), key=lambda e: e.message_id())
    assert proof_problem(first, second).startswith("a message body is malformed: ")
    later = prevote(K[1], 4, 3, VSET, VID)
    first, second = sorted((a, later), key=lambda e: e.message_id())
    assert (
        proof_problem(first, second)
        == "the messages are at different slots: height 4 round 2 prevote and height 4 round 3 prevote"
    )
    again = sign(K[1], a.kind, a.body, seq=9)
    first, second = sorted((a, again), key=lambda e: e.message_id())
    assert proof_problem(first, second) == "the messages say the same thing: no conflict"
    for index, name in ((0, "first"), (1, "second")):
        forged = [a, b]
        forged[index] = dataclasses.replace(forged[index], signature=bytes(64))
        if forged[0].message_id() >= forged[1].message_id():
            continue
        assert proof_problem(*forged) == f"the {name} message's signature does not verify for {K[1].ss58}"
    assert proof_problem(a, b, validators=validator_set(keys(4, seed=9))) == (
        f"{K[1].ss58} is not in the validator set"
    )
    ev.verify(ev.Evidence(a, b), verify_signature, validators=VSET)
    value = {"height": 4, "prev": VID, "actions": []}
    proposals = sorted(
        (proposal(K[1], 4, 2, VSET, value), proposal(K[1], 4, 2, VSET, {**value, "prev": "cd" * 32})),
        key=lambda e: e.message_id(),
    )
    ev.verify(ev.Evidence(*proposals), verify_signature)


def test_either_forged_signature_is_named() -> None:
    a, b = pair()
    forged_first = dataclasses.replace(a, signature=bytes(64))
    forged_second = dataclasses.replace(b, signature=bytes(64))
    # A changed signature does not change the message id's order here (ids hash the wire form).
    for first, second, name in ((forged_first, b, "first"), (a, forged_second, "second")):
        if first.message_id() < second.message_id():
            assert (
                proof_problem(first, second)
                == f"the {name} message's signature does not verify for {K[1].ss58}"
            )
        else:
            assert proof_problem(second, first).endswith(f"signature does not verify for {K[1].ss58}")


# ---------------------------------------------------------------- validator sets


@pytest.mark.parametrize(
    ("block", "members", "message"),
    [
        (-1, (("a", 1),), "snapshot block -1 is not a non-negative integer"),
        (True, (("a", 1),), "snapshot block True is not a non-negative integer"),
        ("1", (("a", 1),), "snapshot block '1' is not a non-negative integer"),
        (1, (), "the validator set is empty: no validator holds stake"),
        (1, (("b", 1), ("a", 1)), "validators must be unique and sorted by hotkey"),
        (1, (("a", 1), ("a", 2)), "validators must be unique and sorted by hotkey"),
        (1, (("", 1),), "validator '' is not a hotkey"),
        (1, (("a", 0),), "stake 0 of a is not a positive 64-bit integer"),
        (1, (("a", 2**64),), f"stake {2**64} of a is not a positive 64-bit integer"),
        (1, (("a", True),), "stake True of a is not a positive 64-bit integer"),
        (1, (("a", "5"),), "stake '5' of a is not a positive 64-bit integer"),
    ],
)
def test_validator_set_refusals(block: Any, members: Any, message: str) -> None:
    with pytest.raises(ValidatorSetError) as info:
        ValidatorSet(block, members)
    assert str(info.value) == message


def test_validator_sets_at_their_bounds() -> None:
    edge = ValidatorSet(0, (("a", 1), ("b", 2**64 - 1)))
    assert (edge.block, edge.total, edge.size) == (0, 2**64, 2)
    many = ValidatorSet(1, tuple((f"v{i:05d}", 1) for i in range(MAX_VALIDATORS)))
    assert many.size == MAX_VALIDATORS
    with pytest.raises(ValidatorSetError) as info:
        ValidatorSet(1, tuple((f"v{i:05d}", 1) for i in range(MAX_VALIDATORS + 1)))
    assert str(info.value) == f"{MAX_VALIDATORS + 1} validators exceed the limit of {MAX_VALIDATORS}"
    with pytest.raises(ValidatorSetError) as info:
        ValidatorSet(1, ((5, 1),))  # type: ignore[arg-type]
    assert str(info.value) in (
        "validator 5 is not a hotkey",
        "validators must be unique and sorted by hotkey",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "a validator set is a map with 'block' and 'validators'"),
        ({"block": 1}, "a validator set is a map with 'block' and 'validators'"),
        ({"block": 1, "validators": "a"}, "validators must be a list of [hotkey, stake] pairs"),
        ({"block": 1, "validators": [["a", 1, 2]]}, "validators must be a list of [hotkey, stake] pairs"),
        ({"block": 1, "validators": ["a1"]}, "validators must be a list of [hotkey, stake] pairs"),
    ],
)
def test_validator_set_canonical_refusals(value: Any, message: str) -> None:
    with pytest.raises(ValidatorSetError) as info:
        ValidatorSet.from_canonical(value)
    assert str(info.value) == message


def test_honest_member_threshold_is_exact() -> None:
    """More than a third of the stake and at least f + 1 validators (f = 1 of 4)."""
    vset = ValidatorSet(1, (("a", 30), ("b", 30), ("c", 30), ("d", 10)))  # total 100
    assert not vset.honest_among(33, 2)  # 99 is not more than 100
    assert vset.honest_among(34, 2)
    assert not vset.honest_among(60, 1)  # stake enough, one validator is not f + 1
    assert not vset.honest_among(30, 4)  # count enough, stake not
    assert vset.contains_honest(["a", "b"]) and not vset.contains_honest(["a"])
    assert not vset.contains_honest(["d", "x", "y"])  # non-members add nothing
    assert vset.stake_of("a") == 30 and vset.stake_of("nobody") == 0
    thirds = ValidatorSet(1, (("a", 33), ("b", 33), ("c", 33)))  # total 99, f = 0
    assert not thirds.honest_among(33, 1)  # exactly a third is not more than a third
    assert thirds.honest_among(34, 1)


def test_a_group_blocks_a_quorum_exactly_when_the_rest_cannot_form_one() -> None:
    vset = ValidatorSet(1, (("a", 1), ("b", 1), ("c", 1), ("d", 1)))  # a quorum is 3
    assert not vset.blocks_quorum(["a"])  # b, c, d form one
    assert vset.blocks_quorum(["a", "b"])  # c, d cannot
    assert vset.blocks_quorum(["a", "b", "c", "d"])
    assert not vset.blocks_quorum([])
    heavy = ValidatorSet(1, (("a", 97), ("b", 1), ("c", 1), ("d", 1)))
    assert heavy.blocks_quorum(["a"])  # without a, no stake quorum
    assert not heavy.blocks_quorum(["b"])
