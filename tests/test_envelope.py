"""Signed envelopes: binding, strict parsing, and every way verification must refuse."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.replay import SequenceWindow
from platform_cli.identity import KeyStore, Signer, verify_signature

NET = env.Network(100, "platform-devnet")
NOW = 1_800_000_000_000
POLICY = env.VerifyPolicy(network=NET, kinds={"test.note"}, max_size=4096)


@pytest.fixture(scope="module", params=["sr25519", "ed25519"])
def signer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Signer:
    store = KeyStore(tmp_path_factory.mktemp("keys"))
    store.new("k", request.param)
    return store.signer("k")


def make(signer: Signer, **overrides: object) -> env.Envelope:
    fields: dict[str, object] = {
        "network": NET,
        "kind": "test.note",
        "signer": signer.ss58,
        "scheme": signer.scheme,
        "seq": 7,
        "ts_ms": NOW,
        "body": {"text": "hello", "n": 3, "blob": b"\x00\x01"},
    }
    fields.update(overrides)
    return env.seal(sign=signer.sign, **fields)  # type: ignore[arg-type]


def check(envelope: env.Envelope, policy: env.VerifyPolicy = POLICY, **kwargs: object) -> None:
    env.verify(envelope, policy, verify_signature=verify_signature, now_ms=NOW, **kwargs)  # type: ignore[arg-type]


def reason(envelope: env.Envelope, policy: env.VerifyPolicy = POLICY, **kwargs: object) -> str:
    with pytest.raises(env.EnvelopeError) as info:
        check(envelope, policy, **kwargs)
    return info.value.reason


def test_valid_envelope_round_trips_through_both_forms(signer: Signer) -> None:
    envelope = make(signer)
    check(envelope)
    assert env.from_wire(envelope.to_wire()) == envelope
    file_form = make(signer, body={"text": "no bytes in files"})
    assert env.from_file_json(file_form.to_file_json()) == file_form
    check(env.from_wire(envelope.to_wire()))


def test_signature_covers_every_field(signer: Signer) -> None:
    envelope = make(signer)
    for change in [
        {"network": env.Network(101, NET.genesis)},
        {"network": env.Network(100, "other-genesis")},
        {"kind": "test.other"},
        {"seq": 8},
        {"ts_ms": NOW + 1},
        {"body": {"text": "hellO", "n": 3, "blob": b"\x00\x01"}},
    ]:
        forged = dataclasses.replace(envelope, **change)  # type: ignore[arg-type]
        policy = dataclasses.replace(POLICY, network=forged.network, kinds={forged.kind})
        assert reason(forged, policy) == "bad_signature", change


def test_signature_from_another_key_fails(signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> None:
    store = KeyStore(tmp_path_factory.mktemp("other"))
    store.new("other", signer.scheme)
    other = store.signer("other")
    forged = dataclasses.replace(make(other), signer=signer.ss58)
    assert reason(forged) == "bad_signature"


def test_wrong_network_kind_size_and_time_are_refused(signer: Signer) -> None:
    assert reason(make(signer, network=env.Network(7, NET.genesis))) == "wrong_network"
    assert reason(make(signer, kind="test.vote")) == "wrong_kind"
    assert reason(make(signer, body=b"x" * 5000)) == "oversized"
    assert reason(make(signer, ts_ms=NOW - 6 * 60 * 1000)) == "stale"
    assert reason(make(signer, ts_ms=NOW + 6 * 60 * 1000)) == "stale"
    no_age_limit = dataclasses.replace(POLICY, max_age_ms=None)
    check(make(signer, ts_ms=NOW - 10**9), no_age_limit)


def test_replay_is_refused_with_the_persisted_window(signer: Signer) -> None:
    envelope = make(signer, seq=41)
    window = SequenceWindow().accept(41)
    assert reason(envelope, window=window) == "replay"
    far_ahead = SequenceWindow().accept(41 + 5000)
    assert reason(envelope, window=far_ahead) == "replay"
    check(make(signer, seq=40), window=window)


def test_the_sequence_at_the_window_edge_is_refused_though_pruned_from_the_seen_set(signer: Signer) -> None:
    window = SequenceWindow(size=8).accept(20)
    assert window.seen == frozenset({20})
    assert reason(make(signer, seq=12), window=window) == "replay"
    check(make(signer, seq=13), window=window)


def test_windows_prune_what_falls_out_and_refuse_replays() -> None:
    from platform_cli.core.replay import BitWindow

    assert SequenceWindow(size=8).accept(12).accept(20).seen == frozenset({20})
    with pytest.raises(ValueError, match=r"^already seen \(replay\)$"):
        BitWindow(size=8).accept(5).accept(5)
    assert BitWindow.from_bytes(10, b"\xff\xff", size=8).bits == 0xFF


def test_file_form_body_outside_the_canonical_model_is_refused_at_parse_time(signer: Signer) -> None:
    doc = make(signer).to_file_json()
    nested: object = 1
    for _ in range(canonical.MAX_DEPTH + 1):
        nested = [nested]
    for body in ({"n": 2**64}, {"n": -(2**64) - 1}, {"deep": nested}):
        with pytest.raises(env.EnvelopeError) as info:
            env.from_file_json({**doc, "body": body})
        assert info.value.reason == "non_canonical"
    env.from_file_json({**doc, "body": {"n": 2**64 - 1}})


def test_oversized_wire_message_is_refused_before_decoding(signer: Signer) -> None:
    with pytest.raises(env.EnvelopeError) as info:
        env.from_wire(make(signer, body=b"x" * 300_000).to_wire())
    assert info.value.reason == "oversized"


def test_non_canonical_wire_encoding_is_refused(signer: Signer) -> None:
    import cbor2

    envelope = make(signer)
    fields = canonical.decode(envelope.to_wire())
    reordered = cbor2.dumps(dict(sorted(fields.items(), reverse=True)))
    assert reordered != envelope.to_wire()
    with pytest.raises(env.EnvelopeError) as info:
        env.from_wire(reordered)
    assert info.value.reason == "non_canonical"


def test_malformed_envelopes_are_refused(signer: Signer) -> None:
    fields = canonical.decode(make(signer).to_wire())
    for bad in [
        {**fields, "v": 2},
        {**fields, "extra": 1},
        {k: v for k, v in fields.items() if k != "sig"},
        {**fields, "scheme": "rsa"},
        {**fields, "seq": -1},
        {**fields, "kind": "Not A Kind"},
        {**fields, "netuid": 70000},
    ]:
        with pytest.raises(env.EnvelopeError):
            env.from_wire(canonical.encode(bad))


@pytest.mark.parametrize(
    ("text", "reason", "message"),
    [
        ('{"seq": 1.0}', "non_canonical", "number 1.0 is not an integer"),
        ('{"x": [1e3]}', "non_canonical", "number 1e3 is not an integer"),
        ('{"x": NaN}', "non_canonical", "number NaN is not an integer"),
        ('{"x": -Infinity}', "non_canonical", "number -Infinity is not an integer"),
        ('{"seq": 1, "seq": 2}', "malformed", "duplicate key in JSON object"),
        ('{"seq": 1,}', "malformed", "not valid JSON"),
        (b'{"seq": "\\xff"}'.replace(b"\\xff", b"\xff"), "malformed", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "malformed", "JSON nested too deeply"),
        ('{"n": ' + "9" * 5000 + "}", "malformed", "not acceptable JSON"),
    ],
)
def test_file_form_refusals_keep_their_reason(text: str | bytes, reason: str, message: str) -> None:
    """A hook's refusal (a float) keeps its reason: it is not relabelled as bad JSON."""
    with pytest.raises(env.EnvelopeError, match=message) as info:
        env.strict_json_loads(text)
    assert info.value.reason == reason


