"""The dev chain rules ``set_mechanism_weights`` as the pallet does, rule by rule, through
the real SDK (``submit_call`` of the raw call, so nothing of the SDK's own preflight
stands in front of the chain's rules). docs/dev-chain.md lists the rules in this order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest
from bittensor.sp_core import Keypair

from platform_cli.chain.dev.chain import DevChain
from platform_cli.chain.dev.seed import init_dev_chain
from platform_cli.chain.dev.substrate import DevSubstrate
from platform_cli.core import weightrules
from platform_cli.core.aggregation import to_u16
from tests.chain_helpers import NETUID, SEED, WALLETS, hotkey, uid
from tests.conftest import FIXTURES

MINERS = [uid(f"miner-{i:02d}") for i in range(10)]


def key(name: str) -> Any:
    return bt.Wallet(name="devnet", hotkey=name, path=WALLETS).hotkey


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[DevChain]:
    dev = init_dev_chain(tmp_path / "dev.db", FIXTURES / "metagraph" / "devnet.json", block_time_ms=0)
    yield dev
    dev.release()


def submit(chain: DevChain, signer: Any, dests: list[int], weights: list[int], **kw: Any) -> str:
    """Submit a raw ``set_mechanism_weights``; 'ok' or the error name the node answers with."""
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=kw.get("netuid", NETUID),
        mecid=kw.get("mecid", 0),
        dests=dests,
        weights=weights,
        version_key=kw.get("version_key", 0),
    )

    async def go() -> Any:
        async with bt.Subtensor("local", substrate=DevSubstrate(chain)) as client:
            return await client.submit_call(call, signer, signer="hotkey")

    result = asyncio.run(go())
    return "ok" if result.success else str(result.error.name)


def stored(chain: DevChain, name: str) -> Any:
    return chain.read("SubtensorModule", "Weights", [NETUID, uid(name)])


def last_error(chain: DevChain) -> dict[str, Any]:
    return chain.extrinsics(1)[0]


TEN = [1] * 10


def test_weights_in_the_registration_block_are_rate_limited(chain: DevChain) -> None:
    newcomer = Keypair.create_from_uri("//Newcomer")
    new_uid = chain.register(NETUID, newcomer.ss58_address, newcomer.ss58_address)
    # a self-weight needs no permit, but LastUpdate was stamped at registration
    assert submit(chain, newcomer, [new_uid], [1]) == "RateLimitExceeded"
    assert (
        last_error(chain)["error"].startswith("SettingWeightsTooFast") and not last_error(chain)["included"]
    )
    chain.advance(SEED["hyperparameters"]["WeightsSetRateLimit"] - 1)
    assert submit(chain, newcomer, [new_uid], [1]) == "RateLimitExceeded"
    chain.advance(1)
    assert submit(chain, newcomer, [new_uid], [1]) == "ok"


def test_the_max_weight_check_is_the_pallets_fixed_point_one(chain: DevChain) -> None:
    chain.put("SubtensorModule", "MaxWeightsLimit", [NETUID], 32767)
    chain.put("SubtensorModule", "MinAllowedWeights", [NETUID], 1)
    sdk_row = [639, 13594, 7, 51296, 65535]  # max * 65535 / sum = 32767.25: refused, not rounded down
    assert submit(chain, key("validator-0"), MINERS[:5], sdk_row) == "MaxWeightExceeded"
    ours = to_u16(dict(zip(MINERS[:5], sdk_row, strict=True)), 32767)
    assert submit(chain, key("validator-0"), sorted(ours), [ours[u] for u in sorted(ours)]) == "ok"
    assert dict(map(tuple, stored(chain, "validator-0"))) == ours


def test_a_max_weights_limit_of_zero_refuses_all_but_a_self_weight(chain: DevChain) -> None:
    chain.put("SubtensorModule", "MaxWeightsLimit", [NETUID], 0)
    chain.put("SubtensorModule", "MinAllowedWeights", [NETUID], 1)
    assert submit(chain, key("validator-0"), MINERS, TEN) == "MaxWeightExceeded"
    assert submit(chain, key("validator-1"), [uid("validator-1")], [5]) == "ok"


def test_min_allowed_weights_counts_entries_zeros_included_and_at_most_the_subnet(chain: DevChain) -> None:
    # eight entries, four of them zero: the pallet counts entries
    assert submit(chain, key("validator-0"), MINERS[:8], [5, 0, 5, 0, 5, 0, 5, 0]) == "ok"
    assert [w for _, w in stored(chain, "validator-0")] == [
        65535,
        0,
        65535,
        0,
        65535,
        0,
        65535,
        0,
    ]  # zeros kept
    assert submit(chain, key("validator-1"), MINERS[:7], [1] * 7) == "WeightVecLengthIsLow"
    chain.put("SubtensorModule", "MinAllowedWeights", [NETUID], 10_000)  # more than the subnet holds
    everyone = list(range(len(SEED["neurons"])))
    chain.advance(100)
    assert submit(chain, key("validator-2"), everyone, [1] * len(everyone)) == "ok"
    assert (
        submit(chain, key("validator-3"), everyone[:-1], [1] * (len(everyone) - 1)) == "WeightVecLengthIsLow"
    )


def test_a_rate_limited_short_vector_gets_the_rate_limit_first(chain: DevChain) -> None:
    assert submit(chain, key("validator-0"), MINERS, TEN) == "ok"
    assert (
        submit(chain, key("validator-0"), MINERS[:1], [1]) == "RateLimitExceeded"
    )  # not WeightVecLengthIsLow


def test_stake_below_the_threshold_is_rejected_in_the_pool_and_the_owner_is_exempt(chain: DevChain) -> None:
    chain.put("SubtensorModule", "StakeThreshold", [], 30_000 * 10**9)
    before = chain.nonce(hotkey("validator-2"))
    assert submit(chain, key("validator-2"), MINERS, TEN) == "StakeAmountTooLow"  # 20,000 TAO staked
    assert (
        last_error(chain)["error"].startswith("NotEnoughStakeToSetWeights")
        and not last_error(chain)["included"]
    )
    assert chain.nonce(hotkey("validator-2")) == before  # not included: no nonce spent
    assert submit(chain, key("validator-0"), MINERS, TEN) == "ok"  # 40,000 TAO
    assert submit(chain, key("sudo"), MINERS, TEN) == "ok"  # the subnet owner: 0 TAO, exempt


def test_permits_come_with_the_epoch_not_with_the_stake(chain: DevChain) -> None:
    chain.set_stake(NETUID, hotkey("miner-00"), 10**6 * 10**9)
    assert submit(chain, key("miner-00"), MINERS[1:9], [1] * 8) == "NeuronNoValidatorPermit"
    state = chain.epoch(NETUID)
    assert state is not None
    chain.advance(state.next_epoch_start_block() - chain.head())
    assert submit(chain, key("miner-00"), MINERS[1:9], [1] * 8) == "ok"


Case = tuple[str, Callable[[DevChain], None], str, list[int], list[int], dict[str, Any], str]


def _nothing(chain: DevChain) -> None:
    pass


def _set(item: str, params: list[Any], value: Any) -> Callable[[DevChain], None]:
    return lambda chain: chain.put("SubtensorModule", item, params, value)


CASES: list[Case] = [
    (
        "CommitRevealEnabled",
        _set("CommitRevealWeightsEnabled", [NETUID], True),
        "validator-0",
        MINERS,
        TEN,
        {},
        "dispatch",
    ),
    ("CanNotSetRootNetworkWeights", _nothing, "validator-0", MINERS, TEN, {"netuid": 0}, "dispatch"),
    ("WeightVecNotEqualSize", _nothing, "validator-0", MINERS, [1] * 9, {}, "dispatch"),
    ("MechanismDoesNotExist", _nothing, "validator-0", MINERS, TEN, {"mecid": 1}, "dispatch"),
    ("UidsLengthExceedUidsInSubNet", _nothing, "validator-0", list(range(43)), [1] * 43, {}, "dispatch"),
    ("HotKeyNotRegisteredInSubNet", _nothing, "//Stranger", MINERS, TEN, {}, "dispatch"),
    (
        "IncorrectWeightVersionKey",
        _set("WeightsVersionKey", [NETUID], 7),
        "validator-0",
        MINERS,
        TEN,
        {"version_key": 6},
        "dispatch",
    ),
    ("NeuronNoValidatorPermit", _nothing, "miner-00", MINERS[1:9], [1] * 8, {}, "dispatch"),
    ("DuplicateUids", _nothing, "validator-0", [*MINERS[:9], MINERS[0]], TEN, {}, "dispatch"),
    ("UidVecContainInvalidOne", _nothing, "validator-0", [*MINERS[:9], 4000], TEN, {}, "dispatch"),
    ("WeightVecLengthIsLow", _nothing, "validator-0", MINERS[:7], [1] * 7, {}, "dispatch"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_dispatch_rule_refuses_with_its_error_name(chain: DevChain, case: Case) -> None:
    name, setup, signer, dests, weights, kw, stage = case
    setup(chain)
    who = Keypair.create_from_uri(signer) if signer.startswith("//") else key(signer)
    assert submit(chain, who, dests, weights, **kw) == name
    assert last_error(chain)["error"].startswith(name) and last_error(chain)["included"] == (
        stage == "dispatch"
    )
    assert chain.read("SubtensorModule", "Weights", [NETUID, uid("validator-0")]) is None


def test_several_broken_rules_give_the_first_in_the_pallets_order(chain: DevChain) -> None:
    chain.put("SubtensorModule", "WeightsVersionKey", [NETUID], 7)
    # an old version key, no permit, duplicate uids and too few: the version key comes first
    assert (
        submit(chain, key("miner-00"), [MINERS[1], MINERS[1]], [1, 1], version_key=1)
        == "IncorrectWeightVersionKey"
    )
    view = weightrules.ChainView(
        block=2000, subnet_exists=True, mechanism_count=1, subnet_n=42, uid=6, owner_uid=0, stake=0,
        stake_threshold=10, required_version_key=7, commit_reveal=False, rate_limit=100, last_update=1950,
        permit=False, min_allowed_weights=8, max_weight_limit=1000,
    )  # fmt: skip
    call = weightrules.WeightsCall(NETUID, 0, (7, 7), (1, 65535), 1)
    assert [r.name for r in weightrules.refusals(view, call)] == [
        "NotEnoughStakeToSetWeights",
        "SettingWeightsTooFast",
        "IncorrectWeightVersionKey",
        "NeuronNoValidatorPermit",
        "DuplicateUids",
        "WeightVecLengthIsLow",
        "MaxWeightExceeded",
    ]
    assert [r.stage for r in weightrules.refusals(view, call)][:2] == ["pool", "pool"]


def test_arguments_that_do_not_fit_their_types_are_never_sent(chain: DevChain) -> None:
    with pytest.raises(bt.BittensorError, match="weights = \\[70000\\] does not fit its type"):
        submit(chain, key("validator-0"), [MINERS[0]], [70000])
    assert chain.extrinsics() == []


def test_a_replaced_neuron_loses_its_weights_and_the_weights_for_it(chain: DevChain) -> None:
    assert submit(chain, key("validator-0"), MINERS, TEN) == "ok"
    assert submit(chain, key("miner-00"), [uid("miner-00")], [1]) == "ok"
    chain.put("SubtensorModule", "MaxAllowedUids", [NETUID], len(SEED["neurons"]))
    newcomer = Keypair.create_from_uri("//Newcomer").ss58_address
    replaced = chain.register(NETUID, newcomer, newcomer)
    assert replaced == uid("miner-00")
    assert chain.read("SubtensorModule", "Weights", [NETUID, replaced]) is None
    assert dict(map(tuple, stored(chain, "validator-0")))[replaced] == 0  # clear_neuron zeroes weights for it
