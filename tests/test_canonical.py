"""Canonical bytes: the model, the vectors of docs/canonical-encoding.md, strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_cli.core import canonical
from platform_cli.core.canonical import CanonicalError

# (value, canonical hex) pairs; docs/canonical-encoding.md lists the same vectors.
VECTORS = [
    (0, "00"),
    (23, "17"),
    (24, "1818"),
    (-1, "20"),
    (1_000_000, "1a000f4240"),
    (2**64 - 1, "1bffffffffffffffff"),
    (-(2**64), "3bffffffffffffffff"),
    (b"", "40"),
    (b"\x01\x02", "420102"),
    ("", "60"),
    ("é", "62c3a9"),
    (True, "f5"),
    (False, "f4"),
    (None, "f6"),
    ([1, [2, 3]], "8201820203"),
    ({"b": 1, "a": 2, "aa": 3}, "a3616102616201626161 03".replace(" ", "")),
]


@pytest.mark.parametrize(("value", "hexed"), VECTORS)
def test_vectors(value: object, hexed: str) -> None:
    assert canonical.encode(value).hex() == hexed
    assert canonical.decode(bytes.fromhex(hexed)) == value


def test_map_keys_sort_shortest_first_then_bytewise() -> None:
    encoded = canonical.encode({"zz": 0, "b": 0, "a": 0, "aaa": 0})
    assert canonical.decode(encoded) == {"a": 0, "b": 0, "zz": 0, "aaa": 0}
    assert list(canonical.decode(encoded)) == ["a", "b", "zz", "aaa"]


@pytest.mark.parametrize(
    "value",
    [1.5, float("nan"), {"x": [0.0]}, 2**64, -(2**64) - 1, {1: "int key"}, object(), {"s": {1, 2}}],
)
def test_values_outside_the_model_are_refused(value: object) -> None:
    with pytest.raises(CanonicalError):
        canonical.encode(value)


@pytest.mark.parametrize(
    ("hexed", "why"),
    [
        ("1801", "non-minimal integer"),
        ("190001", "non-minimal integer"),
        ("a2616201616102", "keys out of order"),
        ("a2616101616102", "duplicate key"),
        ("5f4101ff", "indefinite length"),
        ("f93c00", "half float"),
        ("fb3ff8000000000000", "double float"),
        ("c11a514b67b0", "tag"),
        ("c249010000000000000000", "bignum"),
        ("0001", "trailing bytes"),
        ("62c3", "truncated"),
        ("f7", "undefined"),
        ("a1016161", "integer key"),
    ],
)
def test_non_canonical_input_is_refused(hexed: str, why: str) -> None:
    with pytest.raises(CanonicalError):
        canonical.decode(bytes.fromhex(hexed))


def test_decode_enforces_size_limit() -> None:
    with pytest.raises(CanonicalError, match="exceeds"):
        canonical.decode(canonical.encode(b"x" * 100), max_size=50)


def test_nesting_depth_is_bounded() -> None:
    deep: list = []
    for _ in range(canonical.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(CanonicalError, match="deeper"):
        canonical.encode(deep)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_round_trip_and_uniqueness(value: object) -> None:
    encoded = canonical.encode(value)
    assert canonical.decode(encoded) == value
    assert canonical.encode(canonical.decode(encoded)) == encoded


def _nested(levels: int) -> object:
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_limit_is_exact_in_both_directions() -> None:
    """MAX_DEPTH containers around a leaf are accepted by encode and decode; one more is not."""
    deepest = _nested(canonical.MAX_DEPTH)
    encoded = canonical.encode(deepest)
    assert canonical.decode(encoded) == deepest
    with pytest.raises(CanonicalError, match=f"nested deeper than {canonical.MAX_DEPTH} levels"):
        canonical.encode(_nested(canonical.MAX_DEPTH + 1))
    too_deep = "81" * (canonical.MAX_DEPTH + 1) + "00"
    with pytest.raises(CanonicalError):
        canonical.decode(bytes.fromhex(too_deep))
    maps = {"k": _nested(canonical.MAX_DEPTH)}
    with pytest.raises(CanonicalError, match="deeper"):
        canonical.encode(maps)
    deepest_maps: object = 0
    for _ in range(canonical.MAX_DEPTH):
        deepest_maps = {"k": deepest_maps}
    assert canonical.decode(canonical.encode(deepest_maps)) == deepest_maps
    with pytest.raises(CanonicalError, match="deeper"):
        canonical.encode({"k": deepest_maps})


def test_errors_name_the_place_and_the_cause() -> None:
    cases = [
        ({"a": [1, {"b": 1.5}]}, "$.a[1].b: floats are not allowed (use fixed-point integers)"),
        ([0, 2**64], "$[1]: integer 18446744073709551616 is outside the 64-bit range"),
        ({"a": {3: 0}}, "$.a: map key 3 is not a string"),
        ({"x": {1, 2}}, "$.x: type set is not encodable"),
    ]
    for value, message in cases:
        with pytest.raises(CanonicalError) as info:
            canonical.encode(value)
        assert str(info.value) == message
    with pytest.raises(CanonicalError) as info:
        canonical.check_value([1.0], path="body")
    assert str(info.value) == "body[0]: floats are not allowed (use fixed-point integers)"


def test_the_64_bit_range_is_exact() -> None:
    for inside in (2**64 - 1, -(2**64), 0, -1):
        assert canonical.decode(canonical.encode(inside)) == inside
    for outside in (2**64, -(2**64) - 1):
        with pytest.raises(CanonicalError, match="outside the 64-bit range"):
            canonical.check_value(outside)


def test_tuples_encode_as_lists_and_booleans_are_not_integers() -> None:
    assert canonical.encode((1, 2)) == canonical.encode([1, 2])
    assert canonical.encode(True) != canonical.encode(1)
    assert canonical.decode(canonical.encode([True, False])) == [True, False]


def test_size_limit_is_exact() -> None:
    data = canonical.encode(b"x" * 100)
    assert canonical.decode(data, max_size=len(data)) == b"x" * 100
    with pytest.raises(CanonicalError) as info:
        canonical.decode(data, max_size=len(data) - 1)
    assert str(info.value) == f"{len(data)} bytes exceeds the limit of {len(data) - 1}"


NOT_CANONICAL = "not the canonical encoding of its value"


@pytest.mark.parametrize(
    ("hexed", "prefix"),
    [
        ("1801", NOT_CANONICAL),
        ("a2616201616102", NOT_CANONICAL),
        ("0001", NOT_CANONICAL),  # cbor2 reads one item: the trailing byte makes it differ
        ("62c3", "not valid CBOR: "),
        ("5f4101ff", "not valid CBOR: "),
        ("a2616101616102", "not valid CBOR: "),
        ("f93c00", "$: floats are not allowed"),
    ],
)
def test_decode_says_why(hexed: str, prefix: str) -> None:
    with pytest.raises(CanonicalError) as info:
        canonical.decode(bytes.fromhex(hexed))
    assert str(info.value) == prefix if prefix == NOT_CANONICAL else str(info.value).startswith(prefix)
