"""Helpers for the chain and weights tests: a dev chain, keys, an active challenge."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

from tests.conftest import FIXTURES

Run = Callable[..., Result]
SEED = json.loads((FIXTURES / "metagraph" / "devnet.json").read_text())
NETUID = SEED["netuid"]
WALLETS = str(FIXTURES / "wallets")


def hotkey(name: str) -> str:
    return next(n["hotkey"] for n in SEED["neurons"] if n["hotkey_name"] == name)


def uid(name: str) -> int:
    return next(i for i, n in enumerate(SEED["neurons"]) if n["hotkey_name"] == name)


MINERS = [n["hotkey_name"] for n in SEED["neurons"] if n["hotkey_name"].startswith("miner-")]
VALIDATORS = [n["hotkey_name"] for n in SEED["neurons"] if n["hotkey_name"].startswith("validator-")]


def sdk_read(db: Path, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(client)`` with the real SDK client on the dev chain file ``db``."""
    import asyncio

    import bittensor as bt

    from platform_cli.chain.dev.chain import DevChain
    from platform_cli.chain.dev.substrate import DevSubstrate

    chain = DevChain(db)

    async def go() -> Any:
        async with bt.Subtensor("local", substrate=DevSubstrate(chain)) as client:
            return await fn(client)

    try:
        return asyncio.run(go())
    finally:
        chain.release()


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def import_args(name: str, wallet_hotkey: str) -> tuple[str, ...]:
    """`platform keys import` of a devnet wallet hotkey under ``name``."""
    return (
        "keys",
        "import",
        "--name",
        name,
        "--wallet",
        "devnet",
        "--hotkey",
        wallet_hotkey,
        "--wallet-path",
        WALLETS,
    )


def import_key(run: Run, name: str, wallet_hotkey: str) -> None:
    ok(run(*import_args(name, wallet_hotkey)))


def activate_challenge(
    run: Run, challenge_dir: Path, data_dir: Path, emission_ppm: int, min_validators: int
) -> str:
    """Sign, propose and commit the sample challenge with the given scoring."""
    from platform_cli import registry as reg
    from platform_cli.config import load_config
    from platform_cli.state import open_state

    toml = challenge_dir / "challenge.toml"
    text = toml.read_text()
    text = re.sub(r"emission_ppm = [0-9_]+", f"emission_ppm = {emission_ppm}", text)
    text = re.sub(r"min_validators = [0-9]+", f"min_validators = {min_validators}", text)
    toml.write_text(text)
    import_key(run, "sudo", "sudo")
    signed = challenge_dir / "update.json"
    ok(run("registry", "sign", str(toml), "--key", "sudo", "--action", "add", "-o", str(signed)))
    update_id = as_json(run("--json", "registry", "propose", str(signed)))["update_id"]
    with open_state(data_dir) as state:
        reg.commit_update(state, load_config(data_dir), update_id, effective_block=0)
    return "hello"


# --- endpoints that misbehave, on real sockets --------------------------------------------------
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FAULTS = ("refuse", "silent", "stall", "cut")


def _accept_key(request: bytes) -> str:
    import base64
    import hashlib

    for line in request.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            return base64.b64encode(hashlib.sha1((value.strip() + WS_GUID).encode()).digest()).decode()
    return ""


class Endpoint:
    """A TCP endpoint on 127.0.0.1 that misbehaves as told, or relays to ``upstream``.

    Modes: ``refuse`` (nothing listens on the port), ``silent`` (accepts and never
    answers), ``stall`` (completes the WebSocket handshake, then answers nothing), ``cut``
    (completes the handshake, then closes in the middle of its first answer) and
    ``relay`` (forwards both ways to ``upstream``). Changing the mode drops every open
    connection, as an endpoint that dies does.
    """

    def __init__(self, mode: str, upstream: tuple[str, int] | None = None) -> None:
        import socket
        import threading

        self.upstream = upstream
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.mode = ""
        self._stop = threading.Event()
        self.set_mode(mode)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        import socket
        import threading

        assert mode in (*FAULTS, "relay")
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()
            self.mode = mode
            if mode == "refuse" and self._listener is not None:
                self._listener.close()
                self._listener = None
            elif mode != "refuse" and self._listener is None:
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                listener.listen(16)
                self._listener = listener
                threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.set_mode("refuse")

    def _track(self, conn: Any) -> bool:
        with self._lock:
            if self._stop.is_set():
                return False
            self._conns.append(conn)
            return True

    def _accept(self, listener: Any) -> None:
        import threading

        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if self._track(conn):
                threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: Any, mode: str) -> None:
        with contextlib.suppress(OSError):
            if mode == "silent":
                return  # held open by the list until the mode changes
            if mode == "relay":
                self._relay(conn)
                return
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {_accept_key(request)}\r\n\r\n".encode()
            )
            if mode == "cut":
                conn.recv(65536)  # the first request
                conn.sendall(bytes([0x81, 126]) + (1000).to_bytes(2, "big") + b'{"jsonrpc":"2.0","id"')
                conn.close()
                return
            while conn.recv(65536):  # stall: read and never answer
                pass

    def _relay(self, conn: Any) -> None:
        import socket
        import threading

        assert self.upstream is not None
        upstream = socket.create_connection(self.upstream)
        if not self._track(upstream):
            return

        def pump(source: Any, target: Any) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    target.sendall(data)
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)