def test_file_form_accepts_integers_of_any_sign_and_nesting() -> None:
    assert env.strict_json_loads('{"a": [-1, 0, 18446744073709551615], "b": {"c": null}}') == {
        "a": [-1, 0, 2**64 - 1],
        "b": {"c": None},
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_fails(signer: Signer, data: st.DataObject) -> None:
    wire = make(signer).to_wire()
    index = data.draw(st.integers(0, len(wire) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != wire[index]))
    tampered = wire[:index] + bytes([value]) + wire[index + 1 :]
    with pytest.raises(env.EnvelopeError):
        check(env.from_wire(tampered))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63)
        | st.text(max_size=16)
        | st.binary(max_size=16),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=12,
    ),
    seq=st.integers(0, 2**63 - 1),
)
def test_round_trip_any_body(signer: Signer, body: object, seq: int) -> None:
    envelope = make(signer, body=body, seq=seq)
    decoded = env.from_wire(envelope.to_wire())
    assert decoded == envelope
    check(decoded)


def test_documented_vector() -> None:
    """The envelope vector of docs/canonical-encoding.md."""
    import bittensor_core
    from nacl.signing import SigningKey

    key = SigningKey(bytes(range(32)))
    ss58 = bittensor_core.ss58_encode(bytes(key.verify_key))
    assert ss58 == "5C9TqVEs5Q51zUdjvp6tSsjHAfLseJKq1Dq6ULcuSLqEuRSf"
    envelope = env.seal(
        network=NET,
        kind="test.note",
        signer=ss58,
        scheme="ed25519",
        seq=1,
        ts_ms=1_800_000_000_000,
        body={"text": "hello"},
        sign=lambda message: key.sign(message).signature,
    )
    assert envelope.signing_payload().hex() == (
        "8974706c6174666f726d2f656e76656c6f70652f763118646f706c6174666f726d2d6465766e6574"
        "69746573742e6e6f746578303543395471564573355135317a55646a7670367453736a4841664c73"
        "654a4b7131447136554c6375534c7145755253666765643235353139011b000001a3185c5000a164"
        "746578746568656c6c6f"
    )
    assert envelope.signature.hex() == (
        "8ab1135f487b40299ae307ee9bc6b6dd6088769140aa50029903dc1a227bcf68"
        "e796ec81c5f289363d9ba41eca65792673c1240eea5867bd61398765c9d4840c"
    )
    assert envelope.message_id() == "8c5cb2b30ad2efb07a29a061f4df4d9230a258abe76fcb9f1e9dc706092af86d"
