"""The pure consensus pieces: quorum, proposer, messages, guard, certificates, evidence."""

from __future__ import annotations

import ast
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_cli.core import gossip
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus import evidence as ev
from platform_cli.core.consensus import guard
from platform_cli.core.consensus.messages import KINDS, MessageError, Step, parse
from platform_cli.core.consensus.validators import ValidatorSet, ValidatorSetError
from platform_cli.identity import verify_signature
from tests.conftest import REPO
from tests.consensus_helpers import NETWORK, keys, precommit, prevote, proposal, sign, validator_set

K = keys(4)
VSET = validator_set(K)
VID = "ab" * 32


def members(n: int, stakes: list[int] | None = None) -> ValidatorSet:
    return ValidatorSet.from_stakes(1, {f"5validator{i:040d}": s for i, s in enumerate(stakes or [1] * n)})


@pytest.mark.parametrize(
    ("n", "f", "quorum"), [(1, 0, 1), (4, 1, 3), (5, 1, 4), (6, 1, 5), (7, 2, 5), (10, 3, 7)]
)
def test_quorum_size_is_more_than_two_thirds_by_count(n: int, f: int, quorum: int) -> None:
    vset = members(n)
    assert (vset.f, vset.quorum_size) == (f, quorum)
    assert vset.is_quorum(vset.hotkeys[:quorum]) and not vset.is_quorum(vset.hotkeys[: quorum - 1])


def test_a_quorum_needs_stake_and_count() -> None:
    vset = members(4, [60, 14, 13, 13])
    top, *rest = vset.hotkeys
    assert not vset.is_quorum(rest)  # 40% of the stake
    assert not vset.is_quorum([top, rest[0]])  # 74% of the stake, 2 of 4 validators
    assert vset.is_quorum([top, *rest[:2]])
    third = members(4, [334, 222, 222, 222])
    assert not third.is_quorum(third.hotkeys[1:])  # 66.6%: a third can stall alone
    assert third.blocks_quorum([third.hotkeys[0]])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=12), st.data())
def test_two_quorums_share_an_honest_validator_under_either_assumption(stakes: list[int], data) -> None:
    vset = members(len(stakes), stakes)
    everyone = vset.hotkeys
    a = data.draw(st.sets(st.sampled_from(everyone)))
    b = data.draw(st.sets(st.sampled_from(everyone)))
    if vset.is_quorum(a) and vset.is_quorum(b):
        stake, count = vset.power(a & b)
        assert count >= vset.f + 1 and 3 * stake > vset.total


def test_the_proposer_rotates_through_the_set() -> None:
    vset = members(7)
    assert {vset.proposer(3, r) for r in range(7)} == set(vset.hotkeys)
    assert vset.proposer(3, 1) == vset.proposer(4, 0)


def test_a_set_refuses_what_it_cannot_use() -> None:
    assert members(3, [5, 0, 7]).size == 2
    with pytest.raises(ValidatorSetError, match="empty"):
        ValidatorSet.from_stakes(1, {"5x" * 20: 0})
    with pytest.raises(ValidatorSetError, match="sorted"):
        ValidatorSet(1, (("b" * 40, 1), ("a" * 40, 1)))
    assert ValidatorSet.from_canonical(VSET.to_canonical()) == VSET


@pytest.mark.parametrize(
    ("kind", "body", "problem"),
    [
        ("consensus.prevote", {"height": 0, "round": 0, "set": VID, "value": None}, "height starts at 1"),
        ("consensus.prevote", {"height": 1, "round": -1, "set": VID, "value": None}, "round"),
        ("consensus.prevote", {"height": 1, "round": 0, "set": "x", "value": None}, "set"),
        ("consensus.prevote", {"height": 1, "round": 0, "set": VID, "value": "nope"}, "value"),
        ("consensus.prevote", {"height": True, "round": 0, "set": VID, "value": None}, "height"),
        (
            "consensus.proposal",
            {"height": 1, "round": 2, "set": VID, "valid_round": 2, "value": {}},
            "valid_round",
        ),
        ("consensus.proposal", {"height": 1, "round": 0, "set": VID, "valid_round": -1, "value": []}, "map"),
        ("consensus.precommit", {"height": 1, "round": 0, "set": VID}, "fields"),
    ],
)
def test_message_bodies_are_checked_field_by_field(kind: str, body: dict, problem: str) -> None:
    with pytest.raises(MessageError, match=problem):
        parse(kind, body)


def test_the_guard_reuses_identical_bytes_and_refuses_everything_else() -> None:
    envelope = prevote(K[0], 2, 1, VSET, None)
    signed = guard.Signed((2, 1, 1), b"body", envelope)
    assert guard.decide((2, 1, 1), b"body", at_slot=signed, highest=(2, 1, 1)).envelope is envelope
    assert (
        guard.decide((2, 1, 1), b"other", at_slot=signed, highest=(2, 1, 1)).verdict is guard.Verdict.REFUSE
    )
    assert guard.decide((2, 1, 0), b"x", at_slot=None, highest=(2, 1, 1)).verdict is guard.Verdict.REFUSE
    assert guard.decide((2, 0, 2), b"x", at_slot=None, highest=(2, 1, 1)).verdict is guard.Verdict.REFUSE
    assert guard.decide((2, 1, 2), b"x", at_slot=None, highest=(2, 1, 1)).verdict is guard.Verdict.SIGN
    assert guard.decide((1, 0, 0), b"x", at_slot=None, highest=None).verdict is guard.Verdict.SIGN


