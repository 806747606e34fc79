"""Pure admission rules (core.gossip, core.dhtrec) and the sync protocol's framing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path

import pytest
import trio
import trio.testing

from platform_cli.core import dhtrec, gossip
from platform_cli.core import envelope as env
from platform_cli.core.replay import BitWindow, SequenceWindow
from platform_cli.identity import KeyStore, Signer, verify_signature
from platform_cli.p2p import store, sync
from platform_cli.state.db import open_state

NET = env.Network(100, "platform-devnet")
NOW = 1_800_000_000_000


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Signer, Signer, Signer]:
    store_ = KeyStore(tmp_path / "k")
    for name in ("validator", "outsider", "sudo"):
        store_.new(name, "ed25519")
    return store_.signer("validator"), store_.signer("outsider"), store_.signer("sudo")


def seal(
    signer: Signer, kind: str, body: object = None, *, seq: int = 1, ts: int = NOW, net=NET
) -> env.Envelope:
    return env.seal(
        network=net, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=ts, body=body or {},
        sign=signer.sign,
    )  # fmt: skip


def decide(envelope: env.Envelope | bytes, topic: str, validators, sudo: str = "", **kw) -> gossip.Decision:
    data = envelope if isinstance(envelope, bytes) else envelope.to_wire()
    # Registration is tested on its own: by default the signer counts as registered.
    signer = set() if isinstance(envelope, bytes) else {envelope.signer}
    ctx = gossip.Context(NET, frozenset(validators), sudo, registered=frozenset(kw.pop("registered", signer)))
    return gossip.admit(
        data, topic, ctx, now_ms=kw.pop("now", NOW), verify_signature=verify_signature,
        window_for=kw.pop("window_for", None), limiter=kw.pop("limiter", None), blame=kw.pop("blame", False),
    )  # fmt: skip


def test_topic_names_are_versioned_per_network() -> None:
    assert gossip.topic_name(7, "consensus") == "/platform/7/consensus/1"
    assert gossip.parse_topic("/platform/7/consensus/1") == (7, "consensus")
    assert gossip.parse_topic("/platform/7/consensus/2") is None
    assert gossip.parse_topic("/platform/7/gossip/1") is None
    with pytest.raises(ValueError, match="unknown topic"):
        gossip.topic_name(7, "chat")


def test_admission_accepts_a_valid_message(keys) -> None:
    validator, _, _ = keys
    decision = decide(seal(validator, "evaluation", {"score": 1}), "evaluations", {validator.ss58})
    assert decision.accepted and decision.envelope.body == {"score": 1}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "bad_signature"),
        ("wrong_network", "wrong_network"),
        ("wrong_kind", "wrong_kind"),
        ("wrong_role", "wrong_role"),
        ("stale", "stale"),
        ("future", "stale"),
        ("oversized", "oversized"),
        ("garbage", "non_canonical"),
        ("unknown_topic", "unknown_topic"),
        ("registry_not_sudo", "wrong_role"),
    ],
)
def test_admission_refuses_with_a_reason(keys, case: str, reason: str) -> None:
    validator, outsider, sudo = keys
    validators = {validator.ss58}
    topic = "submissions"
    message: env.Envelope | bytes = seal(validator, "submission")
    if case == "forged":
        message = dataclasses.replace(message, body={"changed": 1})
    elif case == "wrong_network":
        message = seal(validator, "submission", net=env.Network(100, "elsewhere"))
    elif case == "wrong_kind":
        message = seal(validator, "evaluation")
    elif case == "wrong_role":
        topic, message = "evaluations", seal(outsider, "evaluation")
    elif case == "stale":
        message = seal(validator, "submission", ts=NOW - 10 * 60 * 1000)
    elif case == "future":
        message = seal(validator, "submission", ts=NOW + 10 * 60 * 1000)
    elif case == "oversized":
        message = seal(validator, "submission", {"blob": b"x" * gossip.MAX_MESSAGE_BYTES})
    elif case == "garbage":
        message = b"\xff\x00garbage"
    elif case == "unknown_topic":
        topic = "chat"
    elif case == "registry_not_sudo":
        topic, message = "registry", seal(validator, "registry.update")
    decision = decide(message, topic, validators, sudo.ss58)
    assert not decision.accepted
    assert decision.reason == reason, decision.detail


def test_registry_updates_only_from_sudo_votes_only_from_validators(keys) -> None:
    validator, outsider, sudo = keys
    assert decide(seal(sudo, "registry.update"), "registry", {validator.ss58}, sudo.ss58).accepted
    assert decide(seal(validator, "registry.vote"), "registry", {validator.ss58}, sudo.ss58).accepted
    assert (
        decide(seal(outsider, "registry.vote"), "registry", {validator.ss58}, sudo.ss58).reason
        == "wrong_role"
    )


def test_an_announcement_by_a_registered_non_validator_is_refused(keys) -> None:
    validator, outsider, _ = keys
    validators = {validator.ss58}
    both = {validator.ss58, outsider.ss58}
    announce = {"peer_id": "12D3KooWA"}
    assert decide(
        seal(validator, gossip.ANNOUNCE_KIND, announce), "announce", validators, registered=both
    ).accepted
    refused = decide(seal(outsider, gossip.ANNOUNCE_KIND, announce), "announce", validators, registered=both)
    assert refused.reason == "wrong_role" and "validator only" in refused.detail


def test_only_registered_hotkeys_may_submit(keys) -> None:
    validator, outsider, _ = keys
    assert decide(seal(outsider, "submission"), "submissions", set(), registered={outsider.ss58}).accepted
    assert decide(seal(validator, "submission"), "submissions", {validator.ss58}).accepted
    fresh = decide(seal(outsider, "submission"), "submissions", {validator.ss58}, registered={validator.ss58})
    assert fresh.reason == "wrong_role" and "registered only" in fresh.detail


def test_standing_decays_and_forgets_quiet_peers() -> None:
    standing = gossip.Standing(ban_at=30, half_life_ms=1000)
    standing.charge("old", 10, NOW)
    standing.charge("recent", 10, NOW + 9000)
    assert standing.points("old", NOW + 1000) == pytest.approx(5)
    standing.prune(NOW + 10_000)
    assert len(standing) == 1  # "old" decayed below 0.01 points
    assert not standing.charge("recent", 10, NOW + 9000) and standing.charge("recent", 10, NOW + 9000)


def test_forgeries_behind_view_refusals_are_the_forwarders_fault(keys) -> None:
    """With ``blame``, a message our view refuses (role, time, replay) has its signature
    checked too: a forgery is refused as one; a valid signature leaves a view refusal."""
    _, outsider, _ = keys
    forged = dataclasses.replace(seal(outsider, "submission"), signature=bytes(64))
    assert decide(forged, "submissions", set(), registered=set()).reason == "wrong_role"  # no crypto spent
    assert decide(forged, "submissions", set(), registered=set(), blame=True).reason == "bad_signature"
    assert decide(
        seal(outsider, "submission"), "submissions", set(), registered=set(), blame=True
    ).reason == ("wrong_role")
    stale = dataclasses.replace(seal(outsider, "submission", ts=NOW - 3_600_000), signature=bytes(64))
    assert decide(stale, "submissions", set()).reason == "stale"
    assert decide(stale, "submissions", set(), blame=True).reason == "bad_signature"
    seen = SequenceWindow().accept(1)
    replayed = dataclasses.replace(seal(outsider, "submission"), signature=bytes(64))
    assert decide(replayed, "submissions", set(), window_for=lambda s, k: seen).reason == "replay"
    assert decide(replayed, "submissions", set(), window_for=lambda s, k: seen, blame=True).reason == (
        "bad_signature"
    )


def test_bit_window_follows_the_sequence_window_rule() -> None:
    """The bitmap window agrees with the set window on every number, in any order."""
    import random

    rng = random.Random(7)
    for size in (8, 64, 1024):
        bits, ref = BitWindow(size=size), SequenceWindow(size=size)
        for _ in range(3000):
            seq = max(0, ref.high + rng.randint(-size - 5, 40))
            assert bits.check(seq) == ref.check(seq), (size, seq)
            if ref.check(seq) is None:
                bits, ref = bits.accept(seq), ref.accept(seq)
        again = BitWindow.from_bytes(bits.high, bits.to_bytes(), size)
        assert again == bits and len(bits.to_bytes()) == size // 8
    assert BitWindow().accept(2**62).accept(2**62 - 5).check(2**62 - 5) == "already seen (replay)"


def test_replay_window_is_consulted(keys) -> None:
    validator, _, _ = keys
    message = seal(validator, "submission", seq=5)
    seen = SequenceWindow().accept(5)
    decision = decide(message, "submissions", set(), window_for=lambda signer, kind: seen)
    assert decision.reason == "replay"
    assert decide(message, "submissions", set(), window_for=lambda signer, kind: SequenceWindow()).accepted


def test_rate_limit_per_signer_with_time_passed_in(keys) -> None:
    validator, outsider, _ = keys
    limiter = gossip.RateLimiter(rate=10, burst=3)
    results = [
        decide(seal(validator, "submission", seq=i), "submissions", set(), limiter=limiter) for i in range(4)
    ]
    assert [r.accepted for r in results] == [True, True, True, False]
    assert results[-1].reason == "rate_limited"
    assert decide(seal(outsider, "submission"), "submissions", set(), limiter=limiter).accepted
    later = decide(seal(validator, "submission", seq=9), "submissions", set(), limiter=limiter, now=NOW + 100)
    assert later.accepted  # 100 ms at 10/s refills one token


def test_rate_limiter_forgets_idle_signers() -> None:
    limiter = gossip.RateLimiter(rate=10, burst=5, prune_every=100)
    for i in range(99):
        assert limiter.allow(f"signer{i}", NOW)
    assert len(limiter) == 99
    assert limiter.allow("late", NOW + 10_000)  # the 100th call prunes the refilled buckets
    assert len(limiter) == 1


def test_forgeries_do_not_spend_the_signers_rate(keys) -> None:
    validator, _, _ = keys
    limiter = gossip.RateLimiter(rate=1, burst=1)
    forged = dataclasses.replace(seal(validator, "submission"), body={"x": 1})
    for _ in range(5):
        assert decide(forged, "submissions", set(), limiter=limiter).reason == "bad_signature"
    assert decide(seal(validator, "submission", seq=2), "submissions", set(), limiter=limiter).accepted


def test_standing_reaches_the_ban_level_once_and_weighs_reasons() -> None:
    standing = gossip.Standing()
    faults = [standing.charge("p", gossip.penalty("bad_signature"), NOW) for _ in range(11)]
    assert faults.index(True) == 9 and faults.count(True) == 1  # the tenth fault, reported once
    assert not standing.charge("q", gossip.penalty("wrong_role"), NOW)
    views = [standing.charge("v", gossip.penalty("wrong_role"), NOW) for _ in range(1001)]
    assert views.count(True) == 1 and 990 <= views.index(True) <= 1000  # about a thousand view refusals
    assert gossip.penalty("duplicate") == gossip.penalty("local_failure") == 0
    slow = gossip.Standing(half_life_ms=1000)
    assert not any(slow.charge("p", gossip.FAULT_POINTS, NOW + 1000 * i) for i in range(100))  # decayed


def test_announcement_must_name_the_sending_peer(keys) -> None:
    validator, _, _ = keys
    announce = seal(
        validator, gossip.ANNOUNCE_KIND, {"peer_id": "12D3KooWA", "addrs": ["/ip4/1.2.3.4/tcp/1"]}
    )
    assert gossip.check_announce(announce, "12D3KooWA") is None
    assert "came from" in gossip.check_announce(announce, "12D3KooWB")


def test_content_records_must_hash_to_their_key() -> None:
    value = b"submission bytes"
    key = dhtrec.content_key(value)
    assert key == "/sub/" + hashlib.sha256(value).hexdigest()
    compact = dhtrec.dht_key(key)
    digest = base64.urlsafe_b64encode(hashlib.sha256(value).digest()).rstrip(b"=").decode()
    assert compact == "/sub/" + digest and len(compact.encode()) <= dhtrec.MAX_KEY_BYTES
    dhtrec.check_content(compact, value)
    with pytest.raises(dhtrec.RecordError, match="does not hash"):
        dhtrec.check_content(compact, value + b"!")
    with pytest.raises(dhtrec.RecordError, match="base64url"):
        dhtrec.check_content(key, value)  # the human form is not what the DHT stores
    with pytest.raises(dhtrec.RecordError, match="base64url"):
        dhtrec.check_content("/other/" + digest, value)


def test_compact_keys_are_short_canonical_and_stable() -> None:
    """Every key form maps to one compact key of at most 50 bytes (what py-libp2p answers
    FIND_NODE for), the compact form maps to itself, and only its canonical spelling is one."""
    owner = "5DVH4ASWcfJ5cUE31CtsCvoE78wisVsJRXagswAReC6zq33M"
    for human in ("/sub/" + "ab" * 32, f"/eval/{owner}/{'n' * 128}", f"/ckpt/{owner}/epoch-1"):
        compact = dhtrec.dht_key(human)
        assert len(compact.encode()) <= dhtrec.MAX_KEY_BYTES < len(human.encode())
        assert dhtrec.dht_key(compact) == compact
        assert dhtrec.compact_namespace(compact) == human.split("/")[1]
    assert dhtrec.dht_key(f"/eval/{owner}/a") != dhtrec.dht_key(f"/ckpt/{owner}/a")
    assert dhtrec.dht_key(f"/eval/{owner}/a") != dhtrec.dht_key(f"/eval/{owner}/b")
    canonical = dhtrec.dht_key("/sub/" + "ff" * 32)  # its last character carries two zero bits
    assert canonical.endswith("8")
    assert dhtrec.compact_namespace(canonical[:-1] + "9") is None  # the same digest, spelled otherwise
    for bad in ("/sub/" + "0" * 42, "/pk/" + "A" * 43, "/eval/" + "A" * 43 + "=", "sub/" + "A" * 43):
        assert dhtrec.compact_namespace(bad) is None
        with pytest.raises(dhtrec.RecordError):
            dhtrec.dht_key(bad)


def _record(signer: Signer, human: str, seq: int = 1, ts: int = NOW, kind: str = "dht.evaluation") -> bytes:
    return seal(signer, kind, {"key": human, "data": b"d"}, seq=seq, ts=ts).to_wire()


def test_signed_records_check_signer_role_key_binding_and_pick_the_newest(keys) -> None:
    validator, outsider, _ = keys
    ctx = dhtrec.SignedContext(NET, {validator.ss58})

    def check(key: str, value: bytes, **kw) -> env.Envelope:
        return dhtrec.check_signed(key, value, ctx, verify_signature=verify_signature, now_ms=NOW, **kw)

    e1 = dhtrec.with_owner("/eval/e1", validator.ss58)
    assert e1 == f"/eval/{validator.ss58}/e1"
    k1 = dhtrec.dht_key(e1)
    good = _record(validator, e1)
    assert check(k1, good).seq == 1
    mine = dhtrec.with_owner("/eval/e1", outsider.ss58)
    with pytest.raises(dhtrec.RecordError, match="not a validator"):
        check(dhtrec.dht_key(mine), _record(outsider, mine))
    e2 = dhtrec.with_owner("/eval/e2", validator.ss58)
    with pytest.raises(dhtrec.RecordError, match="not stored under"):
        check(dhtrec.dht_key(e2), good)  # a record cannot move to another key
    ckpt = dhtrec.with_owner("/ckpt/e1", validator.ss58)
    with pytest.raises(dhtrec.RecordError, match="not stored under"):
        check(dhtrec.dht_key(ckpt), _record(validator, e1, kind="dht.checkpoint"))  # nor to another namespace
    with pytest.raises(dhtrec.RecordError, match="compact key"):
        check(e1, good)
    newer = _record(validator, e1, seq=2, ts=NOW + 1)
    assert dhtrec.select_signed(k1, [good, newer]) == 1
    with pytest.raises(dhtrec.RecordError, match="older than the newest"):
        check(k1, good, newest_seen=(NOW + 1, 2))  # the newer one was seen: no rollback
    assert check(k1, newer, newest_seen=(NOW + 1, 2)).seq == 2  # the same record again is fine
    with pytest.raises(dhtrec.RecordError, match="signer ss58"):
        dhtrec.split("/eval/e1")  # a signed key must name its signer


def test_a_signature_for_one_purpose_is_never_valid_for_another(keys) -> None:
    """DHT records are signed with kinds of their own: a gossip evaluation is no DHT record
    and a DHT record is no gossip evaluation (nor a checkpoint record an evaluation one)."""
    validator, _, _ = keys
    ctx = dhtrec.SignedContext(NET, {validator.ss58})
    human = dhtrec.with_owner("/eval/epoch-1", validator.ss58)
    key = dhtrec.dht_key(human)
    assert dhtrec.SIGNED_NAMESPACES == {"eval": "dht.evaluation", "ckpt": "dht.checkpoint"}
    for kind in ("evaluation", "dht.checkpoint"):
        with pytest.raises(dhtrec.RecordError, match="not accepted"):
            dhtrec.check_signed(
                key, _record(validator, human, kind=kind), ctx, verify_signature=verify_signature, now_ms=NOW
            )
    record = env.from_wire(_record(validator, human))
    assert decide(record, "evaluations", {validator.ss58}).reason == "wrong_kind"
    assert all(record.kind not in rule.kinds for rule in gossip.TOPICS.values())


def test_a_validator_cannot_overwrite_another_validators_record(keys) -> None:
    validator, other, _ = keys
    ctx = dhtrec.SignedContext(NET, {validator.ss58, other.ss58})
    human = dhtrec.with_owner("/eval/epoch-1", validator.ss58)
    key = dhtrec.dht_key(human)
    original = _record(validator, human)
    newer_forgery = seal(
        other, "dht.evaluation", {"key": human, "data": b"theirs"}, seq=9, ts=NOW + 5
    ).to_wire()
    with pytest.raises(dhtrec.RecordError, match="not by the key's owner"):
        dhtrec.check_signed(key, newer_forgery, ctx, verify_signature=verify_signature, now_ms=NOW)
    assert dhtrec.select_signed(key, [original, newer_forgery]) == 0  # newest of the owner only


def test_store_budget_keeps_own_and_signed_records_apart_from_content() -> None:
    budget = dhtrec.StoreBudget(
        signer_records=2,
        signer_bytes=100,
        signed_records=3,
        signed_bytes=1000,
        content_records=3,
        content_bytes=50,
    )
    assert budget.admit("own1", dhtrec.OWN, 10) == []
    assert budget.admit("v1a", dhtrec.SIGNED, 10, "v1") == []
    assert [budget.admit(f"c{i}", dhtrec.CONTENT, 10) for i in range(3)] == [[], [], []]
    assert budget.admit("c3", dhtrec.CONTENT, 10) == ["c0"]  # content evicts content only
    assert budget.admit("c4", dhtrec.CONTENT, 35) == ["c1", "c2"]  # ... by bytes as well as count
    assert budget.admit("c5", dhtrec.CONTENT, 51) == ["c5"]  # cannot fit at all
    assert budget.kind("own1") == dhtrec.OWN and budget.kind("v1a") == dhtrec.SIGNED
    assert budget.admit("v1b", dhtrec.SIGNED, 10, "v1") == []
    assert budget.admit("v1c", dhtrec.SIGNED, 10, "v1") == ["v1a"]  # a signer evicts its own oldest
    assert budget.admit("v2a", dhtrec.SIGNED, 10, "v2") == []
    assert budget.admit("v3a", dhtrec.SIGNED, 10, "v3") == ["v1b"]  # in all: the heaviest signer first
    assert budget.admit("v1c", dhtrec.OWN, 10, "v1") == []  # fetched for ourselves: ours now
    assert budget.admit("v1c", dhtrec.SIGNED, 10, "v1") == [] and budget.kind("v1c") == dhtrec.OWN
    assert {budget.kind(k) for k in ("own1", "v1c")} == {dhtrec.OWN}
    budget.remove("own1")
    assert budget.kind("own1") is None


class _StreamAdapter:
    """trio's in-memory stream with the read/write/close shape of a libp2p stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def read(self, n: int) -> bytes:
        return await self.stream.receive_some(n)

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        await self.stream.aclose()


