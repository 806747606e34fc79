"""The audit chain: each entry commits to the hash of the one before it.

``entry_hash`` covers the entry's sequence number, time, actor, action, detail and the
previous hash, in canonical bytes. ``verify_chain`` walks entries in order and reports
the first one that was edited, removed or moved. The chain's head (last sequence and
hash) is kept apart from the entries, so dropping the newest entries is caught too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from platform_cli.core import canonical

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts_ms: int
    actor: str
    action: str
    detail: Any
    prev_hash: str
    hash: str


def entry_hash(seq: int, ts_ms: int, actor: str, action: str, detail: Any, prev_hash: str) -> str:
    payload = canonical.encode(["platform/audit/v1", seq, ts_ms, actor, action, detail, prev_hash])
    return hashlib.sha256(payload).hexdigest()


def next_entry(
    head: tuple[int, str] | None, *, ts_ms: int, actor: str, action: str, detail: Any
) -> AuditEntry:
    seq, prev = head if head is not None else (0, GENESIS_HASH)
    seq += 1
    return AuditEntry(
        seq, ts_ms, actor, action, detail, prev, entry_hash(seq, ts_ms, actor, action, detail, prev)
    )


@dataclass(frozen=True)
class ChainReport:
    entries: int
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(entries: Iterable[AuditEntry], head: tuple[int, str] | None) -> ChainReport:
    """Check every link; ``entries`` must come in storage order (by seq)."""
    expected_seq, prev = 1, GENESIS_HASH
    count = 0
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(count, f"entry {expected_seq} is missing or out of order (found {entry.seq})")
        if entry.prev_hash != prev:
            return ChainReport(count, f"entry {entry.seq} does not link to entry {entry.seq - 1}")
        try:
            recomputed = entry_hash(
                entry.seq, entry.ts_ms, entry.actor, entry.action, entry.detail, entry.prev_hash
            )
        except canonical.CanonicalError:
            recomputed = None
        if recomputed != entry.hash:
            return ChainReport(count, f"entry {entry.seq} was altered (its hash does not match its content)")
        expected_seq, prev = entry.seq + 1, entry.hash
    last = (expected_seq - 1, prev)
    if head is None and count:
        return ChainReport(count, "the chain head record is missing")
    if head is not None and head[0] == last[0] and head[1] != last[1]:
        return ChainReport(count, f"entry {last[0]} does not match the chain head: it was rewritten")
    if head is not None and head != last:
        return ChainReport(
            count, f"chain head says entry {head[0]}, the log ends at entry {last[0]}: entries were removed"
        )
    return ChainReport(count)
