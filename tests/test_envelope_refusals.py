"""Every refusal of an envelope, with the reason a counter records and the message an
operator reads; each bound exactly at its edge and one past it."""

from __future__ import annotations

from typing import Any

import pytest

from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.replay import SequenceWindow
from platform_cli.identity import KeyStore, Signer, verify_signature

NET = env.Network(100, "platform-devnet")
NOW = 1_800_000_000_000
SIGNER = "5DVH4ASWcfJ5cUE31CtsCvoE78wisVsJRXagswAReC6zq33M"


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    store = KeyStore(tmp_path_factory.mktemp("keys"))
    store.new("k", "ed25519")
    return store.signer("k")


def wire_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": 1,
        "netuid": 100,
        "genesis": "platform-devnet",
        "kind": "test.note",
        "signer": SIGNER,
        "scheme": "sr25519",
        "seq": 1,
        "ts": NOW,
        "body": {"n": 1},
        "sig": b"\x01" * 64,
    }
    fields.update(changes)
    return fields


def wire_refusal(fields: dict[str, Any], **kw: int) -> tuple[str, str]:
    with pytest.raises(env.EnvelopeError) as info:
        env.from_wire(canonical.encode(fields), **kw)
    return info.value.reason, str(info.value)


MALFORMED_SHAPES = [
    ({"v": 2}, "unsupported envelope version 2"),
    ({"netuid": 65536}, "netuid 65536 is not an integer in 0..65535"),
    ({"netuid": -1}, "netuid -1 is not an integer in 0..65535"),
    ({"netuid": True}, "netuid True is not an integer in 0..65535"),
    ({"genesis": ""}, "genesis must be a string of 1..128 characters"),
    ({"genesis": "g" * 129}, "genesis must be a string of 1..128 characters"),
    ({"genesis": 5}, "genesis must be a string of 1..128 characters"),
    ({"kind": "Not A Kind"}, "kind 'Not A Kind' is not a valid kind name"),
    ({"kind": 7}, "kind 7 is not a valid kind name"),
    ({"scheme": "rsa"}, "scheme 'rsa' is not one of ('sr25519', 'ed25519')"),
    ({"signer": "s" * 39}, f"signer {'s' * 39!r} is not an ss58 address"),
    ({"signer": "s" * 61}, f"signer {'s' * 61!r} is not an ss58 address"),
    ({"signer": 12345}, "signer 12345 is not an ss58 address"),
    ({"seq": 2**63}, "seq and ts must be non-negative 63-bit integers"),
    ({"seq": -1}, "seq and ts must be non-negative 63-bit integers"),
    ({"ts": 2**63}, "seq and ts must be non-negative 63-bit integers"),
    ({"seq": False}, "seq and ts must be non-negative 63-bit integers"),
    ({"sig": "01" * 64}, "signature is not a byte string"),
]


@pytest.mark.parametrize(("changes", "message"), MALFORMED_SHAPES)
def test_malformed_wire_envelopes_say_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    assert wire_refusal(wire_fields(**changes)) == ("malformed", message)


@pytest.mark.parametrize(
    "changes",
    [
        {"netuid": 0},
        {"netuid": 65535},
        {"genesis": "g"},
        {"genesis": "g" * 128},
        {"signer": "s" * 40},
        {"signer": "s" * 60},
        {"seq": 0, "ts": 0},
        {"seq": 2**63 - 1, "ts": 2**63 - 1},
        {"kind": "a" + "b" * 63},
        {"scheme": "ed25519"},
    ],
)
def test_shapes_at_their_bounds_are_accepted(changes: dict[str, Any]) -> None:
    envelope = env.from_wire(canonical.encode(wire_fields(**changes)))
    assert envelope.to_wire() == canonical.encode(wire_fields(**changes))


def test_wire_field_set_and_size() -> None:
    fields = wire_fields()
    missing = {k: v for k, v in fields.items() if k != "body"}
    assert wire_refusal(missing) == ("malformed", "envelope fields are not the expected set")
    assert wire_refusal({**fields, "extra": 1}) == ("malformed", "envelope fields are not the expected set")
    data = canonical.encode(fields)
    assert env.from_wire(data, max_size=len(data)).seq == 1
    assert wire_refusal(fields, max_size=len(data) - 1) == (
        "oversized",
        f"message of {len(data)} bytes exceeds {len(data) - 1}",
    )
    with pytest.raises(env.EnvelopeError) as info:
        env.from_wire(data + b"\x00")
    assert info.value.reason == "non_canonical"
    assert str(info.value) == "malformed envelope: not the canonical encoding of its value"


def file_doc(**changes: Any) -> dict[str, Any]:
    doc = {k: v for k, v in wire_fields().items() if k != "sig"}
    doc["signature"] = "ab" * 64
    doc.update(changes)
    return doc


def file_refusal(doc: Any) -> tuple[str, str]:
    with pytest.raises(env.EnvelopeError) as info:
        env.from_file_json(doc)
    return info.value.reason, str(info.value)


