"""The epoch schedule as the chain keeps it (pure: a reading of chain state in, blocks out).

Subtensor runs a subnet's epochs from state, not from a formula of the block number
(since its dynamic-tempo upgrade, ``run_coinbase.rs``): the next epoch runs at
``LastEpochBlock + tempo``, or earlier at a block the subnet owner triggered
(``PendingEpochAt``); running it sets ``LastEpochBlock`` and adds one to the subnet's
``SubnetEpochIndex``; a tempo change restarts the cycle at the block of the change.
The old formula ``(block + netuid + 1) % (tempo + 1)`` is wrong on any subnet whose
tempo changed or whose owner triggered an epoch.

A :class:`Schedule` is one reading of that state, taken the way bittensor 11.3 reads it
(``bittensor/reads/epochs.py``, ``epoch_status``): at ``block`` the epoch index is
``index``, it began at ``start`` (``block - BlocksSinceLastStep``) and the next one
begins at ``next_start`` (the runtime's ``get_next_epoch_start_block``). Epoch numbers
are the chain's ``SubnetEpochIndex``. From a reading the schedule is projected forward
at ``tempo`` blocks an epoch, which holds until the tempo changes or an epoch is
triggered: callers re-read the chain before acting on a projection.

Epoch ``E`` runs from ``start_of(E)`` up to ``deadline(E)``, the block before the next
epoch. Extrinsics of a block run after that block's epoch, so weights count for ``E``
only if included by ``deadline(E)``; a transaction sent when the head is ``h`` is
included at ``h + 1`` at the earliest. A validator submits ``lead`` blocks before the
next epoch, never inside the weights rate limit; :func:`next_step` says what to do at
a given block, and the caller re-asks after waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MIN_LEAD_BLOCKS = 2  # sent at head h, included at h + 1 at the earliest: h must be before the deadline


class Action(str, Enum):
    WAIT = "wait"  # nothing to do before ``at_block``
    SUBMIT = "submit"  # sync, compute and submit the epoch's vector now
    SKIP = "skip"  # the epoch leaves no room (rate limit, or too short): missed, say so


@dataclass(frozen=True)
class Step:
    action: Action
    epoch: int
    at_block: int
    reason: str = ""


@dataclass(frozen=True)
class Schedule:
    """The chain's epoch state read at ``block``; see the module docstring."""

    netuid: int
    block: int
    tempo: int
    index: int
    start: int
    next_start: int

    def __post_init__(self) -> None:
        if self.tempo <= 0:
            raise ValueError(f"tempo {self.tempo} must be positive: epochs never run on this subnet")
        if not self.start <= self.block < self.next_start:
            raise ValueError(
                f"an epoch reading at block {self.block} must lie between its epoch's start {self.start} "
                f"and the next epoch {self.next_start}"
            )

    def epoch_of(self, block: int) -> int:
        if block < self.start:
            raise ValueError(
                f"block {block} is before epoch {self.index} (block {self.start}), where this reading begins"
            )
        if block < self.next_start:
            return self.index
        return self.index + 1 + (block - self.next_start) // self.tempo

    def start_of(self, epoch: int) -> int:
        """The block whose epoch run opens ``epoch``."""
        if epoch < self.index:
            raise ValueError(f"epoch {epoch} is before epoch {self.index}, where this reading begins")
        if epoch == self.index:
            return self.start
        return self.next_start + (epoch - self.index - 1) * self.tempo

    def deadline(self, epoch: int) -> int:
        """The last block in which weights for ``epoch`` are still included for it."""
        return self.start_of(epoch + 1) - 1

    def blocks_until_next(self, block: int) -> int:
        return self.start_of(self.epoch_of(block) + 1) - block


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
    ``last_update_block`` the chain's LastUpdate for our uid. The submission is sent at
    ``deadline + 1 - lead`` or later, but no later than ``deadline - 1``, so that it is
    included by the deadline.
    """
    epoch = schedule.epoch_of(block)
    if last_done_epoch is not None and last_done_epoch >= epoch:
        epoch += 1
    start = schedule.start_of(epoch)
    deadline = schedule.deadline(epoch)
    latest = deadline - 1
    target = max(start, deadline + 1 - max(MIN_LEAD_BLOCKS, lead))
    earliest = (last_update_block or 0) + rate_limit if last_update_block else 0
    at = max(target, earliest)
    if start > latest:
        reason = f"epoch {epoch} lasts {deadline - start + 1} block(s): weights sent in it land in the next"
        return Step(Action.SKIP, epoch, deadline, reason)
    if at > latest:
        reason = (
            f"rate limit of {rate_limit} blocks since block {last_update_block} passes epoch {epoch}'s "
            f"deadline {deadline}"
        )
        return Step(Action.SKIP, epoch, deadline, reason)
    if block > latest:
        reason = f"block {block} is epoch {epoch}'s last: weights sent now land in the next epoch"
        return Step(Action.SKIP, epoch, deadline, reason)
    if block >= at:
        return Step(Action.SUBMIT, epoch, block)
    return Step(Action.WAIT, epoch, at)


def backoff_ms(attempt: int, base_ms: int = 1_000, cap_ms: int = 60_000) -> int:
    """Exponential retry delay: base, 2*base, 4*base ... capped."""
    return min(cap_ms, base_ms * (2 ** max(0, min(attempt, 30))))


def ms_until(block: int, target: int, block_time_ms: int) -> int:
    return max(0, target - block) * block_time_ms
