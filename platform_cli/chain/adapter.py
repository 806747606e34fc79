"""The chain through the bittensor SDK: ``bittensor.Subtensor(network, substrate=...)`` only.

Deadlines. Every attempt of a call runs under ``[chain] timeout_s``. A transport
failure or a missed deadline drops the connection, waits (0.25 s, 0.5 s, 1 s ... at
most 5 s) and reconnects, for ``retries`` more attempts. A one-shot command has, on
top, a total budget shared by all its calls: ``(retries + 1) * timeout_s`` plus the
backoffs (:func:`command_budget_s`). It never runs past it, and its error line says
what was tried, where, how many attempts and how long. A long-running loop
(``weights run``) gives every call its attempts and backs off between its ticks.

Logging. Retries are logged once per attempt with the backoff: at INFO for one-shot
commands (shown with ``-v``), at WARNING in loops. For one-shot commands the SDK's own
connection chatter (the ``bittensor`` and ``websockets`` loggers below ERROR) is
dropped unless ``-v`` is given.

The SDK's background tasks. The SDK's RPC backend runs a supervisor task per
connection that keeps dialling after a deadline cancelled the call that started it;
left alone it later dies with an exception nobody retrieves, which asyncio prints as
a traceback. Every task started while the SDK runs on our behalf is tracked (a task
factory and a context variable that marks our calls), its exception is always
retrieved, and it is cancelled and awaited when the connection is dropped or closed.

Refusals. Chain-side refusals (rate limit, unregistered hotkey, no permit) are not
retried: they become :class:`WeightsRefused`. A failed submission whose error carries
no chain error name (a connection lost mid-submission) may still have been included:
it is :class:`SubmissionUnknown`, never a refusal. Submissions are never retried
blindly.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from platform_cli.chain.settings import ChainSettings
from platform_cli.core.epoch import Schedule, backoff_ms
from platform_cli.core.weightrules import ChainView
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer
from platform_cli.state.metagraph import Neuron, Snapshot

log = logging.getLogger("platform.chain")
T = TypeVar("T")
MECHANISM_STRIDE = 4096
BACKOFF_BASE_MS, BACKOFF_CAP_MS = 250, 5_000
REAP_TIMEOUT_S = 2.0
SDK_LOGGERS = ("bittensor", "websockets")
_TRACKED: contextvars.ContextVar[set[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "platform_chain_tasks", default=None
)


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


def command_budget_s(settings: ChainSettings) -> float:
    """The most a one-shot command spends on the chain: every attempt's deadline and the backoffs."""
    backoffs = sum(backoff_ms(i, BACKOFF_BASE_MS, BACKOFF_CAP_MS) for i in range(settings.retries))
    return (settings.retries + 1) * settings.timeout_s + backoffs / 1000


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


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a tracked task's outcome, so asyncio never reports it as unretrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("chain.background_task_failed task=%s error=%r", task.get_name(), task.exception())


def _track_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Install (once per loop) a task factory that registers tasks started inside our calls."""
    previous = loop.get_task_factory()
    if getattr(previous, "platform_tracking", False):
        return

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
        tracked = _TRACKED.get()
        if tracked is not None:
            tracked.add(task)
            task.add_done_callback(_consume)
            task.add_done_callback(tracked.discard)
        return task  # type: ignore[return-value]

    factory.platform_tracking = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)  # type: ignore[arg-type]


class _QuietSdk(logging.Filter):
    """On the root handlers: drops the SDK's records below ERROR unless the command runs with ``-v``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(SDK_LOGGERS):
            return True
        return record.levelno >= logging.ERROR or logging.getLogger().getEffectiveLevel() <= logging.INFO


