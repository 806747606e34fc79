"""Real `platform peer run` processes on 127.0.0.1 for the P2P tests and the benchmark."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from platform_cli.config import DEVNET_GENESIS, DEVNET_NETUID
from platform_cli.core.envelope import Network
from platform_cli.identity import KeyStore, Signer
from platform_cli.p2p import outgoing, store
from platform_cli.state.db import State, open_state
from platform_cli.state.metagraph import Neuron, Snapshot, save_snapshot

NETWORK = Network(DEVNET_NETUID, DEVNET_GENESIS)
START_TIMEOUT_S = 60.0


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class NodeProc:
    data_dir: Path
    log_path: Path
    bootstrap: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    addrs: list[str] = field(default_factory=list)
    peer_id: str = ""
    _state: State | None = None

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = open_state(self.data_dir)
        return self._state

    def start(self) -> None:
        verbosity = "-" + "v" * int(os.environ.get("P2P_TEST_NODE_VERBOSITY", "1"))  # 2: libp2p debug logs
        args = [
            sys.executable,
            "-m",
            "platform_cli",
            "--data-dir",
            str(self.data_dir),
            verbosity,
            "peer",
            "run",
        ]
        args += ["--listen", "/ip4/127.0.0.1/tcp/0", "--key", "validator"]
        for addr in self.bootstrap:
            args += ["--bootstrap", addr]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=_child_env())
        log.close()
        line = _read_line(self.proc, START_TIMEOUT_S)
        if not line:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"node {self.data_dir} did not start:\n{self.log_path.read_text()[-3000:]}")
        info = json.loads(line)
        self.peer_id, self.addrs = info["peer_id"], info["addrs"]

    def signal(self, signum: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        if self._state is not None:
            self._state.close()
            self._state = None

    def inbox_ids(self, topic: str | None = None) -> set[str]:
        sql = "SELECT msg_id FROM p2p_inbox" + (" WHERE topic = ?" if topic else "")
        return {row[0] for row in self.state.execute(sql, [topic] if topic else [])}

    def connected_peers(self) -> int:
        return sum(1 for row in store.peers(self.state) if row["connected"])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PLATFORM_DATA_DIR", None)
    return env


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if selector.select(timeout=0.2):
            return proc.stdout.readline()
    return b""


def prepare_node_dirs(root: Path, n: int, config: str = "") -> list[Path]:
    """n data dirs, each with a 'validator' ed25519 key, all in every node's validator set,
    and ``config`` as their platform.toml when given."""
    dirs = [root / f"node{i}" for i in range(n)]
    for d in dirs:
        if config:
            d.mkdir(parents=True)
            (d / "platform.toml").write_text(config)
    hotkeys = [KeyStore(d).new("validator", "ed25519").ss58 for d in dirs]
    neurons = tuple(Neuron(uid, hotkey, hotkey, 10**12, True) for uid, hotkey in enumerate(hotkeys))
    for d in dirs:
        with open_state(d) as state:
            save_snapshot(state, Snapshot(NETWORK.netuid, 1, 360, neurons))
    return dirs


def start_mesh(root: Path, n: int, config: str = "") -> list[NodeProc]:
    """n nodes: node 0 first, the others given only node 0's address."""
    dirs = prepare_node_dirs(root, n, config)
    nodes = [NodeProc(dirs[0], root / "node0.log")]
    try:
        nodes[0].start()
        for i, d in enumerate(dirs[1:], start=1):
            nodes.append(NodeProc(d, root / f"node{i}.log", bootstrap=[nodes[0].addrs[0]]))
            nodes[-1].start()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def signer_of(node: NodeProc) -> Signer:
    return KeyStore(node.data_dir).signer("validator")


def queue(node: NodeProc, short: str, kind: str, body: Any) -> str:
    """Seal ``body`` with the node's validator key and queue it in its outbox; the message id."""
    envelope = outgoing.seal_for(node.state, NETWORK, signer_of(node), kind, body)
    outgoing.queue_publish(node.state, NETWORK, "", short, envelope)
    return envelope.message_id()


def mesh_ready(nodes: list[NodeProc], probe_topic: str = "submissions") -> None:
    """Wait until every node is connected and a probe published at each reaches all."""
    wait_for(lambda: all(n.connected_peers() >= 1 for n in nodes), 60, what="connections")
    ids = [queue(n, probe_topic, "submission", {"probe": i}) for i, n in enumerate(nodes)]
    wait_for(lambda: all(set(ids) <= n.inbox_ids() for n in nodes), 60, 0.1, what="mesh probes")


