"""The node's DHT against a hostile peer, in process: our namespaces only, put quotas."""

from __future__ import annotations

from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.records.validator import Validator

from platform_cli.core import dhtrec
from platform_cli.p2p import dht as dht_adapter
from platform_cli.p2p import store
from tests.p2p_helpers import await_until, bare_host, node_in_process

pytestmark = pytest.mark.slow


def content_key(value: bytes) -> str:
    """The compact key the DHT stores ``value`` under."""
    return dhtrec.dht_key(dhtrec.content_key(value))


class Anything(Validator):
    def validate(self, key: str, value: bytes) -> None:
        return None

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


def test_remote_puts_outside_our_namespaces_and_over_quota_are_refused(tmp_path: Path) -> None:
    public = create_new_key_pair().public_key
    pk_key = "/pk/" + ID.from_pubkey(public).to_bytes().hex()  # a valid libp2p public key record
    values = [f"record {i}".encode() for i in range(4)]

    async def scenario() -> None:
        async with (
            node_in_process(tmp_path / "node") as node,
            bare_host(pk=Anything(), ipns=Anything(), sub=Anything()) as (host, dht),
        ):
            assert {"pk", "ipns"}.isdisjoint(node.dht.validator._validators)
            node.dht.validator.quota = dhtrec.PutQuota(per_peer_puts=3)  # invalid puts cost nothing
            await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0])))
            await dht.add_peer(node.host.get_id())

            def held(key: str) -> bool:
                return node.dht.value_store.get(key.encode()) is not None

            await dht.put_value(content_key(values[0]), values[0])
            await await_until(lambda: held(content_key(values[0])), 20, "a valid remote put")
            await dht.put_value(pk_key, public.serialize())
            await dht.put_value("/ipns/" + "cd" * 20, b"whatever the peer likes")
            await dht.put_value(content_key(values[1]), values[1])
            await await_until(lambda: held(content_key(values[1])), 20, "the next valid put")
            assert not held(pk_key) and not held("/ipns/" + "cd" * 20)
            await dht.put_value(content_key(values[2]), values[2])  # the 3rd valid put: the last allowed
            await await_until(lambda: held(content_key(values[2])), 20, "the 3rd valid put")
            await dht.put_value(content_key(values[3]), values[3])
            await trio.sleep(0.5)
            assert not held(content_key(values[3]))  # over the peer's quota
            await trio.sleep(1.2)  # a status tick: peers' records must not reach the SQLite mirror
            assert store.mirrored(node.state) == []
            own = b"our own record"
            store.mirror_record(node.state, content_key(own), own)  # as `dht put` leaves it
            node.dht.value_store.put(content_key(own).encode(), own)
            store.mirror_record(node.state, content_key(b"evicted"), b"evicted")
            assert dht_adapter.prune_mirror(node.dht, node.admission) == 1
            assert store.mirrored(node.state) == [(content_key(own), own)]

    trio.run(scenario)
