"""Challenge ABI v1: the bytes that cross the sandbox boundary (pure: no I/O, no clock).

Input (host -> challenge) is the canonical CBOR encoding of a five-element array::

    [abi, seed, submission, params, [challenge_id, version, module_sha256]]

An array, not a map, so that a challenge written in WAT or freestanding C finds the
submission with three CBOR heads and no key lookups. ``seed`` is 32 bytes derived from
the epoch, the submission hash and the module hash (:func:`derive_seed`).

Output (challenge -> host) is a little-endian record that is easy to write by hand::

    u8  abi (= 1)          u8  valid (0 or 1)      u16 message length M (<= 1024)
    u32 score (0..10**9; 0 when not valid)         u16 metric count K (<= 32)
    M bytes of UTF-8 message
    K times: u8 name length N (1..32), N bytes [a-z0-9_], i64 value

Nothing may follow the last metric; metric names are unique. Scores are fixed-point:
``score / 10**9`` is the fraction of the best result.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from platform_cli.core import canonical

ABI_VERSION = 1
SCORE_SCALE = 10**9
SEED_BYTES = 32
MAX_MESSAGE_BYTES = 1024
MAX_METRICS = 32
MAX_METRIC_NAME = 32
_HEADER = struct.Struct("<BBHIH")
_METRIC_NAME_RE = re.compile(rb"[a-z0-9_]{1,32}")  # fullmatch: "$" would let a final "\n" in
_I64 = struct.Struct("<q")


class AbiError(ValueError):
    """The challenge broke ABI v1; the message says how."""


@dataclass(frozen=True)
class Result:
    score: int
    valid: bool
    message: str
    metrics: dict[str, int] = field(default_factory=dict)

    def to_canonical(self) -> dict[str, Any]:
        return {"score": self.score, "valid": self.valid, "message": self.message, "metrics": self.metrics}


def derive_seed(epoch: int, submission_sha256: bytes, module_sha256: bytes) -> bytes:
    """The deterministic seed every validator derives for one evaluation."""
    if len(submission_sha256) != 32 or len(module_sha256) != 32:
        raise ValueError("hashes must be 32 bytes")
    return hashlib.sha256(
        canonical.encode(["platform-seed/v1", epoch, submission_sha256, module_sha256])
    ).digest()


def encode_input(
    *,
    challenge_id: str,
    version: str,
    module_sha256: bytes,
    submission: bytes,
    seed: bytes,
    params: dict[str, Any],
) -> bytes:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes")
    return canonical.encode([ABI_VERSION, seed, submission, params, [challenge_id, version, module_sha256]])


def decode_input(data: bytes) -> dict[str, Any]:
    """The inverse of :func:`encode_input` (used by conformance checks and tests)."""
    value = canonical.decode(data)
    if not (isinstance(value, list) and len(value) == 5 and value[0] == ABI_VERSION):
        raise AbiError("input is not an ABI v1 array")
    _, seed, submission, params, (challenge_id, version, module_sha256) = value
    return {
        "seed": seed,
        "submission": submission,
        "params": params,
        "challenge_id": challenge_id,
        "version": version,
        "module_sha256": module_sha256,
    }


def encode_output(result: Result) -> bytes:
    """What a challenge writes; used by tests and as the reference for the decoder."""
    message = result.message.encode()
    parts = [_HEADER.pack(ABI_VERSION, int(result.valid), len(message), result.score, len(result.metrics))]
    parts.append(message)
    for name, value in result.metrics.items():
        raw = name.encode()
        parts.append(bytes([len(raw)]) + raw + _I64.pack(value))
    data = b"".join(parts)
    decode_output(data)
    return data


def decode_output(data: bytes) -> Result:
    """Strictly decode a challenge's output record."""
    if len(data) < _HEADER.size:
        raise AbiError(f"output of {len(data)} bytes is shorter than the {_HEADER.size}-byte header")
    abi, valid, message_len, score, count = _HEADER.unpack_from(data)
    if abi != ABI_VERSION:
        raise AbiError(f"output abi byte is {abi}, expected {ABI_VERSION}")
    if valid not in (0, 1):
        raise AbiError(f"output valid flag is {valid}, expected 0 or 1")
    if score > SCORE_SCALE:
        raise AbiError(f"score {score} exceeds {SCORE_SCALE}")
    if not valid and score:
        raise AbiError(f"an invalid result carries score {score}, expected 0")
    if message_len > MAX_MESSAGE_BYTES:
        raise AbiError(f"message of {message_len} bytes exceeds {MAX_MESSAGE_BYTES}")
    if count > MAX_METRICS:
        raise AbiError(f"{count} metrics exceed {MAX_METRICS}")
    pos = _HEADER.size
    raw_message = data[pos : pos + message_len]
    if len(raw_message) != message_len:
        raise AbiError("output ends inside the message")
    try:
        message = raw_message.decode()
    except UnicodeDecodeError:
        raise AbiError("message is not UTF-8") from None
    pos += message_len
    metrics: dict[str, int] = {}
    for index in range(count):
        if pos >= len(data):
            raise AbiError(f"output ends before metric {index}")
        name_len = data[pos]
        name = data[pos + 1 : pos + 1 + name_len]
        if not _METRIC_NAME_RE.fullmatch(name) or len(name) != name_len:
            raise AbiError(f"metric {index} has an invalid name {name!r}")
        pos += 1 + name_len
        if pos + _I64.size > len(data):
            raise AbiError(f"output ends inside metric {name.decode()!r}")
        if name.decode() in metrics:
            raise AbiError(f"metric {name.decode()!r} appears twice")
        metrics[name.decode()] = _I64.unpack_from(data, pos)[0]
        pos += _I64.size
    if pos != len(data):
        raise AbiError(f"{len(data) - pos} unexpected bytes after the last metric")
    return Result(score=score, valid=bool(valid), message=message, metrics=metrics)


def pack_pointer(ptr: int, length: int) -> int:
    """The i64 an export returns for a (pointer, length) pair: pointer in the high half."""
    return (ptr << 32) | length


def unpack_pointer(value: int) -> tuple[int, int]:
    value &= (1 << 64) - 1
    return value >> 32, value & 0xFFFFFFFF


def ratio_score(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` as a fixed-point score, clamped to [0, 10**9]."""
    if denominator <= 0:
        return 0
    return max(0, min(SCORE_SCALE, numerator * SCORE_SCALE // denominator))
