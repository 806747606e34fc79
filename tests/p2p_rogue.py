"""A hostile (or merely plain) libp2p peer for the tests and the benchmark.

    python tests/p2p_rogue.py --connect ADDR [--connect ADDR ...] --publish TOPIC=FILE ...
    python tests/p2p_rogue.py --connect ADDR --flood TOPIC=FILE [--rate R]
    python tests/p2p_rogue.py --sink TOPIC
    python tests/p2p_rogue.py --connect ADDR [--connect ADDR ...] --dht-put KEY=FILE | --dht-get KEY
    python tests/p2p_rogue.py --plaintext --connect ADDR

``--publish`` dials every address, joins each topic's mesh, publishes each file's bytes
in order with no admission at all, prints "published N as PEER_ID" and exits.
``--flood`` does the same with every message of FILE (each one a 4-byte big-endian
length, then the bytes), ``R`` a second (0: as fast as it can), prints ``{"start_ms": T0, "sent_ms": T1}``
once the last one is handed to py-libp2p, then "published N in S s as PEER_ID".
``--sink`` is plain py-libp2p with the node's queue settings and no admission: it prints
``{"addrs": [...]}``, counts what its subscription delivers and prints ``{"delivered": N, "last_ms": T}``
when its stdin closes.
``--dht-put``/``--dht-get`` are a standard Kademlia client (py-libp2p's KadDHT, accepting
any record): ``put_value`` looks the key up with FIND_NODE, then stores it at the closest
peers; ``get_value`` prints ``{"found": bool, "value_hex": ...}``.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import pubsub as pubsub_module
from libp2p.pubsub import rpc_queue
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.records.validator import NamespacedValidator, Validator
from libp2p.tools.anyio_service import background_trio_service

QUEUE_SIZE = 8192
"""As the node raises them (py-libp2p's default of 32 drops a flood at the sender)."""


def read_messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    messages, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        messages.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return messages


def write_messages(path: Path, messages: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack(">I", len(m)) + m for m in messages))


async def try_plaintext(addr: str) -> None:
    """Dial offering only the plaintext security transport; report what happened."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

    pair = create_new_key_pair()
    host = new_host(key_pair=pair, sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(pair)})
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            with trio.fail_after(15):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        except Exception as exc:
            print(f"refused {type(exc).__name__}", flush=True)
        else:
            print("connected", flush=True)


def _gossipsub() -> GossipSub:
    return GossipSub(
        protocols=[TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
        adaptive_gossip_enabled=False,
    )


async def publish_plan(args: argparse.Namespace, plan: list[tuple[str, bytes]], gap_s: float) -> None:
    topics = sorted({topic for topic, _ in plan})
    host = new_host()
    gossipsub = _gossipsub()
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with (
        host.run(listen_addrs=listen),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
    ):
        await pubsub.wait_until_ready()
        for topic in topics:
            await pubsub.subscribe(topic)
        for addr in args.connect:
            with trio.fail_after(30):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        with trio.fail_after(60):
            while any(len(gossipsub.mesh.get(t, ())) < len(args.connect) for t in topics):
                await trio.sleep(0.05)
        start = time.monotonic()
        start_ms = time.time_ns() // 1_000_000
        for i, (topic, data) in enumerate(plan):
            await pubsub.publish(topic, data)
            if gap_s:
                await trio.sleep(max(0.0, start + (i + 1) * gap_s - time.monotonic()))
            elif i % 64 == 63:
                await trio.sleep(0)  # let the writer drain the queue
        spent = time.monotonic() - start
        print(json.dumps({"start_ms": start_ms, "sent_ms": time.time_ns() // 1_000_000}), flush=True)
        with trio.move_on_after(30):  # until the outbound queues are empty
            while any(len(q._queue) for q in pubsub.peer_queues.values()):
                await trio.sleep(0.05)
        await trio.sleep(args.linger)
        print(f"published {len(plan)} in {spent:.2f} s as {host.get_id().to_base58()}", flush=True)


async def sink(topic: str) -> None:
    host = new_host()
    gossipsub = _gossipsub()
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    delivered = 0
    last_ms = 0

    async def count(subscription) -> None:
        nonlocal delivered, last_ms
        async for _ in subscription:
            delivered += 1
            last_ms = time.time_ns() // 1_000_000

    async with (
        host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(gossipsub),
        trio.open_nursery() as nursery,
    ):
        await pubsub.wait_until_ready()
        nursery.start_soon(count, await pubsub.subscribe(topic))
        addrs = [f"{a}/p2p/{host.get_id().to_base58()}" for a in host.get_transport_addrs()]
        print(json.dumps({"addrs": addrs}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        print(json.dumps({"delivered": delivered, "last_ms": last_ms}), flush=True)
        nursery.cancel_scope.cancel()


def raise_queue_limits() -> None:
    pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = QUEUE_SIZE
    rpc_queue.RpcQueue.__init__.__defaults__ = (QUEUE_SIZE, rpc_queue.DefaultMaxMessageSize)


class AnyRecord(Validator):
    def validate(self, key: str, value: bytes) -> None:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


async def dht_client(args: argparse.Namespace) -> None:
    host = new_host()
    validator = NamespacedValidator(
        {ns: AnyRecord() for ns in ("sub", "eval", "ckpt")}, strict_validation=True
    )
    dht = KadDHT(host, DHTMode.CLIENT, validator=validator, validator_changed=True, strict_validation=True)
    async with (
        host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(dht),
    ):
        for addr in args.connect:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
            with trio.fail_after(30):
                await host.connect(info)
            await dht.add_peer(info.peer_id)
        with trio.fail_after(60):
            if args.dht_put:
                key, path = args.dht_put.split("=", 1)
                await dht.put_value(key, Path(path).read_bytes())
                print(json.dumps({"put": key}), flush=True)
            else:
                value = await dht.get_value(args.dht_get)
                print(json.dumps({"found": value is not None, "value_hex": (value or b"").hex()}), flush=True)


async def main(args: argparse.Namespace) -> None:
    if args.plaintext:
        await try_plaintext(args.connect[0])
        return
    if args.dht_put or args.dht_get:
        await dht_client(args)
        return
    if args.sink:
        raise_queue_limits()
        await sink(args.sink)
        return
    if args.flood:
        raise_queue_limits()
        topic, path = args.flood.split("=", 1)
        plan = [(topic, m) for m in read_messages(Path(path))]
        await publish_plan(args, plan, 1 / args.rate if args.rate else 0.0)
        return
    plan = [(item.split("=", 1)[0], Path(item.split("=", 1)[1]).read_bytes()) for item in args.publish]
    await publish_plan(args, plan, 0.05)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--publish", action="append", default=[])
    parser.add_argument("--flood", help="TOPIC=FILE of length-prefixed messages")
    parser.add_argument("--rate", type=float, default=0.0, help="flood messages a second (0: no pause)")
    parser.add_argument("--linger", type=float, default=1.0, help="seconds to stay connected afterwards")
    parser.add_argument("--sink", metavar="TOPIC", help="count what plain py-libp2p delivers on TOPIC")
    parser.add_argument("--dht-put", metavar="KEY=FILE")
    parser.add_argument("--dht-get", metavar="KEY")
    parser.add_argument("--plaintext", action="store_true", help="only try to connect without Noise")
    trio.run(main, parser.parse_args())
    sys.exit(0)
