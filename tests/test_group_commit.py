"""GroupCommit: items handed in together are written in one call, each answered after it."""

from __future__ import annotations

import sys

import pytest
import trio

from platform_cli.p2p.group_commit import GroupCommit

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


class Recorder:
    """A write that records its batches and answers each item with its double."""

    def __init__(self, fail: BaseException | None = None, short: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.short = short

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if self.fail is not None:
            raise self.fail
        doubled = [2 * i for i in items]
        return doubled[:-1] if self.short else doubled


async def _submit_all(commit: GroupCommit[int, int], items: list[int]) -> dict[int, int | BaseException]:
    answers: dict[int, int | BaseException] = {}

    async def one(item: int) -> None:
        try:
            answers[item] = await commit.submit(item)
        except Exception as exc:
            answers[item] = exc

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(one, item)
    return answers


def test_items_handed_in_together_share_one_write_and_get_their_own_results() -> None:
    write = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(write)
    answers = trio.run(_submit_all, commit, list(range(10)))
    assert answers == {i: 2 * i for i in range(10)}
    assert len(write.batches) == 1 and sorted(write.batches[0]) == list(range(10))
    assert (commit.batches, commit.items) == (1, 10)


def test_a_lone_item_is_written_at_once_and_later_items_in_a_batch_of_their_own() -> None:
    write = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(write)

    async def scenario() -> None:
        assert await commit.submit(1) == 2
        assert await commit.submit(2) == 4
        await _submit_all(commit, [3, 4])

    trio.run(scenario)
    assert [sorted(b) for b in write.batches] == [[1], [2], [3, 4]]


def test_batches_are_capped() -> None:
    write = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=4)
    answers = trio.run(_submit_all, commit, list(range(10)))
    assert answers == {i: 2 * i for i in range(10)}
    assert [len(b) for b in write.batches] == [4, 4, 2]


def test_a_failed_write_fails_every_item_of_its_batch_and_the_next_batch_is_fresh() -> None:
    write = Recorder(fail=OSError("disk full"))
    commit: GroupCommit[int, int] = GroupCommit(write)
    answers = trio.run(_submit_all, commit, [1, 2, 3])
    assert all(isinstance(a, OSError) and str(a) == "disk full" for a in answers.values())
    assert (commit.batches, commit.items) == (0, 0)
    write.fail = None
    assert trio.run(commit.submit, 5) == 10  # no leader left stuck


def test_a_write_that_answers_too_few_results_fails_its_batch() -> None:
    commit: GroupCommit[int, int] = GroupCommit(Recorder(short=True))
    answers = trio.run(_submit_all, commit, [1, 2])
    assert {str(a) for a in answers.values()} == {"the write returned 1 results for 2 items"}


def test_a_waiter_cancelled_while_it_waits_is_still_written() -> None:
    write = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(write)

    async def cancelled_follower() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await commit.submit(2)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancelled_follower)  # runs while the leader waits for company
            assert await commit.submit(1) == 2

    trio.run(scenario)
    assert [sorted(b) for b in write.batches] == [[1, 2]]


def test_a_leader_is_not_cancelled_out_of_writing_what_others_wait_for() -> None:
    write = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(write)
    answers: dict[str, int] = {}

    async def scenario() -> None:
        async def follower() -> None:
            answers["follower"] = await commit.submit(2)

        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                scope.cancel()  # the leader's own scope is cancelled before it writes
                nursery.start_soon(follower)
                answers["leader"] = await commit.submit(1)

    trio.run(scenario)
    assert answers == {"leader": 2, "follower": 4}
    assert [sorted(b) for b in write.batches] == [[1, 2]]


def test_an_interrupted_write_propagates_and_leaves_no_waiter_hanging() -> None:
    write = Recorder(fail=KeyboardInterrupt())
    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=1)
    outcomes: dict[int, BaseException] = {}

    async def submit(item: int) -> None:
        try:
            await commit.submit(item)
        except BaseException as exc:
            outcomes[item] = exc
            raise

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit, 2)  # queued behind the leader: told, not left waiting
            await submit(1)  # leads: its batch of one is interrupted

    with pytest.raises(BaseExceptionGroup):
        trio.run(scenario)
    assert isinstance(outcomes[1], KeyboardInterrupt)
    assert str(outcomes[2]) == "the group commit stopped before this item was written"
    assert write.batches == [[1]]
    write.fail = None
    assert trio.run(commit.submit, 3) == 6
