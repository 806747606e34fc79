"""DHT records at their edges: what a peer's record may look like (any shape, any age),
which of several copies wins, the put quota and the store budget exactly at their bounds."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from platform_cli.core import dhtrec
from platform_cli.core import envelope as env
from platform_cli.identity import KeyStore, Signer, verify_signature

NET = env.Network(100, "platform-devnet")
NOW = 1_800_000_000_000
MAX = dhtrec.MAX_RECORD_BYTES


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Signer]:
    store = KeyStore(Path(tmp_path_factory.mktemp("keys")))
    store.new("validator", "ed25519")
    store.new("other", "ed25519")
    return store.signer("validator"), store.signer("other")


def record(signer: Signer, body: Any, *, seq: int = 1, ts: int = NOW, kind: str = "dht.evaluation") -> bytes:
    return env.seal(
        network=NET, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=ts, body=body,
        sign=signer.sign,
    ).to_wire()  # fmt: skip


def check(key: str, value: bytes, validators: set[str]) -> env.Envelope:
    ctx = dhtrec.SignedContext(NET, validators)
    return dhtrec.check_signed(key, value, ctx, verify_signature=verify_signature, now_ms=NOW)


def refusal(key: str, value: bytes, validators: set[str]) -> str:
    with pytest.raises(dhtrec.RecordError) as info:
        check(key, value, validators)
    return str(info.value)


def test_a_record_of_any_shape_ranks_as_nothing(keys: tuple[Signer, Signer]) -> None:
    validator, other = keys
    human = dhtrec.with_owner("/eval/scores", validator.ss58)
    key = dhtrec.dht_key(human)
    good = record(validator, {"key": human, "data": b"d"}, seq=3, ts=NOW - 5)
    assert dhtrec.rank(key, good) == (validator.ss58, NOW - 5, 3)
    for body in ([human], {"data": b"d"}, {"key": 7, "data": b"d"}, "text", {"key": human + "x", "data": 1}):
        assert dhtrec.rank(key, record(validator, body)) is None
    assert dhtrec.rank(key, record(other, {"key": human, "data": b"d"})) is None  # not the key's owner
    assert dhtrec.rank(key, b"\x00garbage") is None
    oversized = record(validator, {"key": human, "data": b"x" * MAX})
    assert dhtrec.rank(key, oversized) is None


def test_the_newest_copy_by_time_then_sequence_wins(keys: tuple[Signer, Signer]) -> None:
    validator, _ = keys
    human = dhtrec.with_owner("/eval/scores", validator.ss58)
    key = dhtrec.dht_key(human)
    first = record(validator, {"key": human, "data": 1}, seq=9, ts=0)
    later = record(validator, {"key": human, "data": 2}, seq=2, ts=5)
    same_time = record(validator, {"key": human, "data": 3}, seq=3, ts=5)
    assert dhtrec.select_signed(key, [first, later]) == 1  # time first, whatever the sequence
    assert dhtrec.select_signed(key, [same_time, later, first]) == 0
    assert dhtrec.select_signed(key, [b"junk", first]) == 1  # a valid record at time 0 beats junk
    assert dhtrec.select_signed(key, [b"junk", b"more junk"]) == 0


def test_signed_record_refusals(keys: tuple[Signer, Signer]) -> None:
    validator, _ = keys
    validators = {validator.ss58}
    human = dhtrec.with_owner("/eval/scores", validator.ss58)
    key = dhtrec.dht_key(human)
    shape = f"record body for {key!r} must be {{'key': <its key>, 'data': ...}}"
    for body in ({"key": human}, [human, 1], {"key": 5, "data": 1}, {"key": human, "data": 1, "x": 2}):
        assert refusal(key, record(validator, body), validators) == shape
    assert refusal(key, record(validator, {"key": "garbage", "data": 1}), validators) == (
        f"record body names key 'garbage', which is not stored under {key!r}"
    )
    old = record(validator, {"key": human, "data": 1}, ts=NOW - 30 * 24 * 3600 * 1000)
    assert check(key, old, validators).ts_ms == NOW - 30 * 24 * 3600 * 1000  # records do not age out
    big = record(validator, {"key": human, "data": b"x" * MAX})
    assert refusal(key, big, validators).startswith(f"record for {key!r} refused: message of ")


def test_content_and_key_messages() -> None:
    value = b"x" * MAX
    key = dhtrec.dht_key(dhtrec.content_key(value))
    dhtrec.check_content(key, value)
    longer = b"x" * (MAX + 1)
    with pytest.raises(dhtrec.RecordError) as info:
        dhtrec.check_content(dhtrec.dht_key(dhtrec.content_key(longer)), longer)
    assert str(info.value) == f"record of {MAX + 1} bytes exceeds {MAX}"
    bad = "/sub/" + "AB" * 32
    with pytest.raises(dhtrec.RecordError) as info:
        dhtrec.check_key(bad)
    assert str(info.value) == f"submission key {bad!r} must be /sub/<sha256 hex of the value>"
    content = "/sub/" + hashlib.sha256(b"v").hexdigest()
    with pytest.raises(dhtrec.RecordError) as info:
        dhtrec.owner(content)
    assert str(info.value) == f"DHT key {content!r} is not in a signed namespace"
    assert dhtrec.with_owner("garbage", "5F") == "garbage"
    assert dhtrec.with_owner(content, "5F") == content


def test_put_quota_bounds_are_exact() -> None:
    quota = dhtrec.PutQuota(
        per_peer_puts=3, per_peer_bytes=100, unknown_total_puts=10, unknown_total_bytes=150
    )
    assert quota.charge("p", 100, 0) is None  # exactly the peer's byte budget
    assert quota.charge("p", 1, 0) == "peer p exceeds 3 puts / 100 bytes a window"
    assert quota.charge("q", 50, 0) is None  # the pool now holds exactly 150
    assert quota.charge("r", 1, 0) == "the unknown peers together exceed the DHT put quota"
    quota = dhtrec.PutQuota(per_peer_bytes=100, total_bytes=100)
    assert quota.charge("v", 60, 0, validator=True) is None
    assert quota.charge("v", 41, 0, validator=True) == "peer v exceeds 64 puts / 100 bytes a window"
    assert (
        quota.charge("w", 41, 0, validator=True) == "the validators peers together exceed the DHT put quota"
    )
    assert quota.charge("w", 40, 0, validator=True) is None


def test_store_budget_keeps_exactly_its_bytes() -> None:
    budget = dhtrec.StoreBudget(content_records=10, content_bytes=100)
    assert budget.admit("a", dhtrec.CONTENT, 100) == []  # exactly the budget
    assert budget.admit("b", dhtrec.CONTENT, 101) == ["b"]  # never fits
    assert budget.admit("b", dhtrec.CONTENT, 50) == ["a"]
    budget.remove("nothing-here")
    assert len(budget) == 1


def test_a_record_admitted_again_is_the_newest() -> None:
    budget = dhtrec.StoreBudget(content_records=2)
    budget.admit("a", dhtrec.CONTENT, 1)
    budget.admit("b", dhtrec.CONTENT, 1)
    budget.admit("a", dhtrec.CONTENT, 1)  # refreshed: b is now the oldest
    assert budget.admit("c", dhtrec.CONTENT, 1) == ["b"]


def test_signed_records_evict_the_heaviest_signers_oldest_exactly() -> None:
    budget = dhtrec.StoreBudget(signed_records=10, signed_bytes=100)
    budget.admit("b1", dhtrec.SIGNED, 10, "B")  # B holds one record, first
    budget.admit("a1", dhtrec.SIGNED, 10, "A")
    budget.admit("a2", dhtrec.SIGNED, 10, "A")
    assert budget.admit("a3", dhtrec.SIGNED, 70, "A") == []  # exactly 100 bytes
    # 130 bytes: A holds three, B two: A's oldest goes; then a tie goes to B, seen first
    assert budget.admit("b2", dhtrec.SIGNED, 30, "B") == ["a1", "b1", "a2"]
    assert [budget.kind(k) for k in ("a3", "b2", "b1")] == [dhtrec.SIGNED, dhtrec.SIGNED, None]
    counted = dhtrec.StoreBudget(signed_records=3)
    for k in ("a1", "a2", "b1"):
        counted.admit(k, dhtrec.SIGNED, 1, k[0].upper())
    assert counted.admit("b2", dhtrec.SIGNED, 1, "B") == ["a1"]
    assert counted.admit("c1", dhtrec.SIGNED, 1, "C") == ["b1"]
