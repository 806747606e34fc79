"""Weights benchmarks: aggregation at scale and a 256-uid metagraph sync from the dev chain.

Run: python bench/bench_weights.py
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from platform_cli.core.aggregation import ChallengeShare, ScoreReport, aggregate, to_u16

VALIDATORS, MINERS, CHALLENGES, UIDS = 64, 256, 4, 256
TARGET_MS = 100.0


def timed(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def bench_aggregation() -> None:
    rng = random.Random(7)
    validators = [f"v{i}" for i in range(VALIDATORS)]
    miners = [f"m{i}" for i in range(MINERS)]
    stakes = {v: rng.randrange(1, 10**15) for v in validators}
    shares = [ChallengeShare(f"c{c}", 200_000, 3) for c in range(CHALLENGES)]
    uids = {m: i for i, m in enumerate(miners)}
    reports = [
        ScoreReport(v, f"c{c}", m, rng.randrange(0, 10**9))
        for v in validators
        for c in range(CHALLENGES)
        for m in miners
    ]

    def run() -> None:
        result = aggregate(reports, stakes, shares, uids, burn_uid=0)
        to_u16(result.weights, 65535)

    ms = timed(run, 5)
    per_report_us = ms * 1000 / len(reports)
    print(
        f"aggregation {VALIDATORS} validators x {MINERS} miners x {CHALLENGES} challenges "
        f"({len(reports)} reports): {ms:.1f} ms median of 5 ({per_report_us:.2f} us/report); "
        f"target {TARGET_MS:.0f} ms -> {ms / TARGET_MS:.2f}x of budget"
    )


def bench_sync() -> None:
    from bittensor.sp_core import Keypair

    from platform_cli.chain.adapter import ChainClient
    from platform_cli.chain.devchain import DevChain
    from platform_cli.chain.devsubstrate import DevSubstrate
    from platform_cli.chain.settings import ChainSettings
    from platform_cli.chain.sync import record_sync
    from platform_cli.state.db import open_state

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BTCLI_TOKEN_SYMBOLS_CACHE"] = str(Path(tmp) / "symbols.json")
        chain = DevChain.create(Path(tmp) / "dev.db", start_block=1000, block_time_ms=0)
        owner = Keypair.create_from_uri("//bench//owner").ss58_address
        chain.add_subnet(100, owner, owner, {"MaxAllowedUids": UIDS})
        for i in range(UIDS):
            hotkey = Keypair.create_from_uri(f"//bench//{i}").ss58_address
            chain.register(100, hotkey, owner, (UIDS - i) * 10**9 if i < 64 else 0)
        state = open_state(Path(tmp) / "data")
        settings = ChainSettings(dev_db=chain.path)

        async def read_only() -> None:
            async with ChainClient(settings, DevSubstrate(chain)) as client:
                await client.metagraph(100)

        async def full_sync() -> None:
            async with ChainClient(settings, DevSubstrate(chain)) as client:
                snapshot, hyper = await client.metagraph(100)
            chain.advance(1)
            record_sync(state, snapshot, hyper, "dev")

        read_ms = timed(lambda: asyncio.run(read_only()), 5)
        sync_ms = timed(lambda: asyncio.run(full_sync()), 5)
        state.close()
        chain.release()
    print(
        f"metagraph sync of {UIDS} uids from the dev chain (SDK read + snapshot write): {sync_ms:.1f} ms "
        f"median of 5; SDK read alone {read_ms:.1f} ms -> writing the snapshot adds "
        f"{sync_ms / read_ms:.2f}x"
    )


if __name__ == "__main__":
    bench_aggregation()
    bench_sync()
