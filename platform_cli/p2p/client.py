"""Command side of the command channel: talk to the running node through the state."""

from __future__ import annotations

import json
import time
from typing import Any

from platform_cli.errors import PlatformError
from platform_cli.p2p import store
from platform_cli.state.db import State

WAIT_S = 45.0


def require_node(state: State) -> store.NodeStatus:
    node = store.running_node(state)
    if node is None:
        raise PlatformError(
            f"no node is running on this data dir ({state.path.parent}): start one with 'platform peer run'"
        )
    return node


def call(state: State, op: str, arg: dict[str, Any], timeout_s: float = WAIT_S) -> Any:
    """Queue a request for the running node and wait for its answer."""
    require_node(state)
    request_id = store.queue_request(state, op, arg)
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while time.monotonic() < deadline:
        done = store.request_result(state, request_id)
        if done is not None:
            status, result = done
            if status == "failed":
                raise PlatformError(f"{op} failed: {result}")
            return json.loads(result)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise PlatformError(f"{op}: the node did not answer within {timeout_s:.0f} s (request {request_id})")
