"""The real bittensor SDK against the dev chain: the calls and shapes we rely on.

A bittensor upgrade that changes a storage item, a runtime call or an intent's
behaviour fails here first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest
from bittensor.intents.weights import normalize
from bittensor.sp_core import Keypair

from platform_cli.chain.dev.chain import DevChain
from platform_cli.chain.dev.seed import RAO_PER_TAO, init_dev_chain
from platform_cli.chain.dev.substrate import DevSubstrate
from platform_cli.errors import PlatformError
from tests.chain_helpers import NETUID, SEED, WALLETS, hotkey, uid
from tests.conftest import FIXTURES


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


def wallet_key(name: str) -> Any:
    return bt.Wallet(name="devnet", hotkey=name, path=WALLETS).hotkey


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def chain(tmp_path: Path, clock: Clock) -> Iterator[DevChain]:
    dev = init_dev_chain(
        tmp_path / "dev.db", FIXTURES / "metagraph" / "devnet.json", block_time_ms=12_000, clock=clock
    )
    yield dev
    dev.release()


def sdk(chain: DevChain, coro_fn: Any) -> Any:
    async def go() -> Any:
        async with bt.Subtensor("local", substrate=DevSubstrate(chain)) as client:
            return await coro_fn(client)

    return asyncio.run(go())


def test_blocks_follow_the_clock_and_advance(chain: DevChain, clock: Clock) -> None:
    start = chain.head()
    clock.ms += 12_000 * 3 + 5
    assert chain.head() == start + 3
    assert chain.advance(10) == start + 13
    with pytest.raises(PlatformError, match="only moves forward"):
        chain.advance(-1)


def test_metagraph_through_the_sdk(chain: DevChain) -> None:
    graph = sdk(chain, lambda c: c.subnets.metagraph(NETUID, commitments=False))
    assert graph.block == chain.head() and graph.tempo == SEED["hyperparameters"]["Tempo"]
    assert [n.hotkey for n in graph.neurons] == [n["hotkey"] for n in SEED["neurons"]]
    assert [n.total_stake.rao for n in graph.neurons] == [
        n["stake_tao"] * RAO_PER_TAO for n in SEED["neurons"]
    ]
    # the five staked validators, and the subnet owner, who always holds a permit
    assert [n.uid for n in graph.neurons if n.validator_permit] == [uid("sudo")] + [
        uid(f"validator-{i}") for i in range(5)
    ]
    assert graph.owner_hotkey == SEED["owner"]["hotkey"]
    assert len(graph.neurons) >= 37


def test_reads_the_weights_path_depends_on(chain: DevChain) -> None:
    async def reads(client: Any) -> list[Any]:
        return [
            await client.neurons.uid(hotkey("validator-1"), NETUID),
            await client.read("max_weight_limit", netuid=NETUID),
            await client.read("min_allowed_weights", netuid=NETUID),
            await client.read("weights_rate_limit", netuid=NETUID),
            await client.read("commit_reveal_enabled", netuid=NETUID),
            await client.read("mechanism_count", netuid=NETUID),
            await client.neurons.uid(Keypair.create_from_uri("//Nobody").ss58_address, NETUID),
        ]

    assert sdk(chain, reads) == [uid("validator-1"), 65535, 8, 100, False, 1, None]


def test_set_weights_then_read_back(chain: DevChain) -> None:
    weights = {uid(f"miner-{i:02d}"): float(i + 1) for i in range(10)}

    async def flow(client: Any) -> tuple[Any, Any, Any]:
        plan = await client.plan(bt.SetWeights(netuid=NETUID, weights=weights), wallet_key("validator-0"))
        result = await client.execute(
            bt.SetWeights(netuid=NETUID, weights=weights), wallet_key("validator-0")
        )
        return plan, result, await client.weights.weights(NETUID)

    plan, result, on_chain = sdk(chain, flow)
    assert plan.call[1] == "set_mechanism_weights" and result.success
    row = on_chain[uid("validator-0")]
    assert set(row) == set(weights) and row[uid("miner-09")] == pytest.approx(10 / 55, rel=1e-4)
    assert chain.read("SubtensorModule", "LastUpdate", [NETUID])[uid("validator-0")] == chain.head()


def test_chain_rules_refuse_with_the_sdk_error_codes(chain: DevChain) -> None:
    weights = {uid(f"miner-{i:02d}"): 1.0 for i in range(10)}

    async def attempt(client: Any, key: Any, w: dict[int, float]) -> Any:
        try:
            result = await client.execute(bt.SetWeights(netuid=NETUID, weights=w), key)
        except bt.ChainError as exc:
            return exc.code
        return result.error.code if result.error else "ok"

    async def flow(client: Any) -> list[Any]:
        return [
            await attempt(client, Keypair.create_from_uri("//Nobody"), weights),
            await attempt(client, wallet_key("miner-00"), weights),  # registered, no permit
            await attempt(
                client, wallet_key("validator-1"), dict(list(weights.items())[:3])
            ),  # < min weights
            await attempt(client, wallet_key("validator-1"), weights),
            await attempt(client, wallet_key("validator-1"), weights),  # inside the rate limit
        ]

    codes = sdk(chain, flow)
    assert codes == ["not_registered", "not_authorized", "invalid_argument", "ok", "rate_limited"]
    refused = [e for e in chain.extrinsics(10) if not e["success"]]
    assert [e["error"].split(":")[0] for e in refused] == ["NeuronNoValidatorPermit"]
    chain.advance(100)
    assert sdk(chain, lambda c: attempt(c, wallet_key("validator-1"), weights)) == "ok"


def test_commit_reveal_stores_a_timelocked_commit(chain: DevChain) -> None:
    chain.put("SubtensorModule", "CommitRevealWeightsEnabled", [NETUID], True)
    weights = {uid(f"miner-{i:02d}"): 1.0 for i in range(8)}

    async def flow(client: Any) -> tuple[Any, Any]:
        result = await client.execute(
            bt.SetWeights(netuid=NETUID, weights=weights), wallet_key("validator-2")
        )
        return result, await client.weights.timelocked_weight_commits(NETUID)

    result, commits = sdk(chain, flow)
    assert result.success and result.data["reveal_round"] > 0
    (entry,) = [c for group in commits.values() for c in group]
    assert entry["hotkey"] == hotkey("validator-2") and entry["commit_block"] == chain.head()
    assert entry["reveal_round"] == result.data["reveal_round"]
    assert chain.read("SubtensorModule", "Weights", [NETUID, uid("validator-2")]) is None  # not revealed


def test_hash_commit_reveal_call_shapes(chain: DevChain) -> None:
    """The salted hash path: a raw ``commit_weights`` call, then the ``RevealWeights`` intent,
    which hashes over the SDK's ``normalize``d u16 values."""
    commit = bt.calls.SubtensorModule.commit_weights(netuid=NETUID, commit_hash="0x" + "00" * 32)
    assert commit[:2] == ("SubtensorModule", "commit_weights") and set(commit[2]) == {"netuid", "commit_hash"}
    uids, weights = [uid("miner-00"), uid("miner-01")], [1.0, 3.0]
    intent = bt.RevealWeights(netuid=NETUID, uids=uids, weights=weights, salt=[5, 6], version_key=2)
    plan = sdk(chain, lambda c: c.plan(intent, wallet_key("validator-0")))
    module, function, params = plan.call
    assert (module, function) == ("SubtensorModule", "reveal_weights")
    assert (params["uids"], params["values"]) == tuple(normalize(uids, weights))
    assert (params["netuid"], params["salt"], params["version_key"]) == (NETUID, [5, 6], 2)


