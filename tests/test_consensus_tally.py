"""Counting one step's votes: who voted for what, equivocation, quorum by stake and count."""

from __future__ import annotations

from platform_cli.core.consensus.tally import RoundLog, StepVotes
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.envelope import Envelope, Network

NET = Network(100, "platform-devnet")
A, B, C, D = "hk-a", "hk-b", "hk-c", "hk-d"
X, Y, Z = "x" * 64, "y" * 64, "z" * 64


def vote(signer: str, tag: int = 0) -> Envelope:
    """A vote's envelope: only its signer matters to the tally (each one distinct)."""
    return Envelope(NET, "consensus.prevote", signer, "ed25519", tag, 0, {"tag": tag}, bytes([tag]) * 64)


def equal_four() -> StepVotes:
    return StepVotes(ValidatorSet.from_stakes(7, {A: 1, B: 1, C: 1, D: 1}))


def test_a_first_vote_counts_once() -> None:
    votes = equal_four()
    first = vote(A)
    assert votes.add(X, first) == (True, None)
    assert votes.has(A, X)
    assert not votes.has(A, Y) and not votes.has(A, None) and not votes.has(B, X)
    assert votes.add(X, vote(A, 1)) == (False, None)  # the same value again: nothing new
    assert votes.envelopes_for(X) == [first]
    assert votes.envelopes() == [first]


def test_quorum_needs_more_than_two_thirds_by_count() -> None:
    votes = equal_four()  # quorum size 3 of 4
    votes.add(X, vote(A))
    votes.add(X, vote(B))
    assert not votes.quorum_for(X) and not votes.quorum_any()
    votes.add(X, vote(C))
    assert votes.quorum_for(X) and votes.quorum_any()
    assert votes.values_with_quorum() == [X]
    assert not votes.quorum_for(Y) and not votes.quorum_for(None)


def test_quorum_needs_more_than_two_thirds_of_the_stake() -> None:
    votes = StepVotes(ValidatorSet.from_stakes(7, {A: 97, B: 1, C: 1, D: 1}))
    for signer in (B, C, D):
        votes.add(X, vote(signer))
    assert not votes.quorum_for(X)  # three of four by count, 3% of the stake
    assert not votes.quorum_any()
    votes = StepVotes(ValidatorSet.from_stakes(7, {A: 66, B: 1, C: 1, D: 32}))
    for signer in (A, B, C):
        votes.add(X, vote(signer))
    assert votes.quorum_for(X) and votes.quorum_any()  # 68 of 100, three of four


def test_quorum_at_exactly_two_thirds_of_the_stake_is_not_reached() -> None:
    votes = StepVotes(ValidatorSet.from_stakes(7, {A: 2, B: 2, C: 2, D: 3}))  # total 9
    for signer in (A, B, C):
        votes.add(X, vote(signer))
    assert not votes.quorum_for(X)  # 6 of 9 is exactly two thirds
    votes.add(X, vote(D))
    assert votes.quorum_for(X)


def test_an_equivocation_returns_the_earlier_vote_and_counts_for_relevant_values() -> None:
    votes = equal_four()
    first = vote(A)
    votes.add(X, first)
    second = vote(A, 1)
    assert votes.add(Y, second, relevant=Y) == (True, first)
    assert votes.has(A, X) and votes.has(A, Y)
    nil_vote = vote(A, 2)
    assert votes.add(None, nil_vote, relevant=Y) == (True, first)
    assert votes.has(A, None)
    assert votes.add(Z, vote(A, 3), relevant=Y) == (False, first)  # not the proposal's value: not kept
    assert not votes.has(A, Z)
    assert votes.envelopes() == [first, second, nil_vote]
    assert votes.envelopes_for(Y) == [second]


def test_an_equivocator_counts_for_each_value_but_once_for_any() -> None:
    votes = equal_four()
    votes.add(X, vote(A))
    votes.add(Y, vote(A, 1), relevant=Y)
    votes.add(X, vote(B))
    votes.add(Y, vote(B, 1), relevant=Y)
    assert not votes.quorum_any()  # two signers, however many votes
    votes.add(X, vote(C))
    assert votes.quorum_for(X) and votes.quorum_any()
    assert not votes.quorum_for(Y)
    votes.add(Y, vote(C, 1), relevant=Y)
    assert votes.quorum_for(Y)
    assert votes.values_with_quorum() == [X, Y]


def test_nil_never_counts_as_a_value_with_quorum() -> None:
    votes = equal_four()
    for signer in (A, B, C, D):
        votes.add(None, vote(signer))
    assert votes.quorum_for(None) and votes.quorum_any()
    assert votes.values_with_quorum() == []
    assert len(votes.envelopes_for(None)) == 4


def test_a_non_member_adds_no_power() -> None:
    votes = StepVotes(ValidatorSet.from_stakes(7, {A: 100, B: 1, C: 1, D: 1}))
    votes.add(X, vote(A))
    assert votes.add(X, vote("outsider-1")) == (False, None)
    assert votes.add(X, vote("outsider-2")) == (False, None)
    assert not votes.quorum_for(X) and not votes.quorum_any()
    assert not votes.has("outsider-1", X)
    assert votes.envelopes() == [vote(A)]


def test_a_round_log_keeps_two_separate_steps() -> None:
    log = RoundLog(ValidatorSet.from_stakes(7, {A: 1, B: 1, C: 1, D: 1}))
    assert log.proposal is None
    log.prevotes.add(X, vote(A))
    assert log.prevotes.has(A, X) and not log.precommits.has(A, X)
    assert log.prevotes.validators is log.validators is log.precommits.validators


def test_a_heavy_validator_needs_company_by_count() -> None:
    """Stake alone is not enough: 98% of it from two of four validators is no quorum, for a
    first vote as for an equivocator's second."""
    votes = StepVotes(ValidatorSet.from_stakes(7, {A: 97, B: 1, C: 1, D: 1}))
    votes.add(X, vote(A))
    votes.add(X, vote(B))
    assert not votes.quorum_for(X)
    votes.add(Y, vote(A, 1), relevant=Y)  # A equivocates towards the proposal's value
    votes.add(Y, vote(C, 1))
    assert not votes.quorum_for(Y)
    votes.add(Y, vote(D, 1))
    assert votes.quorum_for(Y)
