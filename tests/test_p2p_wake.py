"""Waking the node when a command queues work: pokes over an abstract Unix socket."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import trio

from platform_cli.p2p import store, wake
from platform_cli.p2p.waker import FALLBACK_S, POLL_S, Signal, Waker
from platform_cli.state.db import open_state, write_transaction

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix sockets")


def test_the_address_names_the_state_not_the_spelling_of_its_path(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert wake.address(tmp_path / "a" / "state.db") == wake.address(tmp_path / "link" / "state.db")
    assert wake.address(tmp_path / "a" / "state.db") != wake.address(tmp_path / "b" / "state.db")
    assert wake.address(tmp_path / "a" / "state.db").startswith(b"\0")


def test_a_poke_with_no_node_listening_is_silent(tmp_path: Path) -> None:
    wake.poke(tmp_path / "state.db")  # nothing bound: refused, swallowed


@linux_only
def test_a_poke_wakes_every_signal_long_before_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    outbox, requests = Signal(), Signal()
    waker = Waker(path, [outbox, requests])

    async def scenario() -> float:
        waker.open()
        assert waker.interval_s == FALLBACK_S
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waker.serve)
            started = time.monotonic()
            await trio.to_thread.run_sync(wake.poke, path)
            with trio.fail_after(30):
                await outbox._event.wait()
                await requests._event.wait()
            nursery.cancel_scope.cancel()
        return time.monotonic() - started

    assert trio.run(scenario) < 30


def test_a_cleared_signal_waits_until_set_or_timeout() -> None:
    async def scenario() -> tuple[float, float]:
        signal = Signal()
        signal.set()
        signal.clear()
        started = time.monotonic()
        await signal.wait(0.05)  # not set: times out
        timed_out = time.monotonic() - started
        signal.set()
        started = time.monotonic()
        await signal.wait(60)  # set: returns at once
        return timed_out, time.monotonic() - started

    timed_out, woke = trio.run(scenario)
    assert timed_out >= 0.05
    assert woke < 30


@linux_only
def test_a_second_waker_on_the_same_state_falls_back_to_polling(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first, second = Waker(path, []), Waker(path, [])

    async def scenario() -> tuple[float, float]:
        first.open()
        second.open()  # the address is taken: a warning, and polling
        intervals = first.interval_s, second.interval_s
        assert first._sock is not None
        first._sock.close()
        return intervals

    assert trio.run(scenario) == (FALLBACK_S, POLL_S)


@linux_only
def test_queueing_a_request_pokes_only_once_it_is_committed(tmp_path: Path) -> None:
    with open_state(tmp_path) as state:
        signal = Signal()
        waker = Waker(state.path, [signal])

        async def scenario() -> tuple[bool, bool]:
            waker.open()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waker.serve)
                with write_transaction(state):
                    store.queue_request(state, "dht.get", {"key": "/sub/00"})
                await trio.sleep(0.2)
                inside = signal._event.is_set()  # not committed when queued: no poke
                store.queue_request(state, "dht.get", {"key": "/sub/01"})
                with trio.fail_after(30):
                    await signal._event.wait()
                nursery.cancel_scope.cancel()
            return inside, signal._event.is_set()

        inside, after = trio.run(scenario)
    assert not inside
    assert after
