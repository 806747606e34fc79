"""Admission against a real state, in process: replay windows on every path, the inbox."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from libp2p.pubsub.pubsub import ValidationResult

from platform_cli.clock import now_ms
from platform_cli.core import envelope as env
from platform_cli.core import gossip
from platform_cli.identity import KeyStore, Signer
from platform_cli.p2p import store
from platform_cli.p2p.admission import Admission
from platform_cli.p2p.pubsub import ReasonedValidationCache
from platform_cli.state.db import State, open_state
from platform_cli.state.metagraph import Neuron, Snapshot, save_snapshot
from tests.p2p_helpers import NETWORK

TOPIC = gossip.topic_name(NETWORK.netuid, "submissions")


@pytest.fixture
def state(tmp_path: Path) -> State:
    opened = open_state(tmp_path / "node")
    yield opened
    opened.close()


@pytest.fixture
def signer(tmp_path: Path, state: State) -> Signer:
    keystore = KeyStore(tmp_path / "keys")
    keystore.new("v", "ed25519")
    signer = keystore.signer("v")
    save_snapshot(
        state, Snapshot(NETWORK.netuid, 1, 360, (Neuron(0, signer.ss58, signer.ss58, 10**12, True),))
    )
    return signer


def admission(state: State) -> Admission:
    made = Admission(state, NETWORK, "", rate=100, burst=500)
    made.local_peer = "self"
    return made


def seal(
    signer: Signer, seq: int, body: object = None, kind: str = "submission", ts_ms: int | None = None
) -> env.Envelope:
    return env.seal(
        network=NETWORK, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq,
        ts_ms=now_ms() if ts_ms is None else ts_ms, body=body if body is not None else {"seq": seq},
        sign=signer.sign,
    )  # fmt: skip


def count(state: State, reason: str, adm: Admission | None = None) -> int:
    """Refusals counted for ``reason`` (after writing ``adm``'s counters, as the node does)."""
    if adm is not None:
        adm.flush()
    return sum(r["count"] for r in store.rejections(state) if r["reason"] == reason)


def inbox_size(state: State) -> int:
    return state.execute("SELECT count(*) FROM p2p_inbox").fetchone()[0]


def test_sync_recovers_what_fell_below_the_window_and_never_stores_twice(
    state: State, signer: Signer
) -> None:
    """Gossip moved the signer's window far past a message this node missed: sync still
    brings it (once), while gossip refuses it as a replay."""
    adm = admission(state)
    missed = seal(signer, 3000)
    assert adm.receive(TOPIC, seal(signer, 5000).to_wire(), "peerA", forwarder="peerA")
    assert not adm.receive(TOPIC, missed.to_wire(), "peerA", forwarder="peerA")  # by gossip: below the window
    assert count(state, "replay", adm) == 1
    assert adm.receive(TOPIC, missed.to_wire(), "peerB", forwarder="peerB", from_sync=True)
    assert not adm.receive(TOPIC, missed.to_wire(), "peerB", forwarder="peerB", from_sync=True)
    assert inbox_size(state) == 2 and count(state, "replay", adm) == 1  # held already: not a replay
    store.prune_inbox(state, max_rows=0, max_age_ms=7 * 24 * 3600 * 1000, now=now_ms())
    assert inbox_size(state) == 0
    assert not adm.receive(TOPIC, missed.to_wire(), "peerB", forwarder="peerB", from_sync=True)
    assert inbox_size(state) == 0  # pruned from the inbox, still remembered as seen


def test_sync_refuses_what_is_older_than_the_retention(state: State, signer: Signer) -> None:
    adm = admission(state)
    adm.sync_max_age_ms = 60_000
    old = seal(signer, 9, ts_ms=now_ms() - 120_000)
    assert not adm.receive(TOPIC, old.to_wire(), "peerB", forwarder="peerB", from_sync=True)
    assert count(state, "stale", adm) == 1


def test_store_refuses_what_the_window_refuses_in_the_same_transaction(state: State, signer: Signer) -> None:
    envelope = seal(signer, 7)
    # Another message with the same number was stored between admission and storing.
    other = seal(signer, 7, body={"other": 7})
    assert store.store_received(state, TOPIC, other, other.to_wire(), "peerB")
    assert not store.store_received(state, TOPIC, envelope, envelope.to_wire(), "peerA")
    assert inbox_size(state) == 1
    assert count(state, "replay") == 1
    assert not store.seen(state, envelope.message_id())  # refused: not remembered as held


def test_our_own_message_already_held_goes_out_again(state: State, signer: Signer) -> None:
    adm = admission(state)
    own = seal(signer, 11)
    assert adm.receive(TOPIC, own.to_wire(), "self")
    # Killed before the outbox row was marked: the re-publish must not be a replay.
    assert adm.receive(TOPIC, own.to_wire(), "self")
    assert count(state, "replay", adm) == 0 and inbox_size(state) == 1
    assert not adm.own_refusals
    assert not adm.receive(TOPIC, own.to_wire(), "self", forwarder="peerA")  # relayed back: a replay
    assert count(state, "replay", adm) == 1


def test_fresh_keys_cannot_submit_and_relaying_peers_have_a_budget(
    state: State, signer: Signer, tmp_path
) -> None:
    keystore = KeyStore(tmp_path / "fresh")
    keystore.new("f", "ed25519")
    fresh = keystore.signer("f")
    adm = Admission(state, NETWORK, "", rate=100, burst=500, peer_rate=1, peer_burst=2)
    adm.local_peer = "self"
    assert not adm.receive(TOPIC, seal(fresh, 1).to_wire(), "peerA", forwarder="peerA")
    assert count(state, "wrong_role", adm) == 1  # not a neuron of the newest snapshot
    results = [adm.receive(TOPIC, seal(signer, i).to_wire(), "peerA", forwarder="peerA") for i in (2, 3, 4)]
    assert results == [True, False, False]  # the refused fresh key spent one of peerA's 2 tokens
    assert count(state, "peer_rate_limited", adm) == 2
    assert adm.receive(TOPIC, seal(signer, 5).to_wire(), "peerB", forwarder="peerB")  # another peer


def test_retention_prunes_the_inbox_and_unbound_peers(state: State, signer: Signer) -> None:
    for seq in range(1, 6):
        envelope = seal(signer, seq)
        assert store.store_received(state, TOPIC, envelope, envelope.to_wire(), "peerA")
    now = now_ms()
    state.execute("UPDATE p2p_inbox SET received_ms = ? WHERE seq = 1", [now - 10_000])
    assert store.prune_inbox(state, max_rows=3, max_age_ms=5_000, now=now) == 2
    assert sorted(r["seq"] for r in store.inbox_rows(state)) == [3, 4, 5]
    replayed = seal(signer, 1)  # pruned from the inbox, still refused by the window
    assert not store.store_received(state, TOPIC, replayed, replayed.to_wire(), "peerB")
    store.upsert_peer(state, "gone", connected=False)
    store.upsert_peer(state, "here", connected=True)
    store.bind_hotkey(state, "bound", signer.ss58, "")
    state.execute("UPDATE p2p_peers SET last_seen_ms = 0")
    assert store.prune_peers(state, unseen_ms=60_000, now=now) == 1
    assert {r["peer_id"] for r in store.peers(state)} == {"here", "bound"}


def test_retention_is_per_topic_and_bounded_in_bytes(state: State, signer: Signer) -> None:
    evaluations = gossip.topic_name(NETWORK.netuid, "evaluations")
    for seq in range(1, 4):
        envelope = seal(signer, seq)
        assert store.store_received(state, evaluations, envelope, envelope.to_wire(), "peerA")
    for seq in range(4, 20):  # a flood on another topic
        envelope = seal(signer, seq)
        assert store.store_received(state, TOPIC, envelope, envelope.to_wire(), "peerA")
    store.prune_inbox(state, max_rows=5, max_age_ms=60_000, now=now_ms())
    assert len(store.inbox_rows(state, topic=evaluations)) == 3  # not evicted by the flood
    assert len(store.inbox_rows(state, topic=TOPIC)) == 5
    size = len(seal(signer, 1).to_wire())
    store.prune_inbox(state, max_rows=5, max_age_ms=60_000, now=now_ms(), max_bytes=2 * size + size // 2)
    assert inbox_size(state) == 2


def _result(valid: bool, age_s: float = 0.0) -> ValidationResult:
    return ValidationResult(is_valid=valid, timestamp=time.time() - age_s)


def test_validation_cache_evicts_the_least_recently_used_beyond_its_size() -> None:
    cache = ReasonedValidationCache(ttl=300, max_size=3)
    for key in (b"a", b"b", b"c"):
        cache.put(key, _result(True))
    assert cache.get(b"a") is not None  # a is now the most recently used
    cache.put(b"d", _result(True))
    assert list(cache.cache) == [b"c", b"a", b"d"]
    assert cache.get(b"b") is None
    cache.put(b"c", _result(False))  # a put refreshes too
    cache.put(b"e", _result(True))
    assert list(cache.cache) == [b"d", b"c", b"e"]
    assert len(cache.cache) == cache.max_size


def test_validation_cache_forgets_what_outlived_its_ttl() -> None:
    cache = ReasonedValidationCache(ttl=300, max_size=10)
    cache.put(b"old", _result(False, age_s=301))
    cache.put(b"new", _result(False, age_s=299))
    assert cache.get(b"old") is None
    assert b"old" not in cache.cache
    assert cache.get(b"new") is not None
    cache.put(b"older", _result(False, age_s=900))
    cache.clear_expired()
    assert list(cache.cache) == [b"new"]


def test_validation_cache_keeps_reasons_and_skips_transient_refusals() -> None:
    cache = ReasonedValidationCache(ttl=300, max_size=10)
    cache.reasons[b"r"] = "wrong_role"
    cache.put(b"r", _result(False))
    cached = cache.get(b"r")
    assert cached is not None and cached.error_message == "wrong_role"
    assert b"r" not in cache.reasons
    cache.transient.add(b"t")
    cache.put(b"t", _result(False))  # a local failure: validated afresh next time
    assert cache.get(b"t") is None and b"t" not in cache.transient
    cache.transient.add(b"v")
    cache.put(b"v", _result(True))  # valid results are cached whatever happened
    assert cache.get(b"v") is not None


class Writes:
    """Counts the write transactions a connection begins (sqlite's trace callback)."""

    def __init__(self, state: State) -> None:
        self.count = 0
        state.conn.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        self.count += statement.startswith("BEGIN")


def test_a_replay_of_what_we_stored_is_refused_before_any_write(state: State, signer: Signer) -> None:
    adm = admission(state)
    assert adm.admit(TOPIC, seal(signer, 1).to_wire(), "peerA", forwarder="peerA") == "stored"
    writes = Writes(state)
    other_body = seal(signer, 1, body={"other": True}).to_wire()
    assert adm.admit(TOPIC, other_body, "peerA", forwarder="peerA") == "replay"
    assert writes.count == 0  # refused by the remembered window, counted in memory
    assert count(state, "replay", adm) == 1


def test_a_window_another_process_advanced_is_still_enforced_by_the_write(
    state: State, signer: Signer
) -> None:
    adm = admission(state)
    assert adm.admit(TOPIC, seal(signer, 1).to_wire(), "peerA", forwarder="peerA") == "stored"
    elsewhere = seal(signer, 2)  # stored by another process: our remembered window lags
    assert store.store_received(state, TOPIC, elsewhere, elsewhere.to_wire(), "peerB")
    same_number = seal(signer, 2, body={"other": True}).to_wire()
    assert adm.admit(TOPIC, same_number, "peerA", forwarder="peerA") == "replay"
    assert count(state, "replay", adm) == 1
    assert sorted(r["seq"] for r in store.inbox_rows(state)) == [1, 2]
    assert adm.admit(TOPIC, seal(signer, 3).to_wire(), "peerA", forwarder="peerA") == "stored"