def _exchange(server: sync.Server, request: dict, peer: str = "p") -> tuple[list[tuple[str, bytes]], int]:
    """Run a sync between ``server`` and a client in memory: every item and the last row."""
    got: list[tuple[str, bytes]] = []
    rows: list[int] = []

    async def on_frame(items: sync.Items, row: int) -> bool:
        got.extend(items)
        rows.append(row)
        return True

    async def exchange() -> None:
        client_side, server_side = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle, _StreamAdapter(server_side), peer)
            await sync.fetch(_StreamAdapter(client_side), request, on_frame)

    trio.run(exchange)
    return got, rows[-1]


def test_sync_chunks_large_ranges_and_returns_everything(keys, tmp_path: Path) -> None:
    validator, _, _ = keys
    state = open_state(tmp_path / "node")
    topic = gossip.topic_name(NET.netuid, "submissions")
    sent = []
    for i in range(60):  # 60 x ~40 KiB: well beyond one 1 MiB chunk
        envelope = seal(validator, "submission", {"i": i, "blob": bytes(40_000)}, seq=i + 1)
        store.store_received(state, topic, envelope, envelope.to_wire(), "peer")
        sent.append(envelope.to_wire())
    frames = list(sync.answer_frames(state, {"op": "since", "after_row": 0, "since_ms": 0}))
    assert len(frames) >= 2
    assert all(sum(len(w) for _, w in items) <= sync.CHUNK_BYTES for items, _ in frames)
    first_items, first_row = frames[0]
    rest = sync.answer_frames(state, {"op": "since", "after_row": first_row, "since_ms": 0})
    assert [w for items, _ in rest for _, w in items] == sent[len(first_items) :]

    got, row = _exchange(sync.Server(state), {"op": "since", "after_row": 0})
    assert [w for _, w in got] == sent
    assert row == frames[-1][1]
    by_id = list(sync.answer_frames(state, {"op": "get", "ids": [env.from_wire(sent[3]).message_id()]}))
    assert by_id == [([[topic, sent[3]]], 0)]
    with pytest.raises(sync.SyncError, match="unknown op"):
        sync.answer_frames(state, {"op": "drop tables"})
    state.close()


