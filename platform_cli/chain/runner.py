"""The epoch loop: submit each epoch's weights once, before its deadline, within the rate limit.

Each tick reads the epoch schedule as the chain keeps it (``core.epoch.Schedule``, which
carries the head) and our uid's LastUpdate, asks ``core.epoch.next_step`` what to do,
and either waits (bounded, so a changed tempo, a triggered epoch or a manual advance is
noticed), submits (sync, compute, submit, confirm), or records the epoch as missed.
An endpoint that fails costs each call its attempts (logged as warnings with their
backoff); the tick then fails, is logged, and the loop backs off exponentially and
tries again, reconnecting, for as long as it runs. Epochs whose deadline passed
meanwhile are recorded as ``missed``, never as submitted. The loop stops at the next
tick once ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from platform_cli.chain import records
from platform_cli.chain import weights as w
from platform_cli.chain.adapter import ChainClient
from platform_cli.chain.settings import ChainSettings, WeightSettings
from platform_cli.chain.sync import latest_hyperparams, sync_with
from platform_cli.core.epoch import Action, backoff_ms, ms_until, next_step
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer
from platform_cli.state.db import State

log = logging.getLogger("platform.weights")
MAX_WAIT_MS = 30_000
MAX_GAP_RECORDS = 16


@dataclass
class WeightSetter:
    state: State
    chain: ChainSettings
    settings: WeightSettings
    signer: Signer
    netuid: int
    stop: asyncio.Event
    sleep: Callable[[float], Awaitable[None]] | None = None  # default: wait on ``stop``
    substrate: Any = None  # default: the network the settings name (the SDK's own backend)
    consensus: bool = False
    """Submit the vector consensus committed for the epoch; without one by the deadline,
    do what ``settings.fallback`` says (and say which in the history)."""

    async def run(self) -> None:
        from bittensor import BittensorError

        failures = 0
        async with ChainClient(self.chain, self.substrate, one_shot=False) as client:
            while not self.stop.is_set():
                try:
                    wait_ms = await self.tick(client)
                    failures = 0
                except (PlatformError, BittensorError) as exc:
                    wait_ms = backoff_ms(failures)
                    failures += 1
                    log.error("weights.tick_failed attempt=%d retry_ms=%d error=%s", failures, wait_ms, exc)
                await self._pause(wait_ms)

    async def _pause(self, wait_ms: int) -> None:
        if self.stop.is_set():
            return
        if self.sleep is not None:
            await self.sleep(wait_ms / 1000)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), wait_ms / 1000)

    def _record_gaps(self, current: int) -> int | None:
        """Epochs that ended without our weights become ``missed`` rows; returns the newest done."""
        mechid, hotkey = self.settings.mechid, self.signer.ss58
        done = records.last_done_epoch(self.state, self.netuid, mechid, hotkey)
        if done is not None:
            for epoch in range(max(done + 1, current - MAX_GAP_RECORDS), current):
                records.record_missed(
                    self.state, self.netuid, mechid, epoch, hotkey, "deadline passed without weights"
                )
                done = epoch
        return done

    async def tick(self, client: ChainClient) -> int:
        """One decision; returns how long to wait before the next (ms)."""
        schedule = await client.schedule(self.netuid)
        head = schedule.block
        hyper = latest_hyperparams(self.state, self.netuid)
        if hyper is None:
            await sync_with(self.state, client, self.netuid)
            hyper = latest_hyperparams(self.state, self.netuid)
        if hyper is None:
            raise PlatformError(f"no hyperparameters for netuid {self.netuid} after a sync")
        block_ms = round(1000 * await client.call("read the block time", lambda c: c.block_time()))
        uid = await w.uid_of(client, self.netuid, self.signer.ss58)
        _, last_update = await client.weights_row(self.netuid, self.settings.mechid, uid)
        current = schedule.epoch_of(head)
        done = self._record_gaps(current)
        if last_update >= max(1, schedule.start_of(current)) and (done is None or done < current):
            # Our weights already landed this epoch (a submission cut short by a crash, or
            # another process with our hotkey): the chain is the record; never resubmit.
            records.resolve_pending(
                self.state, self.netuid, self.settings.mechid, self.signer.ss58, current, last_update
            )
            done = current
        step = next_step(
            schedule,
            head,
            last_done_epoch=done,
            last_update_block=last_update or None,
            rate_limit=hyper.weights_rate_limit,
            lead=self.settings.lead_blocks,
        )
        if step.action is Action.WAIT:
            log.debug("weights.wait epoch=%d until_block=%d head=%d", step.epoch, step.at_block, head)
            return max(1, min(MAX_WAIT_MS, ms_until(head, step.at_block, block_ms)))
        if step.action is Action.SKIP:
            records.record_missed(
                self.state, self.netuid, self.settings.mechid, step.epoch, self.signer.ss58, step.reason
            )
            return 0
        agreed, source = None, ""
        if self.consensus:
            agreed = records.committed(self.state, self.netuid, self.settings.mechid, step.epoch)
            if agreed is not None:
                source = f"committed by consensus at height {agreed.height} ({agreed.vector_hash[:16]})"
            elif self.settings.fallback == "skip":
                records.record_missed(
                    self.state,
                    self.netuid,
                    self.settings.mechid,
                    step.epoch,
                    self.signer.ss58,
                    "nothing committed by consensus before the deadline (weights.fallback = skip)",
                )
                return 0
            else:
                source = "fallback own: nothing committed by consensus before the deadline"
                log.warning("weights.fallback epoch=%d own vector", step.epoch)
        vector, submission, outcome = await w.submit_with(
            client,
            self.state,
            self.settings,
            self.signer,
            self.netuid,
            epoch=step.epoch,
            agreed=agreed,
            source=source,
        )
        log.info(
            "weights.%s epoch=%d block=%d hash=%s",
            outcome,
            vector.epoch,
            submission.block,
            vector.vector_hash,
        )
        return block_ms


def serve(state: State, chain: ChainSettings, settings: WeightSettings, signer: Signer, netuid: int) -> None:
    """Run a :class:`WeightSetter` until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("weights.loop_started netuid=%d hotkey=%s", netuid, signer.ss58)
        await WeightSetter(state, chain, settings, signer, netuid, stop).run()
        log.info("weights.loop_stopped netuid=%d", netuid)

    asyncio.run(main())
