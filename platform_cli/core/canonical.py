"""Canonical bytes: deterministic CBOR (RFC 8949 section 4.2.1) over a small value model.

Everything that is signed, hashed or agreed goes through :func:`encode`. The value model
is deliberately narrow so that one value has exactly one encoding on every machine:

- ``int`` in the 64-bit CBOR range (-2**64 .. 2**64 - 1), ``bool``, ``None``
- ``str`` (UTF-8) and ``bytes``
- ``list`` (``tuple`` encodes as a list)
- ``dict`` with ``str`` keys

Floats, tags, big integers, undefined and non-string map keys are refused. Map keys are
ordered by their encoded bytes, which for text keys is shortest-first then bytewise: the
rule of RFC 8949 "core deterministic encoding".

:func:`decode` is strict: indefinite lengths, duplicate keys, non-minimal integers or
lengths, and anything outside the value model raise :class:`CanonicalError`. The check is
"decode, re-encode, compare": input is accepted only when it is byte-for-byte the
canonical encoding of what it decodes to.

cbor2 is a pure data codec; it is the one non-stdlib import allowed in ``core``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cbor2

MAX_DEPTH = 32
_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1

Value = None | bool | int | str | bytes | list["Value"] | dict[str, "Value"]


class CanonicalError(ValueError):
    """A value or byte string is outside the canonical model."""


def check_value(value: Any, *, path: str = "$", depth: int = 0) -> None:
    """Raise CanonicalError naming the first place where ``value`` leaves the model."""
    if depth > MAX_DEPTH:
        raise CanonicalError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, bytes)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise CanonicalError(f"{path}: integer {value} is outside the 64-bit range")
        return
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floats are not allowed (use fixed-point integers)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: map key {key!r} is not a string")
            check_value(item, path=f"{path}.{key}", depth=depth + 1)
        return
    if isinstance(value, Sequence):
        for index, item in enumerate(value):
            check_value(item, path=f"{path}[{index}]", depth=depth + 1)
        return
    raise CanonicalError(f"{path}: type {type(value).__name__} is not encodable")


def encode(value: Any) -> bytes:
    """The canonical encoding of ``value``."""
    check_value(value)
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes, *, max_size: int | None = None) -> Any:
    """Decode canonical bytes; refuse anything that is not exactly canonical."""
    if max_size is not None and len(data) > max_size:
        raise CanonicalError(f"{len(data)} bytes exceeds the limit of {max_size}")
    try:
        value = cbor2.loads(
            data,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=MAX_DEPTH + 1,
        )
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise CanonicalError(f"not valid CBOR: {exc}") from None
    check_value(value)
    if cbor2.dumps(value, canonical=True) != data:
        raise CanonicalError("not the canonical encoding of its value")
    return value
