"""Replay protection: a sliding window over each signer's sequence numbers.

Gossip reorders messages, so a strictly increasing rule would drop honest traffic. A
signer's ``SequenceWindow`` accepts a sequence number that is above ``high - size`` and
not seen before, like the anti-replay window of IPsec (RFC 4303 section 3.4.3). The
window is a value: the caller persists it (``state``) before acting on a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_WINDOW = 1024


@dataclass(frozen=True)
class SequenceWindow:
    high: int = -1
    seen: frozenset[int] = field(default_factory=frozenset)
    size: int = DEFAULT_WINDOW

    def check(self, seq: int) -> str | None:
        """None when ``seq`` is acceptable, else why not."""
        if seq <= self.high - self.size:
            return f"older than the replay window (latest {self.high})"
        if seq in self.seen:
            return "already seen (replay)"
        return None

    def accept(self, seq: int) -> SequenceWindow:
        problem = self.check(seq)
        if problem:
            raise ValueError(problem)
        high = max(self.high, seq)
        floor = high - self.size
        return SequenceWindow(high, frozenset(s for s in self.seen | {seq} if s > floor), self.size)
