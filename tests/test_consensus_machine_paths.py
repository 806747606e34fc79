"""The Tendermint machine's edges, driven by hand with real signatures: the exact refusal
of every kind of bad input, what the application is asked and when, duplicates and
lagging peers, messages of later rounds and heights, catch-up and its rate limits,
rebroadcast and idle polling on their clocks, restarts in every step, and the proposer's
own paths (re-proposing the valid value, re-sending a proposal it already signed)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from platform_cli.consensus.signing import GuardedSigner, MemoryVoteLog
from platform_cli.consensus.sim_world import SimKey
from platform_cli.core import envelope as env
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus.entry import genesis_id
from platform_cli.core.consensus.evidence import verify as verify_evidence
from platform_cli.core.consensus.machine import NEXT_HEIGHT_BUFFER, Machine
from platform_cli.core.consensus.messages import PRECOMMIT, PREVOTE, MessageError, Step, parse, value_id
from platform_cli.core.consensus.ports import (
    Broadcast,
    CatchUp,
    Commit,
    Decided,
    Misbehaviour,
    PeerBehind,
    Refused,
    ResumeState,
    ValueRejected,
)
from platform_cli.identity import verify_signature
from tests.consensus_helpers import (
    NETWORK,
    TIMEOUTS,
    ScriptedApp,
    entry,
    keys,
    precommit,
    prevote,
    proposal,
    sign,
    validator_set,
)

K = keys(4)
VSET = validator_set(K)
ME = K[0]
GENESIS = genesis_id(NETWORK, VSET.set_id)
CATCHUP = TIMEOUTS.catchup_ms


def proposer(height: int, round_: int) -> SimKey:
    return next(k for k in K if k.ss58 == VSET.proposer(height, round_))


@dataclass
class StrictApp(ScriptedApp):
    """Checks every call against the machine it serves: the height it is at, the head of
    the log it extends, a clock reading and a value; records the calls in order."""

    height: int = 1
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def _at(self, name: str, height: int, now_ms: int | None = None, prev: Any = "") -> None:
        assert height == self.height, (name, height, self.height)
        if now_ms is not None or name != "decidable":
            assert type(now_ms) is int, (name, now_ms)
        if prev != "":
            assert prev == self.prev, (name, prev, self.prev)
        self.calls.append((name, height))

    def has_work(self, height: int, now_ms: int) -> bool:
        self._at("has_work", height, now_ms)
        return self.work

    def propose(self, height: int, prev: str, now_ms: int) -> dict[str, Any]:
        self._at("propose", height, now_ms, prev)
        return self.next_value or entry(height, prev, "proposed")

    def validate(self, height: int, prev: str, value: Any, now_ms: int) -> str | None:
        self._at("validate", height, now_ms, prev)
        assert isinstance(value, dict)
        return self.valid(value)

    def decidable(self, height: int, prev: str, value: Any) -> str | None:
        assert height == self.height and prev == self.prev and isinstance(value, dict)
        self.calls.append(("decidable", height))
        return super().decidable(height, prev, value)

    def commit(self, commit: Commit) -> Any:
        self.calls.append(("commit", self.height))
        self.height += 1
        self.prev = commit.certificate.value_id
        return super().commit(commit)


@dataclass
class CountingVerifier:
    calls: int = 0

    def __call__(self, scheme: str, signer: str, payload: bytes, signature: bytes) -> bool:
        self.calls += 1
        return verify_signature(scheme, signer, payload, signature)


def build(
    me: SimKey = ME,
    app: ScriptedApp | None = None,
    votes: MemoryVoteLog | None = None,
    verify: Any = verify_signature,
    height: int = 1,
    prev: str = GENESIS,
    now: int = 0,
) -> tuple[Machine, StrictApp, MemoryVoteLog]:
    app = app or StrictApp(prev, height=height)
    app.vset = VSET
    votes = votes or MemoryVoteLog()
    resume, own = votes.resume()
    machine = Machine(
        me=me.ss58,
        network=NETWORK,
        validators=VSET,
        height=resume.height if resume else height,
        prev=prev,
        app=app,
        signer=GuardedSigner(votes, me, NETWORK),
        verify_signature=verify,
        timeouts=TIMEOUTS,
        resume=resume,
        own=own,
        now_ms=now,
    )
    return machine, app, votes


def polka_in_round_zero(m: Machine) -> tuple[Any, str]:
    """Height 1, round 0: the proposer's value and two other validators' prevotes for it,
    at 10 and 20 ms; the value and its id."""
    value = entry(1, GENESIS, "v")
    vid = value_id(value)
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, value), 10)
    for key in K[1:3]:
        m.receive(prevote(key, 1, 0, VSET, vid), 20)
    return value, vid


def broadcasts(outputs: list[Any]) -> list[env.Envelope]:
    return [o.envelope for o in outputs if isinstance(o, Broadcast)]


def mine(outputs: list[Any], kind: str) -> list[Any]:
    return [e.body["value"] for e in broadcasts(outputs) if e.signer == ME.ss58 and e.kind == kind]


def nil_round(m: Machine, now: int) -> int:
    """The others precommit nil at our round; the precommit timeout moves us on."""
    start = m.round
    for key in K[1:]:
        m.receive(precommit(key, m.height, m.round, VSET, None), now)
    while m.round == start:
        now = m.next_deadline()
        m.on_timer(now)
    return now


# --- refusals -------------------------------------------------------------------------


OTHER_NETWORK = env.Network(101, "platform-other")
OUTSIDER = SimKey(7, "outsider")


def malformed_detail() -> str:
    with pytest.raises(MessageError) as caught:
        parse(PREVOTE, {"height": 1})
    return str(caught.value)


REFUSALS = {
    "wrong kind": (
        lambda: sign(K[2], "registry.update", {}),
        Refused("wrong_kind", K[2].ss58, "kind 'registry.update' is not a proposal or vote"),
    ),
    "wrong network": (
        lambda: sign(
            K[2], PREVOTE, {"height": 1, "round": 0, "set": VSET.set_id, "value": None}, network=OTHER_NETWORK
        ),
        Refused("wrong_network", K[2].ss58, "signed for another network"),
    ),
    "malformed": (
        lambda: sign(K[2], PREVOTE, {"height": 1}),
        Refused("malformed", K[2].ss58, malformed_detail()),
    ),
    "not a validator": (
        lambda: prevote(OUTSIDER, 1, 0, VSET, None),
        Refused("not_validator", OUTSIDER.ss58, "not in the validator set of height 1"),
    ),
    "another set": (
        lambda: prevote(K[2], 1, 0, validator_set(K, block=9), None),
        Refused("wrong_set", K[2].ss58, "cast under another validator set"),
    ),
    "not the proposer": (
        lambda: proposal(K[2], 1, 3, VSET, entry(1, GENESIS, "x")),
        Refused("not_proposer", K[2].ss58, "not the proposer of round 3"),
    ),
    "forged": (
        lambda: dataclasses.replace(prevote(K[2], 1, 0, VSET, None), signer=K[3].ss58),
        Refused("bad_signature", K[3].ss58, f"signature does not verify for {K[3].ss58}"),
    ),
    "forged, for a later height": (
        lambda: dataclasses.replace(prevote(K[2], 3, 0, VSET, None), signer=K[3].ss58),
        Refused("bad_signature", K[3].ss58, f"signature does not verify for {K[3].ss58}"),
    ),
    "forged, for the next height": (
        lambda: dataclasses.replace(prevote(K[2], 2, 0, VSET, None), signer=K[3].ss58),
        Refused("bad_signature", K[3].ss58, f"signature does not verify for {K[3].ss58}"),
    ),
    "short signature": (
        lambda: dataclasses.replace(prevote(K[2], 1, 0, VSET, None), signature=b"\x01" * 63),
        Refused("bad_signature", K[2].ss58, f"signature does not verify for {K[2].ss58}"),
    ),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_each_refusal_names_its_reason_signer_and_cause_and_changes_nothing(name: str) -> None:
    make, expected = REFUSALS[name]
    m, _app, _ = build()
    m.start(0)
    before = (m.status(), m._rounds.keys(), dict(m._seen), dict(m._next), set(m._ahead_of_us))
    assert m.receive(make(), 10) == [expected]
    assert expected.fault == "remote"
    assert (m.status(), m._rounds.keys(), dict(m._seen), dict(m._next), set(m._ahead_of_us)) == before


def test_a_commit_that_cannot_be_applied_is_refused_with_its_cause() -> None:
    m, app, _ = build()
    m.start(0)
    value = entry(1, GENESIS, "v")
    vid = value_id(value)
    precommits = [precommit(k, 1, 0, VSET, vid) for k in K[1:]]
    foreign = dataclasses.replace(certs.build(NETWORK, 1, 0, vid, VSET, precommits), network=OTHER_NETWORK)
    assert m.receive_commit(Commit(value, foreign), 5) == [
        Refused("wrong_network", "", "certificate for another network")
    ]
    short = certs.build(NETWORK, 1, 0, vid, VSET, precommits[:2])
    with pytest.raises(certs.CertificateError) as caught:
        certs.verify(short, VSET, verify_signature, value=value)
    assert m.receive_commit(Commit(value, short), 6) == [Refused("bad_certificate", "", str(caught.value))]
    stray = entry(1, "ab" * 32, "does not extend")
    stray_id = value_id(stray)
    proven = certs.build(NETWORK, 1, 0, stray_id, VSET, [precommit(k, 1, 0, VSET, stray_id) for k in K[1:]])
    assert m.receive_commit(Commit(stray, proven), 7) == [
        Refused("bad_commit", "", "does not extend the log")
    ]
    later = certs.build(NETWORK, 2, 0, vid, VSET, [precommit(k, 2, 0, VSET, vid) for k in K[1:]])
    assert m.receive_commit(Commit(value, later), 8) == []
    assert m.height == 1 and app.commits == []
    good = certs.build(NETWORK, 1, 0, vid, VSET, precommits)
    out = m.receive_commit(Commit(value, good), 9)
    assert Decided(Commit(value, good)) in out and m.height == 2 and m.prev == vid


# --- what the application is asked ----------------------------------------------------


def test_the_application_is_asked_at_the_current_height_about_the_current_head() -> None:
    m, app, _ = build()
    assert m.start(0) == [] and app.calls == [("has_work", 1)]
    _value, vid = polka_in_round_zero(m)
    for key in K[1:3]:
        out = m.receive(precommit(key, 1, 0, VSET, vid), 30)
    assert [o for o in out if isinstance(o, Decided)]
    assert app.calls == [("has_work", 1), ("validate", 1), ("decidable", 1), ("commit", 1), ("has_work", 2)]
    assert (m.height, m.prev, app.prev) == (2, vid, vid)
    # Height 2, round 2 is ours to propose: the value extends the new head.
    app.calls.clear()
    now = nil_round(m, 40)
    now = nil_round(m, now)
    assert m.round == 2 and ("propose", 2) in app.calls
    [ours] = [e for e in m._own.values() if e.kind == "consensus.proposal"]
    assert ours.body["value"] == entry(2, vid, "proposed") and ours.body["valid_round"] == -1


def test_an_idle_machine_polls_for_work_on_its_clock_and_starts_when_woken() -> None:
    m, app, _ = build(now=100)
    app.work = False
    assert m.start(100) == [] and not m.started
    assert m.next_deadline() == 100
    assert m.on_timer(100) == [] and m.next_deadline() == 100 + TIMEOUTS.idle_poll_ms
    assert m.on_timer(100 + TIMEOUTS.idle_poll_ms - 1) == []
    assert app.calls == [("has_work", 1), ("has_work", 1)]
    m.on_timer(100 + TIMEOUTS.idle_poll_ms)
    assert len(app.calls) == 3 and not m.started
    assert m.wake(1200) == [] and not m.started
    app.work = True
    m.wake(1300)
    assert m.started and (m.round, m.step) == (0, Step.PROPOSE)
    assert m.next_deadline() == 1300 + TIMEOUTS.propose(0)
    # Once started, polling stops: the next deadline is the propose timeout.
    calls = len(app.calls)
    m.wake(1301)
    assert len(app.calls) == calls


def test_an_idle_machine_starts_on_the_poll_that_finds_work() -> None:
    m, app, _ = build(me=proposer(1, 0))
    app.work = False
    m.start(0)
    assert m.on_timer(0) == []
    app.work = True
    out = m.on_timer(TIMEOUTS.idle_poll_ms - 1)
    assert out == [] and not m.started
    out = m.on_timer(TIMEOUTS.idle_poll_ms)
    assert m.started and m.round == 0
    [ours] = broadcasts(out)[:1]
    assert ours.kind == "consensus.proposal" and ours.body["round"] == 0


def test_waking_forgets_rejections_so_data_that_arrived_since_can_change_the_verdict() -> None:
    m, app, _ = build()
    m.start(0)
    value = entry(1, GENESIS, "v")
    vid = value_id(value)
    app.valid = lambda v: "score reports missing"
    out = m.receive(proposal(proposer(1, 0), 1, 0, VSET, value), 10)
    assert [o for o in out if isinstance(o, ValueRejected)] == [
        ValueRejected(1, 0, vid, "score reports missing")
    ]
    assert mine(out, PREVOTE) == [None]
    app.valid = lambda v: None
    m.wake(20)
    for key in K[1:]:
        out = m.receive(prevote(key, 1, 0, VSET, vid), 30)
    assert mine(out, PRECOMMIT) == [vid]  # line 36 runs valid(v) again
    assert (m.locked_round, m.locked_id, m.valid_round) == (0, vid, 0)


def test_an_accepted_value_is_judged_once_per_height() -> None:
    m, app, _ = build()
    m.start(0)
    value = entry(1, GENESIS, "v")
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, value), 10)
    m.wake(11)
    for key in K[1:]:
        m.receive(prevote(key, 1, 0, VSET, value_id(value)), 20)
    assert app.calls.count(("validate", 1)) == 1


# --- duplicates and lagging peers -----------------------------------------------------


def test_a_message_seen_again_changes_nothing() -> None:
    m, _app, _ = build()
    m.start(0)
    vote = prevote(K[2], 1, 0, VSET, None)
    assert m.receive(vote, 10) == []
    before = m._log(0).prevotes.envelopes()
    assert m.receive(vote, 11) == []
    assert m._log(0).prevotes.envelopes() == before == [vote]


def test_a_lagging_peer_gets_what_its_round_gathered_at_most_once_per_interval() -> None:
    m, _app, _ = build()
    m.start(0)
    value = entry(1, GENESIS, "v")
    lead = proposal(proposer(1, 0), 1, 0, VSET, value)
    m.receive(lead, 10)
    late = prevote(K[2], 1, 0, VSET, None)
    m.receive(late, 11)
    now = nil_round(m, 20)
    assert m.round == 1
    log0 = m._rounds[0]
    gathered = [lead, *log0.prevotes.envelopes(), *log0.precommits.envelopes()]
    assert len(gathered) == 1 + 2 + 3 and late in gathered  # the proposal, two prevotes, three precommits
    assert m.receive(late, now) == [Broadcast(e) for e in gathered]  # the same bytes again
    assert m.receive(late, now + 1) == []
    assert m.receive(late, now + CATCHUP - 1) == []
    assert m.receive(late, now + CATCHUP) == [Broadcast(e) for e in gathered]
    # A new message from the earlier round helps too, and is counted there.
    fresh = prevote(K[3], 1, 0, VSET, None)
    now = nil_round(m, now + CATCHUP) + CATCHUP
    assert m.round == 2
    out = m.receive(fresh, now)
    log0 = m._rounds[0]
    assert out == [
        Broadcast(e) for e in [lead, *log0.prevotes.envelopes()[:-1], *log0.precommits.envelopes()]
    ]
    assert log0.prevotes.has(K[3].ss58, None)
    # Round 1 is helped separately from round 0.
    log1 = m._rounds[1]
    assert m.receive(log1.precommits.envelopes_for(None)[1], now) == [
        Broadcast(e) for e in log1.prevotes.envelopes() + log1.precommits.envelopes()
    ]


def test_a_new_message_from_a_round_we_hold_nothing_of_is_just_recorded() -> None:
    m, _app, _ = build()
    m.start(0)
    m.receive(prevote(K[3], 1, 2, VSET, None), 5)
    m.receive(prevote(K[2], 1, 2, VSET, None), 6)
    assert m.round == 2 and 1 not in m._rounds
    assert m.receive(prevote(K[2], 1, 1, VSET, None), 7) == []
    assert m._rounds[1].prevotes.has(K[2].ss58, None)


# --- later rounds ---------------------------------------------------------------------


def test_messages_of_later_rounds_are_held_per_signer_at_its_highest_round() -> None:
    m, _app, _ = build()
    m.start(0)
    v = entry(1, GENESIS, "v")
    first = prevote(K[2], 1, 3, VSET, None)
    assert m.receive(first, 10) == []
    assert m.receive(first, 11) == []
    assert m._ahead[K[2].ss58][0] == 3 and len(m._ahead[K[2].ss58][1]) == 1
    out = m.receive(prevote(K[2], 1, 3, VSET, value_id(v)), 12)  # equivocation while held
    [evidence] = [o.evidence for o in out if isinstance(o, Misbehaviour)]
    verify_evidence(evidence, verify_signature, validators=VSET)
    assert evidence.slot == (1, 3, Step.PREVOTE)
    assert m.receive(prevote(K[2], 1, 3, VSET, "ab" * 32), 13) == []  # that slot is evidenced already
    assert len(m._ahead[K[2].ss58][1]) == 1
    commit_vote = precommit(K[2], 1, 3, VSET, None)
    m.receive(commit_vote, 14)
    assert [e for _, e in m._ahead[K[2].ss58][1]] == [first, commit_vote]
    m.receive(prevote(K[2], 1, 2, VSET, None), 15)  # below what it already sent us: dropped
    assert m._ahead[K[2].ss58][0] == 3
    m.receive(prevote(K[3], 1, 3, VSET, None), 16)  # f + 1 at round 3
    assert m.round == 3 and not m._ahead
    log = m._rounds[3]
    assert log.prevotes.has(K[2].ss58, None) and log.precommits.has(K[2].ss58, None)
    assert 2 not in m._rounds


def test_a_signers_higher_round_replaces_what_was_held() -> None:
    m, _app, _ = build()
    m.start(0)
    m.receive(prevote(K[2], 1, 4, VSET, None), 10)
    newer = prevote(K[2], 1, 6, VSET, None)
    m.receive(newer, 11)
    assert m._ahead[K[2].ss58] == (6, [(parse(PREVOTE, newer.body), newer)])


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        ((9, 9, 5), 9),  # the highest round with f + 1 at or above it
        ((9, 5, 5), 5),  # one validator at 9 is not enough: the next lower round is tried
        ((9, 7, 0), 7),
    ],
)
def test_f_plus_one_moves_to_the_highest_round_they_vouch_for(rounds, expected) -> None:
    m, _app, _ = build()
    m.start(0)
    for key, round_ in zip(K[1:], rounds, strict=True):
        m.receive(prevote(key, 1, round_, VSET, None), 10)
    assert m.round == expected


def test_held_messages_of_a_round_reached_by_timeout_are_counted_there() -> None:
    m, _app, _ = build()
    m.start(0)
    held = prevote(K[2], 1, 1, VSET, None)
    m.receive(held, 5)
    assert m.round == 0
    nil_round(m, 10)
    assert m.round == 1 and not m._ahead
    assert m._rounds[1].prevotes.has(K[2].ss58, None)


# --- later heights, catch-up ----------------------------------------------------------


def test_catch_up_is_asked_for_a_far_height_or_f_plus_one_at_the_next_and_rate_limited() -> None:
    m, _app, _ = build()
    m.start(0)
    assert m.receive(prevote(OUTSIDER, 3, 0, VSET, None), 5) == []  # a stranger's claim is no reason
    assert m.receive(prevote(K[2], 2, 0, VSET, None), 10) == []  # one validator ahead by one height
    assert m.receive(prevote(K[3], 2, 0, VSET, None), 11) == [CatchUp(1)]  # f + 1 ahead
    assert m.receive(prevote(K[1], 3, 0, VSET, None), 12) == []  # asked already
    assert m.receive(prevote(K[1], 3, 1, VSET, None), 11 + CATCHUP - 1) == []
    assert m.receive(prevote(K[1], 3, 2, VSET, None), 11 + CATCHUP) == [CatchUp(1)]
    assert m._ahead_of_us == {K[2].ss58, K[3].ss58, K[1].ss58}


def test_one_validator_two_heights_ahead_is_enough_to_ask() -> None:
    m, _app, _ = build(now=50)
    m.start(50)
    assert m.receive(prevote(K[2], 3, 0, VSET, None), 50) == [CatchUp(1)]


def test_a_lagging_peer_is_offered_catch_up_once_per_interval_each() -> None:
    m, _app, _ = build(height=5, prev="cd" * 32, now=1000)
    m.start(1000)
    assert m.receive(prevote(K[3], 2, 0, VSET, None), 1000) == [PeerBehind(K[3].ss58, 2)]
    assert m.receive(prevote(K[3], 3, 0, VSET, None), 1001) == []
    assert m.receive(prevote(K[2], 4, 0, VSET, None), 1002) == [PeerBehind(K[2].ss58, 4)]
    assert m.receive(prevote(K[3], 2, 1, VSET, None), 1000 + CATCHUP - 1) == []
    assert m.receive(prevote(K[3], 4, 1, VSET, None), 1000 + CATCHUP) == [PeerBehind(K[3].ss58, 4)]
    assert m.receive(prevote(OUTSIDER, 2, 0, VSET, None), 9000) == []


def test_next_height_messages_wait_for_the_decision_and_are_not_verified_again() -> None:
    verifier = CountingVerifier()
    m, _app, _ = build(verify=verifier)
    m.start(0)
    value = entry(1, GENESIS, "v")
    vid = value_id(value)
    # K2 sends more for height 2 than is kept: equivocating prevotes at height 2, round 0.
    values = [None, *(f"{n:064x}" for n in range(1, NEXT_HEIGHT_BUFFER + 1))]
    early = [prevote(K[2], 2, 0, VSET, v) for v in values]
    for vote in early:
        m.receive(vote, 5)
    m.receive(early[3], 6)  # a repeat is not queued twice
    assert m._next[K[2].ss58] == early[1:]
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, value), 10)
    for key in K[1:3]:
        m.receive(prevote(key, 1, 0, VSET, vid), 20)
    m.receive(precommit(K[1], 1, 0, VSET, vid), 30)
    verified = verifier.calls
    out = m.receive(precommit(K[2], 1, 0, VSET, vid), 30)
    assert [o for o in out if isinstance(o, Decided)] and m.height == 2
    assert verifier.calls == verified + 1  # the precommit itself; the queued ones were checked on arrival
    assert m._rounds[0].prevotes.by_signer[K[2].ss58] == {values[1]: early[1]}
    assert m._next == {}


# --- clocks: rebroadcast, timers ------------------------------------------------------


def test_rebroadcast_resends_our_round_its_proposal_and_the_polka_of_our_valid_round() -> None:
    m, _app, _ = build()
    m.start(0)
    v = entry(1, GENESIS, "v")
    vid = value_id(v)
    lead = proposal(proposer(1, 0), 1, 0, VSET, v)
    m.receive(lead, 10)
    polka = [prevote(k, 1, 0, VSET, vid) for k in K[1:3]]
    for vote in polka:
        m.receive(vote, 20)
    assert m.valid_round == 0
    at = m._rebroadcast_at
    assert at == TIMEOUTS.rebroadcast_ms
    for key in K[1:]:
        m.receive(precommit(key, 1, 0, VSET, None), 30)
    m.on_timer(m.next_deadline())  # round 1
    assert m.round == 1
    r1 = proposal(proposer(1, 1), 1, 1, VSET, entry(1, GENESIS, "w"))
    m.receive(r1, 2000)
    own_r1 = [e for slot, e in sorted(m._own.items()) if slot[1] == 1]
    assert [e.kind for e in own_r1] == [PREVOTE]
    assert m.on_timer(at - 1) == [] or m._rebroadcast_at == at
    out = m.on_timer(at)
    own_polka_vote = m._own[(1, 0, Step.PREVOTE)]
    expected = [*own_r1, r1, lead, *m._rounds[0].prevotes.envelopes_for(vid)]
    assert own_polka_vote in expected
    assert broadcasts(out)[-len(expected) :] == expected
    assert m._rebroadcast_at == at + TIMEOUTS.rebroadcast_ms


def test_rebroadcast_without_a_valid_round_sends_only_this_round() -> None:
    m, _app, _ = build(me=proposer(1, 0))
    out = m.start(0)
    ours = broadcasts(out)
    assert [e.kind for e in ours] == ["consensus.proposal", PREVOTE]
    assert m.valid_round == -1
    again = m.on_timer(TIMEOUTS.propose(0) - 1)
    assert again == []
    m.timeouts = dataclasses.replace(TIMEOUTS, rebroadcast_ms=100)
    assert broadcasts(m.on_timer(TIMEOUTS.rebroadcast_ms)) == ours


def test_a_new_height_drops_the_timers_of_the_old_one_and_starts_fresh() -> None:
    m, app, _ = build()
    m.start(0)
    now = nil_round(m, 0)
    now = nil_round(m, now)
    assert m.round == 2 and all(t[3] == 2 for t in m._timers)
    value = entry(1, GENESIS, "v")
    vid = value_id(value)
    m.receive(proposal(proposer(1, 2), 1, 2, VSET, value), now)
    app.work = False
    for key in K[1:]:
        m.receive(precommit(key, 1, 2, VSET, vid), now)
    assert m.height == 2 and m._timers == []
    assert m.status() == {
        "height": 2,
        "round": 0,
        "step": "propose",
        "started": False,
        "locked_round": -1,
        "valid_round": -1,
        "proposer": proposer(2, 0).ss58,
        "set_id": VSET.set_id,
    }
    assert m.next_deadline() == now  # idle: the next poll for work is due at once


# --- state ----------------------------------------------------------------------------


def test_status_and_resume_state_say_exactly_where_the_machine_is() -> None:
    m, _app, _ = build()
    m.start(0)
    v, _vid = polka_in_round_zero(m)
    assert m.status() == {
        "height": 1,
        "round": 0,
        "step": "precommit",
        "started": True,
        "locked_round": 0,
        "valid_round": 0,
        "proposer": proposer(1, 0).ss58,
        "set_id": VSET.set_id,
    }
    assert m.resume_state() == ResumeState(1, 0, int(Step.PRECOMMIT), 0, v, 0, v)


@pytest.mark.parametrize(
    ("step", "timeout"),
    [
        (Step.PROPOSE, TIMEOUTS.propose),
        (Step.PREVOTE, TIMEOUTS.prevote),
        (Step.PRECOMMIT, TIMEOUTS.precommit),
    ],
)
def test_a_restart_waits_the_timeout_of_the_step_it_resumes_in(step: Step, timeout) -> None:
    votes = MemoryVoteLog()
    v = entry(1, GENESIS, "v")
    votes.state = ResumeState(1, 2, int(step), 1, v, 1, v)
    m, _app, _ = build(votes=votes, now=500)
    assert (m.round, m.step, m.started, m.resumed) == (2, step, True, True)
    assert (m.locked_round, m.locked_value, m.locked_id) == (1, v, value_id(v))
    assert (m.valid_round, m.valid_value) == (1, v)
    assert m.next_deadline() == 500 + timeout(2)


def test_a_restored_lock_still_decides_what_is_prevoted() -> None:
    votes = MemoryVoteLog()
    v, w = entry(1, GENESIS, "v"), entry(1, GENESIS, "w")
    votes.state = ResumeState(1, 3, int(Step.PROPOSE), 1, v, 1, v)
    m, _app, _ = build(votes=votes)
    assert mine(m.receive(proposal(proposer(1, 3), 1, 3, VSET, w), 10), PREVOTE) == [None]
    votes.state = ResumeState(1, 3, int(Step.PROPOSE), 1, v, 1, v)
    votes.signed.clear()
    votes.highest = None
    m, _app, _ = build(votes=votes)
    assert mine(m.receive(proposal(proposer(1, 3), 1, 3, VSET, v), 10), PREVOTE) == [value_id(v)]


def test_the_guard_refusing_to_sign_is_reported_as_a_local_fault() -> None:
    m, _app, votes = build()
    m.start(0)
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, entry(1, GENESIS, "v")), 10)
    again, _, _ = build(votes=votes, now=20)
    again._vote(Step.PREVOTE, "ab" * 32)
    assert again._flush() == [
        Refused("guard", ME.ss58, "the signing guard refused height 1 round 0 prevote", "local")
    ]


# --- the proposer ---------------------------------------------------------------------


def test_a_proposer_with_a_valid_value_proposes_it_with_its_round() -> None:
    m, app, _ = build()
    m.start(0)
    v, _vid = polka_in_round_zero(m)
    now = 30
    while m.round < 3:
        now = nil_round(m, now)
    assert proposer(1, 3) == ME and ("propose", 1) not in app.calls
    ours = m._own[(1, 3, Step.PROPOSE)]
    assert ours.body == {"height": 1, "round": 3, "set": VSET.set_id, "valid_round": 0, "value": v}


def test_a_proposal_already_signed_for_a_round_is_sent_again_not_signed_anew() -> None:
    me = proposer(1, 1)
    m, _app, votes = build(me=me)
    m.start(0)
    nil_round(m, 10)
    assert m.round == 1
    signed = votes.signed[(1, 1, Step.PROPOSE)].envelope
    seq = votes.seq
    # The durable state lags behind the proposal (as after a crash between the two writes).
    votes.state = ResumeState(1, 0, int(Step.PRECOMMIT))
    # The application would now propose something else: the signed proposal is what goes out.
    again, _, _ = build(
        me=me, votes=votes, now=5000, app=StrictApp(GENESIS, next_value=entry(1, GENESIS, "new"))
    )
    out = again.on_timer(again.next_deadline())
    assert not [o for o in out if isinstance(o, Refused)]
    assert again.round == 1
    assert broadcasts(out)[0] == signed
    assert votes.seq == seq  # its prevote was signed before too: the guard hands back the same bytes


# --- rules that feed each other within one input --------------------------------------


def test_our_precommit_completing_a_quorum_decides_in_the_same_input() -> None:
    m, _app, _ = build()
    m.start(0)
    v = entry(1, GENESIS, "v")
    vid = value_id(v)
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, v), 10)
    m.receive(precommit(K[3], 1, 0, VSET, None), 11)
    for key in K[1:3]:
        m.receive(precommit(key, 1, 0, VSET, vid), 12)  # the precommit timeout is set: quorum of any
    m.receive(prevote(K[1], 1, 0, VSET, vid), 13)
    out = m.receive(prevote(K[2], 1, 0, VSET, vid), 14)  # polka -> our precommit -> decision
    assert mine(out, PRECOMMIT) == [vid]
    assert [o.commit.value for o in out if isinstance(o, Decided)] == [v]


def test_an_undecidable_value_is_refused_once_and_a_later_round_can_still_decide() -> None:
    m, app, _ = build()
    m.start(0)
    stray = entry(1, "ab" * 32, "stray")
    stray_id = value_id(stray)
    first = proposal(proposer(1, 0), 1, 0, VSET, stray)
    app.valid = lambda value: None
    m.receive(first, 10)
    refusals = []
    for key in K[1:]:
        out = m.receive(precommit(key, 1, 0, VSET, stray_id), 11)
        refusals += [o for o in out if isinstance(o, Refused)]
    assert refusals == [Refused("undecidable", proposer(1, 0).ss58, "does not extend the log")]
    assert m.height == 1 and stray_id in m._undecidable
    assert app.calls.count(("decidable", 1)) == 1
    now = 12
    while m.round < 2:
        now = nil_round(m, now)
    good = entry(1, GENESIS, "good")
    gid = value_id(good)
    m.receive(proposal(proposer(1, 2), 1, 2, VSET, good), now)
    for key in K[1:]:
        out = m.receive(precommit(key, 1, 2, VSET, gid), now)
    assert [o.commit.value for o in out if isinstance(o, Decided)] == [good]
    assert app.calls.count(("decidable", 1)) == 2


# --- more edges: clocks, evidence, verification, the lock rules --------------------------


def test_a_machine_built_without_a_clock_reading_polls_at_zero() -> None:
    app = StrictApp(GENESIS)
    app.vset = VSET
    m = Machine(
        me=ME.ss58,
        network=NETWORK,
        validators=VSET,
        height=1,
        prev=GENESIS,
        app=app,
        signer=GuardedSigner(MemoryVoteLog(), ME, NETWORK),
        verify_signature=verify_signature,
    )
    assert m.next_deadline() == 0 and m.timeouts.rebroadcast_ms == 2000


def test_every_equivocating_signer_and_slot_gets_its_own_evidence() -> None:
    m, _app, _ = build()
    m.start(0)
    found = []
    for key in K[2:]:
        m.receive(prevote(key, 1, 0, VSET, None), 10)
        found += [
            o.evidence
            for o in m.receive(prevote(key, 1, 0, VSET, "ab" * 32), 11)
            if isinstance(o, Misbehaviour)
        ]
    m.receive(precommit(K[2], 1, 0, VSET, None), 12)
    found += [
        o.evidence
        for o in m.receive(precommit(K[2], 1, 0, VSET, "ab" * 32), 13)
        if isinstance(o, Misbehaviour)
    ]
    assert [(e.signer, e.slot) for e in found] == [
        (K[2].ss58, (1, 0, Step.PREVOTE)),
        (K[3].ss58, (1, 0, Step.PREVOTE)),
        (K[2].ss58, (1, 0, Step.PRECOMMIT)),
    ]


def test_two_proposals_for_one_round_are_evidence_whether_held_or_current() -> None:
    m, _app, _ = build()
    m.start(0)
    lead = proposer(1, 0)
    m.receive(proposal(lead, 1, 0, VSET, entry(1, GENESIS, "a")), 10)
    out = m.receive(proposal(lead, 1, 0, VSET, entry(1, GENESIS, "b")), 11)
    [evidence] = [o.evidence for o in out if isinstance(o, Misbehaviour)]
    assert (evidence.signer, evidence.slot) == (lead.ss58, (1, 0, Step.PROPOSE))
    assert m._rounds[0].proposal[0].value == entry(1, GENESIS, "a")
    later = proposer(1, 5)
    m.receive(proposal(later, 1, 5, VSET, entry(1, GENESIS, "c")), 12)
    out = m.receive(proposal(later, 1, 5, VSET, entry(1, GENESIS, "d")), 13)
    assert [(o.evidence.signer, o.evidence.slot) for o in out if isinstance(o, Misbehaviour)] == [
        (later.ss58, (1, 5, Step.PROPOSE))
    ]
    # The proposer's prevote of that round is held beside its proposal.
    m.receive(prevote(later, 1, 5, VSET, None), 14)
    assert [e.kind for _, e in m._ahead[later.ss58][1]] == ["consensus.proposal", PREVOTE]


def resigned(envelope: env.Envelope, key: SimKey) -> env.Envelope:
    """The same message signed again under another sequence number (other bytes)."""
    return sign(key, envelope.kind, envelope.body, seq=envelope.seq + 1)


def test_a_message_we_hold_is_neither_verified_nor_counted_again_in_other_bytes() -> None:
    verifier = CountingVerifier()
    m, _app, _ = build(verify=verifier)
    m.start(0)
    lead = proposer(1, 0)
    first = proposal(lead, 1, 0, VSET, entry(1, GENESIS, "a"))
    vote = prevote(K[2], 1, 0, VSET, None)
    future = prevote(K[3], 1, 4, VSET, None)
    for envelope in (first, vote, future):
        m.receive(envelope, 10)
    calls = verifier.calls
    for envelope, key in ((first, lead), (vote, K[2]), (future, K[3])):
        assert m.receive(envelope, 11) == []
        assert m.receive(resigned(envelope, key), 12) == []
    assert verifier.calls == calls
    assert m._rounds[0].prevotes.envelopes() == [m._own[(1, 0, Step.PREVOTE)], vote]


def test_a_vote_not_counted_as_an_equivocation_counts_once_its_value_is_proposed() -> None:
    m, _app, _ = build()
    m.start(0)
    v = entry(1, GENESIS, "v")
    vid = value_id(v)
    m.receive(prevote(K[3], 1, 0, VSET, None), 10)
    second = prevote(K[3], 1, 0, VSET, vid)
    out = m.receive(second, 11)  # no proposal yet: v is not relevant, and not counted
    assert [o for o in out if isinstance(o, Misbehaviour)] and not m._log(0).prevotes.has(K[3].ss58, vid)
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, v), 12)
    m.receive(second, 13)  # the same bytes, gossiped again: now they count
    assert m._log(0).prevotes.has(K[3].ss58, vid)
    out = m.receive(prevote(K[2], 1, 0, VSET, vid), 14)
    assert mine(out, PRECOMMIT) == [vid]  # us, K2 and K3


def test_a_split_prevote_waits_the_prevote_timeout_in_every_round() -> None:
    m, _app, _ = build()
    m.start(0)
    for round_ in (0, 1):
        now = m.next_deadline()
        assert now == m._timers[0][0]
        out = m.on_timer(now)  # timeoutPropose: prevote nil
        assert mine(out, PREVOTE) == [None]
        m.receive(prevote(K[2], 1, round_, VSET, None), now)
        m.receive(prevote(K[3], 1, round_, VSET, "ab" * 32), now)
        assert m.step is Step.PREVOTE  # a quorum of prevotes, for no one value
        assert m.next_deadline() == now + TIMEOUTS.prevote(round_)
        out = m.on_timer(now + TIMEOUTS.prevote(round_))
        assert mine(out, PRECOMMIT) == [None] and m.step is Step.PRECOMMIT
        nil_round(m, now + TIMEOUTS.prevote(round_))
        assert m.round == round_ + 1


def test_a_nil_polka_is_precommitted_at_once() -> None:
    m, _app, _ = build()
    m.start(0)
    out = m.on_timer(m.next_deadline())
    assert mine(out, PREVOTE) == [None]
    m.receive(prevote(K[2], 1, 0, VSET, None), 1100)
    out = m.receive(prevote(K[3], 1, 0, VSET, None), 1101)
    assert mine(out, PRECOMMIT) == [None] and m.step is Step.PRECOMMIT


def test_the_propose_timeout_after_our_prevote_does_nothing() -> None:
    m, _app, _ = build()
    m.start(0)
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, entry(1, GENESIS, "v")), 10)
    assert m.step is Step.PREVOTE
    assert m.on_timer(TIMEOUTS.propose(0)) == []
    assert m.step is Step.PREVOTE


def polka(m: Machine, round_: int, value: dict[str, Any] | None, voters=K[1:], now: int = 0) -> None:
    for key in voters:
        m.receive(prevote(key, 1, round_, VSET, value_id(value) if value is not None else None), now)


def test_an_invalid_value_with_a_polka_still_gets_a_nil_prevote() -> None:
    m, app, _ = build()
    m.start(0)
    v = entry(1, GENESIS, "v")
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, v), 10)
    polka(m, 0, v)
    now = nil_round(m, 20)
    app.valid = lambda value: "no longer valid"
    m._forget_rejections()
    m._verdicts.clear()
    out = m.receive(proposal(proposer(1, 1), 1, 1, VSET, v, valid_round=0), now)
    assert mine(out, PREVOTE) == [None]


def test_a_lock_from_a_later_round_on_the_same_value_accepts_it() -> None:
    m, _app, _ = build()
    m.start(0)
    v = entry(1, GENESIS, "v")
    vid = value_id(v)
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, v), 10)
    polka(m, 0, v, K[1:3])
    now = nil_round(m, 20)
    m.receive(proposal(proposer(1, 1), 1, 1, VSET, v, valid_round=0), now)
    polka(m, 1, v, K[1:3], now)
    assert (m.locked_round, m.locked_id) == (1, vid)
    now = nil_round(m, now)
    out = m.receive(proposal(proposer(1, 2), 1, 2, VSET, v, valid_round=0), now)
    assert mine(out, PREVOTE) == [vid]


def test_a_lock_from_a_later_round_on_another_value_refuses_an_older_polka() -> None:
    m, _app, _ = build()
    m.start(0)
    w, v = entry(1, GENESIS, "w"), entry(1, GENESIS, "v")
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, w), 10)
    polka(m, 0, w, K[1:3])
    assert m.locked_id == value_id(w)
    now = nil_round(m, 20)
    out = m.receive(proposal(proposer(1, 1), 1, 1, VSET, v), now)
    assert mine(out, PREVOTE) == [None]  # locked on w
    polka(m, 1, v, K[1:], now)  # line 36 moves the lock even after a nil prevote
    assert (m.locked_round, m.locked_id) == (1, value_id(v))
    now = nil_round(m, now)
    out = m.receive(proposal(proposer(1, 2), 1, 2, VSET, w, valid_round=0), now)
    assert mine(out, PREVOTE) == [None]


def test_a_lock_at_the_valid_round_itself_yields_to_that_rounds_other_polka() -> None:
    """Two polkas in one round need more than a third of equivocators; line 29's
    ``lockedRound <= vr`` then still follows the paper."""
    m, _app, _ = build()
    m.start(0)
    u, v = entry(1, GENESIS, "u"), entry(1, GENESIS, "v")
    polka(m, 0, v, K[1:], 5)  # before any proposal: each first vote counts
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, u), 10)
    polka(m, 0, u, K[1:3], 11)  # now relevant: counted too
    assert (m.locked_round, m.locked_id) == (0, value_id(u))
    now = nil_round(m, 20)
    out = m.receive(proposal(proposer(1, 1), 1, 1, VSET, v, valid_round=0), now)
    assert mine(out, PREVOTE) == [value_id(v)]


def test_the_newest_earlier_polka_with_a_valid_proposal_becomes_the_valid_value() -> None:
    m, app, _ = build()
    m.start(0)
    y, v = entry(1, GENESIS, "y"), entry(1, GENESIS, "v")
    app.valid = lambda value: "invalid" if value == y else None
    for key in K[1:3]:
        m.receive(precommit(key, 1, 4, VSET, None), 5)
    assert m.round == 4
    polka(m, 4, {"x": 1}, now=6)  # the current round: no proposal
    assert 4 in m._polkas
    polka(m, 3, {"z": 1}, now=7)  # an earlier round without a proposal
    m.receive(proposal(proposer(1, 2), 1, 2, VSET, y), 8)
    polka(m, 2, y, now=9)  # a polka for an invalid value
    m.receive(proposal(proposer(1, 1), 1, 1, VSET, v), 10)
    assert m.valid_round == -1
    polka(m, 1, v, now=11)
    assert (m.valid_round, m.valid_value) == (1, v)


def test_a_round_without_a_decision_is_skipped_for_a_later_one_that_has_one() -> None:
    m, _app, _ = build()
    m.start(0)
    p = entry(1, GENESIS, "p")
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, p), 10)
    for key in K[1:]:
        m.receive(precommit(key, 1, 0, VSET, value_id({"x": 1})), 11)  # a quorum, not for the proposal
    for key in K[1:]:
        m.receive(precommit(key, 1, 1, VSET, value_id({"y": 1})), 12)  # a quorum, and no proposal
    assert m.height == 1
    v = entry(1, GENESIS, "v")
    m.receive(proposal(proposer(1, 2), 1, 2, VSET, v), 13)
    for key in K[1:]:
        out = m.receive(precommit(key, 1, 2, VSET, value_id(v)), 14)
    assert [o.commit.value for o in out if isinstance(o, Decided)] == [v]


def test_a_restart_without_a_lock_has_no_locked_value() -> None:
    votes = MemoryVoteLog()
    votes.state = ResumeState(1, 1, int(Step.PREVOTE))
    m, _app, _ = build(votes=votes)
    assert (m.locked_round, m.locked_value, m.locked_id) == (-1, None, None)


def test_the_prevote_timeout_after_our_precommit_does_nothing() -> None:
    m, _app, _ = build()
    m.start(0)
    v = entry(1, GENESIS, "v")
    m.receive(proposal(proposer(1, 0), 1, 0, VSET, v), 10)
    m.receive(prevote(K[3], 1, 0, VSET, None), 11)
    m.receive(prevote(K[2], 1, 0, VSET, value_id(v)), 12)  # a quorum of any: the prevote timeout is set
    assert m.next_deadline() == 12 + TIMEOUTS.prevote(0)
    out = m.receive(prevote(K[1], 1, 0, VSET, value_id(v)), 13)  # a polka: precommit v
    assert mine(out, PRECOMMIT) == [value_id(v)]
    assert m.on_timer(12 + TIMEOUTS.prevote(0)) == []
    assert m.step is Step.PRECOMMIT


def test_a_polka_of_the_current_round_waits_for_our_prevote_to_become_the_valid_value() -> None:
    m, _app, _ = build()
    m.start(0)
    now = nil_round(m, 0)
    v = entry(1, GENESIS, "v")
    m.receive(proposal(proposer(1, 1), 1, 1, VSET, v, valid_round=0), now)  # no polka at round 0
    polka(m, 1, v, now=now)
    assert (m.step, m.valid_round) == (Step.PROPOSE, -1)
    out = m.on_timer(m.next_deadline())  # timeoutPropose: prevote nil, then line 36
    assert mine(out, PREVOTE) == [None] and mine(out, PRECOMMIT) == [value_id(v)]
    assert (m.valid_round, m.locked_round) == (1, 1)
