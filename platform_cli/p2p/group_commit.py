"""Group commit: one durable write for all the items handed in while the last one ran.

Under a flood, py-libp2p validates each received message in a task of its own; each
task hands its admitted message to :meth:`GroupCommit.submit` and waits. The first
waiting task leads: it lets every other ready task queue its item (two scheduler passes),
then writes the queue in one call (one SQLite transaction) and wakes each waiter with
its own result. Nothing is answered before it is written, so "on record before it is
forwarded" holds, for the price of one commit per batch instead of one per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

SCHEDULER_PASSES = 2
"""How long a leader waits for company: a task made runnable in the same pass as the
leader's wake-up may run after it (trio reverses a pass's order half the time)."""
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Slot(Generic[Item, Result]):
    item: Item
    done: trio.Event = field(default_factory=trio.Event)
    result: Result | None = None
    error: BaseException | None = None

    def settle(self, result: Result | None, error: BaseException | None) -> None:
        self.result, self.error = result, error
        self.done.set()


class GroupCommit(Generic[Item, Result]):
    """Batches calls of ``write`` (items in, one result per item out, in order)."""

    def __init__(self, write: Callable[[list[Item]], Sequence[Result]], *, max_batch: int = 256) -> None:
        self._write = write
        self.max_batch = max_batch
        self._queue: list[_Slot[Item, Result]] = []
        self._leading = False
        self.batches = 0
        """Writes that succeeded, and the items they held (the node logs both)."""
        self.items = 0

    async def submit(self, item: Item) -> Result:
        """Write ``item`` with whatever else is queued; its result, or the write's error.

        A waiter cancelled while it waits leaves its item queued: it is still written."""
        slot: _Slot[Item, Result] = _Slot(item)
        self._queue.append(slot)
        if self._leading:
            await slot.done.wait()
        else:
            self._leading = True
            for _ in range(SCHEDULER_PASSES):
                await trio.lowlevel.cancel_shielded_checkpoint()
            self._drain()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]  # settled with a result

    def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                self._write_batch(batch)
        finally:
            self._leading = False
            for slot in self._queue:  # left only when a write raised past Exception
                slot.settle(None, _stopped())
            self._queue = []

    def _write_batch(self, batch: list[_Slot[Item, Result]]) -> None:
        try:
            results = list(self._write([slot.item for slot in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"the write returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            for slot in batch:
                slot.settle(None, exc)
            return
        except BaseException:
            for slot in batch:
                slot.settle(None, _stopped())
            raise
        for slot, result in zip(batch, results, strict=True):
            slot.settle(result, None)
        self.batches += 1
        self.items += len(batch)


def _stopped() -> RuntimeError:
    return RuntimeError("the group commit stopped before this item was written")
