"""Node side of the command channel: queued rows in ``p2p_requests`` become network calls.

Ops: ``connect`` {addr}, ``dht.put`` {key, value}, ``dht.get`` {key}, ``dht.provide``
{key}, ``dht.providers`` {key}, ``dht.forget`` {key}. Each answer is JSON on the row.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from platform_cli.core import canonical
from platform_cli.p2p import store

if TYPE_CHECKING:
    from platform_cli.p2p.node import Node

log = logging.getLogger("platform.p2p.control")
OP_TIMEOUT_S = 30


async def serve(node: Node) -> None:
    async with trio.open_nursery() as nursery:
        while True:
            node.requests_due.clear()
            for request_id, op, arg in store.claim_requests(node.state):
                nursery.start_soon(_run_one, node, request_id, op, arg)
            await node.requests_due.wait(node.waker.interval_s)


async def _run_one(node: Node, request_id: int, op: str, raw: bytes) -> None:
    try:
        arg = canonical.decode(raw)
        handler = OPS.get(op)
        if handler is None or not isinstance(arg, dict):
            raise ValueError(f"unknown request {op!r}")
        with trio.fail_after(OP_TIMEOUT_S):
            result = await handler(node, arg)
    except trio.TooSlowError:
        store.finish_request(node.state, request_id, None, f"{op} timed out after {OP_TIMEOUT_S} s")
    except Exception as exc:
        log.info("request failed id=%d op=%s error=%s", request_id, op, exc)
        store.finish_request(
            node.state, request_id, None, f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)
        )
    else:
        store.finish_request(node.state, request_id, result)


async def _connect(node: Node, arg: dict[str, Any]) -> Any:
    return {"peer_id": await node.dial(arg["addr"])}


async def _put(node: Node, arg: dict[str, Any]) -> Any:
    key, value = arg["key"], arg["value"]
    await node.dht.put_value(key, value)
    store.mirror_record(node.state, key, value)
    return {"key": key, "size": len(value)}


async def _get(node: Node, arg: dict[str, Any]) -> Any:
    key = arg["key"]
    value = await node.dht.get_value(key)
    if value is None:
        return {"key": key, "found": False}
    node.dht.validator.validate(key, value)
    node.dht.value_store.put(key.encode(), value)  # held here too, so the mirror row stays
    store.mirror_record(node.state, key, value)
    return {"key": key, "found": True, "value_hex": value.hex()}


async def _provide(node: Node, arg: dict[str, Any]) -> Any:
    return {"key": arg["key"], "announced": bool(await node.dht.provide(arg["key"]))}


async def _providers(node: Node, arg: dict[str, Any]) -> Any:
    found = await node.dht.find_providers(arg["key"])
    return {"key": arg["key"], "providers": [p.peer_id.to_base58() for p in found]}


async def _forget(node: Node, arg: dict[str, Any]) -> Any:
    removed = node.dht.value_store.remove(arg["key"].encode())
    store.forget_record(node.state, arg["key"])
    return {"key": arg["key"], "removed": bool(removed)}


OPS = {
    "connect": _connect,
    "dht.put": _put,
    "dht.get": _get,
    "dht.provide": _provide,
    "dht.providers": _providers,
    "dht.forget": _forget,
}
