"""Tendermint as a sans-I/O state machine: one validator's view of consensus.

Theory of operation
-------------------
This is Algorithm 1 of "The latest gossip on BFT consensus" (Buchman, Kwon, Milosevic,
arXiv 1807.04938); comments ``# line N`` point at the paper's pseudo-code, so each rule
can be checked against the proof. Heights decide one value each; a height runs rounds;
a round has a proposer (``ValidatorSet.proposer``) and three steps: propose, prevote,
precommit. "2f + 1" reads as a quorum (``ValidatorSet.quorum``: more than two thirds of
the stake and of the validators) and "f + 1" as ``ValidatorSet.honest_among``.

Safety rests on the lock (lines 36-41): a validator that precommits v at round r locks
on v and from then on prevotes only v, or a value with a later polka (line 29). A
decided value therefore has a polka in every later round's way, and no other value can
gather a quorum of precommits at the same height.

The machine is driven by three inputs, each returning the outputs (``ports.Output``) the
adapter must act on:

- :meth:`receive` a signed envelope (a proposal or vote), cheapest checks first: kind,
  network, body shape, height, membership, set id, proposer, duplicate, then the
  signature; refusals come back as ``Refused`` with a short reason;
- :meth:`receive_commit` a decided entry with its certificate (catching up);
- :meth:`on_timer` at or after :meth:`next_deadline`.

:meth:`wake` tells it the application has news (work, data a validation lacked).

Where this differs from the paper, and why:

- A height starts (line 10) when the application has work or a member's message for
  it arrives, not at once: no empty heights while nothing needs deciding.
- Line 50 checks only ``Application.decidable`` (the entry's shape and chain link): a
  quorum of precommits includes an honest validator that ran the full ``valid(v)``, and a
  lagging validator may lack the data (score reports) to run it itself.
- Line 55 counts, for a round r, the validators seen at r *or later*: enough of them
  means an honest one reached r. Messages from rounds above ours are kept only for each
  signer's highest round, so a faulty validator cannot fill memory with future rounds.
- As CometBFT does, a polka seen for an earlier round r > validRound also updates
  validValue/validRound (line 42-43 for any round up to ours); every ``rebroadcast_ms``
  of a height a validator re-sends its messages of the round and the polka of its
  validRound, and it answers a message from an earlier round of the height with what it
  holds of that round. After the network stabilises every honest validator then learns the newest
  polka any of them saw, which the liveness argument needs (the paper assumes gossip
  that relays everything).
- The proposer also schedules timeoutPropose (line 21 for everyone), in case its own
  signing guard refused to sign.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus.evidence import conflict
from platform_cli.core.consensus.messages import (
    ROUND_KINDS,
    Message,
    MessageError,
    Proposal,
    Slot,
    Step,
    Vote,
    parse,
    slot_name,
    value_id,
)
from platform_cli.core.consensus.params import Timeouts
from platform_cli.core.consensus.ports import (
    Application,
    Broadcast,
    CatchUp,
    Commit,
    Decided,
    Misbehaviour,
    Output,
    PeerBehind,
    Refused,
    ResumeState,
    SigningPort,
    ValueRejected,
)
from platform_cli.core.consensus.tally import RoundLog
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.envelope import SIGNATURE_BYTES, Envelope, Network, SignatureVerifier

NEXT_HEIGHT_BUFFER = 8
"""Messages kept per signer for the height after ours (they arrive just before we decide)."""


class Machine:
    def __init__(
        self,
        *,
        me: str,
        network: Network,
        validators: ValidatorSet,
        height: int,
        prev: str,
        app: Application,
        signer: SigningPort,
        verify_signature: SignatureVerifier,
        timeouts: Timeouts | None = None,
        resume: ResumeState | None = None,
        own: Iterable[Envelope] = (),
        now_ms: int = 0,
    ) -> None:
        self.me = me
        self.network = network
        self.app = app
        self.signer = signer
        self.verify_signature = verify_signature
        self.timeouts = timeouts or Timeouts()
        self._resume = resume
        self._resume_own = list(own)
        self._now = now_ms
        self._out: list[Output] = []
        self._timers: list[tuple[int, str, int, int]] = []
        self._last_catchup: int | None = None
        self._offered: dict[str, int] = {}
        self._enter_height(height, prev, validators)

    # --- inputs -------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Output]:
        """line 10: upon start (the height begins once there is work or a peer's message)."""
        self._now = now_ms
        if self.resumed:
            self._rebroadcast()
        elif self.app.has_work(self.height, now_ms):
            self._start_round(0)
        self._settle()
        return self._flush()

    def receive(self, envelope: Envelope, now_ms: int) -> list[Output]:
        self._now = now_ms
        if self._admit(envelope, verified=False):
            self._settle()
        return self._flush()

    def receive_commit(self, commit: Commit, now_ms: int) -> list[Output]:
        """A decided entry from a peer (catch-up): applied if its certificate proves it."""
        self._now = now_ms
        cert = commit.certificate
        if cert.height == self.height:
            if cert.network != self.network:
                self._refuse("wrong_network", "", "certificate for another network")
                return self._flush()
            try:
                certs.verify(cert, self.validators, self.verify_signature, value=commit.value)
            except certs.CertificateError as exc:
                self._refuse("bad_certificate", "", str(exc))
                return self._flush()
            reason = self.app.decidable(self.height, self.prev, commit.value)
            if reason is not None:
                self._refuse("bad_commit", "", reason)
                return self._flush()
            self._apply(commit)
            self._settle()
        return self._flush()

    def wake(self, now_ms: int) -> list[Output]:
        """The application has news: work to do, or data an earlier validation lacked."""
        self._now = now_ms
        self._forget_rejections()
        if not self.started and self.app.has_work(self.height, now_ms):
            self._start_round(0)
        self._settle()
        return self._flush()

    def next_deadline(self) -> int:
        deadlines = [t[0] for t in self._timers]
        deadlines.append(self._rebroadcast_at if self.started else self._idle_at)
        return min(deadlines)

    def on_timer(self, now_ms: int) -> list[Output]:
        self._now = now_ms
        while True:
            due = [t for t in self._timers if t[0] <= now_ms]
            if not due:
                break
            timer = min(due)
            self._timers.remove(timer)
            _, which, height, round_ = timer
            self._TIMEOUTS[which](self, height, round_)
            self._settle()
        if self.started and now_ms >= self._rebroadcast_at:
            self._rebroadcast()
            self._rebroadcast_at = now_ms + self.timeouts.rebroadcast_ms
        if not self.started and now_ms >= self._idle_at:
            self._idle_at = now_ms + self.timeouts.idle_poll_ms
            if self.app.has_work(self.height, now_ms):
                self._start_round(0)
        self._settle()
        return self._flush()

    # --- state --------------------------------------------------------------------

    def resume_state(self) -> ResumeState:
        return ResumeState(
            self.height,
            self.round,
            int(self.step),
            self.locked_round,
            self.locked_value,
            self.valid_round,
            self.valid_value,
        )

    def status(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "step": self.step.name.lower(),
            "started": self.started,
            "locked_round": self.locked_round,
            "valid_round": self.valid_round,
            "proposer": self.validators.proposer(self.height, self.round),
            "set_id": self.validators.set_id,
        }

    def _enter_height(self, height: int, prev: str, validators: ValidatorSet) -> None:
        """lines 2-9 and 52-53: a fresh height, nothing locked, an empty message log."""
        self.height = height
        self.prev = prev
        self.validators = validators
        self.round = 0
        self.step = Step.PROPOSE
        self.locked_round, self.locked_value, self.locked_id = -1, None, None
        self.valid_round, self.valid_value = -1, None
        self.started = False
        self.resumed = False
        self._rounds: dict[int, RoundLog] = {}
        self._ahead: dict[str, tuple[int, list[tuple[Message, Envelope]]]] = {}
        self._next: dict[str, list[Envelope]] = {}
        self._ahead_of_us: set[str] = set()
        """Members who sent messages of a later height."""
        self._own: dict[Slot, Envelope] = {}
        self._verdicts: dict[str, str | None] = {}
        self._undecidable: set[str] = set()
        self._helped: dict[int, int] = {}
        self._seen: dict[bytes, int] = {}
        self._polkas: set[int] = set()
        self._commits: set[int] = set()
        """Rounds with a quorum of prevotes (precommits) for some value: rules 36 and 49 look only there."""
        self._fired: set[tuple[int, int]] = set()
        self._evidenced: set[tuple[str, Slot]] = set()
        self._timers = [t for t in self._timers if t[2] >= height]
        self._idle_at = self._now
        self._rebroadcast_at = self._now + self.timeouts.rebroadcast_ms
        if self._resume is not None and self._resume.height == height:
            self._restore(self._resume)

    def _restore(self, resume: ResumeState) -> None:
        """Continue where the durable signing log says we were: same round, step and lock."""
        self.round, self.step = resume.round, Step(resume.step)
        self.locked_round, self.locked_value = resume.locked_round, resume.locked_value
        self.locked_id = value_id(resume.locked_value) if resume.locked_value is not None else None
        self.valid_round, self.valid_value = resume.valid_round, resume.valid_value
        self.started = self.resumed = True
        for envelope in self._resume_own:
            message = parse(envelope.kind, envelope.body)
            if message.height == self.height:
                self._own[message.slot] = envelope
                self._record(message, envelope)
        timeout = {Step.PROPOSE: "propose", Step.PREVOTE: "prevote", Step.PRECOMMIT: "precommit"}[self.step]
        self._schedule(timeout)

    # --- admission ----------------------------------------------------------------

    def _refuse(self, reason: str, signer: str, detail: str, fault: str = "remote") -> None:
        self._out.append(Refused(reason, signer, detail, fault))

    def _signature_ok(self, envelope: Envelope) -> bool:
        return len(envelope.signature) == SIGNATURE_BYTES and self.verify_signature(
            envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
        )

    def _admit(self, envelope: Envelope, *, verified: bool) -> bool:
        """Take in a message; True when it changed what we hold (so rules may fire)."""
        signer = envelope.signer
        seen_round = self._seen.get(envelope.signature)
        if seen_round is not None:  # these very bytes were taken already (a signature binds its message)
            if seen_round < self.round:
                self._help_lagging(seen_round)
            return False
        if envelope.kind not in ROUND_KINDS:
            self._refuse("wrong_kind", signer, f"kind {envelope.kind!r} is not a proposal or vote")
            return False
        if envelope.network != self.network:
            self._refuse("wrong_network", signer, "signed for another network")
            return False
        try:
            message = parse(envelope.kind, envelope.body)
        except MessageError as exc:
            self._refuse("malformed", signer, str(exc))
            return False
        if message.height != self.height:
            self._other_height(message, envelope, verified)
            return False
        if signer not in self.validators:
            self._refuse("not_validator", signer, f"not in the validator set of height {self.height}")
            return False
        if message.set_id != self.validators.set_id:
            self._refuse("wrong_set", signer, "cast under another validator set")
            return False
        if isinstance(message, Proposal) and signer != self.validators.proposer(
            message.height, message.round
        ):
            self._refuse("not_proposer", signer, f"not the proposer of round {message.round}")
            return False
        if message.round < self.round:
            self._help_lagging(message.round)
        if self._known(message, envelope):
            return False
        if not verified and not self._signature_ok(envelope):
            self._refuse("bad_signature", signer, f"signature does not verify for {signer}")
            return False
        if message.round > self.round:
            self._hold_ahead(message, envelope)
        else:
            self._record(message, envelope)
        if not self.started:
            self._start_round(0)
        return True

    def _known(self, message: Message, envelope: Envelope) -> bool:
        """Whether this signer already told us exactly this at this slot."""
        held = self._ahead.get(envelope.signer)
        if held and any(_same(m, message) for m, _ in held[1]):
            return True
        log = self._rounds.get(message.round)
        if log is None:
            return False
        if isinstance(message, Proposal):
            return log.proposal is not None and _same(log.proposal[0], message)
        votes = log.prevotes if message.step is Step.PREVOTE else log.precommits
        return votes.has(envelope.signer, message.value_id)

    def _other_height(self, message: Message, envelope: Envelope, verified: bool) -> None:
        signer = envelope.signer
        if signer not in self.validators:
            return None
        if message.height < self.height:
            if self._due(self._offered.get(signer)):
                self._offered[signer] = self._now
                self._out.append(PeerBehind(signer, message.height))
            return None
        if not verified and not self._signature_ok(envelope):
            return self._refuse("bad_signature", signer, f"signature does not verify for {signer}")
        if message.height == self.height + 1:
            queue = self._next.setdefault(signer, [])
            if envelope.signature not in {e.signature for e in queue}:
                queue.append(envelope)
                del queue[:-NEXT_HEIGHT_BUFFER]
        self._ahead_of_us.add(signer)
        far = message.height > self.height + 1
        if (far or self.validators.contains_honest(self._ahead_of_us)) and self._due(self._last_catchup):
            self._last_catchup = self._now
            self._out.append(CatchUp(self.height))
        return None

    def _due(self, last: int | None) -> bool:
        """Whether a rate-limited catch-up message last sent at ``last`` (None: never) may go again."""
        return last is None or self._now - last >= self.timeouts.catchup_ms

    def _help_lagging(self, round_: int) -> None:
        """A validator still works on an earlier round: re-send what that round gathered, so
        it can time out or decide there (votes lost before the network healed are gone)."""
        if not self._due(self._helped.get(round_)):
            return
        self._helped[round_] = self._now
        log = self._rounds.get(round_)
        if log is None:
            return
        sent = [log.proposal[1]] if log.proposal is not None else []
        sent += log.prevotes.envelopes() + log.precommits.envelopes()
        self._out.extend(Broadcast(e) for e in sent)

    def _log(self, round_: int) -> RoundLog:
        log = self._rounds.get(round_)
        if log is None:
            log = self._rounds[round_] = RoundLog(self.validators)
        return log

    def _record(self, message: Message, envelope: Envelope) -> None:
        self._seen[envelope.signature] = message.round
        log = self._log(message.round)
        if isinstance(message, Proposal):
            if log.proposal is None:
                log.proposal = (message, envelope)
            elif not _same(log.proposal[0], message):
                self._evidence(log.proposal[1], envelope)
            return
        votes = log.prevotes if message.step is Step.PREVOTE else log.precommits
        relevant = log.proposal[0].value_id if log.proposal is not None else None
        counted, earlier = votes.add(message.value_id, envelope, relevant)
        if earlier is not None:
            self._evidence(earlier, envelope)
        if not counted:
            self._seen.pop(envelope.signature, None)
        elif message.value_id is not None and votes.quorum_for(message.value_id):
            (self._polkas if message.step is Step.PREVOTE else self._commits).add(message.round)

    def _hold_ahead(self, message: Message, envelope: Envelope) -> None:
        round_, held = self._ahead.get(envelope.signer, (-1, []))
        if message.round < round_:
            return
        if message.round > round_:
            self._ahead[envelope.signer] = (message.round, [(message, envelope)])
            return
        for earlier_message, earlier in held:
            if earlier_message.slot == message.slot:
                if not _same(earlier_message, message):
                    self._evidence(earlier, envelope)
                return
        held.append((message, envelope))

    def _release_ahead(self) -> None:
        for signer in [s for s, (r, _) in self._ahead.items() if r <= self.round]:
            for message, envelope in self._ahead.pop(signer)[1]:
                self._record(message, envelope)

    def _evidence(self, first: Envelope, second: Envelope) -> None:
        found = conflict(first, second)
        if found is None:
            return
        key = (found.signer, found.slot)
        if key not in self._evidenced:
            self._evidenced.add(key)
            self._out.append(Misbehaviour(found))

    # --- the rules of Algorithm 1 -------------------------------------------------

    def _settle(self) -> None:
        """Fire rules until none applies (each rule's guard is re-checked after any fires)."""
        while self.started and any(rule(self) for rule in self._RULES):
            pass

    def _proposal(self, round_: int) -> Proposal | None:
        log = self._rounds.get(round_)
        return log.proposal[0] if log is not None and log.proposal is not None else None

    def _valid(self, proposal: Proposal) -> bool:
        """valid(v), as the application judges it, remembered for this height."""
        key = proposal.value_id
        if key not in self._verdicts:
            reason = self.app.validate(self.height, self.prev, proposal.value, self._now)
            self._verdicts[key] = reason
            if reason is not None:
                self._out.append(ValueRejected(self.height, proposal.round, key, reason))
        return self._verdicts[key] is None

    def _forget_rejections(self) -> None:
        self._verdicts = {k: v for k, v in self._verdicts.items() if v is None}

    def _start_round(self, round_: int) -> None:
        """lines 11-21: StartRound(round)."""
        if not self.started:
            self._rebroadcast_at = self._now + self.timeouts.rebroadcast_ms
        self.started = True
        self.round = round_  # line 12
        self.step = Step.PROPOSE  # line 13
        self._forget_rejections()
        self._release_ahead()
        self._timers = [t for t in self._timers if t[3] >= round_]
        if self.validators.proposer(self.height, round_) == self.me:  # line 14
            own = self._own.get((self.height, round_, Step.PROPOSE))
            if own is not None:
                self._out.append(Broadcast(own))
            else:
                if self.valid_value is not None:  # line 15
                    value = self.valid_value  # line 16
                else:
                    value = self.app.propose(self.height, self.prev, self._now)  # line 18
                self._sign(
                    Proposal(self.height, round_, self.validators.set_id, self.valid_round, value)
                )  # line 19
        self._schedule("propose")  # line 21

    def _line_22(self) -> bool:
        """upon ⟨PROPOSAL, h_p, round_p, v, −1⟩ from proposer(h_p, round_p) while step_p = propose."""
        proposal = self._proposal(self.round)
        if self.step is not Step.PROPOSE or proposal is None or proposal.valid_round != -1:
            return False
        accept = self._valid(proposal) and (  # line 23
            self.locked_round == -1 or self.locked_id == proposal.value_id
        )
        self.step = Step.PREVOTE  # line 27
        self._vote(Step.PREVOTE, proposal.value_id if accept else None)  # lines 24, 26
        return True

    def _line_28(self) -> bool:
        """upon ⟨PROPOSAL, h_p, round_p, v, vr⟩ from proposer(h_p, round_p) AND 2f + 1
        ⟨PREVOTE, h_p, vr, id(v)⟩ while step_p = propose ∧ (vr ≥ 0 ∧ vr < round_p)."""
        proposal = self._proposal(self.round)
        if self.step is not Step.PROPOSE or proposal is None:
            return False
        vr = proposal.valid_round
        if not 0 <= vr < self.round:
            return False
        polka = self._rounds.get(vr)
        if polka is None or not polka.prevotes.quorum_for(proposal.value_id):
            return False
        accept = self._valid(proposal) and (  # line 29
            self.locked_round <= vr or self.locked_id == proposal.value_id
        )
        self.step = Step.PREVOTE  # line 33
        self._vote(Step.PREVOTE, proposal.value_id if accept else None)  # lines 30, 32
        return True

    def _line_34(self) -> bool:
        """upon 2f + 1 ⟨PREVOTE, h_p, round_p, ∗⟩ while step_p = prevote for the first time."""
        key = (34, self.round)
        if self.step is not Step.PREVOTE or key in self._fired:
            return False
        if not self._log(self.round).prevotes.quorum_any():
            return False
        self._fired.add(key)
        self._schedule("prevote")  # line 35
        return True

    def _line_36(self) -> bool:
        """upon ⟨PROPOSAL, h_p, round_p, v, ∗⟩ from proposer(h_p, round_p) AND 2f + 1
        ⟨PREVOTE, h_p, round_p, id(v)⟩ while valid(v) ∧ step_p ≥ prevote for the first time."""
        key = (36, self.round)
        proposal = self._proposal(self.round)
        if self.step < Step.PREVOTE or key in self._fired or proposal is None:
            return False
        if not self._log(self.round).prevotes.quorum_for(proposal.value_id) or not self._valid(proposal):
            return False
        self._fired.add(key)
        self.valid_value, self.valid_round = proposal.value, self.round  # lines 42-43
        if self.step is Step.PREVOTE:  # line 37
            self.locked_value, self.locked_round = proposal.value, self.round  # lines 38-39
            self.locked_id = proposal.value_id
            self.step = Step.PRECOMMIT  # line 41
            self._vote(Step.PRECOMMIT, proposal.value_id)  # line 40
        return True

    def _line_36_earlier(self) -> bool:
        """lines 42-43 for a polka of an earlier round r with validRound_p < r < round_p
        (CometBFT's rule), so the newest polka reaches the next proposer."""
        for round_ in sorted(self._polkas, reverse=True):
            if not self.valid_round < round_ < self.round:
                continue
            proposal = self._proposal(round_)
            if proposal is None or not self._rounds[round_].prevotes.quorum_for(proposal.value_id):
                continue
            if self._valid(proposal):
                self.valid_value, self.valid_round = proposal.value, round_
                return True
        return False

    def _line_44(self) -> bool:
        """upon 2f + 1 ⟨PREVOTE, h_p, round_p, nil⟩ while step_p = prevote."""
        if self.step is not Step.PREVOTE or not self._log(self.round).prevotes.quorum_for(None):
            return False
        self.step = Step.PRECOMMIT  # line 46
        self._vote(Step.PRECOMMIT, None)  # line 45
        return True

    def _line_47(self) -> bool:
        """upon 2f + 1 ⟨PRECOMMIT, h_p, round_p, ∗⟩ for the first time."""
        key = (47, self.round)
        if key in self._fired or not self._log(self.round).precommits.quorum_any():
            return False
        self._fired.add(key)
        self._schedule("precommit")  # line 48
        return True

    def _line_49(self) -> bool:
        """upon ⟨PROPOSAL, h_p, r, v, ∗⟩ from proposer(h_p, r) AND 2f + 1
        ⟨PRECOMMIT, h_p, r, id(v)⟩ while decision_p[h_p] = nil."""
        for round_ in sorted(self._commits):
            log = self._rounds[round_]
            if log.proposal is None:
                continue
            proposal = log.proposal[0]
            if proposal.value_id not in log.precommits.values_with_quorum():
                continue
            if proposal.value_id in self._undecidable:
                continue
            reason = self.app.decidable(self.height, self.prev, proposal.value)  # line 50
            if reason is not None:
                self._undecidable.add(proposal.value_id)
                self._refuse("undecidable", log.proposal[1].signer, reason)
                continue
            precommits = log.precommits.envelopes_for(proposal.value_id)
            certificate = certs.build(
                self.network, self.height, round_, proposal.value_id, self.validators, precommits
            )
            self._apply(Commit(proposal.value, certificate))  # lines 51-54
            return True
        return False

    def _line_55(self) -> bool:
        """upon f + 1 ⟨∗, h_p, round, ∗, ∗⟩ with round > round_p."""
        if not self._ahead:
            return False
        for round_ in sorted({r for r, _ in self._ahead.values()}, reverse=True):
            if round_ <= self.round:
                continue
            seen = [signer for signer, (r, _) in self._ahead.items() if r >= round_]
            if self.validators.contains_honest(seen):
                self._start_round(round_)  # line 56
                return True
        return False

    _RULES: ClassVar[tuple[Callable[[Machine], bool], ...]] = (
        _line_49,
        _line_55,
        _line_22,
        _line_28,
        _line_36,
        _line_44,
        _line_34,
        _line_47,
        _line_36_earlier,
    )

    # --- timeouts (lines 57-67) ---------------------------------------------------

    def _schedule(self, which: str) -> None:
        delay = getattr(self.timeouts, which)(self.round)
        self._timers.append((self._now + delay, which, self.height, self.round))

    def _on_timeout_propose(self, height: int, round_: int) -> None:
        """line 57: OnTimeoutPropose(height, round)."""
        if height == self.height and round_ == self.round and self.step is Step.PROPOSE:  # line 58
            self.step = Step.PREVOTE  # line 60
            self._vote(Step.PREVOTE, None)  # line 59

    def _on_timeout_prevote(self, height: int, round_: int) -> None:
        """line 61: OnTimeoutPrevote(height, round)."""
        if height == self.height and round_ == self.round and self.step is Step.PREVOTE:  # line 62
            self.step = Step.PRECOMMIT  # line 64
            self._vote(Step.PRECOMMIT, None)  # line 63

    def _on_timeout_precommit(self, height: int, round_: int) -> None:
        """line 65: OnTimeoutPrecommit(height, round)."""
        if height == self.height and round_ == self.round:  # line 66
            self._start_round(self.round + 1)  # line 67

    _TIMEOUTS: ClassVar[dict[str, Callable[[Machine, int, int], None]]] = {
        "propose": _on_timeout_propose,
        "prevote": _on_timeout_prevote,
        "precommit": _on_timeout_precommit,
    }

    # --- acting -------------------------------------------------------------------

    def _vote(self, step: Step, value: str | None) -> None:
        self._sign(Vote(step, self.height, self.round, self.validators.set_id, value))

    def _sign(self, message: Message) -> None:
        """Sign through the guard (durable before it returns), count it, send it."""
        envelope = self.signer.sign(
            message.slot, message.kind, message.body(), self.resume_state(), self._now
        )
        if envelope is None:
            self._refuse(
                "guard", self.me, f"the signing guard refused {slot_name(message.slot)}", fault="local"
            )
            return
        self._own[message.slot] = envelope
        self._record(message, envelope)
        self._out.append(Broadcast(envelope))

    def _apply(self, commit: Commit) -> None:
        """lines 51-54: decide, then a fresh height with the set the decision leaves."""
        next_set = self.app.commit(commit)
        self._out.append(Decided(commit))
        waiting = [e for queue in self._next.values() for e in queue]
        self._enter_height(self.height + 1, commit.certificate.value_id, next_set)
        for envelope in waiting:
            self._admit(envelope, verified=True)
        if not self.started and self.app.has_work(self.height, self._now):
            self._start_round(0)  # line 54

    def _rebroadcast(self) -> None:
        """Our messages of this round, its proposal, and the polka of our validRound."""
        sent: list[Envelope] = [e for slot, e in sorted(self._own.items()) if slot[1] == self.round]
        log = self._rounds.get(self.round)
        if log is not None and log.proposal is not None:
            sent.append(log.proposal[1])
        if self.valid_round >= 0:
            polka = self._rounds[self.valid_round]
            if polka.proposal is not None:
                sent.append(polka.proposal[1])
                sent += polka.prevotes.envelopes_for(polka.proposal[0].value_id)
        unique = {e.signature: e for e in sent}
        self._out.extend(Broadcast(e) for e in unique.values())

    def _flush(self) -> list[Output]:
        out, self._out = self._out, []
        return out


def _same(a: Message, b: Message) -> bool:
    """Whether two messages at one slot say the same thing (values compared by id)."""
    if isinstance(a, Proposal) and isinstance(b, Proposal):
        return a.valid_round == b.valid_round and a.value_id == b.value_id
    return a == b
