"""``/platform/sync/1.0.0``: a node that was away fetches what it missed.

Request (one length-prefixed canonical-CBOR frame): ``{"op": "since", "after_row": R,
"since_ms": T}`` for every message the responder holds after its inbox row R (a cursor
the requester keeps per peer) and received after T, ``{"op": "get", "ids": [...]}``
for messages by id (sha256 of the envelope), or ``{"op": "commits", "from_height": H}``
for committed consensus entries from height H on (at most ``MAX_COMMITS``), each item
``["consensus.commit", cbor([value, certificate])]``: the requester verifies every
certificate before applying anything. The answer is a series of frames
``{"items": [[topic, wire], ...], "row": cursor, "more": bool}``, each at most
``CHUNK_BYTES`` of payload and ``FRAME_ITEMS`` items, so a large range is chunked
instead of sent as one message.

Both sides are bounded: the responder builds and writes one frame at a time, gives a
requester ``FIRST_BYTE_S`` to start its request and ``REQUEST_TIMEOUT_S`` to finish it,
``FRAME_WRITE_S`` to take each answer frame, and serves a limited number of requests at
once: one per peer, ``SERVE_VALIDATORS`` for peers bound to validators and a smaller
``SERVE_UNKNOWN`` for everyone else (fresh peer ids are free: they cannot hold a
validator's slot). The requester gives each answer frame ``FRAME_READ_S``, hands it to
admission as it arrives and stops at ``MAX_ITEMS`` items or ``MAX_TOTAL_BYTES`` (items
count ``ITEM_OVERHEAD`` bytes each on top of their size, so many tiny items cannot slip
by).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Iterator
from contextlib import nullcontext
from typing import Any

import trio

from platform_cli.clock import now_ms
from platform_cli.core import canonical, gossip
from platform_cli.core import envelope as env
from platform_cli.p2p import store
from platform_cli.p2p.admission import LOCAL_VIEW_REASONS, STORED, Admission
from platform_cli.p2p.slots import SlotPools
from platform_cli.state.db import State

log = logging.getLogger("platform.p2p.sync")
PROTOCOL = "/platform/sync/1.0.0"
CHUNK_BYTES = 1 << 20
FRAME_ITEMS = 2048
ITEM_OVERHEAD = 64
MAX_FRAME = CHUNK_BYTES + gossip.MAX_MESSAGE_BYTES + 4096 + FRAME_ITEMS * ITEM_OVERHEAD
MAX_TOTAL_BYTES = 64 << 20
MAX_ITEMS = 50_000
MAX_IDS = 1024
MAX_COMMITS = 64
COMMIT_ITEM = "consensus.commit"
FIRST_BYTE_S = 2
REQUEST_TIMEOUT_S = 5
FRAME_WRITE_S = 10
FRAME_READ_S = 10
SERVE_TIMEOUT_S = 60
SERVE_VALIDATORS = 4
SERVE_UNKNOWN = 2
SERVE_PER_PEER = 1
PULL_TIMEOUT_S = 60
FIRST_SYNC_MS = 3_600_000
"""History a peer we never synced from is asked for."""
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


async def read_frame(stream: Any, *, first_byte_s: float | None = None, frame_s: float | None = None) -> Any:
    """One length-prefixed frame; its first byte must come within ``first_byte_s`` and
    the whole frame within ``frame_s`` (trio.TooSlowError otherwise; None: no deadline)."""
    with trio.fail_after(frame_s) if frame_s is not None else nullcontext():
        with trio.fail_after(first_byte_s) if first_byte_s is not None else nullcontext():
            head = await read_exactly(stream, 1)
        (size,) = _LEN.unpack(head + await read_exactly(stream, _LEN.size - 1))
        if size > MAX_FRAME:
            raise SyncError(f"frame of {size} bytes exceeds {MAX_FRAME}")
        try:
            return canonical.decode(await read_exactly(stream, size))
        except canonical.CanonicalError as exc:
            raise SyncError(f"malformed frame: {exc}") from None


async def write_frame(stream: Any, value: Any, *, within_s: float | None = None) -> None:
    data = canonical.encode(value)
    with trio.fail_after(within_s) if within_s is not None else nullcontext():
        await stream.write(_LEN.pack(len(data)) + data)


def _syncable(topic: str) -> bool:
    parsed = gossip.parse_topic(topic)
    return parsed is not None and parsed[1] != "announce"  # announcements bind a live peer


Frame = tuple[list[list[Any]], int]
"""The items of one answer frame ([topic, wire] pairs) and the responder's row cursor."""


