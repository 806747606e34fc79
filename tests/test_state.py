"""The shared state: migrations, concurrency between processes, the audit chain."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from platform_cli.state import audit, open_state, write_transaction
from platform_cli.state.migrations import available


def test_migrations_apply_once_and_record_themselves(data_dir: Path) -> None:
    with open_state(data_dir) as state:
        names = [row[0] for row in state.execute("SELECT name FROM _migrations ORDER BY name")]
        assert names == available()
        assert state.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with open_state(data_dir) as state:
        assert [row[0] for row in state.execute("SELECT name FROM _migrations ORDER BY name")] == names


def test_a_failed_transaction_leaves_nothing(data_dir: Path) -> None:
    with open_state(data_dir) as state:
        with pytest.raises(RuntimeError), write_transaction(state):
            audit.append(state, "tester", "partial", {"n": 1})
            raise RuntimeError("crash between two writes")
        assert audit.head(state) is None
        assert state.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 0


def test_corrupt_database_is_a_clear_error(data_dir: Path) -> None:
    from platform_cli.errors import PlatformError

    data_dir.mkdir(parents=True)
    (data_dir / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(
        PlatformError, match=r"the database .*state\.db is damaged \(file is not a database\)"
    ):
        open_state(data_dir)


def _append_many(data_dir: str, actor: str, count: int) -> None:
    with open_state(Path(data_dir)) as state:
        for index in range(count):
            audit.append(state, actor, "test.append", {"index": index})


@pytest.mark.slow
def test_concurrent_writers_in_separate_processes_keep_the_chain_intact(data_dir: Path) -> None:
    open_state(data_dir).close()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(str(data_dir), f"writer-{i}", 40)) for i in range(3)]
    for worker in workers:
        worker.start()
    with open_state(data_dir) as reader:  # a reader in parallel never blocks or fails
        for _ in range(20):
            reader.execute("SELECT count(*) FROM audit_log").fetchone()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    with open_state(data_dir) as state:
        report = audit.verify(state)
        assert report.ok and report.entries == 120


@pytest.fixture
def chained(data_dir: Path) -> Path:
    with open_state(data_dir) as state:
        for index in range(5):
            audit.append(state, "tester", "test.step", {"index": index})
        assert audit.verify(state).ok
    return data_dir / "state.db"


def test_the_log_refuses_updates_and_deletes(chained: Path) -> None:
    conn = sqlite3.connect(chained)
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log WHERE seq = 5"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


def tamper(db_path: Path, *statements: str) -> str | None:
    """Edit the file as an attacker with write access would: triggers first."""
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()
    with open_state(db_path.parent) as state:
        return audit.verify(state).problem


def test_edited_entry_is_detected(chained: Path) -> None:
    problem = tamper(chained, "UPDATE audit_log SET detail = '{\"index\":99}' WHERE seq = 3")
    assert problem == "entry 3 was altered (its hash does not match its content)"


def test_edited_actor_is_detected(chained: Path) -> None:
    assert "entry 2 was altered" in tamper(chained, "UPDATE audit_log SET actor = 'someone' WHERE seq = 2")


def test_deleted_entry_is_detected(chained: Path) -> None:
    assert "entry 3 is missing" in tamper(chained, "DELETE FROM audit_log WHERE seq = 3")


def test_deleted_newest_entry_is_detected(chained: Path) -> None:
    assert "entries were removed" in tamper(chained, "DELETE FROM audit_log WHERE seq = 5")


def test_reordered_entries_are_detected(chained: Path) -> None:
    problem = tamper(
        chained,
        "UPDATE audit_log SET seq = 100 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 100",
    )
    assert problem is not None and "entry 2" in problem


def test_audit_verify_command(run, chained: Path) -> None:
    ok = run("--json", "audit", "verify")
    assert ok.exit_code == 0 and '"entries": 5' in ok.stdout
    tamper(chained, "UPDATE audit_log SET action = 'other' WHERE seq = 4")
    broken = run("audit", "verify")
    assert broken.exit_code == 1
    assert (
        broken.stderr.strip()
        == "error: audit log is broken: entry 4 was altered (its hash does not match its content)"
    )
    log = run("--json", "audit", "log", "--limit", "2")
    assert [line.count('"seq"') for line in log.stdout.splitlines()] == [1, 1]


def test_own_sequence_numbers_are_consecutive_from_a_time_floor(data_dir: Path) -> None:
    from platform_cli.state import sequences

    with open_state(data_dir) as state:
        first = sequences.next_own_seq(state, "5signer", floor=1_800_000_000_000)
        second = sequences.next_own_seq(state, "5signer", floor=1_800_000_009_999)
        assert (first, second) == (1_800_000_000_000, 1_800_000_000_001)


def test_replay_windows_are_per_signer_and_kind(data_dir: Path) -> None:
    from platform_cli.state import sequences

    with open_state(data_dir) as state:
        sequences.accept(state, "5signer", 7, kind="a")
        sequences.accept(state, "5signer", 7, kind="b")
        with pytest.raises(ValueError, match="already seen"):
            sequences.accept(state, "5signer", 7, kind="a")
        assert sequences.window(state, "5signer", kind="a").check(8) is None
