"""The admission rule's inputs and details at their edges: the gossip size cap, the age
window a context sets, the window asked for, every refusal's detail; the rate limiter,
standing and tally arithmetic exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from platform_cli.core import envelope as env
from platform_cli.core import gossip
from platform_cli.core.replay import SequenceWindow
from platform_cli.identity import KeyStore, Signer, verify_signature

NET = env.Network(100, "platform-devnet")
NOW = 1_800_000_000_000


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, Signer]:
    store = KeyStore(Path(tmp_path_factory.mktemp("keys")))
    store.new("validator", "ed25519")
    store.new("other", "ed25519")
    return store.signer("validator"), store.signer("other")


def seal(
    signer: Signer, body: Any = None, *, kind: str = "submission", ts: int = NOW, seq: int = 1
) -> env.Envelope:
    return env.seal(
        network=NET, kind=kind, signer=signer.ss58, scheme=signer.scheme, seq=seq, ts_ms=ts,
        body={} if body is None else body, sign=signer.sign,
    )  # fmt: skip


def admit(data: bytes, topic: str, ctx: gossip.Context, **kw: Any) -> gossip.Decision:
    return gossip.admit(
        data, topic, ctx, now_ms=NOW, verify_signature=verify_signature, window_for=None, **kw
    )


def context(signer: Signer, **kw: Any) -> gossip.Context:
    return gossip.Context(NET, frozenset({signer.ss58}), "", registered=frozenset({signer.ss58}), **kw)


def padded_to(signer: Signer, size: int) -> bytes:
    """A signed submission whose wire form is exactly ``size`` bytes."""
    pad = size - len(seal(signer, {"p": ""}).to_wire())
    for extra in range(pad - 8, pad + 1):
        data = seal(signer, {"p": "x" * extra}).to_wire()
        if len(data) == size:
            return data
    raise AssertionError("no padding hits the size")


def test_the_gossip_cap_is_the_contexts_not_the_envelopes(signers: tuple[Signer, Signer]) -> None:
    validator, _ = signers
    ctx = context(validator)
    cap = gossip.MAX_MESSAGE_BYTES
    assert admit(padded_to(validator, cap), "submissions", ctx).accepted
    over = admit(padded_to(validator, cap + 1), "submissions", ctx)
    assert (over.reason, over.detail) == ("oversized", f"message of {cap + 1} bytes exceeds {cap}")
    small = dataclasses.replace(ctx, max_bytes=1000)
    assert admit(padded_to(validator, 1000), "submissions", small).accepted
    assert admit(padded_to(validator, 1001), "submissions", small).reason == "oversized"


def test_the_age_window_is_the_contexts(signers: tuple[Signer, Signer]) -> None:
    validator, _ = signers
    old = seal(validator, ts=NOW - 10 * 60 * 1000).to_wire()
    refused = admit(old, "submissions", context(validator))
    assert (refused.reason, refused.detail) == ("stale", "timestamp is older than the accepted window")
    assert admit(old, "submissions", context(validator, max_age_ms=None)).accepted
    assert admit(old, "submissions", context(validator, max_age_ms=10 * 60 * 1000)).accepted
    assert admit(old, "submissions", context(validator, max_age_ms=10 * 60 * 1000 - 1)).reason == "stale"


def test_the_window_asked_for_is_the_signers_for_the_kind(signers: tuple[Signer, Signer]) -> None:
    validator, _ = signers
    asked: list[tuple[str, str]] = []

    def window_for(signer: str, kind: str) -> SequenceWindow:
        asked.append((signer, kind))
        return SequenceWindow().accept(5)

    replayed = gossip.admit(
        seal(validator, seq=5).to_wire(), "submissions", context(validator), now_ms=NOW,
        verify_signature=verify_signature, window_for=window_for,
    )  # fmt: skip
    assert asked == [(validator.ss58, "submission")]
    assert replayed.reason == "replay"
    assert replayed.detail.startswith(f"sequence 5 from {validator.ss58}: ")


def test_refusal_details(signers: tuple[Signer, Signer]) -> None:
    validator, other = signers
    ctx = context(validator)
    unknown = admit(seal(validator).to_wire(), "gossip", ctx)
    assert (unknown.reason, unknown.detail) == ("unknown_topic", "topic 'gossip' is not ours")
    garbage = admit(b"\x18\x01", "submissions", ctx)
    assert garbage.reason == "non_canonical" and garbage.detail.startswith("malformed envelope: ")
    elsewhere = env.seal(
        network=env.Network(7, "other"), kind="submission", signer=validator.ss58, scheme=validator.scheme,
        seq=1, ts_ms=NOW, body={}, sign=validator.sign,
    )  # fmt: skip
    wrong_net = admit(elsewhere.to_wire(), "submissions", ctx)
    assert wrong_net.reason == "wrong_network" and wrong_net.detail.startswith(
        "signed for netuid 7 genesis 'other'"
    )
    future = admit(seal(validator, ts=NOW + 10 * 60 * 1000).to_wire(), "submissions", ctx)
    assert (future.reason, future.detail) == ("stale", "timestamp is too far in the future")
    limiter = gossip.RateLimiter(rate=1, burst=1)
    assert admit(seal(validator, seq=1).to_wire(), "submissions", ctx, limiter=limiter).accepted
    limited = admit(seal(validator, seq=2).to_wire(), "submissions", ctx, limiter=limiter)
    assert (limited.reason, limited.detail) == ("rate_limited", f"{validator.ss58} exceeds its message rate")
    stranger = seal(other, kind="evaluation").to_wire()
    role = admit(stranger, "evaluations", ctx)
    assert (role.reason, role.detail) == (
        "wrong_role",
        f"{other.ss58} may not sign 'evaluation' (validator only)",
    )


def test_blame_is_off_unless_asked(signers: tuple[Signer, Signer]) -> None:
    """A forgery refused by our view is a view refusal unless the caller asks to blame."""
    validator, other = signers
    real = seal(other, kind="evaluation")
    forged = dataclasses.replace(real, body={"changed": 1}).to_wire()
    ctx = context(validator)
    assert admit(forged, "evaluations", ctx).reason == "wrong_role"
    blamed = admit(forged, "evaluations", ctx, blame=True)
    assert blamed.reason == "bad_signature"
    assert blamed.detail == (
        f"signature does not verify for {other.ss58} ({other.ss58} may not sign 'evaluation' (validator only))"
    )


def test_announcements(signers: tuple[Signer, Signer]) -> None:
    validator, _ = signers

    def problem(body: Any, peer: str = "12D3KooWA") -> str | None:
        return gossip.check_announce(seal(validator, body, kind=gossip.ANNOUNCE_KIND), peer)

    assert problem({"peer_id": "12D3KooWA"}) is None
    assert problem({"peer_id": "12D3KooWA", "addrs": ["/ip4/1.2.3.4/tcp/1"]}) is None
    assert problem([]) == "announce body must be a map with a peer_id"
    assert problem({"addrs": []}) == "announce body must be a map with a peer_id"
    assert problem({"peer_id": 5}) == "announce body must be a map with a peer_id"
    assert problem({"peer_id": "12D3KooWB"}) == "announce names peer 12D3KooWB but came from 12D3KooWA"
    for addrs in ("/ip4/1.2.3.4/tcp/1", ["/ip4/1.2.3.4/tcp/1", 7], {"a": "b"}):
        assert problem({"peer_id": "12D3KooWA", "addrs": addrs}) == "announce addrs must be a list of strings"


def test_topic_labels_and_names() -> None:
    ours = gossip.topic_name(100, "submissions")
    assert gossip.topic_label(ours, 100) == ours
    assert gossip.topic_label(gossip.topic_name(7, "submissions"), 100) == gossip.OTHER_TOPIC
    assert gossip.topic_label("/someone/else", 100) == gossip.OTHER_TOPIC
    with pytest.raises(ValueError) as info:
        gossip.topic_name(100, "gossip")
    assert (
        str(info.value)
        == "unknown topic 'gossip': one of submissions, evaluations, consensus, registry, announce"
    )


def test_rate_limiter_refills_at_its_rate_and_never_backwards() -> None:
    limiter = gossip.RateLimiter(rate=2, burst=1)
    assert limiter.allow("s", 0)
    assert not limiter.allow("s", 499)  # 0.998 of a token
    assert limiter.allow("s", 500)
    fast = gossip.RateLimiter(rate=1000, burst=1)
    assert fast.allow("s", 10)
    assert not fast.allow("s", 10)  # no time passed: no token
    assert not fast.allow("s", 5)  # a clock that goes back refills nothing
    assert fast.allow("s", 11)


def test_rate_limiter_prunes_only_full_buckets_on_schedule() -> None:
    limiter = gossip.RateLimiter(rate=1, burst=2, prune_every=4)
    limiter.allow("a", 0)  # a: 1 token left; full again at 1000
    limiter.allow("b", 0)
    limiter.allow("c", 0)
    assert len(limiter) == 3
    limiter.allow("d", 500)  # the 4th call prunes: nobody is full at 500
    assert len(limiter) == 4
    for _ in range(3):
        limiter.allow("d", 2000)
    assert len(limiter) == 4  # calls 5-7: no pruning, though a, b and c are full again
    limiter.allow("e", 5000)  # the 8th call prunes a, b, c and d, all full by now
    assert len(limiter) == 1


def test_standing_charges_and_prunes_exactly() -> None:
    standing = gossip.Standing()
    assert not standing.charge("p", 0, NOW)
    assert not standing.charge("p", -5, NOW)
    assert len(standing) == 0  # nothing charged, nothing kept
    standing.charge("a", 0.01, NOW)
    standing.charge("b", 0.02, NOW)
    standing.prune(NOW)
    assert len(standing) == 2  # 0.01 is not below 0.01
    standing.prune(NOW + 60_000)  # a halves to 0.005, b to 0.01
    assert standing.points("b", NOW + 60_000) == pytest.approx(0.01)
    assert len(standing) == 1
    standing.charge("c", 0.5, NOW)
    standing.prune(NOW, below=0.5)
    assert standing.points("c", NOW) == 0.5 and len(standing) == 1


def test_tally_rows_keep_time_and_detail() -> None:
    tally = gossip.Tally()
    tally.count("t", "gossip", "received", now_ms=5)
    tally.count("t", "gossip", "refused", "bad_signature", "d" * 400, now_ms=6)
    tally.count("t", "gossip", "refused", "bad_signature", now_ms=9)
    tally.count("t", "gossip", "received", now_ms=8, n=3)
    received, refused = tally.drain()
    assert (received.count, received.last_ms, received.last_detail) == (4, 8, "")
    assert (refused.count, refused.last_ms, refused.last_detail) == (2, 9, "d" * 300)
    tally.count("t", "gossip", "refused", "bad_signature", "e" * 301, now_ms=10)
    tally.count("t", "gossip", "refused", "bad_signature", "f" * 301, now_ms=11)
    (again,) = tally.drain()
    assert again.last_detail == "f" * 300
    tally.merge([refused])
    (merged,) = tally.drain()
    assert (merged.count, merged.last_ms, merged.last_detail) == (2, 9, "d" * 300)
    assert tally.drain() == []
