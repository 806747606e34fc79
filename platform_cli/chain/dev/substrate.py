"""The bittensor SDK's ``Substrate`` protocol over a :class:`DevChain`.

Only what the SDK's reads and intents call is provided: storage reads (``query``,
``query_map``, ``query_batch``) at any block hash, the ``get_metagraph`` and
``get_next_epoch_start_block`` runtime calls, block numbers and hashes, ``compose``
(which checks that the arguments fit their SCALE types, as encoding would) and
``submit``, which dispatches the call through the dev chain's rules and answers with a
typed ``ExtrinsicResult`` as the RPC backend does: a pool rejection as the node's custom
error name, a dispatch error as the pallet's.
"""

from __future__ import annotations

from typing import Any

from platform_cli.chain.dev.chain import DevChain

SPEC_VERSION = 400
U16 = (0, 2**16 - 1)
U64 = (0, 2**64 - 1)
# The argument types of the calls the dev chain rules: name -> (kind, bounds).
SIGNATURES: dict[str, dict[str, tuple[str, tuple[int, int]]]] = {
    "set_mechanism_weights": {
        "netuid": ("int", U16),
        "mecid": ("int", (0, 255)),
        "dests": ("ints", U16),
        "weights": ("ints", U16),
        "version_key": ("int", U64),
    },
    "commit_weights": {"netuid": ("int", U16), "commit_hash": ("h256", U16)},
    "commit_mechanism_weights": {
        "netuid": ("int", U16),
        "mecid": ("int", (0, 255)),
        "commit_hash": ("h256", U16),
    },
    "reveal_weights": {
        "netuid": ("int", U16),
        "uids": ("ints", U16),
        "values": ("ints", U16),
        "salt": ("ints", U16),
        "version_key": ("int", U64),
    },
    "reveal_mechanism_weights": {
        "netuid": ("int", U16),
        "mecid": ("int", (0, 255)),
        "uids": ("ints", U16),
        "values": ("ints", U16),
        "salt": ("ints", U16),
        "version_key": ("int", U64),
    },
    "commit_timelocked_mechanism_weights": {
        "netuid": ("int", U16),
        "mecid": ("int", (0, 255)),
        "commit": ("bytes", U16),
        "reveal_round": ("int", U64),
        "commit_reveal_version": ("int", U16),
    },
}


def _fits(kind: str, bounds: tuple[int, int], value: Any) -> bool:
    low, high = bounds
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind == "ints":
        return isinstance(value, (list, tuple)) and all(_fits("int", bounds, v) for v in value)
    if kind == "h256":
        try:
            raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
        except (ValueError, TypeError):
            return False
        return len(raw) == 32
    return isinstance(value, (bytes, bytearray, str, list))


def check_encodable(call: Any) -> None:
    """Raise the SDK's error for a call whose arguments cannot be SCALE-encoded."""
    import bittensor as bt

    module, function, params = call
    signature = SIGNATURES.get(function) if module == "SubtensorModule" else None
    for name, (kind, bounds) in (signature or {}).items():
        if name in params and not _fits(kind, bounds, params[name]):
            raise bt.BittensorError(
                f"cannot encode {module}.{function}: {name} = {params[name]!r} does not fit its type"
            )


class DevSubstrate:
    def __init__(self, chain: DevChain) -> None:
        self.chain = chain
        self.token_symbols: dict[int, str] = {}

    def balance(self, rao: int, netuid: int = 0) -> Any:
        from bittensor.balance import Balance

        return Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    def _block(self, block_hash: Any) -> int | None:
        return None if block_hash is None else self.chain.block_of(block_hash)

    async def connect(self) -> None:
        self.chain.head()  # fails loudly if the file is unusable

    async def close(self) -> None:
        """The chain file stays open: ``DevChain.release`` closes it."""

    async def block_hash(self, block: int | None = None) -> str | None:
        head = self.chain.head()
        if block is not None and block > head:
            return None  # as a node answers for a block it has not seen
        return self.chain.block_hash_of(head if block is None else block)

    async def block_number(self) -> int:
        return self.chain.head()

    async def finalized_block_number(self) -> int:
        return self.chain.head()

    async def block_time(self) -> float:
        return max(self.chain.block_time_ms(), 1) / 1000

    async def spec_version(self) -> int:
        return SPEC_VERSION

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: Any = None
    ) -> Any:
        return self.chain.read(module, storage_function, list(params or []), self._block(block_hash))

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: Any = None
    ) -> list[tuple[Any, Any]]:
        return self.chain.read_map(module, storage_function, list(params or []), self._block(block_hash))

    async def map_has_entries(
        self, module: str, storage_function: str, params: list, block_hash: Any = None
    ) -> bool:
        return bool(
            self.chain.read_map(module, storage_function, list(params or []), self._block(block_hash))
        )

    async def query_batch(
        self, module: str, storage_function: str, param_sets: list[list], block_hash: Any = None
    ) -> list[Any]:
        block = self._block(block_hash)
        return [self.chain.read(module, storage_function, list(p), block) for p in param_sets]

    async def runtime_call(self, api: str, method: str, params: list, block_hash: Any = None) -> Any:
        block = self._block(block_hash)
        if (api, method) == ("SubnetInfoRuntimeApi", "get_metagraph"):
            return self.chain.metagraph(int(params[0]), block)
        if (api, method) == ("SubnetInfoRuntimeApi", "get_next_epoch_start_block"):
            state = self.chain.epoch(int(params[0]), block)
            return state.next_epoch_start_block() if state else None
        import bittensor as bt

        raise bt.ChainError(f"dev chain: runtime api {api}.{method} is not provided")

    async def constant(self, module: str, name: str) -> Any:
        return None

    async def events(self, block_hash: Any = None) -> list[dict]:
        return []

    async def compose(self, call: Any) -> Any:
        check_encodable(call)
        return call  # the generated (module, function, params) call is what ``submit`` dispatches

    async def estimate_fee(self, call: Any, keypair: Any) -> Any:
        from bittensor.balance import Balance

        return Balance.from_rao(0)

    async def account_next_index(self, address: str) -> int:
        return self.chain.nonce(address)

    async def submit(
        self,
        call: Any,
        keypair: Any,
        *,
        nonce: Any = None,
        period: Any = None,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> Any:
        import bittensor as bt

        module, function, params = call
        block, refusal = self.chain.apply(module, function, dict(params), keypair.ss58_address)
        if refusal is not None:
            message = f"{refusal.reported}: {refusal}" if refusal.reported != refusal.name else str(refusal)
            return bt.ExtrinsicResult(
                success=False, message=message, error=bt.ChainError(message, name=refusal.reported)
            )
        return bt.ExtrinsicResult(
            success=True,
            message="included in dev chain block",
            block_hash=self.chain.block_hash_of(block),
            extrinsic_id=f"{block}-0",
        )
