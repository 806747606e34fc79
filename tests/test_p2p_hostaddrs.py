"""The host's address list is rebuilt at most once a TTL, and never kept while empty."""

from __future__ import annotations

import time

from platform_cli.p2p.hostaddrs import RememberedAddrs


class Listeners:
    def __init__(self, *addrs: str) -> None:
        self.addrs = list(addrs)
        self.builds = 0

    def build(self) -> list[str]:
        self.builds += 1
        return list(self.addrs)


def test_addresses_are_rebuilt_once_a_ttl() -> None:
    listeners = Listeners("/ip4/127.0.0.1/tcp/1/p2p/Qm")
    addrs = RememberedAddrs(listeners.build, ttl_s=60)
    assert [addrs() for _ in range(1000)] == [["/ip4/127.0.0.1/tcp/1/p2p/Qm"]] * 1000
    assert listeners.builds == 1
    addrs().append("/ip4/6.6.6.6/tcp/6")  # a caller's copy: the remembered list is untouched
    assert addrs() == ["/ip4/127.0.0.1/tcp/1/p2p/Qm"]


def test_a_new_address_shows_after_the_ttl() -> None:
    listeners = Listeners("/ip4/127.0.0.1/tcp/1")
    addrs = RememberedAddrs(listeners.build, ttl_s=0.05)
    assert addrs() == ["/ip4/127.0.0.1/tcp/1"]
    listeners.addrs.append("/ip4/10.0.0.2/tcp/1")
    time.sleep(0.1)
    assert addrs() == ["/ip4/127.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/1"]
    assert listeners.builds == 2


def test_no_address_yet_is_not_remembered() -> None:
    listeners = Listeners()
    addrs = RememberedAddrs(listeners.build, ttl_s=60)
    assert addrs() == []
    listeners.addrs.append("/ip4/127.0.0.1/tcp/1")
    assert addrs() == ["/ip4/127.0.0.1/tcp/1"]
    assert addrs() == ["/ip4/127.0.0.1/tcp/1"]
    assert listeners.builds == 2
