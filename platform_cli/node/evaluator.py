"""The evaluation service: every submission this validator took is evaluated once per
epoch, and the signed report gossiped.

Each pass ingests the admitted messages, then for every active challenge takes each
miner's newest accepted file that has no evaluation of ours for the current epoch and
the active version, fetches it (kept locally, else from the DHT by its content address,
checked against its hash), evaluates it in the sandbox and publishes the report, which
is also our own score report. Every validator evaluates every submission: the
assignment is trivially verifiable and nobody's score rests on a validator that chose to
skip work; the aggregation's ``min_validators`` and median do the rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from platform_cli import evaluation, registry, scores, submissions
from platform_cli.config import Config
from platform_cli.errors import PlatformError
from platform_cli.identity import Signer
from platform_cli.state.db import State, open_state, write_transaction

log = logging.getLogger("platform.evaluations")

PASS_INTERVAL_S = 2.0
BATCH = 16
"""Evaluations per pass at most, so a flood of submissions never starves the other work."""

Fetch = Callable[[str], Awaitable[bytes | None]]


@dataclass(frozen=True)
class Pending:
    miner: str
    challenge: str
    sha256: str
    epoch: int


def pending(state: State) -> list[Pending]:
    """Each miner's newest taken file per active challenge not yet evaluated by us this epoch."""
    scores.ingest(state)
    row = state.execute("SELECT netuid FROM chain_schedules ORDER BY block DESC LIMIT 1").fetchone()
    if row is None:
        return []
    epoch = scores.current_epoch(state, row[0])
    block = state.execute("SELECT max(block) FROM chain_schedules WHERE netuid = ?", [row[0]]).fetchone()[0]
    active = registry.active_at(state, block)
    newest: dict[tuple[str, str], str] = {}
    for miner, challenge, sha256 in state.execute(
        "SELECT miner, challenge_id, sha256 FROM miner_submissions ORDER BY ts_ms, seq, rowid"
    ):
        if challenge in active:
            newest[(miner, challenge)] = sha256
    work = []
    for (miner, challenge), sha256 in newest.items():
        done = state.execute(
            "SELECT 1 FROM evaluations WHERE challenge_id = ? AND challenge_version = ? AND submission_sha256 = ? "
            "AND miner = ? AND epoch = ?",
            [challenge, active[challenge].spec.version, sha256, miner, epoch],
        ).fetchone()
        if done is None:
            work.append(Pending(miner, challenge, sha256, epoch))
    return work


def _missing_modules(challenges: set[str], state: State) -> list[str]:
    block = state.execute("SELECT coalesce(max(block), 0) FROM chain_schedules").fetchone()[0]
    active = registry.active_at(state, block)
    wanted = {active[c].spec.module_sha256 for c in challenges if c in active}
    return sorted(
        s for s in wanted if not state.execute("SELECT 1 FROM modules WHERE sha256 = ?", [s]).fetchone()
    )


def _store_module(sha256: str, module: bytes, state: State) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT OR IGNORE INTO modules (sha256, size, content) VALUES (?, ?, ?)",
            [sha256, len(module), module],
        )


class EvaluationService:
    name = "evaluations"

    def __init__(
        self,
        data_dir: Path,
        config: Config,
        signer: Signer,
        jobs: int,
        fetch: Fetch,
        interval_s: float = PASS_INTERVAL_S,
        *,
        byzantine: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.signer = signer
        self.jobs = jobs
        self.fetch = fetch
        self.interval_s = interval_s
        self.byzantine = byzantine
        self._refused: set[Pending] = set()

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.state = await trio.to_thread.run_sync(partial(open_state, self.data_dir, any_thread=True))
        try:
            task_status.started()
            await self._passes()
        finally:
            self.state.close()

    async def _passes(self) -> None:
        while True:
            work = await trio.to_thread.run_sync(self._with_state, pending)
            work = [w for w in work if w not in self._refused][:BATCH]
            await self._ensure_modules({w.challenge for w in work})
            contents: dict[Pending, bytes] = {}
            for item in work:
                content = await self._content(item)
                if content is not None:
                    contents[item] = content
            if contents:
                await trio.to_thread.run_sync(self._with_state, partial(self._evaluate, contents))
            await trio.sleep(self.interval_s)

    def _with_state(self, action: Callable[[State], Any]) -> Any:
        """``action`` on the service's connection (called in a worker thread, one at a time)."""
        return action(self.state)

    async def _ensure_modules(self, challenges: set[str]) -> None:
        """Fetch, by their hash, the modules of active challenges that consensus committed
        here before their module arrived (the proposer put it in the DHT)."""
        for sha256 in await trio.to_thread.run_sync(self._with_state, partial(_missing_modules, challenges)):
            module = await self.fetch(sha256)
            if module is None or hashlib.sha256(module).hexdigest() != sha256:
                log.info("evaluations.module_not_fetched sha256=%s", sha256)
                continue
            await trio.to_thread.run_sync(self._with_state, partial(_store_module, sha256, module))
            log.info("evaluations.module_fetched sha256=%s size=%d", sha256, len(module))

    async def _content(self, item: Pending) -> bytes | None:
        held = await trio.to_thread.run_sync(
            self._with_state, lambda state: submissions.content(state, item.sha256)
        )
        if held is not None:
            return held
        fetched = await self.fetch(item.sha256)
        if fetched is None or hashlib.sha256(fetched).hexdigest() != item.sha256:
            log.info("evaluations.not_fetched sha256=%s miner=%s", item.sha256, item.miner)
            return None
        await trio.to_thread.run_sync(
            self._with_state, lambda state: submissions.store_content(state, item.sha256, fetched)
        )
        return fetched

    def _evaluate(self, contents: dict[Pending, bytes], state: State) -> None:
        prepared, items = [], []
        for item, content in contents.items():
            spec, module, _ = evaluation.resolve_challenge(state, item.challenge)
            ready = evaluation.prepare(spec, module, content, item.epoch, f"{item.miner}/{item.sha256[:16]}")
            if ready.refused is not None:
                self._refused.add(item)
                log.warning(
                    "evaluations.refused miner=%s challenge=%s reason=%s",
                    item.miner,
                    item.challenge,
                    ready.refused,
                )
                continue
            prepared.append(ready)
            items.append(item)
        if not prepared:
            return
        runs = evaluation.execute(prepared, min(self.jobs, len(prepared)), self.data_dir)
        for item, ready, run in zip(items, prepared, runs, strict=True):
            eval_id = evaluation.record(state, ready, run, item.miner)
            record = evaluation.show_evaluation(state, eval_id)
            if self.byzantine:
                from platform_cli.node.byzantine import wrong_score

                record = {**record, "score": wrong_score(record["score"])}
            try:
                (published,) = scores.publish(state, self.config, self.signer, [record])
            except PlatformError as exc:
                log.warning("evaluations.not_published id=%d reason=%s", eval_id, exc)
                continue
            log.info(
                "evaluations.published id=%d miner=%s challenge=%s epoch=%d outcome=%s score=%d msg_id=%s",
                eval_id,
                item.miner,
                item.challenge,
                item.epoch,
                run.outcome,
                published["score"],
                published["msg_id"],
            )
