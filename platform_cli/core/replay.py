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


@dataclass(frozen=True)
class BitWindow:
    """The rule of :class:`SequenceWindow` with the seen numbers as a bitmap: bit ``i`` of
    ``bits`` is set when ``high - i`` was accepted. Checking and accepting cost the same
    whatever the window holds, and it stores in ``size / 8`` bytes: the gossip layer
    advances a window for every message it admits."""

    high: int = -1
    bits: int = 0
    size: int = DEFAULT_WINDOW

    def check(self, seq: int) -> str | None:
        """None when ``seq`` is acceptable, else why not."""
        if seq <= self.high - self.size:
            return f"older than the replay window (latest {self.high})"
        if seq <= self.high and (self.bits >> (self.high - seq)) & 1:
            return "already seen (replay)"
        return None

    def accept(self, seq: int) -> BitWindow:
        problem = self.check(seq)
        if problem:
            raise ValueError(problem)
        if seq <= self.high:
            return BitWindow(self.high, self.bits | 1 << (self.high - seq), self.size)
        shift = seq - self.high
        bits = 1 if shift >= self.size else ((self.bits << shift) | 1) & ((1 << self.size) - 1)
        return BitWindow(seq, bits, self.size)

    def to_bytes(self) -> bytes:
        return self.bits.to_bytes(self.size // 8, "big")

    @classmethod
    def from_bytes(cls, high: int, data: bytes, size: int = DEFAULT_WINDOW) -> BitWindow:
        return cls(high, int.from_bytes(data, "big") & ((1 << size) - 1), size)
