"""Waking the node when another process queues work for it, instead of polling.

Commands write a row (an outbox message, a request) and then poke the node: one
datagram to a Unix socket in Linux's abstract namespace, named after the state file.
The row is the durable part; the poke only says "look now". A lost poke (no node
running, a full socket buffer, a platform without abstract sockets) costs latency, not
work: the node still looks every second (``p2p.waker``). Any local process may poke; a poke
costs the node one indexed query.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import socket
import sys
from pathlib import Path

log = logging.getLogger("platform.p2p")


def address(state_path: Path) -> bytes:
    digest = hashlib.sha256(str(Path(state_path).resolve()).encode()).hexdigest()[:32]
    return b"\0platform-node-" + digest.encode()


def poke(state_path: Path) -> None:
    """Tell a node running on this state that work is queued (best effort, never blocks)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"!", address(state_path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN):
            log.debug("wake poke failed: %s", exc)
