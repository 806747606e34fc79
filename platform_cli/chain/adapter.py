"""The chain through the bittensor SDK: ``bittensor.Subtensor(network, substrate=...)`` only.

Every call runs under a deadline (``[chain] timeout_s``); a connection failure or a
missed deadline drops the client, backs off and reconnects, up to ``retries`` times,
then raises :class:`ChainUnavailable`. Chain-side refusals (rate limit, unregistered
hotkey, no permit) are not retried: they become :class:`WeightsRefused` with the reason.
Submissions are never retried blindly: a lost answer could hide an included extrinsic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from platform_cli.chain.settings import ChainSettings
from platform_cli.core.epoch import backoff_ms
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer
from platform_cli.state.metagraph import Neuron, Snapshot

log = logging.getLogger("platform.chain")
T = TypeVar("T")
MECHANISM_STRIDE = 4096


class ChainUnavailable(PlatformError):
    """The endpoint did not answer in time or the connection failed."""


class WeightsRefused(PlatformError):
    """The chain (or the SDK's preflight of the chain's rules) refused the weights."""


class SubmissionUnknown(ChainUnavailable):
    """The link failed while the extrinsic was in flight: it may or may not be included."""


@dataclass(frozen=True)
class Hyperparams:
    netuid: int
    block: int
    tempo: int
    max_weight_limit: int
    min_allowed_weights: int
    weights_rate_limit: int
    commit_reveal: bool
    mechanism_count: int
    owner_hotkey: str


@dataclass(frozen=True)
class Submission:
    path: str  # "set" (plain weights) | "commit" (timelocked commit-reveal)
    block: int
    u16: dict[int, int]
    effects: tuple[str, ...]
    message: str
    reveal_round: int | None = None


class HotkeySigner:
    """A platform key in the shape of the SDK's ``Signer`` protocol (the hotkey signs)."""

    def __init__(self, signer: Signer) -> None:
        import bittensor_core

        self._signer = signer
        self.ss58_address = signer.ss58
        self.public_key = bytes(bittensor_core.ss58_decode(signer.ss58))
        self.crypto_type = (
            bittensor_core.CRYPTO_SR25519 if signer.scheme == "sr25519" else bittensor_core.CRYPTO_ED25519
        )

    def sign(self, payload: bytes) -> bytes:
        return self._signer.sign(bytes(payload))


