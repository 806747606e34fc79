"""The epoch schedule from the chain's tempo (pure: blocks in, decisions out).

Subtensor runs a subnet's epoch at every block ``b`` where
``blocks_until_next_epoch = tempo - (b + netuid + 1) % (tempo + 1)`` is 0, that is where
``(b + netuid + 2) % (tempo + 1) == 0``.
Epoch ``E`` starts at that boundary block and ends at the next one. A validator
submits the weights of epoch ``E`` once per epoch, ``lead`` blocks before the next
boundary (late enough to include the epoch's evaluations, early enough to land before
the chain's epoch runs), and never inside the weights rate limit. :func:`next_step`
says what to do at a given block; the caller re-asks after waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(str, Enum):
    WAIT = "wait"  # nothing to do before ``at_block``
    SUBMIT = "submit"  # sync, compute and submit the epoch's vector now
    SKIP = "skip"  # the rate limit leaves no room in this epoch: missed, say so


@dataclass(frozen=True)
class Step:
    action: Action
    epoch: int
    at_block: int
    reason: str = ""


@dataclass(frozen=True)
class Schedule:
    netuid: int
    tempo: int

    def __post_init__(self) -> None:
        if self.tempo <= 0:
            raise ValueError(f"tempo {self.tempo} must be positive: epochs never run on this subnet")

    def epoch_of(self, block: int) -> int:
        return (block + self.netuid + 2) // (self.tempo + 1)

    def start(self, epoch: int) -> int:
        """The block whose epoch run opens ``epoch`` (may be negative for epoch 0)."""
        return epoch * (self.tempo + 1) - self.netuid - 2

    def blocks_until_next(self, block: int) -> int:
        return self.tempo - (block + self.netuid + 1) % (self.tempo + 1)

    def deadline(self, epoch: int) -> int:
        """The last block at which weights for ``epoch`` still count for it."""
        return self.start(epoch + 1) - 1


def next_step(
    schedule: Schedule,
    block: int,
    *,
    last_done_epoch: int | None,
    last_update_block: int | None,
    rate_limit: int,
    lead: int,
) -> Step:
    """What the weight setter should do at ``block``.

    ``last_done_epoch`` is the newest epoch whose vector landed (or was skipped);
    ``last_update_block`` the chain's LastUpdate for our uid.
    """
    epoch = schedule.epoch_of(block)
    if last_done_epoch is not None and last_done_epoch >= epoch:
        epoch += 1
    start = schedule.start(epoch)
    deadline = schedule.deadline(epoch)
    target = max(start, deadline + 1 - max(1, lead))
    earliest = (last_update_block or 0) + rate_limit if last_update_block else 0
    at = max(target, earliest)
    if at > deadline:
        return Step(
            Action.SKIP,
            epoch,
            deadline,
            f"rate limit of {rate_limit} blocks since block {last_update_block} passes epoch {epoch}'s "
            f"deadline {deadline}",
        )
    if block >= at:
        return Step(Action.SUBMIT, epoch, block)
    return Step(Action.WAIT, epoch, at)


def backoff_ms(attempt: int, base_ms: int = 1_000, cap_ms: int = 60_000) -> int:
    """Exponential retry delay: base, 2*base, 4*base ... capped."""
    return min(cap_ms, base_ms * (2 ** max(0, min(attempt, 30))))


def ms_until(block: int, target: int, block_time_ms: int) -> int:
    return max(0, target - block) * block_time_ms
