"""Timing of the consensus machine: timeouts that grow with the round.

Round r waits ``base + r * delta`` in each step (the paper's timeoutPropose(r),
timeoutPrevote(r), timeoutPrecommit(r)): once the network delivers within some unknown
bound, the timeouts of a later round exceed it and the round can decide. A view change
is nothing more than this: a round that times out starts the next one, with the next
proposer. Timing never affects safety, only how soon a decision comes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    propose_ms: int = 1_000
    prevote_ms: int = 500
    precommit_ms: int = 500
    delta_ms: int = 500
    """Added to each step's timeout per round."""
    rebroadcast_ms: int = 2_000
    """Within a height, re-send our current messages (and the polka we know) this often."""
    idle_poll_ms: int = 1_000
    """How often an idle validator asks the application whether there is work."""
    catchup_ms: int = 2_000
    """At most one catch-up request (or offer to a lagging peer) per this interval."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"timeout {name} = {value!r} must be a positive integer (ms)")

    def propose(self, round_: int) -> int:
        return self.propose_ms + round_ * self.delta_ms

    def prevote(self, round_: int) -> int:
        return self.prevote_ms + round_ * self.delta_ms

    def precommit(self, round_: int) -> int:
        return self.precommit_ms + round_ * self.delta_ms
