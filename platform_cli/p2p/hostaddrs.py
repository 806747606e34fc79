"""The host's advertised addresses, remembered for a moment.

py-libp2p attaches its signed peer record to every gossip RPC it sends, and to check that
record it rebuilds the host's address list (parsing and encapsulating multiaddrs) for
every message it forwards: about a quarter of a millisecond a message under a flood, as
much as our whole admission. The list changes only when a listener starts or an observed
address is confirmed, so a second's staleness costs nothing (an empty list, before the
listeners start, is never kept).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TTL_S = 1.0


class RememberedAddrs:
    """A drop-in for ``host.get_addrs`` that rebuilds the list at most every ``ttl_s``."""

    def __init__(self, build: Callable[[], list[Any]], ttl_s: float = TTL_S) -> None:
        self._build = build
        self._ttl_s = ttl_s
        self._addrs: list[Any] = []
        self._until = -float("inf")

    def __call__(self) -> list[Any]:
        now = time.monotonic()
        if now >= self._until:
            self._addrs = self._build()
            self._until = now + self._ttl_s if self._addrs else now
        return list(self._addrs)


def remember_addrs(host: Any, ttl_s: float = TTL_S) -> None:
    host.get_addrs = RememberedAddrs(host.get_addrs, ttl_s)