def test_sync_client_is_bounded_against_a_hostile_responder(monkeypatch) -> None:
    """Endless frames of tiny items: handled frame by frame, cut off at the item cap."""
    monkeypatch.setattr(sync, "MAX_ITEMS", 5000)
    frames_seen: list[int] = []

    async def hostile(stream: _StreamAdapter) -> None:
        await sync.read_frame(stream)
        with trio.move_on_after(30):
            while True:
                items = [["t", b"x"]] * sync.FRAME_ITEMS
                await sync.write_frame(stream, {"items": items, "row": 1, "more": True})

    async def on_frame(items: sync.Items, row: int) -> bool:
        frames_seen.append(len(items))
        return True

    async def scenario() -> None:
        client_side, server_side = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hostile, _StreamAdapter(server_side))
            with pytest.raises(sync.SyncError, match="exceeds 5000 items"), trio.fail_after(20):
                await sync.fetch(_StreamAdapter(client_side), {"op": "since"}, on_frame)
            nursery.cancel_scope.cancel()

    trio.run(scenario)
    assert frames_seen == [sync.FRAME_ITEMS, sync.FRAME_ITEMS]  # admitted as they came, then cut off

    async def oversized_frame() -> None:
        client_side, server_side = trio.testing.memory_stream_pair()

        async def send() -> None:
            await sync.read_frame(_StreamAdapter(server_side))
            items = [["t", b""]] * (sync.FRAME_ITEMS + 1)
            await sync.write_frame(_StreamAdapter(server_side), {"items": items, "row": 1, "more": False})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with pytest.raises(sync.SyncError, match="items exceeds"):
                await sync.fetch(_StreamAdapter(client_side), {"op": "since"}, on_frame)

    trio.run(oversized_frame)