class ChainClient:
    """One connection to the configured network, with deadlines and reconnects.

    ``one_shot`` (a command that ends) gives the client its total budget and quiet
    retries; without it (a loop) every call gets its attempts and retries are warnings.
    """

    def __init__(self, settings: ChainSettings, substrate: Any = None, *, one_shot: bool = True) -> None:
        self.settings = settings
        self.one_shot = one_shot
        self._substrate = substrate
        self._owns_substrate = False
        if substrate is None and settings.is_dev:
            from platform_cli.chain.dev.chain import DevChain
            from platform_cli.chain.dev.substrate import DevSubstrate

            self._substrate = DevSubstrate(DevChain(settings.dev_db))
            self._owns_substrate = True
        self._client: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: float | None = None
        self._quiet = _QuietSdk()

    @property
    def label(self) -> str:
        return "dev" if self.settings.is_dev else self.settings.network

    @property
    def budget_s(self) -> float | None:
        return command_budget_s(self.settings) if self.one_shot else None

    async def __aenter__(self) -> ChainClient:
        import bittensor  # noqa: F401  (a second or two on a loaded machine: not the chain's time)

        _track_tasks(asyncio.get_running_loop())
        if self.one_shot:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._quiet)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._drop()
        finally:
            if self._owns_substrate:
                self._substrate.chain.release()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._quiet)

    async def _connect(self) -> Any:
        import bittensor as bt

        if self._substrate is not None:
            subtensor = bt.Subtensor(
                "local" if self.settings.is_dev else self.settings.network, substrate=self._substrate
            )
        else:
            named = not self.settings.network.startswith(("ws://", "wss://"))
            # Pinned to the configured endpoint: our attempts are the retries. Archive
            # nodes serve pruned blocks (an epoch's start) on the named networks.
            subtensor = bt.Subtensor(
                self.settings.network, fallback_endpoints=[], archive_endpoints=None if named else []
            )
        return await subtensor.__aenter__()

    async def _drop(self, within: float = REAP_TIMEOUT_S) -> None:
        """Close the connection and end every task the SDK started for it, in ``within`` seconds each."""
        client, self._client = self._client, None
        if client is not None:
            token = _TRACKED.set(self._tasks)
            try:
                await asyncio.wait_for(client.close(), within)
            except Exception as exc:  # closing a dead link must not mask the cause
                log.debug("chain.close_failed network=%s error=%s", self.label, exc)
            finally:
                _TRACKED.reset(token)
        await self._reap(within)

    async def _reap(self, within: float) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=within)

    def _remaining_s(self) -> float | None:
        budget = self.budget_s
        if budget is None:
            return None
        if self._started is None:
            self._started = time.monotonic()
        return budget - (time.monotonic() - self._started)

    async def call(self, what: str, fn: Callable[[Any], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn(client)`` under the deadline, reconnecting on transport failures."""
        attempts = self.settings.retries + 1 if retry else 1
        began = time.monotonic()
        for attempt in range(1, attempts + 1):
            remaining = self._remaining_s()
            if remaining is not None and remaining <= 0:
                raise self._exhausted(what, "the command's time budget is spent", attempt - 1, began)
            timeout = (
                self.settings.timeout_s if remaining is None else min(self.settings.timeout_s, remaining)
            )
            token = _TRACKED.set(self._tasks)
            try:
                if self._client is None:
                    self._client = await asyncio.wait_for(self._connect(), timeout)
                return await asyncio.wait_for(fn(self._client), timeout)
            except _transport_errors() as exc:
                reason = (
                    f"no answer within {round(timeout, 1):g} s"
                    if isinstance(exc, asyncio.TimeoutError)
                    else _describe(exc)
                )
                failure = exc
            finally:
                _TRACKED.reset(token)
            remaining = self._remaining_s()
            await self._drop(
                REAP_TIMEOUT_S if remaining is None else max(0.05, min(REAP_TIMEOUT_S, remaining))
            )
            remaining = self._remaining_s()
            if attempt >= attempts or (remaining is not None and remaining <= 0):
                raise self._exhausted(what, reason, attempt, began) from None
            wait_ms = backoff_ms(attempt - 1, BACKOFF_BASE_MS, BACKOFF_CAP_MS)
            if remaining is not None:
                wait_ms = min(wait_ms, int(1000 * remaining))
            log.log(
                logging.INFO if self.one_shot else logging.WARNING,
                "chain.retry network=%s call=%s attempt=%d/%d error=%s retry_in_ms=%d",
                self.label,
                what,
                attempt,
                attempts,
                reason if not isinstance(failure, asyncio.TimeoutError) else "timeout",
                wait_ms,
            )
            await asyncio.sleep(wait_ms / 1000)
        raise AssertionError("unreachable")

    def _exhausted(self, what: str, reason: str, attempts: int, began: float) -> ChainUnavailable:
        elapsed = time.monotonic() - (self._started or began)
        limits = (
            f"[chain] timeout_s = {self.settings.timeout_s:g} per attempt, retries = {self.settings.retries}"
        )
        return ChainUnavailable(
            f"chain {self.label}: {what}: {reason} ({attempts} attempt{'s' if attempts != 1 else ''}, "
            f"{elapsed:.1f} s; {limits})"
        )

    # -- reads ---------------------------------------------------------------------------
    async def block(self) -> int:
        return await self.call("read the head block", lambda c: c.block())

    async def schedule(self, netuid: int) -> Schedule:
        """The subnet's epoch state as bittensor 11.3 reads it (``epoch_status``, one pinned read)."""

        async def read(client: Any) -> Schedule:
            status = await client.read("epoch_status", netuid=netuid)
            if status["next_epoch_start_block"] is None:
                raise PlatformError(
                    f"netuid {netuid} has tempo 0 on chain {self.label}: its epochs never run"
                )
            block = int(status["block"])
            return Schedule(
                netuid,
                block,
                int(status["tempo"]),
                int(status["epoch_index"]),
                block - int(status["blocks_since_last_step"]),
                max(int(status["next_epoch_start_block"]), block + 1),
            )

        return await self.call(f"read the epoch schedule of netuid {netuid}", read)

    async def metagraph(self, netuid: int, block: int | None = None) -> tuple[Snapshot, Hyperparams]:
        """The metagraph and weight hyperparameters at ``block`` (default: the head)."""

        async def read(client: Any) -> tuple[Snapshot, Hyperparams]:
            graph = await client.subnets.metagraph(netuid, block, commitments=False)
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

        where = f" at block {block}" if block is not None else ""
        return await self.call(f"read the metagraph of netuid {netuid}{where}", read)

    async def weights_view(
        self, snapshot: Snapshot, hyper: Hyperparams, mechid: int, hotkey: str
    ) -> ChainView:
        """What the pallet's weight rules read for ``hotkey``, at the snapshot's block."""
        index = mechid * MECHANISM_STRIDE + snapshot.netuid
        uid = next((n.uid for n in snapshot.neurons if n.hotkey == hotkey), None)
        owner_uid = next((n.uid for n in snapshot.neurons if n.hotkey == hyper.owner_hotkey), None)

        async def read(client: Any) -> tuple[Any, ...]:
            view = await client.at(snapshot.block)
            return tuple(
                await asyncio.gather(
                    view.query(("SubtensorModule", "NetworksAdded"), [snapshot.netuid]),
                    view.query(("SubtensorModule", "StakeThreshold"), []),
                    view.query(("SubtensorModule", "WeightsVersionKey"), [snapshot.netuid]),
                    view.query(("SubtensorModule", "LastUpdate"), [index]),
                )
            )

        added, threshold, version, last = await self.call("read the weight rules' state", read)
        neuron = next((n for n in snapshot.neurons if n.uid == uid), None)
        last_list = list(last) if isinstance(last, (list, tuple)) else []
        return ChainView(
            block=snapshot.block,
            subnet_exists=bool(added),
            mechanism_count=hyper.mechanism_count,
            subnet_n=len(snapshot.neurons),
            uid=uid,
            owner_uid=owner_uid,
            stake=neuron.stake_rao if neuron else 0,
            stake_threshold=int(threshold or 0),
            required_version_key=int(version or 0),
            commit_reveal=hyper.commit_reveal,
            rate_limit=hyper.weights_rate_limit,
            last_update=int(last_list[uid]) if uid is not None and uid < len(last_list) else 0,
            permit=bool(neuron and neuron.validator_permit),
            min_allowed_weights=hyper.min_allowed_weights,
            max_weight_limit=hyper.max_weight_limit,
        )

    async def weights_row(self, netuid: int, mechid: int, uid: int) -> tuple[dict[int, int], int]:
        """The raw u16 row our uid has on chain and its LastUpdate block."""
        index = mechid * MECHANISM_STRIDE + netuid

        async def read(client: Any) -> tuple[dict[int, int], int]:
            row = await client.query(("SubtensorModule", "Weights"), [index, uid])
            last = await client.query(("SubtensorModule", "LastUpdate"), [index])
            updated = int(last[uid]) if isinstance(last, (list, tuple)) and uid < len(last) else 0
            return {int(d): int(w) for d, w in row or []}, updated

        return await self.call("read our weights back", read)

    async def pending_commits(self, netuid: int, mechid: int, hotkey: str) -> list[dict[str, Any]]:
        async def read(client: Any) -> list[dict[str, Any]]:
            grouped = await client.weights.timelocked_weight_commits(netuid, mechid)
            return [c for commits in grouped.values() for c in commits if c["hotkey"] == hotkey]

        return await self.call("read our commit back", read)

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
            plan = await self.call("plan the weights", lambda c: c.plan(intent, wallet))
        except bt.ChainError as exc:
            raise _refusal(exc, signer.ss58, netuid) from None
        except bt.BittensorError as exc:
            raise WeightsRefused(f"weights for netuid {netuid} not submitted: {exc}") from None
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
            result = await self.call("submit the weights", lambda c: c.execute(intent, wallet), retry=False)
        except ChainUnavailable as exc:
            raise SubmissionUnknown(str(exc)) from None
        except bt.ChainError as exc:
            if not exc.name:
                raise SubmissionUnknown(
                    f"chain {self.label}: the submission failed without a chain error: {exc}"
                ) from None
            raise _refusal(exc, signer.ss58, netuid) from None
        except bt.BittensorError as exc:
            raise SubmissionUnknown(f"chain {self.label}: the submission failed: {exc}") from None
        if not result.success:
            error = result.error
            if error is None or not error.name:
                raise SubmissionUnknown(
                    f"chain {self.label}: the submission failed without a chain error: {result.message}"
                )
            raise _refusal(error, signer.ss58, netuid)
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


def _describe(exc: BaseException) -> str:
    """One line for a transport failure (the SDK's messages can span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


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
