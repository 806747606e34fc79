"""The node's end of :mod:`platform_cli.p2p.wake`: pokes become signals its loops await."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import trio

from platform_cli.p2p.wake import address

log = logging.getLogger("platform.p2p")
FALLBACK_S = 1.0
"""How long the node's loops wait for a poke before they look anyway."""
POLL_S = 0.02
"""Where no wake socket can be bound, the loops poll this often."""


class Signal:
    """A resettable event: ``set`` by any task; ``wait`` returns when set or at the timeout."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = trio.Event()

    async def wait(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self._event.wait()


class Waker:
    """The node's end: every poke sets each of ``signals``."""

    def __init__(self, state_path: Path, signals: list[Signal]) -> None:
        self.state_path = state_path
        self.signals = signals
        self._sock: trio.socket.SocketType | None = None

    def open(self) -> None:
        """Bind the socket (the node holds its data dir's lock, so no other node has it)."""
        if self._sock is not None or not sys.platform.startswith("linux"):
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(address(self.state_path))
        except OSError as exc:
            sock.close()
            log.warning("no wake socket (%s): the node polls its queues every %.2f s", exc, POLL_S)
        else:
            self._sock = trio.socket.from_stdlib_socket(sock)

    @property
    def interval_s(self) -> float:
        """How long a loop waits for a signal before it looks anyway."""
        return FALLBACK_S if self._sock is not None else POLL_S

    async def serve(self) -> None:
        if self._sock is None:
            return
        try:
            while True:
                await self._sock.recv(64)
                for signal in self.signals:
                    signal.set()
        finally:
            self._sock.close()
            self._sock = None
