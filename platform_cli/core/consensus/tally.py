"""Counting the messages of one round: the proposal, prevotes and precommits.

A signer's vote counts for the value it names. A signer that votes twice at one step
with different values equivocates: the caller gets its earlier vote back (to make
evidence), and the new vote *also* counts for its value, as every signed message does in
the paper's "2f + 1 ⟨PREVOTE, h, r, id(v)⟩". Counting only the first vote would let an
equivocator show one honest validator a polka and hide it from another for good, and a
validator locked on that polka could then never convince the rest. Safety does not
suffer: two quorums for different values still share an honest validator, who voted
once. To bound memory, a signer's further votes are kept only for nil and for the
round's proposal value (``relevant``): the only values a rule asks about.

Stake and count per value are kept incrementally, so every quorum question is answered
in constant time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from platform_cli.core.consensus.messages import Proposal
from platform_cli.core.consensus.validators import ValidatorSet
from platform_cli.core.envelope import Envelope


@dataclass
class StepVotes:
    validators: ValidatorSet
    by_signer: dict[str, dict[str | None, Envelope]] = field(default_factory=dict)
    _stake: dict[str | None, int] = field(default_factory=lambda: defaultdict(int))
    _count: dict[str | None, int] = field(default_factory=lambda: defaultdict(int))
    _any_stake: int = 0

    def has(self, signer: str, value: str | None) -> bool:
        return value in self.by_signer.get(signer, {})

    def add(
        self, value: str | None, envelope: Envelope, relevant: str | None = None
    ) -> tuple[bool, Envelope | None]:
        """(counted, the signer's earlier vote for another value or None). A signer
        outside the set has no stake and is not counted: it must not add to a quorum's
        count either."""
        signer = envelope.signer
        votes = self.by_signer.get(signer)
        stake = self.validators.stake_of(signer)
        if not stake:
            return False, None
        if votes is None:
            self.by_signer[signer] = {value: envelope}
            self._any_stake += stake
        elif value in votes:
            return False, None
        else:
            earlier = next(iter(votes.values()))
            if value is not None and value != relevant:
                return False, earlier
            votes[value] = envelope
            self._stake[value] += stake
            self._count[value] += 1
            return True, earlier
        self._stake[value] += stake
        self._count[value] += 1
        return True, None

    def quorum_for(self, value: str | None) -> bool:
        return self.validators.quorum(self._stake.get(value, 0), self._count.get(value, 0))

    def quorum_any(self) -> bool:
        return self.validators.quorum(self._any_stake, len(self.by_signer))

    def envelopes_for(self, value: str | None) -> list[Envelope]:
        return [votes[value] for votes in self.by_signer.values() if value in votes]

    def envelopes(self) -> list[Envelope]:
        return [e for votes in self.by_signer.values() for e in votes.values()]

    def values_with_quorum(self) -> list[str]:
        return [v for v in self._stake if v is not None and self.quorum_for(v)]


@dataclass
class RoundLog:
    validators: ValidatorSet
    proposal: tuple[Proposal, Envelope] | None = None
    prevotes: StepVotes = field(init=False)
    precommits: StepVotes = field(init=False)

    def __post_init__(self) -> None:
        self.prevotes = StepVotes(self.validators)
        self.precommits = StepVotes(self.validators)
