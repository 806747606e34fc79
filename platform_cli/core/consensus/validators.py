"""The validator set of a height: who votes, with what stake, who proposes.

Theory of operation
-------------------
A set is read from a metagraph snapshot named by its block: the validators with a permit
and at least the minimum stake, each with its stake in rao. Validators with no stake have
no voting power and are left out. Its ``set_id`` (sha256 of its canonical form) is
signed into every vote, so a vote counts only under the set it was cast for.

Quorum is two conditions at once: the signers hold strictly more than two thirds of the
stake, and they are more than two thirds of the validators by count (``quorum_size`` =
floor(2n/3) + 1, which is 2f + 1 when n = 3f + 1 and never less than 2f + 1). Two
quorums therefore overlap in more than a third of the stake *and* in at least f + 1
validators, so they share an honest validator when the faulty ones hold less than a
third of the stake *or* are at most f in number: a single validator, however much
stake it holds, can stall the network but never fork it. (With 2f + 1 by count for every
n, two quorums of 5 or 6 validators could overlap in a single, faulty one.)

``contains_honest`` is the paper's "f + 1" threshold (line 55): more than a third of the
stake and at least f + 1 validators, so at least one of them is honest under either
assumption. ``blocks_quorum`` says that no quorum can form without at least one member of
a group.

The proposer of (height, round) rotates through the set in hotkey order, so among any
f + 1 consecutive rounds at least one has an honest proposer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from platform_cli.core import canonical

SET_DOMAIN = "platform/consensus/validator-set/v1"
MAX_VALIDATORS = 4096


class ValidatorSetError(ValueError):
    """A validator set that cannot be used: empty, duplicated or malformed."""


@dataclass(frozen=True)
class ValidatorSet:
    """Members ``(hotkey, stake)`` sorted by hotkey, all with positive stake."""

    block: int
    members: tuple[tuple[str, int], ...]
    _stakes: dict[str, int] = field(init=False, repr=False, compare=False)
    _id: str = field(init=False, repr=False, compare=False)
    _total: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 0:
            raise ValidatorSetError(f"snapshot block {self.block!r} is not a non-negative integer")
        if not self.members:
            raise ValidatorSetError("the validator set is empty: no validator holds stake")
        if len(self.members) > MAX_VALIDATORS:
            raise ValidatorSetError(f"{len(self.members)} validators exceed the limit of {MAX_VALIDATORS}")
        hotkeys = [hotkey for hotkey, _ in self.members]
        if hotkeys != sorted(set(hotkeys)):
            raise ValidatorSetError("validators must be unique and sorted by hotkey")
        for hotkey, stake in self.members:
            if not isinstance(hotkey, str) or not hotkey:
                raise ValidatorSetError(f"validator {hotkey!r} is not a hotkey")
            if isinstance(stake, bool) or not isinstance(stake, int) or not 0 < stake < 2**64:
                raise ValidatorSetError(f"stake {stake!r} of {hotkey} is not a positive 64-bit integer")
        object.__setattr__(self, "_stakes", dict(self.members))
        object.__setattr__(self, "_total", sum(stake for _, stake in self.members))
        digest = hashlib.sha256(canonical.encode([SET_DOMAIN, self.block, [list(m) for m in self.members]]))
        object.__setattr__(self, "_id", digest.hexdigest())

    @classmethod
    def from_stakes(cls, block: int, stakes: Mapping[str, int]) -> ValidatorSet:
        """The set of a snapshot: ``hotkey -> stake``; zero stakes carry no vote and are dropped."""
        return cls(block, tuple(sorted((h, s) for h, s in stakes.items() if s > 0)))

    @classmethod
    def from_canonical(cls, value: Any) -> ValidatorSet:
        if not isinstance(value, dict) or set(value) != {"block", "validators"}:
            raise ValidatorSetError("a validator set is a map with 'block' and 'validators'")
        members = value["validators"]
        if not isinstance(members, list) or not all(isinstance(m, list) and len(m) == 2 for m in members):
            raise ValidatorSetError("validators must be a list of [hotkey, stake] pairs")
        return cls(value["block"], tuple((m[0], m[1]) for m in members))

    def to_canonical(self) -> dict[str, Any]:
        return {"block": self.block, "validators": [list(m) for m in self.members]}

    @property
    def set_id(self) -> str:
        return self._id

    @property
    def hotkeys(self) -> tuple[str, ...]:
        return tuple(hotkey for hotkey, _ in self.members)

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def total(self) -> int:
        return self._total

    @property
    def f(self) -> int:
        """Faulty validators tolerated by count."""
        return (self.size - 1) // 3

    @property
    def quorum_size(self) -> int:
        return 2 * self.size // 3 + 1

    def __contains__(self, hotkey: object) -> bool:
        return hotkey in self._stakes

    def stake_of(self, hotkey: str) -> int:
        return self._stakes.get(hotkey, 0)

    def power(self, signers: Iterable[str]) -> tuple[int, int]:
        """(stake, count) of the distinct members among ``signers``."""
        members = {s for s in signers if s in self._stakes}
        return sum(self._stakes[s] for s in members), len(members)

    def quorum(self, stake: int, count: int) -> bool:
        """More than two thirds of the stake and of the validators."""
        return 3 * stake > 2 * self.total and count >= self.quorum_size

    def is_quorum(self, signers: Iterable[str]) -> bool:
        return self.quorum(*self.power(signers))

    def honest_among(self, stake: int, count: int) -> bool:
        """Enough signers that one of them is honest (the paper's f + 1)."""
        return 3 * stake > self.total and count >= self.f + 1

    def contains_honest(self, signers: Iterable[str]) -> bool:
        return self.honest_among(*self.power(signers))

    def blocks_quorum(self, group: Iterable[str]) -> bool:
        """True when the validators outside ``group`` cannot form a quorum."""
        inside = set(group)
        return not self.is_quorum(h for h in self._stakes if h not in inside)

    def proposer(self, height: int, round_: int) -> str:
        return self.members[(height + round_) % self.size][0]