MAX_CURSOR = 2**63 - 1
"""Cursors and times are SQLite integers: anything larger is refused, never stored."""


def _uint(request: dict[str, Any], name: str) -> int:
    value = request.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CURSOR:
        raise SyncError(f"{name} must be an integer in 0..{MAX_CURSOR}")
    return value


def answer_frames(state: State, request: Any) -> Iterator[Frame]:
    """The frames answering ``request``, built one at a time (checked before the first)."""
    if not isinstance(request, dict):
        raise SyncError("request must be a map")
    if request.get("op") == "get":
        ids = request.get("ids")
        if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(isinstance(i, str) for i in ids):
            raise SyncError(f"ids must be a list of at most {MAX_IDS} strings")
        return _by_id(state, ids)
    if request.get("op") == "since":
        return _since(state, _uint(request, "since_ms"), _uint(request, "after_row"))
    if request.get("op") == "commits":
        return _commits(state, _uint(request, "from_height"))
    raise SyncError(f"unknown op {request.get('op')!r}")


def _by_id(state: State, ids: list[str]) -> Iterator[Frame]:
    frame: list[list[Any]] = []
    size = 0
    for msg_id in ids:
        row = state.execute("SELECT topic, envelope FROM p2p_inbox WHERE msg_id = ?", [msg_id]).fetchone()
        if row is None or not _syncable(row[0]):
            continue
        if frame and (size + len(row[1]) > CHUNK_BYTES or len(frame) >= FRAME_ITEMS):
            yield frame, 0
            frame, size = [], 0
        frame.append([row[0], row[1]])
        size += len(row[1])
    yield frame, 0


def _commits(state: State, from_height: int) -> Iterator[Frame]:
    rows = state.execute(
        "SELECT value, certificate FROM consensus_log WHERE height >= ? ORDER BY height LIMIT ?",
        [from_height, MAX_COMMITS],
    ).fetchall()
    frame: list[list[Any]] = []
    size = 0
    for value, certificate in rows:
        item = canonical.encode([bytes(value), bytes(certificate)])
        if frame and size + len(item) > CHUNK_BYTES:
            yield frame, 0
            frame, size = [], 0
        frame.append([COMMIT_ITEM, item])
        size += len(item)
    yield frame, 0


def _since(state: State, since_ms: int, row: int) -> Iterator[Frame]:
    total = 0
    while total < MAX_TOTAL_BYTES:
        batch, next_row = store.inbox_since(state, since_ms, row, CHUNK_BYTES, FRAME_ITEMS)
        if not batch:
            break
        row = next_row
        total += sum(len(w) + ITEM_OVERHEAD for _, w in batch)
        yield [[t, w] for t, w in batch if _syncable(t)], row
    yield [], row  # the last frame: nothing more


class Server:
    """Serves sync requests, a bounded number at a time (per peer, and in two pools:
    peers bound to validators, everyone else)."""

    def __init__(
        self,
        state: State,
        *,
        is_validator: Callable[[str], bool] = lambda peer: False,
        validators: int = SERVE_VALIDATORS,
        unknown: int = SERVE_UNKNOWN,
        per_peer: int = SERVE_PER_PEER,
    ) -> None:
        self.state = state
        self.is_validator = is_validator
        self.slots = SlotPools(validators, unknown, per_peer)

    async def handle(self, stream: Any, peer: str = "") -> None:
        """One request, then the answer frames, then close."""
        try:
            with self.slots.slot(peer, self.is_validator(peer)) as taken:
                if not taken:
                    log.info("sync request refused peer=%s: its pool is full", peer)
                    return
                await self._serve(stream)
        finally:
            await stream.close()

    async def _serve(self, stream: Any) -> None:
        """Answer one request. The requester has FIRST_BYTE_S to start asking,
        REQUEST_TIMEOUT_S to finish, FRAME_WRITE_S to take each frame and SERVE_TIMEOUT_S
        for the whole answer (one that never sends or never reads cannot hold a slot);
        nothing a peer sends can raise out of here and take the node down."""
        try:
            with trio.fail_after(SERVE_TIMEOUT_S):
                request = await read_frame(stream, first_byte_s=FIRST_BYTE_S, frame_s=REQUEST_TIMEOUT_S)
                try:
                    frames = answer_frames(self.state, request)
                    current = next(frames)
                except SyncError as exc:
                    log.info("sync request refused: %s", exc)
                    await write_frame(
                        stream,
                        {"error": str(exc), "items": [], "row": 0, "more": False},
                        within_s=FRAME_WRITE_S,
                    )
                    return
                for following in frames:
                    answer = {"items": current[0], "row": current[1], "more": True}
                    await write_frame(stream, answer, within_s=FRAME_WRITE_S)
                    current = following
                answer = {"items": current[0], "row": current[1], "more": False}
                await write_frame(stream, answer, within_s=FRAME_WRITE_S)
        except trio.TooSlowError:
            log.info("sync request not served within its deadline")
        except Exception as exc:  # a closed stream, a malformed frame, a locked database
            log.info("sync request failed: %s: %s", type(exc).__name__, exc)


