"""Signing consensus messages through the durable guard (the machine's ``SigningPort``).

A :class:`VoteLog` keeps what this validator signed and the machine's resume state, and
applies the pure guard rule (``core/consensus/guard.py``) atomically with storing the new
signature: :meth:`VoteLog.sign_slot` decides, and when the answer is *sign*, reserves a
sequence number, signs and stores the envelope with the resume state in one durable
write, then returns it. Only then does the machine send it. Two implementations share
the rule: :class:`MemoryVoteLog` here (the simulator, where "durable" means it outlives
a simulated crash) and ``sqlite_log.SqliteVoteLog`` (``synchronous=FULL``).

Bundles are not in the (height, round, step) order: a validator signs one bundle per
epoch, reused byte for byte if asked again (:meth:`VoteLog.sign_once`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.consensus import guard
from platform_cli.core.consensus.messages import Slot
from platform_cli.core.consensus.ports import ResumeState

log = logging.getLogger("platform.consensus")

Seal = Callable[[int], env.Envelope]
"""Seal the message with the given sequence number."""


class Key(Protocol):
    """A signing key: ``identity.Signer`` or the simulator's keys."""

    @property
    def ss58(self) -> str: ...

    @property
    def scheme(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class VoteLog(Protocol):
    def sign_slot(self, slot: Slot, body: bytes, resume: ResumeState, seal: Seal) -> guard.Decision: ...

    def sign_once(self, key: str, body: bytes, seal: Seal) -> guard.Decision: ...

    def resume(self) -> tuple[ResumeState | None, list[env.Envelope]]:
        """The last resume state and our envelopes signed at its height."""
        ...


@dataclass
class MemoryVoteLog:
    """The guard over memory: what the simulator keeps across a simulated crash."""

    signed: dict[Slot, guard.Signed] = field(default_factory=dict)
    once: dict[str, guard.Signed] = field(default_factory=dict)
    highest: Slot | None = None
    state: ResumeState | None = None
    seq: int = 0

    def sign_slot(self, slot: Slot, body: bytes, resume: ResumeState, seal: Seal) -> guard.Decision:
        decision = guard.decide(slot, body, at_slot=self.signed.get(slot), highest=self.highest)
        if decision.verdict is guard.Verdict.SIGN:
            self.seq += 1
            envelope = seal(self.seq)
            self.signed[slot] = guard.Signed(slot, body, envelope)
            self.highest, self.state = slot, resume
            return guard.Decision(guard.Verdict.SIGN, envelope)
        return decision

    def sign_once(self, key: str, body: bytes, seal: Seal) -> guard.Decision:
        known = self.once.get(key)
        if known is not None:
            if known.body == body:
                return guard.Decision(guard.Verdict.REUSE, known.envelope)
            return guard.Decision(guard.Verdict.REFUSE, reason=f"a different {key} was already signed")
        self.seq += 1
        envelope = seal(self.seq)
        self.once[key] = guard.Signed((0, 0, 0), body, envelope)
        return guard.Decision(guard.Verdict.SIGN, envelope)

    def resume(self) -> tuple[ResumeState | None, list[env.Envelope]]:
        if self.state is None:
            return None, []
        own = [s.envelope for slot, s in sorted(self.signed.items()) if slot[0] == self.state.height]
        return self.state, own


class GuardedSigner:
    """The machine's signing port: the guard and the key, for one network."""

    def __init__(self, votes: VoteLog, key: Key, network: env.Network) -> None:
        self.votes = votes
        self.key = key
        self.network = network

    def _sealer(self, kind: str, body: Any, now_ms: int) -> Seal:
        def seal(seq: int) -> env.Envelope:
            return env.seal(
                network=self.network,
                kind=kind,
                signer=self.key.ss58,
                scheme=self.key.scheme,
                seq=seq,
                ts_ms=now_ms,
                body=body,
                sign=self.key.sign,
            )

        return seal

    def sign(self, slot: Slot, kind: str, body: Any, resume: ResumeState, now_ms: int) -> env.Envelope | None:
        decision = self.votes.sign_slot(
            slot, canonical.encode(body), resume, self._sealer(kind, body, now_ms)
        )
        if decision.verdict is guard.Verdict.REFUSE:
            log.warning("consensus.guard_refused slot=%s reason=%s", slot, decision.reason)
            return None
        return decision.envelope

    def sign_once(self, key: str, kind: str, body: Any, now_ms: int) -> env.Envelope | None:
        decision = self.votes.sign_once(key, canonical.encode(body), self._sealer(kind, body, now_ms))
        if decision.verdict is guard.Verdict.REFUSE:
            log.warning("consensus.guard_refused key=%s reason=%s", key, decision.reason)
            return None
        return decision.envelope
