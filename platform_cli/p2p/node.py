"""The running libp2p node behind ``platform peer run``.

One trio process: a Noise-only, Yamux host; GossipSub on our network's topics with
admission in the topic validators (checked and stored before anything is forwarded);
KadDHT in server mode with strict namespace validators; the sync protocol. Loops move
rows between the state and the network: outbox -> publish, requests -> answers, a
re-dial loop for bootstrap and announced peers, heartbeat and peer table, announcements.
SIGINT/SIGTERM cancel everything and the node exits cleanly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import PingService
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub import rpc_queue
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from platform_cli.clock import now_ms
from platform_cli.config import NetworkConfig
from platform_cli.core import canonical, gossip
from platform_cli.errors import PlatformError
from platform_cli.p2p import control, keys, store, sync
from platform_cli.p2p import dht as dht_adapter
from platform_cli.p2p.admission import Admission
from platform_cli.p2p.config import GOSSIP_WINDOW, NodeSettings
from platform_cli.p2p.hostaddrs import remember_addrs
from platform_cli.p2p.pubsub import AccountedGossipSub, AccountedPubsub
from platform_cli.p2p.waker import Signal, Waker
from platform_cli.state.db import open_state

log = logging.getLogger("platform.p2p")
QUEUE_SIZE = 8192
LATENCY_EVERY_S = 10
SYNC_VALIDATORS = 2
SYNC_UNKNOWN = 1
"""Pulls at once from peers bound to validators, and from the others (a slow responder
holds a slot for FRAME_READ_S per frame at most, and sybils only the unknown one)."""
PRUNE_EVERY_S = 60
PEER_FORGET_MS = 24 * 3600 * 1000
"""Unbound peers not seen for this long are dropped from the peer table."""


def raise_queue_limits(size: int = QUEUE_SIZE) -> None:
    """py-libp2p's default queues (32) drop messages silently under bursts."""
    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = size
    rpc_queue.RpcQueue.__init__.__defaults__ = (size, rpc_queue.DefaultMaxMessageSize)


