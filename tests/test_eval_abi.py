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
