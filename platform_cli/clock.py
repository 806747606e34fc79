"""The wall clock, read at the edges and passed into the pure cores as a value."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