class Node:
    def __init__(self, data_dir: Path, settings: NodeSettings, network: NetworkConfig) -> None:
        self.data_dir = Path(data_dir)
        self.settings = settings
        self.network = network
        self.state = open_state(self.data_dir)
        self.admission = Admission(
            self.state,
            network.network,
            network.sudo,
            rate=settings.rate_per_signer,
            burst=settings.burst_per_signer,
            peer_rate=settings.rate_per_peer,
            peer_burst=settings.burst_per_peer,
            min_stake_rao=settings.min_validator_stake_rao,
            sync_max_age_ms=settings.inbox_max_age_s * 1000,
        )
        self.topics = {short: gossip.topic_name(network.netuid, short) for short in gossip.TOPICS}
        self.signer = None
        if settings.key:
            from platform_cli.identity import KeyStore

            self.signer = KeyStore(self.data_dir).signer(settings.key)
        raise_queue_limits()
        pair = keys.load_or_create(self.data_dir)
        noise = NoiseTransport(pair, noise_privkey=x25519_key_pair().private_key)
        self.host = new_host(key_pair=pair, sec_opt={NOISE_ID: noise}, muxer_preference="YAMUX")
        remember_addrs(self.host)
        self.peer_id = self.host.get_id().to_base58()
        self.admission.local_peer = self.peer_id
        self.admission.on_misbehaving = self.ban
        self.gossipsub = AccountedGossipSub(
            protocols=[TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")],
            gossip_window=GOSSIP_WINDOW,
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=1,
            spam_protection_enabled=False,  # per-signer limits live in our admission
            eclipse_protection_enabled=False,
            # "Adaptive gossip" stretches the heartbeat to 30-60 s once network health drops
            # (a peer lost or banned): mesh repair and cache expiry would stall for a minute.
            adaptive_gossip_enabled=False,
        )
        self.gossipsub.admission = self.admission
        self.pubsub = AccountedPubsub(self.host, self.gossipsub, self.admission, list(self.topics.values()))
        # Created before any connection, or its routing table stays empty.
        marks = dht_adapter.Marks(self.state)
        self.dht = KadDHT(
            self.host,
            DHTMode.SERVER,
            validator=dht_adapter.validator(self.admission, marks),
            validator_changed=True,
            strict_validation=True,
        )
        dht_adapter.install(self.host, self.dht, self.admission, marks)
        self.sync_server = sync.Server(self.state, is_validator=self.is_validator_peer)
        self._sync_pools = {True: trio.Semaphore(SYNC_VALIDATORS), False: trio.Semaphore(SYNC_UNKNOWN)}
        self._syncing: set[ID] = set()
        self.host.set_stream_handler(TProtocol(sync.PROTOCOL), self._sync_handler)
        self.ping = PingService(self.host)
        self.connected: set[ID] = set()
        self.addrs: list[str] = []
        self._announce_due = trio.Event()
        self.outbox_due = Signal()
        self.requests_due = Signal()
        self.waker = Waker(self.state.path, [self.outbox_due, self.requests_due])
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listen = [multiaddr.Multiaddr(a) for a in self.settings.listen]
        store.mark_all_disconnected(self.state)
        restored = dht_adapter.restore(self.dht, self.admission)
        async with (
            self.host.run(listen_addrs=listen),
            background_trio_service(self.pubsub),
            background_trio_service(self.gossipsub),
            background_trio_service(self.dht),
        ):
            await self.pubsub.wait_until_ready()
            for topic in self.topics.values():
                await self.pubsub.subscribe(topic)
            self.addrs = [f"{a}/p2p/{self.peer_id}" for a in self.host.get_transport_addrs()]
            store.write_node(self.state, self.peer_id, self.addrs, now_ms())
            log.info("node up peer_id=%s addrs=%s dht_restored=%d", self.peer_id, self.addrs, restored)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.waker.open()
                    nursery.start_soon(self.waker.serve)
                    nursery.start_soon(self._outbox_loop)
                    nursery.start_soon(control.serve, self)
                    nursery.start_soon(self._redial_loop)
                    nursery.start_soon(self._status_loop, nursery)
                    nursery.start_soon(self._announce_loop)
                    task_status.started(self.addrs)
            finally:
                self.admission.flush()
                store.clear_node(self.state)
                store.mark_all_disconnected(self.state)

    # ------------------------------------------------------------ outbox

    async def _outbox_loop(self) -> None:
        while True:
            self.outbox_due.clear()
            rows = store.queued_outgoing(self.state)
            for row_id, topic, wire in rows:
                await self.publish(row_id, topic, wire)
            if rows:
                await trio.sleep(0)
            else:
                await self.outbox_due.wait(self.waker.interval_s)

    async def publish(self, row_id: int, topic: str, wire: bytes) -> None:
        if topic not in self.topics.values():
            store.mark_outgoing(self.state, row_id, f"topic {topic} is not one of this network's")
            return
        try:
            await self.pubsub.publish(topic, wire)
        except Exception as exc:
            store.mark_outgoing(self.state, row_id, f"{type(exc).__name__}: {exc}")
            return
        # Our own validator ran on it too; publish() does not say when it refused.
        refusal = self.admission.own_refusals.pop(hashlib.sha256(wire).digest(), "")
        store.mark_outgoing(self.state, row_id, refusal and f"refused by this node's admission ({refusal})")

    # ------------------------------------------------------------ peers

    async def dial(self, addr: str) -> str:
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        if info.peer_id == self.host.get_id():
            raise ValueError("that address is this node")
        with trio.fail_after(10):
            await self.host.connect(info)
        store.upsert_peer(self.state, info.peer_id.to_base58(), addr=addr, connected=True)
        return info.peer_id.to_base58()

    def _dial_targets(self) -> list[str]:
        targets = list(dict.fromkeys([*self.settings.bootstrap, *store.known_addrs(self.state)]))
        skip = {p.to_base58() for p in self.host.get_connected_peers()} | {self.peer_id}
        skip |= {p.to_base58() for p in self.pubsub.get_blacklisted_peers()}
        return [a for a in targets if a.rsplit("/p2p/", 1)[-1] not in skip]

    async def _redial_loop(self) -> None:
        while True:
            for addr in self._dial_targets():
                try:
                    await self.dial(addr)
                    log.info("dialed addr=%s", addr)
                except (Exception, trio.TooSlowError) as exc:
                    log.debug("dial failed addr=%s error=%s", addr, exc)
            await trio.sleep(self.settings.redial_interval_s)

    async def _status_loop(self, nursery: trio.Nursery) -> None:
        tick = 0
        while True:
            store.heartbeat(self.state)
            self.admission.flush()
            inbox = self.pubsub.inbox
            log.debug(
                "status peers=%d gossip_cache=%d inbox_writes=%d inbox_commits=%d",
                len(self.connected),
                len(self.gossipsub.mcache.msgs),
                inbox.items,
                inbox.batches,
            )
            now = set(self.host.get_connected_peers())
            new = now - self.connected
            for peer in new:
                store.upsert_peer(self.state, peer.to_base58(), connected=True)
                await self.dht.add_peer(peer)
                nursery.start_soon(self.sync_from, peer)
                self._announce_due.set()
            for peer in self.connected - now:
                store.upsert_peer(self.state, peer.to_base58(), connected=False)
            self.connected = now
            if tick and tick % self.settings.sync_interval_s == 0:
                for peer in sorted(now - new, key=str):
                    nursery.start_soon(self.sync_from, peer)
            due = now if tick % LATENCY_EVERY_S == 0 else new
            if due:
                nursery.start_soon(self._measure_latency, sorted(due, key=str))
            dht_adapter.prune_mirror(self.dht, self.admission)
            if tick % PRUNE_EVERY_S == 0:
                self.prune()
            tick += 1
            await trio.sleep(1)

    def prune(self) -> None:
        """Retention: the inbox, unbound peers, the standing of peers that behaved since."""
        now = now_ms()
        inbox = store.prune_inbox(
            self.state,
            max_rows=self.settings.inbox_max_rows,
            max_age_ms=self.settings.inbox_max_age_s * 1000,
            max_bytes=self.settings.inbox_max_bytes,
            now=now,
        )
        peers = store.prune_peers(self.state, unseen_ms=PEER_FORGET_MS, now=now)
        self.admission.standing.prune(now)
        if inbox or peers:
            log.info("pruned inbox_rows=%d peers=%d", inbox, peers)

    async def _measure_latency(self, peers: list[ID]) -> None:
        for peer in peers:
            try:
                with trio.fail_after(5):
                    t0 = time.perf_counter()
                    await self.ping.ping(peer)
                    latency = int((time.perf_counter() - t0) * 1e6)
                store.upsert_peer(self.state, peer.to_base58(), latency_us=latency, connected=True)
            except (Exception, trio.TooSlowError) as exc:
                log.debug("ping failed peer=%s error=%s", peer, exc)

    def ban(self, peer_id: str) -> None:
        """Cut off a misbehaving peer for this run: no gossip, no re-dial; recorded.

        py-libp2p's blacklist drops the peer's stream but leaves it in the router's mesh
        and its outbound queue open, which kills the gossipsub heartbeat (and with it the
        message cache's expiry): remove it from both, as for a dead peer, and hang up.
        """
        peer = ID.from_base58(peer_id)
        self.pubsub.add_to_blacklist(peer)
        self.gossipsub.remove_peer(peer)
        queue = self.pubsub.peer_queues.pop(peer, None)
        if queue is not None:
            queue.close()
        if self._nursery is not None:
            self._nursery.start_soon(self._hang_up, peer)
        store.ban_peer(self.state, peer_id)

    async def _hang_up(self, peer: ID) -> None:
        try:
            await self.host.disconnect(peer)
        except Exception as exc:
            log.info("disconnect failed peer=%s error=%s", peer, exc)

    # ------------------------------------------------------------ announcements

    async def _announce_loop(self) -> None:
        if self.signer is None:
            return
        while True:
            with trio.move_on_after(self.settings.announce_interval_s):
                await self._announce_due.wait()
                await trio.sleep(1.5)  # let the new peer join the mesh first
            self._announce_due = trio.Event()
            self.announce()

    def announce(self) -> None:
        from platform_cli.p2p.outgoing import seal_for

        body = {"peer_id": self.peer_id, "addrs": self.addrs}
        envelope = seal_for(self.state, self.network.network, self.signer, gossip.ANNOUNCE_KIND, body)
        store.queue_outgoing(self.state, self.topics["announce"], envelope)

    # ------------------------------------------------------------ sync

    async def _sync_handler(self, stream: Any) -> None:
        await self.sync_server.handle(stream, stream.muxed_conn.peer_id.to_base58())

    def is_validator_peer(self, peer_id: str) -> bool:
        return peer_id in self.admission.validator_peers()

    async def sync_from(self, peer: ID) -> int:
        """Pull what ``peer`` holds beyond our cursor for it (see ``sync.pull``), a few
        peers at once from each pool and one pull per peer; the number stored."""
        if peer in self._syncing:
            return 0
        self._syncing.add(peer)
        try:
            pool = await self._sync_slot(peer)
            try:
                return await sync.pull(
                    self.admission,
                    peer.to_base58(),
                    lambda: self.host.new_stream(peer, [TProtocol(sync.PROTOCOL)]),
                    lambda: self.pubsub.is_peer_blacklisted(peer),
                )
            finally:
                pool.release()
        except Exception as exc:  # one failed sync (a locked database...) must not stop the node
            log.warning("sync aborted peer=%s error=%s: %s", peer, type(exc).__name__, exc)
            return 0
        finally:
            self._syncing.discard(peer)

    async def fetch_commits(self, peer_id: str, from_height: int) -> list[tuple[bytes, bytes]]:
        """Committed consensus entries (value, certificate bytes) ``peer_id`` holds from
        ``from_height`` on; unverified: the caller checks each certificate."""
        peer = ID.from_base58(peer_id)
        found: list[tuple[bytes, bytes]] = []

        async def on_frame(items: sync.Items, row: int) -> bool:
            for kind, data in items:
                if kind != sync.COMMIT_ITEM:
                    continue
                try:
                    value, certificate = canonical.decode(data)
                except (canonical.CanonicalError, ValueError, TypeError):
                    continue
                if isinstance(value, bytes) and isinstance(certificate, bytes):
                    found.append((value, certificate))
            return True

        with trio.fail_after(sync.PULL_TIMEOUT_S):
            stream = await self.host.new_stream(peer, [TProtocol(sync.PROTOCOL)])
            try:
                await sync.fetch(stream, {"op": "commits", "from_height": from_height}, on_frame)
            finally:
                await stream.close()
        return found

    async def publish_envelope(self, short: str, wire: bytes) -> None:
        """Gossip a message we signed on topic ``short``, now (our own admission stores it)."""
        await self.pubsub.publish(self.topics[short], wire)

    def connected_validator_peers(self) -> list[str]:
        bound = self.admission.validator_peers()
        return sorted(p.to_base58() for p in self.host.get_connected_peers() if p.to_base58() in bound)

    async def _sync_slot(self, peer: ID) -> trio.Semaphore:
        """A slot of the peer's pool, asked again every second: a peer's announcement may
        bind it to a validator while it waits among the unknown."""
        while True:
            pool = self._sync_pools[self.is_validator_peer(peer.to_base58())]
            with trio.move_on_after(1):
                await pool.acquire()
                return pool


def check_ports_free(listen: tuple[str, ...]) -> None:
    """py-libp2p listens with SO_REUSEPORT, so a second node on a taken port would start
    and silently share its connections: bind a plain socket first to refuse that.

    The probe sets SO_REUSEADDR, as the real listener does: a port whose previous node
    died leaves connections in TIME_WAIT, which must not keep a restart from binding
    (Linux still refuses the bind while any socket listens on the port)."""
    for addr in listen:
        ma = multiaddr.Multiaddr(addr)
        protocols = {p.name for p in ma.protocols()}
        if "tcp" not in protocols or int(ma.value_for_protocol("tcp")) == 0:
            continue
        family = socket.AF_INET6 if "ip6" in protocols else socket.AF_INET
        host = ma.value_for_protocol("ip6" if "ip6" in protocols else "ip4")
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, int(ma.value_for_protocol("tcp"))))
            except OSError as exc:
                raise PlatformError(f"cannot listen on {addr}: {exc.strerror}") from None


def run_forever(data_dir: Path, settings: NodeSettings, network: NetworkConfig) -> None:
    """Run the node until SIGINT or SIGTERM (holding the data dir's node lock)."""
    lock = keys.lock_node(data_dir)
    check_ports_free(settings.listen)

    async def main() -> None:
        node = Node(data_dir, settings, network)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, scope)
                await nursery.start(node.run)
                print(json.dumps({"peer_id": node.peer_id, "addrs": node.addrs}), flush=True)
        node.state.close()
        log.info("node stopped peer_id=%s", node.peer_id)

    try:
        trio.run(main)
    except OSError as exc:
        raise PlatformError(f"cannot listen on {', '.join(settings.listen)}: {exc.strerror or exc}") from None
    finally:
        lock.close()


async def watch_signals(scope: trio.CancelScope) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM (every long-running command's way out)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning("signal=%s shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
