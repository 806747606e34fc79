"""The bittensor SDK's ``Substrate`` protocol over a :class:`DevChain`.

Only what the SDK's reads and intents call is provided: storage reads (``query``,
``query_map``, ``query_batch``), the ``get_metagraph`` runtime call, block numbers and
hashes, and ``submit``, which dispatches the generated call through the dev chain's
rules and answers with a typed ``ExtrinsicResult`` as the RPC backend does.
"""

from __future__ import annotations

from typing import Any

from platform_cli.chain.devchain import DevChain

SPEC_VERSION = 400


class DevSubstrate:
    def __init__(self, chain: DevChain) -> None:
        self.chain = chain
        self.token_symbols: dict[int, str] = {}

    def balance(self, rao: int, netuid: int = 0) -> Any:
        from bittensor.balance import Balance

        return Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    async def connect(self) -> None:
        self.chain.head()  # fails loudly if the file is unusable

    async def close(self) -> None:
        """The chain file stays open: ``DevChain.release`` closes it."""

    async def block_hash(self, block: int | None = None) -> str:
        return self.chain.block_hash_of(self.chain.head() if block is None else block)

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
        return self.chain.read(module, storage_function, list(params or []))

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: Any = None
    ) -> list[tuple[Any, Any]]:
        return self.chain.read_map(module, storage_function, list(params or []))

    async def map_has_entries(
        self, module: str, storage_function: str, params: list, block_hash: Any = None
    ) -> bool:
        return bool(self.chain.read_map(module, storage_function, list(params or [])))

    async def query_batch(
        self, module: str, storage_function: str, param_sets: list[list], block_hash: Any = None
    ) -> list[Any]:
        return [self.chain.read(module, storage_function, list(p)) for p in param_sets]

    async def runtime_call(self, api: str, method: str, params: list, block_hash: Any = None) -> Any:
        if (api, method) == ("SubnetInfoRuntimeApi", "get_metagraph"):
            return self.chain.metagraph(int(params[0]))
        import bittensor as bt

        raise bt.ChainError(f"dev chain: runtime api {api}.{method} is not provided")

    async def constant(self, module: str, name: str) -> Any:
        return None

    async def events(self, block_hash: Any = None) -> list[dict]:
        return []

    async def compose(self, call: Any) -> Any:
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
        from bittensor.error_map import NAME_TO_CODE

        module, function, params = call
        block, error = self.chain.apply(module, function, dict(params), keypair.ss58_address)
        if error:
            name = error.split(":", 1)[0]
            return bt.ExtrinsicResult(
                success=False,
                message=error,
                error=bt.ChainError(error, name=name, code=NAME_TO_CODE.get(name)),
            )
        return bt.ExtrinsicResult(
            success=True,
            message="included in dev chain block",
            block_hash=self.chain.block_hash_of(block),
            extrinsic_id=f"{block}-0",
        )
