"""The Tendermint machine, rule by rule, driven by hand with real signatures."""

from __future__ import annotations

import pytest

from platform_cli.consensus.sim_world import SimKey
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus.evidence import verify as verify_evidence
from platform_cli.core.consensus.messages import Step, value_id
from platform_cli.core.consensus.ports import (
    Broadcast,
    CatchUp,
    Commit,
    Decided,
    Misbehaviour,
    PeerBehind,
    Refused,
    ValueRejected,
)
from platform_cli.identity import verify_signature
from tests.consensus_helpers import (
    NETWORK,
    TIMEOUTS,
    entry,
    keys,
    machine,
    precommit,
    prevote,
    proposal,
    sign,
    validator_set,
)

K = keys(4)
VSET = validator_set(K)
ME = K[0]
PROPOSER = K[1]  # proposer of (height 1, round 0); round r: K[(1 + r) % 4]


def sent(outputs, kind=None):
    return [
        o.envelope for o in outputs if isinstance(o, Broadcast) and (kind is None or o.envelope.kind == kind)
    ]


def own_vote(outputs, kind):
    votes = [e for e in sent(outputs, kind) if e.signer == ME.ss58]
    assert len(votes) == 1, outputs
    return votes[0].body["value"]


def started(now=0):
    m, app, votes = machine(ME, VSET, now=now)
    out = m.start(now)
    return m, app, votes, out


def test_a_round_with_a_valid_proposal_decides_with_a_verifiable_certificate() -> None:
    m, app, _, _ = started()
    value = entry(1, m.prev, "a")
    out = m.receive(proposal(PROPOSER, 1, 0, VSET, value), 10)  # line 22
    vid = value_id(value)
    assert own_vote(out, "consensus.prevote") == vid
    for key in K[1:3]:
        out = m.receive(prevote(key, 1, 0, VSET, vid), 20)
    assert own_vote(out, "consensus.precommit") == vid  # line 36: polka, lock
    assert (m.locked_round, m.valid_round) == (0, 0)
    for key in K[1:3]:
        out = m.receive(precommit(key, 1, 0, VSET, vid), 30)
    decided = [o for o in out if isinstance(o, Decided)]
    assert len(decided) == 1 and app.commits == [decided[0].commit]  # line 49
    cert = decided[0].commit.certificate
    certs.verify(cert, VSET, verify_signature, value=value)
    assert m.height == 2 and m.round == 0 and m.locked_round == -1  # lines 52-53


def test_the_proposer_proposes_and_prevotes_its_own_value() -> None:
    m, _app, _ = machine(PROPOSER, VSET)
    out = m.start(0)
    [prop] = sent(out, "consensus.proposal")
    assert prop.signer == PROPOSER.ss58 and prop.body["valid_round"] == -1
    assert [e.body["value"] for e in sent(out, "consensus.prevote")] == [value_id(prop.body["value"])]


def test_an_invalid_value_gets_a_nil_prevote_and_the_reason() -> None:
    m, app, _, _ = started()
    app.valid = lambda value: "not what we expect"
    out = m.receive(proposal(PROPOSER, 1, 0, VSET, entry(1, m.prev, "bad")), 10)
    assert own_vote(out, "consensus.prevote") is None
    assert [o.reason for o in out if isinstance(o, ValueRejected)] == ["not what we expect"]


def test_a_locked_validator_prevotes_nil_for_another_value_and_its_lock_with_a_polka() -> None:
    m, _app, _, _ = started()
    v, w = entry(1, m.prev, "v"), entry(1, m.prev, "w")
    m.receive(proposal(PROPOSER, 1, 0, VSET, v), 10)
    for key in K[1:3]:
        m.receive(prevote(key, 1, 0, VSET, value_id(v)), 20)
    assert m.locked_round == 0
    for key in K[1:4]:
        m.receive(precommit(key, 1, 0, VSET, None), 30)
    out = m.on_timer(m.next_deadline())  # line 65: timeoutPrecommit -> round 1
    assert m.round == 1 and m.step is Step.PROPOSE
    out = m.receive(proposal(K[2], 1, 1, VSET, w), 40)  # line 23: locked on v
    assert own_vote(out, "consensus.prevote") is None
    for key in K[1:4]:
        m.receive(precommit(key, 1, 1, VSET, None), 50)
    m.on_timer(m.next_deadline())
    assert m.round == 2
    out = m.receive(proposal(K[3], 1, 2, VSET, v, valid_round=0), 60)  # line 28: the polka of round 0
    assert own_vote(out, "consensus.prevote") == value_id(v)


