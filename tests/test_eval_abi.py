"""ABI v1 codec (pure): input encoding, strict output decoding, seed, fixed point."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_cli.core import abi, canonical

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=32)
results = st.builds(
    lambda valid, score, message, metrics: abi.Result(score if valid else 0, valid, message, metrics),
    st.booleans(),
    st.integers(0, abi.SCORE_SCALE),
    st.text(max_size=200),
    st.dictionaries(names, st.integers(-(2**63), 2**63 - 1), max_size=abi.MAX_METRICS),
)


@given(results)
def test_output_round_trip(result):
    assert abi.decode_output(abi.encode_output(result)) == result


def header(abi_byte=1, valid=1, message_len=0, score=5, count=0) -> bytes:
    return struct.pack("<BBHIH", abi_byte, valid, message_len, score, count)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x01\x01", "shorter than"),
        (header(abi_byte=2), "abi byte is 2"),
        (header(valid=2), "valid flag"),
        (header(score=abi.SCORE_SCALE + 1), "exceeds"),
        (header(valid=0, score=1), "invalid result carries score"),
        (header(message_len=5) + b"ab", "inside the message"),
        (header(message_len=2) + b"\xff\xfe", "not UTF-8"),
        (header(count=33), "metrics exceed"),
        (header(count=1), "before metric 0"),
        (header(count=1) + b"\x02AB" + bytes(8), "invalid name"),
        (header(count=1) + b"\x01a" + bytes(4), "inside metric"),
        (header(count=2) + (b"\x01a" + bytes(8)) * 2, "appears twice"),
        (header() + b"\x00", "unexpected bytes"),
    ],
)
def test_output_decoder_is_strict(data, error):
    with pytest.raises(abi.AbiError, match=error):
        abi.decode_output(data)


def test_input_is_canonical_and_round_trips():
    seed = abi.derive_seed(3, b"\1" * 32, b"\2" * 32)
    data = abi.encode_input(
        challenge_id="sort",
        version="1.0.0",
        module_sha256=b"\2" * 32,
        submission=b"sub",
        seed=seed,
        params={"k": 1},
    )
    assert canonical.decode(data) is not None
    assert data[:3] == b"\x85\x01\x58"  # array(5), abi 1, bytes(32) head: what WAT challenges rely on
    decoded = abi.decode_input(data)
    assert decoded["submission"] == b"sub" and decoded["seed"] == seed and decoded["params"] == {"k": 1}


def test_seed_is_pinned_and_depends_on_every_part():
    seed = abi.derive_seed(0, bytes(32), bytes(32))
    assert seed.hex() == "68d73f9e26b16a2ed20aacf24a242e0a45bee94a69ca7183a1c1d47c9bb9fc32"
    assert (
        len(
            {
                seed,
                abi.derive_seed(1, bytes(32), bytes(32)),
                abi.derive_seed(0, b"\1" * 32, bytes(32)),
                abi.derive_seed(0, bytes(32), b"\1" * 32),
            }
        )
        == 4
    )
    with pytest.raises(ValueError):
        abi.derive_seed(0, b"short", bytes(32))


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_pointer_packing(ptr, length):
    packed = abi.pack_pointer(ptr, length)
    signed = packed - 2**64 if packed >= 2**63 else packed  # as wasmtime hands i64 back
    assert abi.unpack_pointer(signed) == (ptr, length)


def test_ratio_score_clamps():
    assert abi.ratio_score(1, 2) == 500_000_000
    assert abi.ratio_score(5, 2) == abi.SCORE_SCALE
    assert abi.ratio_score(-1, 2) == 0 and abi.ratio_score(1, 0) == 0


def metric(name: bytes, value: int = 0) -> bytes:
    return bytes([len(name)]) + name + struct.pack("<q", value)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "output of 0 bytes is shorter than the 10-byte header"),
        (header()[:9], "output of 9 bytes is shorter than the 10-byte header"),
        (header(abi_byte=0), "output abi byte is 0, expected 1"),
        (header(valid=2), "output valid flag is 2, expected 0 or 1"),
        (header(score=abi.SCORE_SCALE + 1), "score 1000000001 exceeds 1000000000"),
        (header(valid=0, score=7), "an invalid result carries score 7, expected 0"),
        (header(message_len=1025) + b"a" * 1025, "message of 1025 bytes exceeds 1024"),
        (header(count=33) + metric(b"a") * 33, "33 metrics exceed 32"),
        (header(message_len=3) + b"ab", "output ends inside the message"),
        (header(message_len=1) + b"\x80", "message is not UTF-8"),
        (header(count=2) + metric(b"a"), "output ends before metric 1"),
        (header(count=1) + metric(b""), "metric 0 has an invalid name b''"),
        (header(count=1) + metric(b"a" * 33), "metric 0 has an invalid name b'" + "a" * 33 + "'"),
        (header(count=1) + metric(b"a\n"), "metric 0 has an invalid name b'a\\n'"),  # not [a-z0-9_]
        (header(count=2) + metric(b"a") + metric(b"b-c"), "metric 1 has an invalid name b'b-c'"),
        (header(count=1) + b"\x05ab", "metric 0 has an invalid name b'ab'"),  # the name is cut short
        (header(count=1) + b"\x02ab" + bytes(7), "output ends inside metric 'ab'"),
        (header(count=2) + metric(b"x_1") * 2, "metric 'x_1' appears twice"),
        (header() + b"\x00\x00", "2 unexpected bytes after the last metric"),
        (header(count=1) + metric(b"a") + b"\x00", "1 unexpected bytes after the last metric"),
    ],
)
def test_output_errors_say_exactly_what_is_wrong(data: bytes, error: str) -> None:
    with pytest.raises(abi.AbiError) as info:
        abi.decode_output(data)
    assert str(info.value) == error


def test_output_at_every_limit_decodes() -> None:
    names = [f"m{i:02d}".encode() for i in range(abi.MAX_METRICS - 1)] + [b"z" * abi.MAX_METRIC_NAME]
    data = (
        header(message_len=abi.MAX_MESSAGE_BYTES, score=abi.SCORE_SCALE, count=abi.MAX_METRICS)
        + "é".encode() * 512
        + b"".join(metric(name, -(2**63)) for name in names)
    )
    result = abi.decode_output(data)
    assert (result.score, result.valid, result.message) == (abi.SCORE_SCALE, True, "é" * 512)
    assert list(result.metrics) == [name.decode() for name in names]
    assert set(result.metrics.values()) == {-(2**63)}
    assert abi.decode_output(header(valid=0, score=0)) == abi.Result(0, False, "", {})
    assert abi.decode_output(header(count=1) + metric(b"a", 2**63 - 1)).metrics == {"a": 2**63 - 1}


def test_a_result_is_written_exactly_as_the_record_says() -> None:
    result = abi.Result(7, True, "hi", {"n": -2, "ok": 1})
    assert abi.encode_output(result) == (
        header(message_len=2, score=7, count=2) + b"hi" + metric(b"n", -2) + metric(b"ok", 1)
    )
    assert result.to_canonical() == {
        "score": 7,
        "valid": True,
        "message": "hi",
        "metrics": {"n": -2, "ok": 1},
    }
    with pytest.raises(abi.AbiError, match="an invalid result carries score 7"):
        abi.encode_output(abi.Result(7, False, "", {}))


def test_input_decodes_to_every_field_and_refuses_other_arrays() -> None:
    seed = bytes(range(32))
    data = abi.encode_input(
        challenge_id="sort", version="1.2.3", module_sha256=b"\2" * 32, submission=b"s", seed=seed, params={}
    )
    assert abi.decode_input(data) == {
        "seed": seed,
        "submission": b"s",
        "params": {},
        "challenge_id": "sort",
        "version": "1.2.3",
        "module_sha256": b"\2" * 32,
    }
    for value in ({"abi": 1}, [1, seed, b"s", {}], [2, seed, b"s", {}, ["sort", "1.2.3", b""]]):
        with pytest.raises(abi.AbiError) as info:
            abi.decode_input(canonical.encode(value))
        assert str(info.value) == "input is not an ABI v1 array"
    for bad_seed in (bytes(31), bytes(33)):
        with pytest.raises(ValueError, match="seed must be 32 bytes"):
            abi.encode_input(
                challenge_id="sort", version="1", module_sha256=b"", submission=b"", seed=bad_seed, params={}
            )


@pytest.mark.parametrize(("submission", "module"), [(bytes(31), bytes(32)), (bytes(32), bytes(33))])
def test_seed_hashes_must_be_32_bytes(submission: bytes, module: bytes) -> None:
    with pytest.raises(ValueError) as info:
        abi.derive_seed(0, submission, module)
    assert str(info.value) == "hashes must be 32 bytes"


def test_pointer_halves_and_ratio_fixed_point_are_exact() -> None:
    assert abi.pack_pointer(1, 2) == 2**32 + 2
    assert abi.unpack_pointer(-1) == (2**32 - 1, 2**32 - 1)
    assert abi.unpack_pointer(2**64 + 5) == (0, 5)
    assert abi.ratio_score(1, 3) == 333_333_333 and abi.ratio_score(2, 3) == 666_666_666
    assert abi.ratio_score(1, 1) == abi.SCORE_SCALE and abi.ratio_score(3, -1) == 0
