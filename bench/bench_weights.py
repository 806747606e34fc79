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

from platform_cli.core import weightrules
from platform_cli.core.aggregation import (
    AggregationError,
    ChallengeShare,
    ScoreReport,
    _clipped_target,
    aggregate,
    required_sum,
    to_u16,
)

VALIDATORS, MINERS, CHALLENGES, UIDS = 64, 256, 4, 256
TARGET_MS = 100.0
U16_CASES = 10_000


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


def _accepted(vector: dict[int, int], limit: int) -> bool:
    uids = sorted(vector)
    stored = weightrules.max_upscale([vector[u] for u in uids])
    return weightrules.max_weight_limited(None, uids, stored, limit)


def bench_u16() -> None:
    """The u16 conversion on random capped vectors: refusals and the share error it costs."""
    from bittensor.intents import weights as sdk

    rng = random.Random(11)
    satisfiable = sdk_refused = ours_refused = adjusted = 0
    errors: list[float] = []
    adjusted_errors: list[float] = []
    started = time.perf_counter()
    while satisfiable < U16_CASES:
        n = rng.randint(2, 64)
        weights = {uid: int(10 ** rng.uniform(0, 9)) for uid in range(n)}
        limit = rng.randint(1, 65534)
        try:
            ours = to_u16(weights, limit)
        except AggregationError:
            continue  # fewer than 65535/limit uids: no vector is accepted, refused before sending
        satisfiable += 1
        ours_refused += not _accepted(ours, limit)
        floats = sdk.clip_to_max_weight([float(weights[u]) for u in range(n)], limit / 65535)
        sdk_refused += not _accepted(dict(zip(*sdk.normalize(list(range(n)), floats), strict=True)), limit)
        target = _clipped_target(sorted(weights.items()), limit)
        distance = [abs(float(ours.get(u, 0) - x)) for u, x in target.items()]
        errors += distance
        if sum(round(x) for x in target.values()) < required_sum(limit):
            adjusted += 1
            adjusted_errors += distance
    elapsed_ms = (time.perf_counter() - started) * 1000
    at_half = 0
    for _ in range(U16_CASES):
        n = rng.randint(3, 64)
        floats = sdk.clip_to_max_weight([10 ** rng.uniform(0, 9) for _ in range(n)], 32767 / 65535)
        at_half += not _accepted(dict(zip(*sdk.normalize(list(range(n)), floats), strict=True)), 32767)
    print(
        f"u16 conversion on {U16_CASES} satisfiable capped vectors (2-64 uids, random limits): "
        f"pallet refusals: ours {ours_refused}, the SDK's {sdk_refused} ({sdk_refused / U16_CASES:.2%}); "
        f"{adjusted} needed adjusting after rounding; at limit 32767 the SDK's are refused "
        f"{at_half / U16_CASES:.2%} of the time"
    )
    print(
        f"share error vs the capped target, u16 units: adjusted vectors max {max(adjusted_errors, default=0):.3f} "
        f"mean {statistics.fmean(adjusted_errors or [0]):.3f}; all vectors max {max(errors):.3f} "
        f"mean {statistics.fmean(errors):.3f}; {elapsed_ms / U16_CASES:.2f} ms per case with the checks"
    )


def bench_sync() -> None:
    from bittensor.sp_core import Keypair

    from platform_cli.chain.adapter import ChainClient
    from platform_cli.chain.dev.chain import DevChain
    from platform_cli.chain.dev.substrate import DevSubstrate
    from platform_cli.chain.settings import ChainSettings
    from platform_cli.chain.sync import record_sync
    from platform_cli.state.db import open_state

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BTCLI_TOKEN_SYMBOLS_CACHE"] = str(Path(tmp) / "symbols.json")
        owner = Keypair.create_from_uri("//bench//owner").ss58_address
        hotkeys = [Keypair.create_from_uri(f"//bench//{i}").ss58_address for i in range(UIDS)]

        def genesis(chain: DevChain) -> None:
            chain.add_subnet(100, owner, owner, {"MaxAllowedUids": UIDS})
            for i, hotkey in enumerate(hotkeys):
                chain.register(100, hotkey, owner, (UIDS - i) * 10**9 if i < 64 else 0, genesis=True)
            chain.grant_permits(100)

        chain = DevChain.create(Path(tmp) / "dev.db", start_block=1000, block_time_ms=0, setup=genesis)
        state = open_state(Path(tmp) / "data")
        settings = ChainSettings(dev_db=chain.path)

        async def read_only() -> None:
            async with ChainClient(settings, DevSubstrate(chain)) as client:
                await client.metagraph(100)

        async def full_sync() -> None:
            async with ChainClient(settings, DevSubstrate(chain)) as client:
                schedule = await client.schedule(100)
                snapshot, hyper = await client.metagraph(100)
            chain.advance(1)
            record_sync(state, snapshot, hyper, schedule, "dev")

        read_ms = timed(lambda: asyncio.run(read_only()), 5)
        sync_ms = timed(lambda: asyncio.run(full_sync()), 5)
        state.close()
        chain.release()
    print(
        f"metagraph sync of {UIDS} uids from the dev chain (SDK reads + snapshot write): {sync_ms:.1f} ms "
        f"median of 5; SDK read alone {read_ms:.1f} ms -> writing the snapshot adds "
        f"{sync_ms / read_ms:.2f}x"
    )


if __name__ == "__main__":
    bench_aggregation()
    bench_u16()
    bench_sync()
