"""Consensus state in SQLite: the signing log, the committed log, evidence.

Write-ahead states of a vote (what a crash between them leaves):

1. *not signed*: nothing stored; after a restart the validator may sign anything at
   the slot, since nobody saw anything from it there;
2. *signed and stored*: one transaction with ``synchronous=FULL`` holds the guard's
   check, the envelope and the machine's resume state (round, step, lock); only then is
   the envelope handed to the machine, which sends it. After a restart the validator
   resumes at that height, round and step with its lock, and a request to sign the slot
   again gets the stored bytes back, or a refusal if the body differs;
3. *sent*: nothing more to record (peers may or may not have it; it is re-sent as is).

A decision is stored the same way before the validator moves to the next height
(:class:`SqliteCommitStore`): entry and certificate in one durable transaction, each
entry linked to the previous one by ``prev`` (checked here and by a trigger), and
entries are never updated or deleted (triggers). Each commit is also an audit entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from platform_cli.clock import now_ms
from platform_cli.consensus.signing import Seal
from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus import guard
from platform_cli.core.consensus.evidence import Evidence
from platform_cli.core.consensus.messages import Slot, value_id
from platform_cli.core.consensus.ports import Commit, ResumeState
from platform_cli.errors import PlatformError
from platform_cli.state import audit, sequences
from platform_cli.state.db import State, write_transaction

_SYNC_FULL = 2


@contextlib.contextmanager
def durable(state: State) -> Iterator[State]:
    """A write transaction committed with ``synchronous=FULL`` (fsync before it returns)."""
    if state.conn.in_transaction:
        raise PlatformError("a durable consensus write cannot join an open transaction")
    previous = state.execute("PRAGMA synchronous").fetchone()[0]
    state.execute(f"PRAGMA synchronous={_SYNC_FULL}")
    try:
        with write_transaction(state):
            yield state
    finally:
        state.execute(f"PRAGMA synchronous={int(previous)}")


def _value_bytes(value: Any) -> bytes | None:
    return None if value is None else canonical.encode(value)


def _value(data: bytes | None) -> Any:
    return None if data is None else canonical.decode(data)


class SqliteVoteLog:
    """The signing guard of one signer over the state database."""

    def __init__(self, state: State, signer: str) -> None:
        self.state = state
        self.signer = signer

    def _at(self, slot: Slot) -> guard.Signed | None:
        row = self.state.execute(
            "SELECT body, envelope FROM consensus_signed WHERE signer = ? AND height = ? AND round = ? AND step = ?",
            [self.signer, *slot],
        ).fetchone()
        return guard.Signed(slot, row[0], env.from_wire(row[1])) if row else None

    def _highest(self) -> Slot | None:
        row = self.state.execute(
            "SELECT height, round, step FROM consensus_signed WHERE signer = ? "
            "ORDER BY height DESC, round DESC, step DESC LIMIT 1",
            [self.signer],
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def sign_slot(self, slot: Slot, body: bytes, resume: ResumeState, seal: Seal) -> guard.Decision:
        with durable(self.state):
            decision = guard.decide(slot, body, at_slot=self._at(slot), highest=self._highest())
            if decision.verdict is not guard.Verdict.SIGN:
                return decision
            now = now_ms()
            envelope = seal(sequences.next_own_seq(self.state, self.signer, floor=now))
            self.state.execute(
                "INSERT INTO consensus_signed (signer, height, round, step, body, envelope, signed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [self.signer, *slot, body, envelope.to_wire(), now],
            )
            self.state.execute(
                "INSERT INTO consensus_resume (signer, height, round, step, locked_round, locked_value, "
                "valid_round, valid_value, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (signer) DO UPDATE SET height = excluded.height, round = excluded.round, "
                "step = excluded.step, locked_round = excluded.locked_round, locked_value = excluded.locked_value, "
                "valid_round = excluded.valid_round, valid_value = excluded.valid_value, updated_ms = excluded.updated_ms",
                [
                    self.signer,
                    resume.height,
                    resume.round,
                    resume.step,
                    resume.locked_round,
                    _value_bytes(resume.locked_value),
                    resume.valid_round,
                    _value_bytes(resume.valid_value),
                    now,
                ],
            )
        return guard.Decision(guard.Verdict.SIGN, envelope)

    def sign_once(self, key: str, body: bytes, seal: Seal) -> guard.Decision:
        with durable(self.state):
            row = self.state.execute(
                "SELECT body, envelope FROM consensus_signed_once WHERE signer = ? AND key = ?",
                [self.signer, key],
            ).fetchone()
            if row is not None:
                if row[0] == body:
                    return guard.Decision(guard.Verdict.REUSE, env.from_wire(row[1]))
                return guard.Decision(guard.Verdict.REFUSE, reason=f"a different {key} was already signed")
            now = now_ms()
            envelope = seal(sequences.next_own_seq(self.state, self.signer, floor=now))
            self.state.execute(
                "INSERT INTO consensus_signed_once (signer, key, body, envelope, signed_ms) VALUES (?, ?, ?, ?, ?)",
                [self.signer, key, body, envelope.to_wire(), now],
            )
        return guard.Decision(guard.Verdict.SIGN, envelope)

    def resume(self) -> tuple[ResumeState | None, list[env.Envelope]]:
        row = self.state.execute(
            "SELECT height, round, step, locked_round, locked_value, valid_round, valid_value "
            "FROM consensus_resume WHERE signer = ?",
            [self.signer],
        ).fetchone()
        if row is None:
            return None, []
        state = ResumeState(row[0], row[1], row[2], row[3], _value(row[4]), row[5], _value(row[6]))
        own = [
            env.from_wire(data)
            for (data,) in self.state.execute(
                "SELECT envelope FROM consensus_signed WHERE signer = ? AND height = ? ORDER BY round, step",
                [self.signer, state.height],
            )
        ]
        return state, own


class SqliteCommitStore:
    """The committed log: immutable, hash-chained entries with their certificates."""

    def __init__(self, state: State, genesis_id: str) -> None:
        self.state = state
        self.genesis_id = genesis_id

    def head(self) -> tuple[int, str]:
        row = self.state.execute(
            "SELECT height, value_id FROM consensus_log ORDER BY height DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1]) if row else (0, self.genesis_id)

    def append(self, commit: Commit) -> None:
        cert = commit.certificate
        with durable(self.state):
            height, head = self.head()
            if cert.height != height + 1:
                raise PlatformError(f"commit of height {cert.height} does not follow height {height}")
            if not isinstance(commit.value, dict) or commit.value.get("prev") != head:
                raise PlatformError(f"commit of height {cert.height} does not link to the log's head")
            if value_id(commit.value) != cert.value_id:
                raise PlatformError(f"commit of height {cert.height}: the value is not the one certified")
            self.state.execute(
                "INSERT INTO consensus_log (height, value_id, prev, value, certificate, committed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [cert.height, cert.value_id, head, canonical.encode(commit.value), cert.encode(), now_ms()],
            )
            audit.append(
                self.state,
                "consensus",
                "consensus.commit",
                {
                    "height": cert.height,
                    "value_id": cert.value_id,
                    "round": cert.round,
                    "certificate": cert.id,
                },
            )

    def commits(self, from_height: int = 1) -> Iterator[Commit]:
        rows = self.state.execute(
            "SELECT value, certificate FROM consensus_log WHERE height >= ? ORDER BY height", [from_height]
        ).fetchall()
        for value, certificate in rows:
            yield Commit(canonical.decode(value), certs.decode(certificate))


def store_evidence(state: State, evidence: Evidence) -> bool:
    """Keep verified evidence; True if it is new."""
    height, round_, step = evidence.slot
    with write_transaction(state):
        cursor = state.execute(
            "INSERT OR IGNORE INTO consensus_evidence (evidence_id, signer, height, round, step, evidence, received_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [evidence.id, evidence.signer, height, round_, step, evidence.encode(), now_ms()],
        )
    return cursor.rowcount == 1
