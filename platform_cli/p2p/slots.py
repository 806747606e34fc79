"""Slots for what remote peers make us do at once (serve a sync, handle a DHT stream).

Two pools: peers bound to a validator of the metagraph (by a signed announcement of its
hotkey), and everyone else. Fresh peer ids cost nothing, so the pool of unknown peers is
small and sybils that hold all of it cannot take a validator's slot. Each peer also holds
at most ``per_peer`` slots. Imports no libp2p.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class SlotPools:
    validators: int
    unknown: int
    per_peer: int = 1
    _held: dict[str, int] = field(default_factory=dict)
    _in_pool: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})

    def take(self, peer: str, validator: bool) -> bool:
        """Take a slot for ``peer`` from its pool; False when the pool or the peer is full."""
        size = self.validators if validator else self.unknown
        if self._in_pool[validator] >= size or self._held.get(peer, 0) >= self.per_peer:
            return False
        self._in_pool[validator] += 1
        self._held[peer] = self._held.get(peer, 0) + 1
        return True

    def give_back(self, peer: str, validator: bool) -> None:
        self._in_pool[validator] -= 1
        self._held[peer] -= 1
        if not self._held[peer]:
            del self._held[peer]

    @contextmanager
    def slot(self, peer: str, validator: bool) -> Iterator[bool]:
        """``with pools.slot(peer, validator) as taken:`` (the slot is given back after)."""
        taken = self.take(peer, validator)
        try:
            yield taken
        finally:
            if taken:
                self.give_back(peer, validator)

    def held(self, validator: bool) -> int:
        return self._in_pool[validator]
