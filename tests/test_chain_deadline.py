"""A dead or silent endpoint can never hang the node: every call has a deadline."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from platform_cli.chain.adapter import ChainClient, ChainUnavailable
from platform_cli.chain.settings import ChainSettings


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


def closed_port() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"ws://127.0.0.1:{port}"


async def read_block(settings: ChainSettings) -> int:
    async with ChainClient(settings) as client:
        return await client.block()


@pytest.mark.parametrize("endpoint", ["silent", "closed"])
def test_dead_endpoint_fails_within_the_deadline(endpoint: str, silent_endpoint: str) -> None:
    url = silent_endpoint if endpoint == "silent" else closed_port()
    settings = ChainSettings(network=url, timeout_s=1.0, retries=1)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable, match="failed"):
        asyncio.run(read_block(settings))
    # two attempts of at most 1 s each plus one short backoff, with room for a loaded machine
    assert time.monotonic() - started < 10
