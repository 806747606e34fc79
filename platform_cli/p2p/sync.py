"""``/platform/sync/1.0.0``: a node that was away fetches what it missed.

Request (one length-prefixed canonical-CBOR frame): ``{"op": "since", "after_row": R,
"since_ms": T}`` for every message the responder holds after its inbox row R (a cursor
the requester keeps per peer) and received after T, or ``{"op": "get", "ids": [...]}``
for messages by id (sha256 of the envelope). The answer is a series of frames
``{"items": [[topic, wire], ...], "row": cursor, "more": bool}``, each at most
``CHUNK_BYTES`` of payload, so a large range is chunked instead of sent as one message.
Everything received this way goes through the same admission as gossip.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from platform_cli.core import canonical, gossip
from platform_cli.p2p import store
from platform_cli.state.db import State

log = logging.getLogger("platform.p2p.sync")
PROTOCOL = "/platform/sync/1.0.0"
CHUNK_BYTES = 1 << 20
MAX_FRAME = CHUNK_BYTES + gossip.MAX_MESSAGE_BYTES + 4096
MAX_TOTAL_BYTES = 64 << 20
MAX_IDS = 1024
_LEN = struct.Struct(">I")


class SyncError(Exception):
    pass


async def read_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.read(n - len(data))
        if not chunk:
            raise SyncError("stream closed mid-frame")
        data += chunk
    return data


async def read_frame(stream: Any) -> Any:
    (size,) = _LEN.unpack(await read_exactly(stream, _LEN.size))
    if size > MAX_FRAME:
        raise SyncError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    try:
        return canonical.decode(await read_exactly(stream, size))
    except canonical.CanonicalError as exc:
        raise SyncError(f"malformed frame: {exc}") from None


async def write_frame(stream: Any, value: Any) -> None:
    data = canonical.encode(value)
    await stream.write(_LEN.pack(len(data)) + data)


def _syncable(topic: str) -> bool:
    parsed = gossip.parse_topic(topic)
    return parsed is not None and parsed[1] != "announce"  # announcements bind a live peer


Frame = tuple[list[list[Any]], int]
"""The items of one answer frame ([topic, wire] pairs) and the responder's row cursor."""


def _uint(request: dict[str, Any], name: str) -> int:
    value = request.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SyncError(f"{name} must be a non-negative integer")
    return value


def answer_chunks(state: State, request: Any) -> list[Frame]:
    """The frames answering ``request``."""
    if not isinstance(request, dict):
        raise SyncError("request must be a map")
    if request.get("op") == "get":
        ids = request.get("ids")
        if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(isinstance(i, str) for i in ids):
            raise SyncError(f"ids must be a list of at most {MAX_IDS} strings")
        rows = [
            state.execute("SELECT topic, envelope FROM p2p_inbox WHERE msg_id = ?", [i]).fetchone()
            for i in ids
        ]
        return [(items, 0) for items in _split([[t, w] for t, w in filter(None, rows) if _syncable(t)])]
    if request.get("op") == "since":
        since, row = _uint(request, "since_ms"), _uint(request, "after_row")
        frames: list[Frame] = []
        total = 0
        while total < MAX_TOTAL_BYTES:
            batch, row = store.inbox_since(state, since, row, CHUNK_BYTES)
            if not batch:
                break
            frames.append(([[t, w] for t, w in batch if _syncable(t)], row))
            total += sum(len(w) for _, w in batch)
        return frames or [([], row)]
    raise SyncError(f"unknown op {request.get('op')!r}")


def _split(items: list[list[Any]]) -> list[list[list[Any]]]:
    frames: list[list[list[Any]]] = [[]]
    size = 0
    for item in items:
        if frames[-1] and size + len(item[1]) > CHUNK_BYTES:
            frames.append([])
            size = 0
        frames[-1].append(item)
        size += len(item[1])
    return frames


async def handle(state: State, stream: Any) -> None:
    """Server side: one request, then the answer frames, then close."""
    try:
        request = await read_frame(stream)
        frames = answer_chunks(state, request)
        for i, (items, row) in enumerate(frames):
            await write_frame(stream, {"items": items, "row": row, "more": i < len(frames) - 1})
    except SyncError as exc:
        log.info("sync request refused: %s", exc)
        await write_frame(stream, {"error": str(exc), "items": [], "row": 0, "more": False})
    finally:
        await stream.close()


async def fetch(stream: Any, request: dict[str, Any]) -> tuple[list[tuple[str, bytes]], int]:
    """Client side: send ``request``; every item of the answer and the last row cursor."""
    await write_frame(stream, request)
    out: list[tuple[str, bytes]] = []
    total = 0
    while True:
        frame = await read_frame(stream)
        if not isinstance(frame, dict) or not isinstance(frame.get("items"), list):
            raise SyncError("malformed answer frame")
        if frame.get("error"):
            raise SyncError(f"peer refused: {frame['error']}")
        for item in frame["items"]:
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], bytes)
            ):
                out.append((item[0], item[1]))
                total += len(item[1])
        if total > MAX_TOTAL_BYTES:
            raise SyncError("answer exceeds the total size limit")
        if not frame.get("more"):
            row = frame.get("row")
            return out, row if isinstance(row, int) and not isinstance(row, bool) and row >= 0 else 0
