"""Run services side by side; restart a failed one with backoff and say why.

A service is an object with a ``name`` and ``async def serve(*, task_status)``: it calls
``task_status.started()`` only once it is really up (listening, connected, its loop
running) and raises when it fails. The supervisor reports every change of state
(``starting``, ``up``, ``failed``, ``stopped``) through one callback, which ``platform up``
writes to the state for ``platform status``, the metrics and the monitor. Cancelling the
supervisor (SIGINT/SIGTERM) cancels every service; each cleans up in its ``finally``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import trio

from platform_cli.clock import now_ms
from platform_cli.core.epoch import backoff_ms
from platform_cli.node.health import ServiceHealth

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger("platform.node")

STABLE_MS = 60_000
"""A service that stayed up this long starts its backoff afresh when it next fails."""


class Service(Protocol):
    name: str

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...


def describe(exc: BaseException) -> str:
    """One line for a failure, innermost cause first in an exception group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        report: Callable[[ServiceHealth], None],
        *,
        base_backoff_ms: int = 1_000,
        max_backoff_ms: int = 60_000,
    ) -> None:
        names = [service.name for service in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.services = list(services)
        self._report = report
        self._base_ms = base_backoff_ms
        self._max_ms = max_backoff_ms
        self.health: dict[str, ServiceHealth] = {}

    def all_up(self) -> bool:
        return len(self.health) == len(self.services) and all(h.state == "up" for h in self.health.values())

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Supervise until cancelled; ``started()`` once every service has been up once."""
        remaining = len(self.services)
        ready = trio.Event()

        def came_up() -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                ready.set()

        try:
            async with trio.open_nursery() as nursery:
                for service in self.services:
                    nursery.start_soon(self._supervise, service, came_up)
                await ready.wait()
                task_status.started()
        finally:
            for service in self.services:
                current = self.health.get(service.name)
                self._set(
                    service.name,
                    "stopped",
                    current.restarts if current else 0,
                    current.last_error if current else "",
                )

    def _set(self, name: str, state: str, restarts: int, error: str) -> None:
        health = ServiceHealth(name, state, restarts, now_ms(), error)
        self.health[name] = health
        try:
            self._report(health)
        except Exception as exc:  # a full disk must not take the services down with it
            log.error("node.report_failed service=%s state=%s error=%s", name, state, describe(exc))

    async def _supervise(self, service: Service, came_up: Callable[[], None]) -> None:
        restarts, attempt, error, first = 0, 0, "", True
        while True:
            self._set(service.name, "starting", restarts, error)
            up_since: int | None = None
            try:
                async with trio.open_nursery() as inner:
                    await inner.start(service.serve)
                    up_since = now_ms()
                    self._set(service.name, "up", restarts, error)
                    log.info("node.service_up service=%s restarts=%d", service.name, restarts)
                    if first:
                        first = False
                        came_up()
                error = "stopped by itself"
            except Exception as exc:
                error = describe(exc)
            if up_since is not None and now_ms() - up_since >= STABLE_MS:
                attempt = 0
            delay_ms = backoff_ms(attempt, self._base_ms, self._max_ms)
            attempt += 1
            restarts += 1
            self._set(service.name, "failed", restarts, error)
            log.warning(
                "node.service_failed service=%s restarts=%d retry_s=%.1f error=%s",
                service.name,
                restarts,
                delay_ms / 1000,
                error,
            )
            await trio.sleep(delay_ms / 1000)