def cert_of(signers, value=VID, round_=0, height=3) -> certs.Certificate:
    return certs.build(
        NETWORK, height, round_, value, VSET, [precommit(k, height, round_, VSET, value) for k in signers]
    )


def test_a_certificate_round_trips_and_verifies_offline() -> None:
    cert = cert_of(K[:3])
    certs.verify(cert, VSET, verify_signature)
    assert certs.decode(cert.encode()) == cert
    again, value = certs.from_json(cert.to_json({"x": 1}))
    assert again == cert and value == {"x": 1}
    assert cert.signers == tuple(sorted(k.ss58 for k in K[:3]))


def test_certificate_problems_are_named() -> None:
    cases = {
        "do not come from a quorum|a quorum needs": cert_of(K[:2]),
        "validator set": certs.build(NETWORK, 3, 0, VID, validator_set(K, block=7), []),
    }
    for problem, cert in cases.items():
        with pytest.raises(certs.CertificateError, match=problem):
            certs.verify(cert, VSET, verify_signature)
    twice = certs.Certificate(
        NETWORK,
        3,
        0,
        VID,
        VSET.set_id,
        VSET.block,
        (*cert_of(K[:3]).precommits, precommit(K[0], 3, 0, VSET, VID)),
    )
    with pytest.raises(certs.CertificateError, match="twice"):
        certs.verify(twice, VSET, verify_signature)
    nil = certs.Certificate(NETWORK, 3, 0, VID, VSET.set_id, VSET.block, (precommit(K[0], 3, 0, VSET, None),))
    with pytest.raises(certs.CertificateError, match="not this certificate's decision"):
        certs.verify(nil, VSET, verify_signature)
    prevoted = certs.Certificate(
        NETWORK, 3, 0, VID, VSET.set_id, VSET.block, (prevote(K[0], 3, 0, VSET, VID),)
    )
    with pytest.raises(certs.CertificateError, match="kind"):
        certs.verify(prevoted, VSET, verify_signature)
    outsider = cert_of(keys(5, seed=8)[:1])
    with pytest.raises(certs.CertificateError, match="not in the validator set"):
        certs.verify(outsider, VSET, verify_signature)
    with pytest.raises(certs.CertificateError, match="value's id"):
        certs.verify(cert_of(K[:3]), VSET, verify_signature, value={"other": 1})


def test_evidence_is_two_different_bodies_at_one_slot() -> None:
    a = prevote(K[1], 4, 2, VSET, None)
    b = prevote(K[1], 4, 2, VSET, VID)
    assert ev.conflict(a, sign(K[1], "consensus.prevote", a.body, seq=9)) is None  # same body re-signed
    assert ev.conflict(a, prevote(K[1], 4, 3, VSET, VID)) is None  # another round
    assert ev.conflict(a, prevote(K[2], 4, 2, VSET, VID)) is None  # another signer
    found = ev.conflict(a, b)
    assert found is not None and found.slot == (4, 2, Step.PREVOTE) and found == ev.conflict(b, a)
    ev.verify(found, verify_signature, validators=VSET)
    assert ev.decode(found.encode()) == found and ev.from_json(found.to_json()) == found
    with pytest.raises(ev.EvidenceError, match="not in the validator set"):
        ev.verify(found, verify_signature, validators=validator_set(keys(4, seed=9)))
    import dataclasses

    forged = ev.Evidence(
        *sorted((a, dataclasses.replace(b, signature=bytes(64))), key=lambda e: e.message_id())
    )
    with pytest.raises(ev.EvidenceError, match="does not verify"):
        ev.verify(forged, verify_signature)
    value = {"height": 4, "prev": VID, "actions": []}
    two = ev.conflict(
        proposal(K[1], 4, 2, VSET, value), proposal(K[1], 4, 2, VSET, {**value, "prev": "cd" * 32})
    )
    assert two is not None and two.slot == (4, 2, Step.PROPOSE)


def test_the_consensus_topic_carries_exactly_the_consensus_kinds() -> None:
    assert gossip.TOPICS["consensus"].kinds == KINDS


def test_no_two_consensus_modules_import_each_other() -> None:
    graph: dict[str, set[str]] = {}
    for package in ("core/consensus", "consensus"):
        for path in (REPO / "platform_cli" / package).glob("*.py"):
            name = f"platform_cli.{package.replace('/', '.')}.{path.stem}"
            graph[name] = {
                n.module
                for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.ImportFrom) and n.module
            }
    for a, b in combinations(graph, 2):
        assert not (b in graph[a] and a in graph[b]), f"{a} and {b} import each other"


def test_the_documented_vectors() -> None:
    from platform_cli.core import envelope as env
    from platform_cli.core.consensus.entry import Entry, genesis_id
    from platform_cli.core.consensus.messages import value_id
    from platform_cli.core.consensus.weights import ReportSet, vector_hash

    doc = (REPO / "docs" / "consensus.md").read_text()
    first, second = (
        "5HQjWAoZkgNeMN8yzoFNCoL3UawtRVJUJrmEWSQ9JEG8eqPu",
        "5DMLadUXgwNw5JMd8nvGvYdRAgSexZcPiDtFMBxZu42i45FK",
    )
    vset = ValidatorSet.from_stakes(1000, {first: 40000, second: 25000})
    report_set = ReportSet.of(first, 7, [("sort", second, 500_000_000)])
    vectors = [
        value_id(Entry(1, "00" * 32).to_canonical()),
        vset.set_id,
        genesis_id(env.Network(100, "platform-devnet"), vset.set_id),
        report_set.root,
        vector_hash(100, 0, 7, 1000, {0: 10**9}),
    ]
    for vector in vectors:
        assert vector in doc