class ChainClient:
    """One connection to the configured network, with deadlines and reconnects."""

    def __init__(self, settings: ChainSettings, substrate: Any = None) -> None:
        self.settings = settings
        self._substrate = substrate
        self._owns_substrate = False
        if substrate is None and settings.is_dev:
            from platform_cli.chain.devchain import DevChain
            from platform_cli.chain.devsubstrate import DevSubstrate

            self._substrate = DevSubstrate(DevChain(settings.dev_db))
            self._owns_substrate = True
        self._client: Any = None

    @property
    def label(self) -> str:
        return "dev" if self.settings.is_dev else self.settings.network

    async def __aenter__(self) -> ChainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._drop()
        if self._owns_substrate:
            self._substrate.chain.release()

    async def _connect(self) -> Any:
        import bittensor as bt

        network = "local" if self.settings.is_dev else self.settings.network
        subtensor = (
            bt.Subtensor(network, substrate=self._substrate) if self._substrate else bt.Subtensor(network)
        )
        return await subtensor.__aenter__()

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), self.settings.timeout_s)
            except Exception as exc:  # closing a dead link must not mask the cause
                log.debug("chain.close_failed network=%s error=%s", self.label, exc)

    async def call(self, what: str, fn: Callable[[Any], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn(client)`` under the deadline, reconnecting on transport failures."""
        attempts = self.settings.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                if self._client is None:
                    self._client = await asyncio.wait_for(self._connect(), self.settings.timeout_s)
                return await asyncio.wait_for(fn(self._client), self.settings.timeout_s)
            except _transport_errors() as exc:
                reason = (
                    f"no answer within {self.settings.timeout_s:g}s"
                    if isinstance(exc, asyncio.TimeoutError)
                    else exc
                )
                log.warning(
                    "chain.call_failed network=%s call=%s attempt=%d error=%s",
                    self.label,
                    what,
                    attempt,
                    reason,
                )
                await self._drop()
                if attempt + 1 >= attempts:
                    raise ChainUnavailable(f"chain {self.label}: {what} failed: {reason}") from None
                await asyncio.sleep(backoff_ms(attempt, base_ms=250, cap_ms=5_000) / 1000)
        raise AssertionError("unreachable")

    # -- reads ---------------------------------------------------------------------------
    async def block(self) -> int:
        return await self.call("block", lambda c: c.block())

    async def metagraph(self, netuid: int) -> tuple[Snapshot, Hyperparams]:
        async def read(client: Any) -> tuple[Snapshot, Hyperparams]:
            graph = await client.subnets.metagraph(netuid, commitments=False)
            if graph is None:
                raise PlatformError(f"netuid {netuid} does not exist on chain {self.label}")
            view = await client.at(graph.block)
            values = await asyncio.gather(
                view.read("max_weight_limit", netuid=netuid),
                view.read("min_allowed_weights", netuid=netuid),
                view.read("weights_rate_limit", netuid=netuid),
                view.read("commit_reveal_enabled", netuid=netuid),
                view.read("mechanism_count", netuid=netuid),
            )
            neurons = tuple(
                Neuron(n.uid, n.hotkey, n.coldkey, int(n.total_stake.rao), bool(n.validator_permit))
                for n in graph.neurons
            )
            max_w, min_w, rate, cr, mechs = values
            hyper = Hyperparams(
                netuid,
                graph.block,
                int(graph.tempo),
                int(max_w if max_w is not None else 65535),
                int(min_w or 0),
                int(rate or 0),
                bool(cr),
                max(1, int(mechs or 1)),
                str(graph.owner_hotkey or ""),
            )
            return Snapshot(netuid, graph.block, int(graph.tempo), neurons), hyper

        return await self.call(f"metagraph({netuid})", read)

    async def weights_row(self, netuid: int, mechid: int, uid: int) -> tuple[dict[int, int], int]:
        """The raw u16 row our uid has on chain and its LastUpdate block."""
        index = mechid * MECHANISM_STRIDE + netuid

        async def read(client: Any) -> tuple[dict[int, int], int]:
            row = await client.query(("SubtensorModule", "Weights"), [index, uid])
            last = await client.query(("SubtensorModule", "LastUpdate"), [index])
            updated = int(last[uid]) if isinstance(last, (list, tuple)) and uid < len(last) else 0
            return {int(d): int(w) for d, w in row or []}, updated

        return await self.call("weights read-back", read)

    async def pending_commits(self, netuid: int, mechid: int, hotkey: str) -> list[dict[str, Any]]:
        async def read(client: Any) -> list[dict[str, Any]]:
            grouped = await client.weights.timelocked_weight_commits(netuid, mechid)
            return [c for commits in grouped.values() for c in commits if c["hotkey"] == hotkey]

        return await self.call("commit read-back", read)

    # -- weights -------------------------------------------------------------------------
    async def set_weights(
        self,
        netuid: int,
        weights: dict[int, int],
        signer: Signer,
        *,
        mechid: int,
        version_key: int,
        dry_run: bool,
    ) -> Submission:
        """Plan (and unless ``dry_run``, execute) the SDK's ``SetWeights`` intent."""
        import bittensor as bt

        intent = bt.SetWeights(
            netuid=netuid,
            weights={uid: float(w) for uid, w in weights.items()},
            mechid=mechid,
            version_key=version_key,
        )
        wallet = HotkeySigner(signer)
        try:
            plan = await self.call("plan weights", lambda c: c.plan(intent, wallet))
            effects = tuple(plan.effects) + tuple(f"warning: {w}" for w in plan.warnings)
            reveal_round = (plan.extras or {}).get("reveal_round")
            path = "commit" if reveal_round is not None else "set"
            params = _call_params(plan.call)
            u16 = (
                dict(zip(params.get("dests", []), params.get("weights", []), strict=True))
                if path == "set"
                else {}
            )
            head = await self.block()
            if dry_run:
                return Submission(path, head, u16, effects, "dry run: nothing submitted", reveal_round)
            try:
                result = await self.call("submit weights", lambda c: c.execute(intent, wallet), retry=False)
            except ChainUnavailable as exc:
                raise SubmissionUnknown(str(exc)) from None
        except bt.ChainError as exc:
            raise _refusal(exc, signer.ss58, netuid) from None
        except bt.BittensorError as exc:
            raise WeightsRefused(f"weights for netuid {netuid} not submitted: {exc}") from None
        if not result.success:
            raise _refusal(result.error or bt.ChainError(result.message), signer.ss58, netuid)
        block = int(str(result.extrinsic_id).split("-")[0]) if result.extrinsic_id else await self.block()
        return Submission(path, block, u16, effects, result.message, (result.data or {}).get("reveal_round"))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Failures of the link, not of the request: worth a reconnect."""
    from bittensor._transport.errors import SubstrateRequestException
    from bittensor.result import ConnectionNotReady, RpcConnectionError
    from websockets.exceptions import WebSocketException

    return (
        asyncio.TimeoutError,
        OSError,
        RpcConnectionError,
        ConnectionNotReady,
        SubstrateRequestException,
        WebSocketException,
    )


def _call_params(call: Any) -> dict[str, Any]:
    """The parameters of a built call: the generated ``(module, function, params)`` tuple
    when the backend keeps it (the dev chain); {} for an opaque composed call."""
    if isinstance(call, tuple) and len(call) == 3 and isinstance(call[2], dict):
        return call[2]
    return {}


def _refusal(exc: Any, hotkey: str, netuid: int) -> WeightsRefused:
    from bittensor.error_map import ErrorCode

    code = getattr(exc, "code", None)
    if code is ErrorCode.NOT_REGISTERED:
        return WeightsRefused(f"hotkey {hotkey} is not registered on netuid {netuid}: weights not submitted")
    if code is ErrorCode.RATE_LIMITED:
        return WeightsRefused(f"rate limited on netuid {netuid}: {exc} Weights not submitted.")
    if code is ErrorCode.NOT_AUTHORIZED:
        return WeightsRefused(
            f"hotkey {hotkey} holds no validator permit on netuid {netuid}: weights not submitted ({exc})"
        )
    return WeightsRefused(f"the chain refused the weights for netuid {netuid}: {exc}")


def run(coro: Awaitable[T]) -> T:
    """Run one chain conversation from blocking code."""
    return asyncio.run(coro)  # type: ignore[arg-type]
