"""Persisted sequence numbers: our own (to sign with) and each signer's replay windows.

Windows are kept per signer and message kind: the kind is signed, so a number cannot be
replayed across kinds, and a kind can choose its own window size (rare, offline-signed
registry updates want a wide one; chatty gossip kinds a narrow one).
"""

from __future__ import annotations

import json

from platform_cli.core.replay import DEFAULT_WINDOW, SequenceWindow
from platform_cli.state.db import State, write_transaction


def next_own_seq(state: State, signer: str, floor: int = 0) -> int:
    """Reserve the next sequence number for ``signer``: written before the signature exists.

    Numbers are consecutive, so receivers' windows see no gaps. A signer with no counter
    yet starts at ``floor`` (callers pass the time in milliseconds): one who lost their
    state then starts above every number they used before, unless they signed faster
    than one message a millisecond on average.
    """
    with write_transaction(state):
        row = state.execute("SELECT last_seq FROM own_sequences WHERE signer = ?", [signer]).fetchone()
        seq = row[0] + 1 if row else max(floor, 1)
        state.execute(
            "INSERT INTO own_sequences (signer, last_seq) VALUES (?, ?) "
            "ON CONFLICT (signer) DO UPDATE SET last_seq = excluded.last_seq",
            [signer, seq],
        )
    return seq


def window(state: State, signer: str, *, kind: str = "", size: int = DEFAULT_WINDOW) -> SequenceWindow:
    row = state.execute(
        "SELECT high, seen FROM signer_windows WHERE signer = ? AND kind = ?", [signer, kind]
    ).fetchone()
    if not row:
        return SequenceWindow(size=size)
    return SequenceWindow(row[0], frozenset(json.loads(row[1])), size)


def accept(state: State, signer: str, seq: int, *, kind: str = "", size: int = DEFAULT_WINDOW) -> None:
    """Record ``seq`` as used by ``signer`` for ``kind``; raises ValueError on a replay."""
    with write_transaction(state):
        updated = window(state, signer, kind=kind, size=size).accept(seq)
        state.execute(
            "INSERT INTO signer_windows (signer, kind, high, seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (signer, kind) DO UPDATE SET high = excluded.high, seen = excluded.seen",
            [signer, kind, updated.high, json.dumps(sorted(updated.seen))],
        )
