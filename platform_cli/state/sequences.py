"""Persisted sequence numbers: our own (to sign with) and each signer's replay window."""

from __future__ import annotations

import json

from platform_cli.core.replay import SequenceWindow
from platform_cli.state.db import State, write_transaction


def next_own_seq(state: State, signer: str, floor: int = 0) -> int:
    """Reserve the next sequence number for ``signer``: written before the signature exists.

    ``floor`` lets a caller start from a time-based value, so that a signer who loses
    their state does not reuse numbers the network has already seen.
    """
    with write_transaction(state):
        row = state.execute("SELECT last_seq FROM own_sequences WHERE signer = ?", [signer]).fetchone()
        seq = max((row[0] + 1) if row else 1, floor)
        state.execute(
            "INSERT INTO own_sequences (signer, last_seq) VALUES (?, ?) "
            "ON CONFLICT (signer) DO UPDATE SET last_seq = excluded.last_seq",
            [signer, seq],
        )
    return seq


def window(state: State, signer: str) -> SequenceWindow:
    row = state.execute("SELECT high, seen FROM signer_windows WHERE signer = ?", [signer]).fetchone()
    if not row:
        return SequenceWindow()
    return SequenceWindow(row[0], frozenset(json.loads(row[1])))


def accept(state: State, signer: str, seq: int) -> None:
    """Record ``seq`` as used by ``signer``; raises ValueError on a replay."""
    with write_transaction(state):
        updated = window(state, signer).accept(seq)
        state.execute(
            "INSERT INTO signer_windows (signer, high, seen) VALUES (?, ?, ?) "
            "ON CONFLICT (signer) DO UPDATE SET high = excluded.high, seen = excluded.seen",
            [signer, updated.high, json.dumps(sorted(updated.seen))],
        )