def test_sync_server_bounds_slow_requesters_and_keeps_validators_slots(monkeypatch, tmp_path: Path) -> None:
    """Requesters that never start, stall mid-request or never read the answer are cut off
    by deadlines; unknown peers that fill their small pool leave validators' slots free."""
    monkeypatch.setattr(sync, "FIRST_BYTE_S", 0.2)
    monkeypatch.setattr(sync, "REQUEST_TIMEOUT_S", 0.4)
    monkeypatch.setattr(sync, "FRAME_WRITE_S", 0.3)
    state = open_state(tmp_path / "node")
    topic = gossip.topic_name(NET.netuid, "submissions")
    envelope = seal(keys_signer(tmp_path), "submission", {"blob": bytes(60_000)})
    store.store_received(state, topic, envelope, envelope.to_wire(), "peer")
    server = sync.Server(
        state, is_validator=lambda peer: peer.startswith("validator"), validators=1, unknown=2
    )
    closed: list[str] = []

    class Named(_StreamAdapter):
        def __init__(self, stream: trio.abc.Stream, name: str) -> None:
            super().__init__(stream)
            self.name = name

        async def close(self) -> None:
            closed.append(self.name)
            await super().close()

    async def scenario() -> None:
        silent, stalled, extra, twice = (trio.testing.memory_stream_pair() for _ in range(4))
        deaf_client, deaf_server = trio.testing.lockstep_stream_pair()  # a write waits for a read
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle, Named(silent[1], "silent"), "sybil1")
            await stalled[0].send_all(b"\x00")  # one byte of the length, then nothing
            nursery.start_soon(server.handle, Named(stalled[1], "stalled"), "sybil2")
            await trio.sleep(0.05)
            nursery.start_soon(server.handle, Named(extra[1], "third sybil"), "sybil3")
            nursery.start_soon(server.handle, Named(twice[1], "same peer"), "sybil1")
            await trio.sleep(0.05)
            assert sorted(closed) == ["same peer", "third sybil"]  # refused at once
            assert server.slots.held(False) == 2 and server.slots.held(True) == 0
            nursery.start_soon(server.handle, Named(deaf_server, "never reads"), "validator1")
            await sync.write_frame(_StreamAdapter(deaf_client), {"op": "since", "after_row": 0})
            await trio.sleep(0.05)
            assert server.slots.held(True) == 1  # a validator is served while sybils hold theirs
            with trio.fail_after(5):
                while len(closed) < 5:
                    await trio.sleep(0.02)
            assert {"silent", "stalled", "never reads"} <= set(closed)
            assert server.slots.held(False) == server.slots.held(True) == 0

    trio.run(scenario)
    got, _ = _exchange(server, {"op": "since", "after_row": 0})
    assert [w for _, w in got] == [envelope.to_wire()]  # the server still serves afterwards
    state.close()