def test_file_form_refusals() -> None:
    assert env.from_file_json(file_doc()).signature == bytes.fromhex("ab" * 64)
    assert file_refusal([file_doc()]) == ("malformed", "a signed envelope must be a JSON object")
    without_seq = {k: v for k, v in file_doc(extra=1).items() if k != "seq"}
    assert file_refusal(without_seq) == ("malformed", "envelope fields: missing 'seq', unexpected 'extra'")
    assert file_refusal({k: v for k, v in file_doc().items() if k not in ("seq", "ts")}) == (
        "malformed",
        "envelope fields: missing 'seq', missing 'ts'",
    )
    assert file_refusal(file_doc(b=1, a=2)) == (
        "malformed",
        "envelope fields: unexpected 'a', unexpected 'b'",
    )
    for signature in ("AB" * 64, "ab" * 63, "ab" * 65, 5, bytes(64)):
        assert file_refusal(file_doc(signature=signature)) == (
            "malformed",
            "signature must be 128 lowercase hex digits",
        )
    assert file_refusal(file_doc(body={"x": [1.5]})) == (
        "non_canonical",
        "body.x[0]: floats are not allowed (use fixed-point integers)",
    )
    assert file_refusal(file_doc(v=3)) == ("malformed", "unsupported envelope version 3")


POLICY = env.VerifyPolicy(network=NET, kinds={"test.note"}, max_size=4096)


def sealed(signer: Signer, **overrides: Any) -> env.Envelope:
    fields: dict[str, Any] = {
        "network": NET,
        "kind": "test.note",
        "signer": signer.ss58,
        "scheme": signer.scheme,
        "seq": 7,
        "ts_ms": NOW,
        "body": {"text": "hello"},
    }
    fields.update(overrides)
    return env.seal(sign=signer.sign, **fields)


def verify_refusal(envelope: env.Envelope, policy: env.VerifyPolicy = POLICY, **kw: Any) -> tuple[str, str]:
    with pytest.raises(env.EnvelopeError) as info:
        env.verify(envelope, policy, verify_signature=verify_signature, now_ms=NOW, **kw)
    return info.value.reason, str(info.value)


def accepted(envelope: env.Envelope, policy: env.VerifyPolicy = POLICY, **kw: Any) -> None:
    env.verify(envelope, policy, verify_signature=verify_signature, now_ms=NOW, **kw)


def test_size_bound_is_exact(signer: Signer) -> None:
    envelope = sealed(signer)
    size = len(envelope.to_wire())
    import dataclasses

    accepted(envelope, dataclasses.replace(POLICY, max_size=size))
    tight = dataclasses.replace(POLICY, max_size=size - 1)
    assert verify_refusal(envelope, tight) == ("oversized", f"message of {size} bytes exceeds {size - 1}")


def test_kind_and_network_refusals(signer: Signer) -> None:
    assert verify_refusal(sealed(signer, kind="test.other")) == (
        "wrong_kind",
        "kind 'test.other' is not accepted here",
    )
    other = env.Network(101, "elsewhere")
    assert verify_refusal(sealed(signer, network=other)) == (
        "wrong_network",
        "signed for netuid 101 genesis 'elsewhere', this network is netuid 100 genesis 'platform-devnet'",
    )


def test_time_window_is_exact_at_both_ends(signer: Signer) -> None:
    future, age = POLICY.max_future_ms, POLICY.max_age_ms
    assert age is not None
    accepted(sealed(signer, ts_ms=NOW + future))
    assert verify_refusal(sealed(signer, ts_ms=NOW + future + 1)) == (
        "stale",
        "timestamp is too far in the future",
    )
    accepted(sealed(signer, ts_ms=NOW - age))
    assert verify_refusal(sealed(signer, ts_ms=NOW - age - 1)) == (
        "stale",
        "timestamp is older than the accepted window",
    )
    import dataclasses

    ageless = dataclasses.replace(POLICY, max_age_ms=None)
    accepted(sealed(signer, ts_ms=0), ageless)
    assert verify_refusal(sealed(signer, ts_ms=NOW + future + 1), ageless)[0] == "stale"


def test_replay_and_signature_refusals_name_the_signer(signer: Signer) -> None:
    window = SequenceWindow().accept(7)
    reason, message = verify_refusal(sealed(signer), window=window)
    assert reason == "replay"
    assert message.startswith(f"sequence 7 from {signer.ss58}: ")
    forged = sealed(signer, body={"text": "hello"})
    forged = env.Envelope(
        forged.network,
        forged.kind,
        forged.signer,
        forged.scheme,
        forged.seq,
        forged.ts_ms,
        {"text": "bye"},
        forged.signature,
    )
    assert verify_refusal(forged) == ("bad_signature", f"signature does not verify for {signer.ss58}")
    short = env.Envelope(NET, "test.note", signer.ss58, signer.scheme, 7, NOW, {}, b"\x00" * 63)
    assert verify_refusal(short) == ("bad_signature", f"signature does not verify for {signer.ss58}")


def test_strict_json_messages() -> None:
    with pytest.raises(env.EnvelopeError) as info:
        env.strict_json_loads('{"a": {"b": 1, "b": 2}}')
    assert str(info.value) == "duplicate key in JSON object"
    with pytest.raises(env.EnvelopeError) as info:
        env.strict_json_loads("[" * 100_000 + "]" * 100_000)
    assert str(info.value) == "JSON nested too deeply"
