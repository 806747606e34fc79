"""Salted hash commit-reveal on the dev chain, through the real bittensor SDK.

The commit is the raw ``commit_weights`` call (the SDK has no intent for the hash
commit: its ``CommitWeights`` is the timelocked one), the reveal is the SDK's
``RevealWeights`` intent. The commit hash is built here from the pallet's definition,
independently of the dev chain's own implementation.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bittensor as bt
import bittensor_core
import pytest
from bittensor.intents.weights import normalize

from platform_cli.chain.dev import rules as devrules
from platform_cli.chain.dev.chain import DevChain
from platform_cli.chain.dev.seed import init_dev_chain
from platform_cli.chain.dev.substrate import DevSubstrate
from tests.chain_helpers import NETUID, WALLETS, hotkey, uid
from tests.conftest import FIXTURES

TEMPO = 20
UIDS = [uid(f"miner-{i:02d}") for i in range(8)]
WEIGHTS = [float(i + 1) for i in range(8)]
SALT = [7, 1, 4, 4, 0, 65535, 12, 9]
VERSION_KEY = 3


def key(name: str) -> Any:
    return bt.Wallet(name="devnet", hotkey=name, path=WALLETS).hotkey


def _vec(items: list[int]) -> bytes:
    assert len(items) < 1 << 14
    prefix = bytes([len(items) << 2]) if len(items) < 64 else struct.pack("<H", (len(items) << 2) | 1)
    return prefix + b"".join(struct.pack("<H", i) for i in items)


def pallet_hash(
    ss58: str, netuid: int, uids: list[int], values: list[int], salt: list[int], version: int
) -> str:
    """``BlakeTwo256::hash_of(&(who, netuid_index, uids, values, salt, version_key))``."""
    preimage = (
        bytes(bittensor_core.ss58_decode(ss58))
        + struct.pack("<H", netuid)
        + _vec(uids)
        + _vec(values)
        + _vec(salt)
        + struct.pack("<Q", version)
    )
    return "0x" + hashlib.blake2b(preimage, digest_size=32).hexdigest()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[DevChain]:
    dev = init_dev_chain(
        tmp_path / "dev.db",
        FIXTURES / "metagraph" / "devnet.json",
        block_time_ms=0,  # the head moves only with advance()
        tempo=TEMPO,
        hyperparameters={"CommitRevealWeightsEnabled": True, "RevealPeriodEpochs": 1},
    )
    yield dev
    dev.release()


def sdk(chain: DevChain, coro_fn: Any) -> Any:
    async def go() -> Any:
        async with bt.Subtensor("local", substrate=DevSubstrate(chain)) as client:
            return await coro_fn(client)

    return asyncio.run(go())


def outcome(result: Any) -> str:
    return "ok" if result.success else f"{result.error.name}/{result.error.code.value}"


async def commit(client: Any, name: str, salt: list[int] = SALT) -> Any:
    values = normalize(UIDS, WEIGHTS)[1]
    digest = pallet_hash(hotkey(name), NETUID, UIDS, values, salt, VERSION_KEY)
    call = bt.calls.SubtensorModule.commit_weights(netuid=NETUID, commit_hash=digest)
    return await client.submit_call(call, key(name), signer="hotkey")


async def reveal(client: Any, name: str, salt: list[int] = SALT, weights: list[float] = WEIGHTS) -> Any:
    intent = bt.RevealWeights(netuid=NETUID, uids=UIDS, weights=weights, salt=salt, version_key=VERSION_KEY)
    try:
        return await client.execute(intent, key(name))
    except bt.ChainError as exc:  # the SDK may raise instead of returning a failed result
        return bt.ExtrinsicResult(success=False, message=str(exc), error=exc)


def reveal_window(chain: DevChain, commit_block: int) -> tuple[int, int]:
    """The blocks of the epoch after the commit's (RevealPeriodEpochs = 1), from the chain's
    schedule: the next epoch runs at ``LastEpochBlock + tempo``, then every ``tempo`` blocks."""
    state = chain.epoch(NETUID, commit_block)
    assert state is not None and state.pending_epoch_at == 0
    first = state.last_epoch_block + TEMPO
    return first, first + TEMPO - 1


def advance_to(chain: DevChain, block: int) -> None:
    assert block >= chain.head()
    chain.advance(block - chain.head())


def test_commit_then_reveal_in_the_reveal_epoch_sets_the_weights(chain: DevChain) -> None:
    committed = sdk(chain, lambda c: commit(c, "validator-0"))
    assert committed.success
    commit_block = chain.head()
    (entry,) = chain.read("SubtensorModule", "WeightCommits", [NETUID, hotkey("validator-0")])
    first, _ = reveal_window(chain, commit_block)
    epoch = chain.read("SubtensorModule", "SubnetEpochIndex", [NETUID])
    assert entry[1:] == [epoch, commit_block, 0]  # (hash, commit epoch, commit block, unused)
    assert chain.pending_commits(NETUID)["hash_commits"] == 1

    advance_to(chain, first - 1)
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-0"))) == "RevealTooEarly/too_early"
    advance_to(chain, first)
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-0"))) == "ok"

    u16 = dict(zip(*normalize(UIDS, WEIGHTS), strict=True))
    assert chain.read("SubtensorModule", "Weights", [NETUID, uid("validator-0")]) == [
        [u, v] for u, v in u16.items()
    ]
    on_chain = sdk(chain, lambda c: c.weights.weights(NETUID))[uid("validator-0")]
    total = sum(u16.values())
    assert set(on_chain) == set(UIDS)
    assert all(on_chain[u] == pytest.approx(v / total, abs=1e-6) for u, v in u16.items())
    # LastUpdate is the commit block: subtensor stamps it at commit time while commit-reveal is on
    assert chain.read("SubtensorModule", "LastUpdate", [NETUID])[uid("validator-0")] == commit_block
    assert chain.read("SubtensorModule", "WeightCommits", [NETUID, hotkey("validator-0")]) is None
    assert chain.pending_commits(NETUID)["hash_commits"] == 0
    # revealing the same commit twice finds nothing (the pool's check_reveal)
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-0"))) == "NoWeightsCommitFound/not_found"


def test_the_last_block_of_the_window_still_reveals(chain: DevChain) -> None:
    assert sdk(chain, lambda c: commit(c, "validator-1")).success
    advance_to(chain, reveal_window(chain, chain.head())[1])
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-1"))) == "ok"


def test_a_wrong_salt_or_weights_is_refused_and_the_commit_survives(chain: DevChain) -> None:
    assert sdk(chain, lambda c: commit(c, "validator-1")).success
    advance_to(chain, reveal_window(chain, chain.head())[0])
    # the transaction extension finds no commit with that hash: the pool rejects it
    wrong_salt = sdk(chain, lambda c: reveal(c, "validator-1", salt=[*SALT[:-1], SALT[-1] + 1]))
    assert outcome(wrong_salt) == "NoWeightsCommitFound/not_found"
    wrong_weights = sdk(chain, lambda c: reveal(c, "validator-1", weights=[*WEIGHTS[:-1], 1.0]))
    assert outcome(wrong_weights) == "NoWeightsCommitFound/not_found"
    assert chain.read("SubtensorModule", "Weights", [NETUID, uid("validator-1")]) is None
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-1"))) == "ok"


def test_a_reveal_after_the_reveal_epoch_is_refused_and_the_commit_expires(chain: DevChain) -> None:
    assert sdk(chain, lambda c: commit(c, "validator-2")).success
    advance_to(chain, reveal_window(chain, chain.head())[1] + 1)
    # check_reveal runs before dispatch: the stored commit is outside its reveal epoch
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-2"))) == "RevealTooEarly/too_early"
    assert chain.read("SubtensorModule", "Weights", [NETUID, uid("validator-2")]) is None
    chain.advance(100)  # past the rate limit: a new commit drops the expired one
    assert sdk(chain, lambda c: commit(c, "validator-2", salt=[1])).success
    assert len(chain.read("SubtensorModule", "WeightCommits", [NETUID, hotkey("validator-2")])) == 1


def test_no_commit_or_another_hotkeys_commit_is_refused(chain: DevChain) -> None:
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-3"))) == "NoWeightsCommitFound/not_found"
    assert sdk(chain, lambda c: commit(c, "validator-3")).success
    advance_to(chain, reveal_window(chain, chain.head())[0])
    # the same uids, weights and salt from another hotkey hash differently and find no commit
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-4"))) == "NoWeightsCommitFound/not_found"


def test_commits_follow_the_rate_limit_and_the_subnet_setting(chain: DevChain) -> None:
    assert sdk(chain, lambda c: commit(c, "validator-0")).success
    again = sdk(chain, lambda c: commit(c, "validator-0", salt=[1]))
    assert outcome(again) == "RateLimitExceeded/rate_limited"  # CommittingWeightsTooFast, in the pool
    assert "CommittingWeightsTooFast" in again.message
    chain.put("SubtensorModule", "CommitRevealWeightsEnabled", [NETUID], False)
    assert outcome(sdk(chain, lambda c: commit(c, "validator-1"))) == "CommitRevealDisabled/disabled"
    # the pool's check_reveal comes first: the commit is not in its reveal epoch yet
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-0"))) == "RevealTooEarly/too_early"
    advance_to(chain, reveal_window(chain, chain.head())[0])
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-0"))) == "CommitRevealDisabled/disabled"


def test_timelocked_commits_are_reported_as_never_revealed(chain: DevChain) -> None:
    weights = dict(zip(UIDS, WEIGHTS, strict=True))
    result = sdk(
        chain, lambda c: c.execute(bt.SetWeights(netuid=NETUID, weights=weights), key("validator-2"))
    )
    assert result.success and result.data["reveal_round"] > 0
    chain.advance(3 * (TEMPO + 1))  # epochs pass: still nothing revealed
    assert chain.pending_commits(NETUID) == {"hash_commits": 0, "timelocked_commits_never_revealed": 1}
    assert chain.read("SubtensorModule", "Weights", [NETUID, uid("validator-2")]) is None


def test_the_commit_hash_is_the_pallets_scale_encoding() -> None:
    who = hotkey("validator-0")
    long_salt = list(range(70))  # a length of 64 or more takes a two-byte compact prefix
    for salt in (SALT, long_salt, []):
        expected = pallet_hash(who, NETUID, UIDS, [1, 2, 3, 4, 5, 6, 7, 8], salt, 2**64 - 1)
        got = devrules.commit_hash(
            bittensor_core.ss58_decode(who), NETUID, UIDS, [1, 2, 3, 4, 5, 6, 7, 8], salt, 2**64 - 1
        )
        assert got == expected
    assert devrules._compact(2**14) == struct.pack("<I", (2**14 << 2) | 2)


def test_the_commit_queue_is_bounded_and_a_reveal_drops_older_commits(chain: DevChain) -> None:
    chain.put("SubtensorModule", "WeightsSetRateLimit", [NETUID], 0)
    salts = [[i] for i in range(devrules.MAX_UNREVEALED_COMMITS)]
    for salt in salts:
        assert sdk(chain, lambda c, s=salt: commit(c, "validator-0", salt=s)).success
    eleventh = sdk(chain, lambda c: commit(c, "validator-0", salt=[99]))
    assert outcome(eleventh) == "TooManyUnrevealedCommits/limit_exceeded"
    with pytest.raises(bt.BittensorError, match="commit_hash = '0x1234' does not fit its type"):
        sdk(
            chain,
            lambda c: c.submit_call(
                bt.calls.SubtensorModule.commit_weights(netuid=NETUID, commit_hash="0x1234"),
                key("validator-1"),
                signer="hotkey",
            ),
        )

    first, last = reveal_window(chain, chain.head())
    advance_to(chain, first)
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-0", salt=salts[2]))) == "ok"
    left = chain.read("SubtensorModule", "WeightCommits", [NETUID, hotkey("validator-0")])
    assert len(left) == len(salts) - 3  # the revealed commit and the ones before it are gone
    assert outcome(sdk(chain, lambda c: reveal(c, "validator-0", salt=salts[0]))) == (
        "NoWeightsCommitFound/not_found"
    )

    advance_to(chain, last + 1)  # every commit has expired: a new one finds room again
    assert sdk(chain, lambda c: commit(c, "validator-0", salt=[99])).success
    assert len(chain.read("SubtensorModule", "WeightCommits", [NETUID, hotkey("validator-0")])) == 1


def test_a_mechanism_commit_hashes_over_its_storage_index(chain: DevChain) -> None:
    chain.put("SubtensorModule", "MechanismCountCurrent", [NETUID], 2)
    index = devrules.storage_index(NETUID, 1) - NETUID + NETUID  # mechanism 1
    values = normalize(UIDS, WEIGHTS)[1]
    digest = pallet_hash(hotkey("validator-0"), index, UIDS, values, SALT, VERSION_KEY)
    calls = bt.calls.SubtensorModule

    async def submit(c: Any, call: Any) -> Any:
        return await c.submit_call(call, key("validator-0"), signer="hotkey")

    committed = sdk(
        chain, lambda c: submit(c, calls.commit_mechanism_weights(netuid=NETUID, mecid=1, commit_hash=digest))
    )
    assert committed.success
    advance_to(chain, reveal_window(chain, chain.head())[0])
    revealed = sdk(
        chain,
        lambda c: submit(
            c,
            calls.reveal_mechanism_weights(
                netuid=NETUID, mecid=1, uids=UIDS, values=values, salt=SALT, version_key=VERSION_KEY
            ),
        ),
    )
    assert outcome(revealed) == "ok"
    rows = sdk(chain, lambda c: c.weights.weights(NETUID, mechid=1))
    assert set(rows[uid("validator-0")]) == set(UIDS)
    assert uid("validator-0") not in sdk(chain, lambda c: c.weights.weights(NETUID))
