"""The SQLite signing guard and commit log, including processes killed between states."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from platform_cli.consensus import validator
from platform_cli.consensus.signing import GuardedSigner
from platform_cli.consensus.sim_node import SIM_TIMEOUTS, SimView
from platform_cli.consensus.sim_world import NETWORK as SIM_NETWORK
from platform_cli.consensus.simulator import SimConfig, simulate
from platform_cli.consensus.store import SqliteCommitStore, SqliteVoteLog, durable, store_evidence
from platform_cli.core import canonical
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus.evidence import conflict
from platform_cli.core.consensus.messages import Step, value_id
from platform_cli.core.consensus.validity import Checker
from platform_cli.errors import PlatformError
from platform_cli.identity import verify_signature
from platform_cli.state.db import open_state
from tests.conftest import REPO
from tests.consensus_helpers import NETWORK, keys, prevote, validator_set

CHILD = [sys.executable, str(REPO / "tests" / "consensus_child.py")]


def child(data_dir: Path, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CHILD, str(data_dir), *args], stdout=subprocess.PIPE, stdin=stdin, text=True, cwd=REPO
    )


def lines_until_killed(proc: subprocess.Popen[str], count: int) -> list[list[str]]:
    assert proc.stdout is not None
    lines = []
    for _ in range(count):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.split())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return lines


def test_killed_at_any_point_a_validator_never_signs_two_things_at_one_slot(data_dir: Path) -> None:
    rng = random.Random(5)
    signed: dict[tuple[int, ...], str] = {}
    last: tuple[int, ...] | None = None
    for run in range(6):
        lines = lines_until_killed(child(data_dir, "sign"), rng.randint(3, 40))
        if run:
            resume = tuple(int(x) for x in lines[0][1:4])
            assert (
                lines[0][0] == "resume" and last is not None and resume >= last
            )  # never behind what was sent
            assert int(lines[0][4]) == resume[1]  # the lock came back with it
            assert lines[1][:1] == ["refused"] and tuple(int(x) for x in lines[1][1:4]) == resume
        for words in lines:
            if words[0] == "signed":
                slot = tuple(int(x) for x in words[1:4])
                assert signed.setdefault(slot, words[4]) == words[4], f"two signatures at {slot}"
                last = slot
    assert len(signed) > 20


def test_a_vote_written_but_not_sent_is_sent_again_byte_for_byte(data_dir: Path) -> None:
    proc = child(data_dir, "pause", "7", "2", "1", "aa" * 32, stdin=subprocess.PIPE)
    [[word, *slot, first]] = lines_until_killed(proc, 1)
    assert word == "signed" and slot == ["7", "2", "1"]
    same = subprocess.run(
        [*CHILD, str(data_dir), "again", "7", "2", "1", "aa" * 32], capture_output=True, text=True, check=True
    )
    assert same.stdout.split() == ["signed", "7", "2", "1", first]
    other = subprocess.run(
        [*CHILD, str(data_dir), "again", "7", "2", "1", "bb" * 32], capture_output=True, text=True, check=True
    )
    assert other.stdout.split() == ["refused", "7", "2", "1"]
    lower = subprocess.run(
        [*CHILD, str(data_dir), "again", "7", "1", "2", "aa" * 32], capture_output=True, text=True, check=True
    )
    assert lower.stdout.split() == ["refused", "7", "1", "2"]


def test_a_commit_log_survives_kills_and_stays_a_verified_chain(data_dir: Path) -> None:
    rng = random.Random(9)
    heights = 8
    for _ in range(4):
        lines_until_killed(child(data_dir, "commit", "21", str(heights)), rng.randint(1, 4))
    done = subprocess.run(
        [*CHILD, str(data_dir), "commit", "21", str(heights)], capture_output=True, text=True, check=True
    )
    assert done.stdout.split()[-2:] in (["committed", str(heights)], ["head", str(heights)])
    expected = simulate(SimConfig(seed=21, validators=4, heights=heights, faults=False))
    with open_state(data_dir) as state:
        store = SqliteCommitStore(state, expected.world.genesis.id)
        stored = list(store.commits())
        assert [c.certificate.value_id for c in stored] == [c.certificate.value_id for c in expected.log()]
        prev = expected.world.genesis.id
        for commit in stored:
            assert commit.value["prev"] == prev and value_id(commit.value) == commit.certificate.value_id
            certs.verify(commit.certificate, expected.world.validators, verify_signature, value=commit.value)
            prev = commit.certificate.value_id
        for sql in (
            "UPDATE consensus_log SET prev = 'x' WHERE height = 1",
            "DELETE FROM consensus_log WHERE height = 8",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="immutable"):
                state.execute(sql)
        with pytest.raises(sqlite3.IntegrityError, match="extend the log"):
            state.execute("INSERT INTO consensus_log VALUES (9, 'v', 'not-the-head', x'00', x'00', 0)")
        with pytest.raises(PlatformError, match="does not follow"):
            store.append(stored[2])
        audit = [
            r[0] for r in state.execute("SELECT action FROM audit_log WHERE action = 'consensus.commit'")
        ]
        assert len(audit) == heights


def test_a_restarted_validator_resumes_at_the_stored_height_round_and_lock(data_dir: Path) -> None:
    result = simulate(SimConfig(seed=3, validators=4, heights=2, faults=False))
    world = result.world
    key = world.keys[0]
    with open_state(data_dir) as state:
        store = SqliteCommitStore(state, world.genesis.id)
        for commit in result.log():
            store.append(commit)
        votes = SqliteVoteLog(state, key.ss58)

        def start():
            return validator.start(
                genesis=world.genesis,
                store=store,
                votes=votes,
                key=key,
                view=SimView(world, lambda: 0),
                checker=Checker(SIM_NETWORK, verify_signature),
                wants=lambda ledger, now: True,
                timeouts=SIM_TIMEOUTS,
                now_ms=0,
            )

        machine, app = start()
        assert (machine.height, machine.round, app.ledger.height) == (3, 0, 2)
        machine.start(0)
        machine._start_round(4)  # as if four rounds had timed out
        while machine.step is not Step.PREVOTE:
            machine.on_timer(machine.next_deadline())  # timeoutPropose: a nil prevote, stored first
        again, _ = start()
        assert (again.height, again.round, again.step) == (3, 4, Step.PREVOTE)
        assert again.prev == result.log()[-1].certificate.value_id


def test_durable_writes_use_full_sync_and_refuse_to_nest(data_dir: Path) -> None:
    with open_state(data_dir) as state:
        with durable(state):
            assert state.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert state.execute("PRAGMA synchronous").fetchone()[0] == 1
        state.execute("BEGIN")
        with pytest.raises(PlatformError, match="open transaction"), durable(state):
            pass
        state.execute("ROLLBACK")


def test_signed_messages_cannot_be_erased_and_evidence_is_kept_once(data_dir: Path) -> None:
    k = keys(4)
    vset = validator_set(k)
    with open_state(data_dir) as state:
        votes = SqliteVoteLog(state, k[0].ss58)
        from platform_cli.core.consensus.ports import ResumeState

        GuardedSigner(votes, k[0], NETWORK).sign(
            (1, 0, 1), "consensus.prevote", {"x": 1}, ResumeState(1, 0, 1), 0
        )
        with pytest.raises(sqlite3.IntegrityError, match="never changed"):
            state.execute("DELETE FROM consensus_signed")
        evidence = conflict(prevote(k[1], 2, 0, vset, None), prevote(k[1], 2, 0, vset, "ab" * 32))
        assert evidence is not None
        assert store_evidence(state, evidence) and not store_evidence(state, evidence)
        [(stored,)] = state.execute("SELECT evidence FROM consensus_evidence").fetchall()
        assert canonical.decode(stored) == evidence.to_canonical()
