"""A hostile libp2p peer for the tests: it publishes raw bytes with no admission at all.

    python tests/p2p_rogue.py --connect ADDR [--connect ADDR ...] --publish TOPIC=FILE ...
    python tests/p2p_rogue.py --plaintext --connect ADDR

It dials every address, joins each topic's mesh, publishes each file's bytes in order,
prints "published N as PEER_ID" and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service


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


async def main(args: argparse.Namespace) -> None:
    if args.plaintext:
        await try_plaintext(args.connect[0])
        return
    plan = [(item.split("=", 1)[0], Path(item.split("=", 1)[1]).read_bytes()) for item in args.publish]
    topics = sorted({topic for topic, _ in plan})
    host = new_host()
    gossipsub = GossipSub(
        protocols=[TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )
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
        for topic, data in plan:
            await pubsub.publish(topic, data)
            await trio.sleep(0.05)
        await trio.sleep(1.0)
        print(f"published {len(plan)} as {host.get_id().to_base58()}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connect", action="append", required=True)
    parser.add_argument("--publish", action="append", default=[])
    parser.add_argument("--plaintext", action="store_true", help="only try to connect without Noise")
    trio.run(main, parser.parse_args())
    sys.exit(0)