def test_a_proposal_naming_a_valid_round_without_a_polka_gets_no_prevote() -> None:
    """The trap of a proposer re-proposing an old value: line 28 needs the polka."""
    m, _app, _, _ = started()
    v = entry(1, m.prev, "old")
    m.receive(proposal(PROPOSER, 1, 0, VSET, v), 10)
    m.receive(prevote(K[2], 1, 0, VSET, value_id(v)), 20)  # one prevote is no polka
    for key in K[1:4]:
        m.receive(precommit(key, 1, 0, VSET, None), 30)
    m.on_timer(m.next_deadline())
    assert m.round == 1
    out = m.receive(proposal(K[2], 1, 1, VSET, v, valid_round=0), 40)
    assert sent(out, "consensus.prevote") == []
    out = m.on_timer(m.next_deadline())  # line 57: timeoutPropose
    assert own_vote(out, "consensus.prevote") is None


def to_round(m, target: int) -> None:
    """Nil precommits from the others and expiring timeouts, until round ``target``."""
    while m.round < target:
        for key in K[1:4]:
            m.receive(precommit(key, 1, m.round, VSET, None), m._now)
        m.on_timer(m.next_deadline())


def test_a_later_polka_moves_the_lock_and_a_proposal_it_backs_is_prevoted() -> None:
    m, _app, _, _ = started()
    v, w = entry(1, m.prev, "v"), entry(1, m.prev, "w")
    m.receive(proposal(PROPOSER, 1, 0, VSET, v), 10)
    for key in K[1:3]:
        m.receive(prevote(key, 1, 0, VSET, value_id(v)), 20)
    assert (m.locked_round, m.locked_id) == (0, value_id(v))
    to_round(m, 2)
    m.receive(proposal(K[2], 1, 1, VSET, w), m._now)  # round 1 happened without us
    for key in K[1:4]:
        m.receive(prevote(key, 1, 1, VSET, value_id(w)), m._now)
    assert (m.valid_round, m.locked_round) == (1, 0)  # CometBFT: validValue from an earlier round
    out = m.receive(proposal(K[3], 1, 2, VSET, w, valid_round=1), m._now)  # line 29: lockedRound <= vr
    assert own_vote(out, "consensus.prevote") == value_id(w)
    for key in K[1:3]:
        out = m.receive(prevote(key, 1, 2, VSET, value_id(w)), m._now)
    assert own_vote(out, "consensus.precommit") == value_id(w)
    assert (m.locked_round, m.locked_id) == (2, value_id(w))


def test_timeouts_grow_with_the_round() -> None:
    m, _, _, _ = started()
    deadlines = []
    for r in range(4):
        start = m.next_deadline() - TIMEOUTS.propose(r)
        deadlines.append(m.next_deadline() - start)
        now = m.next_deadline()
        m.on_timer(now)  # propose timeout: prevote nil
        for key in K[1:4]:
            m.receive(precommit(key, 1, r, VSET, None), now)
        m.on_timer(m.next_deadline())
        assert m.round == r + 1
    assert [TIMEOUTS.propose(r) for r in range(4)] == [1000, 1250, 1500, 1750]


def test_f_plus_one_messages_of_a_later_round_move_us_there() -> None:
    m, _, _, _ = started()
    m.receive(prevote(K[2], 1, 5, VSET, None), 10)
    assert m.round == 0  # one validator is not enough
    m.receive(prevote(K[3], 1, 7, VSET, None), 11)
    assert m.round == 5  # two validators at round 5 or later: one is honest (line 55)


def test_an_equivocation_becomes_evidence_and_both_votes_count_for_their_values() -> None:
    m, _, _, _ = started()
    v = entry(1, m.prev, "v")
    m.receive(proposal(PROPOSER, 1, 0, VSET, v), 10)
    m.receive(prevote(K[3], 1, 0, VSET, None), 11)
    out = m.receive(prevote(K[3], 1, 0, VSET, value_id(v)), 12)
    [evidence] = [o.evidence for o in out if isinstance(o, Misbehaviour)]
    verify_evidence(evidence, verify_signature, validators=VSET)
    assert evidence.signer == K[3].ss58 and evidence.slot == (1, 0, Step.PREVOTE)
    out = m.receive(prevote(K[2], 1, 0, VSET, value_id(v)), 13)
    assert own_vote(out, "consensus.precommit") == value_id(v)  # us, K2 and K3 form the polka


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda prev: prevote(SimKey(7, "outsider"), 1, 0, VSET, None), "not_validator"),
        (lambda prev: prevote(K[2], 1, 0, validator_set(K, block=9), None), "wrong_set"),
        (lambda prev: proposal(K[2], 1, 0, VSET, entry(1, prev, "x")), "not_proposer"),
        (lambda prev: sign(K[2], "consensus.prevote", {"height": 1}), "malformed"),
        (lambda prev: sign(K[2], "registry.update", {}), "wrong_kind"),
    ],
)
def test_messages_that_do_not_belong_are_refused_with_a_reason(make, reason) -> None:
    m, _, _, _ = started()
    out = m.receive(make(m.prev), 10)
    assert [o.reason for o in out if isinstance(o, Refused)] == [reason]


