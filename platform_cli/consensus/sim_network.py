"""A seeded discrete-event scheduler and a faulty in-process network.

Time is simulated milliseconds; events fire in (time, insertion) order, so a seed
replays exactly. Before the global stabilisation time (``gst_ms``) links drop,
duplicate and delay messages (which reorders them) and partitions split the validators;
from GST on every message arrives within ``delta_ms`` and partitions have healed: the
partial synchrony the liveness proof assumes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Scheduler:
    def __init__(self) -> None:
        self.now = 0
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, time_ms: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(time_ms, self.now), self._seq, action))

    def run(self, until_ms: int, done: Callable[[], bool]) -> None:
        while self._queue and not done():
            time_ms, _, action = self._queue[0]
            if time_ms > until_ms:
                break
            heapq.heappop(self._queue)
            self.now = time_ms
            action()


@dataclass(frozen=True)
class Partition:
    start_ms: int
    end_ms: int
    side: frozenset[int]
    """One side; everyone else is on the other."""

    def separates(self, a: int, b: int, now_ms: int) -> bool:
        return self.start_ms <= now_ms < self.end_ms and ((a in self.side) != (b in self.side))


@dataclass(frozen=True)
class FaultPlan:
    gst_ms: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    max_delay_ms: int = 20
    """Before GST; from GST on, ``delta_ms``."""
    delta_ms: int = 20
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[tuple[int, int, int], ...] = ()
    """(validator index, crash at, restart at)."""

    def summary(self) -> dict[str, Any]:
        return {
            "gst_ms": self.gst_ms,
            "drop": round(self.drop, 3),
            "duplicate": round(self.duplicate, 3),
            "max_delay_ms": self.max_delay_ms,
            "partitions": [[p.start_ms, p.end_ms, sorted(p.side)] for p in self.partitions],
            "crashes": [list(c) for c in self.crashes],
        }


def plan_faults(rng: random.Random, count: int, crashable: list[int]) -> FaultPlan:
    """A random fault schedule: loss, duplication, delays, a partition, crashes; all heal by GST."""
    if rng.random() < 0.2:
        return FaultPlan()
    gst = rng.randrange(200, 1500)
    partitions: list[Partition] = []
    if rng.random() < 0.5:
        start = rng.randrange(0, gst)
        side = frozenset(rng.sample(range(count), rng.randint(1, count - 1)))
        partitions.append(Partition(start, rng.randrange(start + 1, gst + 1), side))
    crashes = []
    if crashable and rng.random() < 0.5:
        for index in rng.sample(crashable, min(len(crashable), rng.randint(1, 2))):
            at = rng.randrange(0, gst)
            crashes.append((index, at, rng.randrange(at + 1, gst + 1)))
    return FaultPlan(
        gst_ms=gst,
        drop=rng.choice((0.0, 0.05, 0.2, 0.4)),
        duplicate=rng.choice((0.0, 0.05, 0.2)),
        max_delay_ms=rng.choice((20, 100, 400)),
        partitions=tuple(partitions),
        crashes=tuple(crashes),
    )


@dataclass
class Counters:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    """Messages sent per envelope kind (or payload type)."""


@dataclass
class Network:
    scheduler: Scheduler
    rng: random.Random
    plan: FaultPlan
    deliver: Callable[[int, int, Any], None]
    """deliver(source, destination, payload) at the scheduler's current time."""
    counters: Counters = field(default_factory=Counters)

    def send(self, source: int, destination: int, payload: Any) -> None:
        now = self.scheduler.now
        self.counters.sent += 1
        kind = getattr(payload, "kind", type(payload).__name__)
        self.counters.by_kind[kind] = self.counters.by_kind.get(kind, 0) + 1
        stable = now >= self.plan.gst_ms
        if any(p.separates(source, destination, now) for p in self.plan.partitions) or (
            not stable and self.rng.random() < self.plan.drop
        ):
            self.counters.dropped += 1
            return
        copies = 1
        if self.plan.duplicate and self.rng.random() < self.plan.duplicate:
            copies = 2
            self.counters.duplicated += 1
        bound = self.plan.delta_ms if stable else self.plan.max_delay_ms
        for _ in range(copies):
            delay = self.rng.randint(1, bound)
            self.scheduler.at(now + delay, lambda: self._arrive(source, destination, payload))

    def _arrive(self, source: int, destination: int, payload: Any) -> None:
        self.counters.delivered += 1
        self.deliver(source, destination, payload)