def keys_signer(root: Path) -> Signer:
    KeyStore(root / "sync-keys").new("s", "ed25519")
    return KeyStore(root / "sync-keys").signer("s")


def test_components_read_the_inbox_with_a_cursor(keys, tmp_path: Path) -> None:
    validator, _, _ = keys
    state = open_state(tmp_path / "node")
    topic = gossip.topic_name(NET.netuid, "evaluations")
    sent = [seal(validator, "evaluation" if i % 2 else "submission", {"i": i}, seq=i + 1) for i in range(6)]
    for envelope in sent:
        assert store.store_received(state, topic, envelope, envelope.to_wire(), "peerA")
    assert not store.store_received(state, topic, sent[0], sent[0].to_wire(), "peerB")  # deduplicated
    first = store.read_inbox(state, kinds=["evaluation"], limit=2)
    assert [m.envelope for m in first] == [sent[1], sent[3]]
    rest = store.read_inbox(state, after_row=first[-1].row, kinds=["evaluation"])
    assert [m.envelope for m in rest] == [sent[5]]
    assert {m.via for m in first + rest} == {"gossip"}
    state.close()


def test_put_quota_per_peer_and_per_pool_per_window() -> None:
    quota = dhtrec.PutQuota(
        per_peer_puts=2, per_peer_bytes=100, unknown_total_puts=3, total_puts=2, window_ms=1000
    )
    assert quota.charge("a", 10, NOW) is None
    assert quota.charge("a", 10, NOW) is None
    assert "exceeds 2 puts" in quota.charge("a", 10, NOW)
    assert "exceeds" in dhtrec.PutQuota(per_peer_bytes=100).charge("b", 101, NOW)  # bytes count too
    assert quota.charge("b", 10, NOW) is None
    assert quota.charge("c", 10, NOW) == "the unknown peers together exceed the DHT put quota"
    assert quota.charge("v", 10, NOW, validator=True) is None  # the sybils' pool is not the validators'
    assert quota.charge("w", 10, NOW, validator=True) is None
    assert (
        quota.charge("x", 10, NOW, validator=True) == "the validators peers together exceed the DHT put quota"
    )
    assert quota.charge("a", 10, NOW + 1000) is None  # a new window


def test_tally_counts_in_memory_and_drains_in_batches() -> None:
    tally = gossip.Tally()
    for i in range(1000):
        tally.count("t", "gossip", "refused", "wrong_role", f"detail {i}", now_ms=NOW + i)
    tally.count("t", "gossip", "received", now_ms=NOW, n=1000)
    rows = {(r.outcome, r.reason): r for r in tally.drain()}
    assert rows[("refused", "wrong_role")].count == 1000 and rows[("received", "")].count == 1000
    assert rows[("refused", "wrong_role")].last_detail == "detail 999"
    assert tally.drain() == []  # drained: the next batch starts from zero
    tally.count("t", "gossip", "refused", "wrong_role", now_ms=NOW + 5000)
    tally.merge(list(rows.values()))  # a failed write puts its rows back
    merged = {(r.outcome, r.reason): r.count for r in tally.drain()}
    assert merged == {("refused", "wrong_role"): 1001, ("received", ""): 1000}