def test_a_forged_signature_is_refused_and_counts_for_nothing() -> None:
    import dataclasses

    m, _, _, _ = started()
    forged = dataclasses.replace(prevote(K[2], 1, 0, VSET, None), signer=K[3].ss58)
    out = m.receive(forged, 10)
    assert [o.reason for o in out if isinstance(o, Refused)] == ["bad_signature"]
    assert m._log(0).prevotes.by_signer == {}


def test_a_sixty_percent_validator_is_needed_and_a_third_can_stall() -> None:
    for top_share, others_reach in ((6000, False), (3340, False), (3000, True)):
        stakes = [top_share] + [(10000 - top_share) // 3] * 3
        members = keys(4)
        vset = validator_set(members, stakes)
        m, app, _ = machine(members[2], vset)
        m.start(0)
        value = entry(1, m.prev, "v")
        m.receive(proposal(members[1], 1, 0, vset, value), 1)
        for key in (members[1], members[3]):
            m.receive(prevote(key, 1, 0, vset, value_id(value)), 2)
            m.receive(precommit(key, 1, 0, vset, value_id(value)), 3)
        assert bool(app.commits) is others_reach, top_share


def test_a_restart_resumes_the_round_step_and_lock_and_never_signs_a_conflict() -> None:
    m, _app, votes, _ = started()
    v = entry(1, m.prev, "v")
    m.receive(proposal(PROPOSER, 1, 0, VSET, v), 10)
    for key in K[1:3]:
        m.receive(prevote(key, 1, 0, VSET, value_id(v)), 20)
    assert m.locked_round == 0
    again, _, _ = machine(ME, VSET, votes=votes, now=100)
    assert (again.height, again.round, again.step, again.locked_round) == (1, 0, Step.PRECOMMIT, 0)
    assert again.locked_value == v
    out = again.start(100)
    resent = [e for e in sent(out) if e.signer == ME.ss58]
    assert {e.kind for e in resent} == {"consensus.prevote", "consensus.precommit"}
    assert all(e in votes.resume()[1] for e in resent)  # the stored bytes, not new signatures
    again._vote(Step.PRECOMMIT, None)  # what an amnesiac would do
    assert any(isinstance(o, Refused) and o.reason == "guard" for o in again._flush())


def test_a_commit_from_a_peer_is_applied_only_with_a_valid_certificate() -> None:
    m, _app, _, _ = started()
    value = entry(1, m.prev, "v")
    vid = value_id(value)
    precommits = [precommit(k, 1, 3, VSET, vid) for k in K[1:4]]
    good = certs.build(NETWORK, 1, 3, vid, VSET, precommits)
    short = certs.build(NETWORK, 1, 3, vid, VSET, precommits[:2])
    out = m.receive_commit(Commit(value, short), 5)
    assert [o.reason for o in out if isinstance(o, Refused)] == ["bad_certificate"] and m.height == 1
    out = m.receive_commit(Commit(entry(1, m.prev, "other"), good), 6)
    assert [o.reason for o in out if isinstance(o, Refused)] == ["bad_certificate"]
    out = m.receive_commit(Commit(value, good), 7)
    assert [o for o in out if isinstance(o, Decided)] and m.height == 2


def test_messages_of_other_heights_ask_for_catch_up_or_offer_it() -> None:
    m, _, _, _ = started()
    out = m.receive(prevote(K[2], 3, 0, VSET, None), 10)
    assert CatchUp(1) in out
    m.height = 5  # as if we had decided four heights
    out = m.receive(prevote(K[3], 2, 0, VSET, None), 5000)
    assert PeerBehind(K[3].ss58, 2) in out


def test_an_idle_validator_starts_a_height_when_a_member_speaks() -> None:
    m, app, _ = machine(ME, VSET)
    app.work = False
    assert m.start(0) == [] and not m.started
    m.receive(prevote(K[2], 1, 0, VSET, None), 10)
    assert m.started and m.round == 0
    status = m.status()
    assert (
        status["step"] == "propose"
        and status["proposer"] == PROPOSER.ss58
        and status["set_id"] == VSET.set_id
    )