# --- the dev chain served over a socket (a test harness for the epoch loop) -------------------
class DevRelay:
    """A WebSocket server on 127.0.0.1 that runs ``DevSubstrate`` calls on a dev chain file.

    With :class:`RemoteSubstrate` on the other side it puts a real socket between the
    epoch loop and the dev chain, so an :class:`Endpoint` in between can make it fail.
    """

    def __init__(self, db: Path) -> None:
        import threading

        self.db = db
        self._ready = threading.Event()
        self._loop: Any = None
        self._stop: Any = None
        self.port = 0
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import asyncio

        from websockets.asyncio.server import serve

        from platform_cli.chain.dev.chain import DevChain
        from platform_cli.chain.dev.substrate import DevSubstrate

        chain = DevChain(self.db)
        substrate = DevSubstrate(chain)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        async def handle(ws: Any) -> None:
            from websockets.exceptions import ConnectionClosed

            with contextlib.suppress(ConnectionClosed):  # the endpoint in front cut it
                async for text in ws:
                    request = json.loads(text)
                    await ws.send(json.dumps({"id": request["id"], **await _dispatch(substrate, request)}))

        async with serve(handle, "127.0.0.1", 0) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()
        chain.release()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)


async def _dispatch(substrate: Any, request: dict[str, Any]) -> dict[str, Any]:
    import bittensor as bt

    method, args = request["method"], request["args"]
    try:
        if method == "submit":
            call, address = args
            signer = type("Signer", (), {"ss58_address": address})()
            result = await substrate.submit(tuple(call), signer)
            error = result.error.name if result.error else None
            return {"result": [result.success, result.message, result.block_hash, result.extrinsic_id, error]}
        if method == "compose":
            return {"result": list(await substrate.compose(tuple(args[0])))}
        return {"result": await getattr(substrate, method)(*args)}
    except bt.BittensorError as exc:
        return {"error": [type(exc).__name__, str(exc), getattr(exc, "name", None)]}


class RemoteSubstrate:
    """The SDK's ``Substrate`` protocol, each call sent to a :class:`DevRelay` over a WebSocket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token_symbols: dict[int, str] = {}
        self._ws: Any = None
        self._ids = iter(range(1, 2**62))
        self._lock: Any = None

    def balance(self, rao: int, netuid: int = 0) -> Any:
        from bittensor.balance import Balance

        return Balance(int(rao), netuid, None)

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        self._ws = await connect(self.url, open_timeout=None, close_timeout=0.2)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _call(self, method: str, *args: Any) -> Any:
        """One request at a time; answers to requests abandoned by a deadline are skipped."""
        import asyncio

        import bittensor as bt

        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._ws is None:
                await self.connect()
            request_id = next(self._ids)
            await self._ws.send(json.dumps({"id": request_id, "method": method, "args": list(args)}))
            answer = json.loads(await self._ws.recv())
            while answer["id"] != request_id:
                answer = json.loads(await self._ws.recv())
        if "error" in answer:
            kind, message, name = answer["error"]
            raise (bt.ChainError(message, name=name) if kind == "ChainError" else bt.BittensorError(message))
        return answer["result"]

    async def block_hash(self, block: int | None = None) -> Any:
        return await self._call("block_hash", block)

    async def block_number(self) -> int:
        return await self._call("block_number")

    async def finalized_block_number(self) -> int:
        return await self._call("finalized_block_number")

    async def block_time(self) -> float:
        return await self._call("block_time")

    async def spec_version(self) -> int:
        return await self._call("spec_version")

    async def query(self, module: str, item: str, params: Any = None, block_hash: Any = None) -> Any:
        return await self._call("query", module, item, params, block_hash)

    async def query_map(self, module: str, item: str, params: Any = None, block_hash: Any = None) -> Any:
        return [tuple(pair) for pair in await self._call("query_map", module, item, params, block_hash)]

    async def query_batch(self, module: str, item: str, param_sets: Any, block_hash: Any = None) -> Any:
        return await self._call("query_batch", module, item, param_sets, block_hash)

    async def map_has_entries(self, module: str, item: str, params: Any, block_hash: Any = None) -> bool:
        return await self._call("map_has_entries", module, item, params, block_hash)

    async def runtime_call(self, api: str, method: str, params: Any, block_hash: Any = None) -> Any:
        return await self._call("runtime_call", api, method, params, block_hash)

    async def constant(self, module: str, name: str) -> Any:
        return None

    async def events(self, block_hash: Any = None) -> list[Any]:
        return []

    async def compose(self, call: Any) -> Any:
        return tuple(await self._call("compose", list(call)))

    async def estimate_fee(self, call: Any, keypair: Any) -> Any:
        from bittensor.balance import Balance

        return Balance.from_rao(0)

    async def account_next_index(self, address: str) -> int:
        return await self._call("account_next_index", address)

    async def submit(self, call: Any, keypair: Any, **kw: Any) -> Any:
        import bittensor as bt

        success, message, block_hash, extrinsic_id, error = await self._call(
            "submit", list(call), keypair.ss58_address
        )
        return bt.ExtrinsicResult(
            success=success,
            message=message,
            block_hash=block_hash,
            extrinsic_id=extrinsic_id,
            error=bt.ChainError(message, name=error) if error else None,
        )
