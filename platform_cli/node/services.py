"""The services ``platform up`` composes, each in the supervisor's shape.

The P2P node is trio, like the supervisor. The chain-facing services use the bittensor
SDK, which is asyncio: each runs its own asyncio loop in a worker thread with its own
state connection (SQLite connections stay in the thread that made them), is up once that
loop runs, and stops when the supervisor cancels it (an ``asyncio.Event`` set from trio).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from platform_cli.chain.settings import ChainSettings, WeightSettings
from platform_cli.config import NetworkConfig
from platform_cli.identity import Signer
from platform_cli.p2p.config import NodeSettings
from platform_cli.state.db import State, open_state

log = logging.getLogger("platform.node")

SYNC_INTERVAL_S = 60.0
"""How often the chain service refreshes the metagraph snapshot within an epoch."""
POLL_S = 2.0
"""How often it reads the epoch schedule: a new epoch is synced within this."""
FETCH_TIMEOUT_S = 20.0


class P2PService:
    """The libp2p node: gossip, the DHT, sync, the control socket for one-shot commands."""

    name = "p2p"

    def __init__(self, data_dir: Path, settings: NodeSettings, network: NetworkConfig) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.network = network
        self.node: Any = None
        self.listeners: list[Callable[[str, Any], None]] = []
        """Told of every message the node stores (each node the service starts)."""

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from platform_cli.p2p.node import Node

        self.node = Node(self.data_dir, self.settings, self.network)
        self.node.admission.listeners.extend(self.listeners)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.node.run)
                task_status.started()
        finally:
            self.node.state.close()

    async def fetch_content(self, sha256: str) -> bytes | None:
        """A miner's file by its content address in the DHT; None if nobody has it (yet)."""
        from platform_cli.core import dhtrec

        node = self.node
        if node is None:
            return None
        key = dhtrec.dht_key(f"/{dhtrec.CONTENT_NAMESPACE}/{sha256}")
        with trio.move_on_after(FETCH_TIMEOUT_S):
            try:
                return await node.dht.get_value(key)
            except Exception as exc:  # py-libp2p raises assorted errors for unreachable peers
                log.info("p2p.fetch_failed key=%s error=%s", key, exc)
        return None


AsyncMain = Callable[[State, asyncio.Event, Callable[[], None]], Awaitable[None]]
"""``main(state, stop, started)``: calls ``started()`` once really up, returns once ``stop`` is set."""


class AsyncioService:
    """Runs an :data:`AsyncMain` on an asyncio loop in a worker thread until cancelled."""

    def __init__(self, name: str, data_dir: Path, main: AsyncMain) -> None:
        self.name = name
        self.data_dir = data_dir
        self._main = main

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        lock = threading.Lock()
        handle: dict[str, Any] = {"cancelled": False}

        def run_in_thread() -> None:
            async def main() -> None:
                stop = asyncio.Event()
                with lock:
                    handle["loop"], handle["stop"] = asyncio.get_running_loop(), stop
                    if handle["cancelled"]:
                        stop.set()
                with open_state(self.data_dir) as state:
                    await self._main(state, stop, lambda: trio.from_thread.run_sync(task_status.started))

            asyncio.run(main())

        def request_stop() -> None:
            with lock:
                handle["cancelled"] = True
                loop, stop = handle.get("loop"), handle.get("stop")
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has already ended
                    loop.call_soon_threadsafe(stop.set)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_call_when_cancelled, request_stop)
            await trio.to_thread.run_sync(run_in_thread)
            nursery.cancel_scope.cancel()
        raise RuntimeError(f"the {self.name} loop ended")


async def _call_when_cancelled(action: Callable[[], None]) -> None:
    """The worker thread cannot be cancelled from trio; it is asked to stop instead."""
    try:
        await trio.sleep_forever()
    finally:
        action()


def chain_service(
    data_dir: Path,
    chain: ChainSettings,
    netuid: int,
    interval_s: float = SYNC_INTERVAL_S,
    poll_s: float = POLL_S,
) -> AsyncioService:
    """Keeps the chain head, the epoch schedule and the metagraph snapshot fresh for the
    other services.

    The head's schedule is read and stored every ``poll_s`` (consensus times its epochs
    by it, the evaluation service evaluates for the epoch it names), a new epoch is synced
    in full as soon as it shows, and the snapshot is refreshed every ``interval_s``.
    """

    async def main(state: State, stop: asyncio.Event, started: Callable[[], None]) -> None:
        import time

        from platform_cli.chain.adapter import ChainClient
        from platform_cli.chain.sync import sync_with
        from platform_cli.state.schedules import prune_schedules, save_schedule

        async with ChainClient(chain, one_shot=False) as client:
            epoch, synced_at = None, 0.0
            while not stop.is_set():
                schedule = await client.schedule(netuid)
                if schedule.index != epoch or time.monotonic() - synced_at >= interval_s:
                    snapshot, _, schedule = await sync_with(state, client, netuid)
                    if epoch is None:
                        started()  # up once the chain answered and the snapshot is stored
                    else:
                        prune_schedules(state, netuid, schedule.index)
                    epoch, synced_at = schedule.index, time.monotonic()
                    log.info("chain.synced netuid=%d block=%d epoch=%d", netuid, snapshot.block, epoch)
                else:
                    save_schedule(state, schedule)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_s)

    return AsyncioService("chain", data_dir, main)


def weights_service(
    data_dir: Path,
    chain: ChainSettings,
    settings: WeightSettings,
    signer: Signer,
    netuid: int,
    consensus: bool = False,
) -> AsyncioService:
    """The epoch loop: this validator's weights on the chain before each deadline (with
    ``consensus``, the epoch's committed vector, else what ``weights.fallback`` says)."""

    async def main(state: State, stop: asyncio.Event, started: Callable[[], None]) -> None:
        from platform_cli.chain.runner import WeightSetter

        started()  # the loop rides out endpoint faults itself, with backoff, logged per attempt
        await WeightSetter(state, chain, settings, signer, netuid, stop, consensus=consensus).run()

    return AsyncioService("weights", data_dir, main)