@asynccontextmanager
async def node_in_process(data_dir: Path, **settings: Any) -> AsyncIterator[Any]:
    """A ``Node`` run inside the test's trio loop (for tests that poke at its internals)."""
    from platform_cli.config import NetworkConfig
    from platform_cli.p2p.config import NodeSettings
    from platform_cli.p2p.node import Node

    node = Node(data_dir, NodeSettings(listen=("/ip4/127.0.0.1/tcp/0",), **settings), NetworkConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
    node.state.close()


@asynccontextmanager
async def bare_host(**dht_validators: Any) -> AsyncIterator[tuple[Any, Any]]:
    """A plain libp2p host with a KadDHT that accepts whatever it is told to (hostile)."""
    import multiaddr
    from libp2p import new_host
    from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
    from libp2p.records.validator import NamespacedValidator
    from libp2p.tools.anyio_service import background_trio_service

    host = new_host()
    validator = NamespacedValidator(dht_validators, strict_validation=True)
    dht = KadDHT(host, DHTMode.SERVER, validator=validator, validator_changed=True, strict_validation=True)
    async with (
        host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(dht),
    ):
        yield host, dht


async def await_until(predicate: Callable[[], Any], timeout: float, what: str = "") -> Any:
    with trio.move_on_after(timeout):
        while not (value := predicate()):
            await trio.sleep(0.05)
        return value
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


@asynccontextmanager
async def rogue_pubsub(topics: list[str]) -> AsyncIterator[tuple[Any, Any, Any]]:
    """A libp2p host publishing raw bytes on ``topics`` with no admission at all."""
    import multiaddr
    from libp2p import new_host
    from libp2p.custom_types import TProtocol
    from libp2p.pubsub.gossipsub import GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.tools.anyio_service import background_trio_service

    host = new_host()
    gossipsub = GossipSub(
        protocols=[TProtocol("/meshsub/1.1.0")], degree=6, degree_low=4, degree_high=12,
        heartbeat_initial_delay=0.1, heartbeat_interval=1, spam_protection_enabled=False,
    )  # fmt: skip
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    async with (
        host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        for topic in topics:
            await pubsub.subscribe(topic)
        yield host, gossipsub, pubsub


ROGUE = Path(__file__).parent / "p2p_rogue.py"


@dataclass
class Flood:
    """What a flooding peer (``p2p_rogue.py --flood``) reports: its peer id, when it began
    and when it handed its last message to py-libp2p (ms since the epoch)."""

    peer_id: str
    start_ms: int
    sent_ms: int


def flood(
    addrs: list[str], topic: str, messages: list[bytes], path: Path, *, rate: float = 0, linger: float = 5
) -> Flood:
    """Publish ``messages`` on ``topic`` from a fresh peer connected to ``addrs`` (a process)."""
    from tests.p2p_rogue import write_messages

    write_messages(path, messages)
    args = [
        sys.executable,
        str(ROGUE),
        "--flood",
        f"{topic}={path}",
        "--rate",
        str(rate),
        "--linger",
        str(linger),
    ]
    for addr in addrs:
        args += ["--connect", addr]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    times = json.loads(next(line for line in lines if line.startswith("{")))
    return Flood(lines[-1].split()[-1], times["start_ms"], times["sent_ms"])


class Sink:
    """Plain py-libp2p on ``topic`` with the node's queue settings and no admission (a
    process): what the library delivers by itself, to compare the node with."""

    def __init__(self, topic: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROGUE), "--sink", topic], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        line = _read_line(self.proc, START_TIMEOUT_S)
        if not line:
            self.proc.kill()
            raise AssertionError("the sink did not start")
        self.addrs: list[str] = json.loads(line)["addrs"]

    def finish(self) -> tuple[int, int]:
        """Stop it: (messages delivered, ms since the epoch of the last delivery)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        result = json.loads(self.proc.stdout.readline())
        self.proc.wait(timeout=30)
        return result["delivered"], result["last_ms"]


def traffic_totals(state: State, via: str = "gossip") -> dict[str, int]:
    """Counts per outcome (received, admitted, refused, dropped...) written by the node."""
    rows = state.execute("SELECT outcome, sum(count) FROM p2p_traffic WHERE via = ? GROUP BY outcome", [via])
    return dict(rows.fetchall())