Items = list[tuple[str, bytes]]


async def fetch(
    stream: Any, request: dict[str, Any], on_frame: Callable[[Items, int], Awaitable[bool]]
) -> int:
    """Client side: send ``request`` and hand each answer frame's items and row cursor to
    ``on_frame`` as it arrives (False from it stops the fetch); the number of items. A
    responder gets FRAME_READ_S for each frame (a slow one cannot hold our slot long)."""
    await write_frame(stream, request, within_s=FRAME_WRITE_S)
    count = 0
    total = 0
    while True:
        frame = await read_frame(stream, frame_s=FRAME_READ_S)
        if not isinstance(frame, dict) or not isinstance(frame.get("items"), list):
            raise SyncError("malformed answer frame")
        if frame.get("error"):
            raise SyncError(f"peer refused: {frame['error']}")
        if len(frame["items"]) > FRAME_ITEMS:
            raise SyncError(f"answer frame of {len(frame['items'])} items exceeds {FRAME_ITEMS}")
        items: Items = []
        for item in frame["items"]:
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and isinstance(item[1], bytes)
            ):
                items.append((item[0], item[1]))
                total += len(item[1]) + ITEM_OVERHEAD
        count += len(items)
        if total > MAX_TOTAL_BYTES or count > MAX_ITEMS:
            raise SyncError(f"answer exceeds {MAX_ITEMS} items or {MAX_TOTAL_BYTES} bytes")
        row = frame.get("row")
        row = row if isinstance(row, int) and not isinstance(row, bool) and 0 <= row <= MAX_CURSOR else 0
        if not await on_frame(items, row) or not frame.get("more"):
            return count
        await trio.sleep(0)


VIEW_GRACE_MS = 10 * 60 * 1000


def _recent(wire: bytes) -> bool:
    """Signed within VIEW_GRACE_MS (or in the future: a clock that will catch up)."""
    try:
        return env.from_wire(wire, max_size=len(wire)).ts_ms >= now_ms() - VIEW_GRACE_MS
    except env.EnvelopeError:
        return False


async def pull(
    admission: Admission,
    peer_id: str,
    open_stream: Callable[[], Awaitable[Any]],
    banned: Callable[[], bool],
) -> int:
    """Fetch what ``peer_id`` holds beyond our cursor for it, through admission, frame by
    frame; stop if the peer gets banned. The number of messages stored.

    The cursor moves past a frame once every item in it is settled: stored, held, or
    refused for the sender's fault. A refusal that depends on our own view (validator
    set, clock, budgets) of a message signed in the last ``VIEW_GRACE_MS`` leaves it
    there, so the items come again at the next sync; an older message had time for our
    view to catch up, so its refusal is settled (one message of a signer who left the
    validator set cannot pin the cursor)."""
    state = admission.state
    after = store.sync_cursor(state, peer_id)
    since = 0 if after else max(0, now_ms() - FIRST_SYNC_MS)
    added = 0
    cursor = after
    frozen = False

    async def on_frame(items: Items, row: int) -> bool:
        nonlocal added, cursor, frozen
        for topic, wire in items:
            if banned():
                return False
            outcome = admission.admit(topic, wire, peer_id, forwarder=peer_id, from_sync=True)
            added += outcome == STORED
            frozen = frozen or (outcome in LOCAL_VIEW_REASONS and _recent(wire))
        if not frozen:
            cursor = max(cursor, row)
        return not banned()

    offered = -1
    try:
        with trio.fail_after(PULL_TIMEOUT_S):
            stream = await open_stream()
            try:
                offered = await fetch(
                    stream, {"op": "since", "after_row": after, "since_ms": since}, on_frame
                )
            finally:
                await stream.close()
    except (Exception, trio.TooSlowError) as exc:
        log.info("sync failed peer=%s error=%s", peer_id, exc)
    try:
        store.set_sync_cursor(state, peer_id, cursor)
    except Exception as exc:  # a locked database: the same items come again next time
        log.warning("sync cursor not saved peer=%s error=%s", peer_id, exc)
    log.info("synced peer=%s offered=%d added=%d cursor=%d", peer_id, offered, added, cursor)
    return added