def test_two_handles_on_one_file_share_blocks_and_weights(chain: DevChain, clock: Clock) -> None:
    other = DevChain(chain.path, clock)
    try:
        chain.advance(7)
        assert other.head() == chain.head()
        weights = {uid(f"miner-{i:02d}"): 1.0 for i in range(8)}
        sdk(
            other,
            lambda c: c.execute(bt.SetWeights(netuid=NETUID, weights=weights), wallet_key("validator-3")),
        )
        rows = sdk(chain, lambda c: c.weights.weights(NETUID))
        assert set(rows[uid("validator-3")]) == set(weights)
    finally:
        other.release()


def test_registration_on_a_full_subnet_replaces_the_weakest(chain: DevChain) -> None:
    chain.put("SubtensorModule", "MaxAllowedUids", [NETUID], len(SEED["neurons"]))
    newcomer = Keypair.create_from_uri("//Newcomer").ss58_address
    self_weight = {uid("miner-00"): 1.0}  # a self-weight needs no permit
    sdk(chain, lambda c: c.execute(bt.SetWeights(netuid=NETUID, weights=self_weight), wallet_key("miner-00")))
    assert chain.read("SubtensorModule", "Weights", [NETUID, uid("miner-00")]) == [[uid("miner-00"), 65535]]
    replaced = chain.register(NETUID, newcomer, newcomer)
    assert replaced == uid("miner-00")  # lowest stake, oldest, and not the subnet owner
    assert sdk(chain, lambda c: c.neurons.uid(newcomer, NETUID)) == replaced
    assert sdk(chain, lambda c: c.neurons.uid(hotkey("miner-00"), NETUID)) is None
    assert chain.read("SubtensorModule", "Weights", [NETUID, replaced]) is None
    with pytest.raises(PlatformError, match="already registered"):
        chain.register(NETUID, newcomer, newcomer)


def test_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="chain dev init"):
        DevChain(tmp_path / "none.db")


def test_advance_refuses_to_pass_the_last_block(chain: DevChain) -> None:
    head = chain.head()
    with pytest.raises(PlatformError, match=f"cannot advance by {2**32} blocks from block {head}"):
        chain.advance(2**32)
    assert chain.advance(2**32 - 1 - head) == 2**32 - 1
    with pytest.raises(PlatformError, match="the dev chain ends at block 4294967295"):
        chain.advance(1)


def test_a_head_past_the_last_block_is_a_clear_error(chain: DevChain, clock: Clock) -> None:
    clock.ms += 12_000 * 2**32  # the block clock alone runs past u32
    with pytest.raises(PlatformError, match="is past its last block 4294967295"):
        chain.head()
