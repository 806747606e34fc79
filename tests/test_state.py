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


def test_edited_newest_entry_is_detected(chained: Path) -> None:
    problem = tamper(chained, "UPDATE audit_log SET detail = '{\"index\":99}' WHERE seq = 5")
    assert problem == "entry 5 was altered (its hash does not match its content)"


def test_newest_entry_rewritten_with_a_correctly_linked_hash_is_caught_by_the_head(chained: Path) -> None:
    from platform_cli.core.audit import entry_hash

    conn = sqlite3.connect(chained)
    ts_ms, actor, action, prev_hash = conn.execute(
        "SELECT ts_ms, actor, action, prev_hash FROM audit_log WHERE seq = 5"
    ).fetchone()
    conn.close()
    forged = entry_hash(5, ts_ms, actor, action, {"index": 99}, prev_hash)
    problem = tamper(
        chained, f"UPDATE audit_log SET detail = '{{\"index\":99}}', hash = '{forged}' WHERE seq = 5"
    )
    assert problem == "entry 5 does not match the chain head: it was rewritten"


def test_a_detail_that_is_not_json_is_shown_as_stored_and_reported_altered(chained: Path) -> None:
    problem = tamper(chained, "UPDATE audit_log SET detail = 'not json' WHERE seq = 2")
    assert problem == "entry 2 was altered (its hash does not match its content)"
    with open_state(chained.parent) as state:
        assert [e.detail for e in audit.entries(state)][1] == "not json"


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


UPDATE = Path(__file__).resolve().parent.parent / "fixtures" / "challenge" / "update-add.json"


def one_line(result, pattern: str) -> str:
    import re

    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def test_a_new_state_leaves_its_identity_beside_it(data_dir: Path) -> None:
    import json

    with open_state(data_dir) as state:
        stored = dict(state.execute("SELECT key, value FROM state_meta").fetchall())
    marker = json.loads((data_dir / "state.id").read_text())
    assert marker["state_id"] == stored["state_id"] and len(marker["state_id"]) == 32
    assert marker["created_ms"] == int(stored["created_ms"])


@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_a_wiped_state_is_refused_not_taken_for_a_new_one(run, data_dir: Path, how: str) -> None:
    """A proposed update must not be accepted a second time because the state was wiped."""
    assert run("registry", "propose", str(UPDATE)).exit_code == 0
    db = data_dir / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if how == "emptied":
        db.write_bytes(b"")
    else:
        db.unlink()
    for args in (
        ("registry", "propose", str(UPDATE)),
        ("registry", "verify", str(UPDATE)),
        ("audit", "log"),
        ("keys", "new", "--name", "x"),
    ):
        line = one_line(run(*args), f"state database {db} is (empty|missing), but this data dir held state")
        assert "restore it from a backup" in line and "remove" in line
    assert (db.stat().st_size if db.exists() else 0) == 0
    assert not (data_dir / "keys" / "x.json").exists()
    (data_dir / "state.id").unlink()  # the operator starts afresh on purpose
    assert run("audit", "log").exit_code == 0


def test_a_state_from_another_data_dir_is_refused(run, data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    with open_state(data_dir), open_state(other):
        pass
    (data_dir / "state.db").write_bytes((other / "state.db").read_bytes())
    line = one_line(
        run("audit", "log"), "holds state [0-9a-f]{32}, but .*state.id says this data dir held state"
    )
    assert "the database was replaced" in line


def _busy_state(data_dir: Path, entries: int = 400) -> None:
    with open_state(data_dir) as state:
        for index in range(entries):
            audit.append(state, "tester", "test.fill", {"index": index, "pad": "x" * 400})
        state.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _damage(path: Path, offset: int, length: int = 8192) -> None:
    import random

    noise = random.Random(offset).randbytes(length)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(noise)


def test_a_damaged_database_is_reported_not_trusted(run, data_dir: Path) -> None:
    """8 KiB of noise in the middle of the file: every check says so, in one line."""
    _busy_state(data_dir)
    db = data_dir / "state.db"
    _damage(db, db.stat().st_size // 2)
    one_line(run("audit", "verify"), f"the (state )?database {db} is damaged")
    checked = run("--json", "state", "check")
    one_line(checked, "failed integrity")
    import json

    rows = {row["check"]: row for row in map(json.loads, checked.stdout.splitlines())}
    assert rows["integrity"]["result"] == "FAIL" and rows["marker"]["result"] == "ok"
    for args in (("audit", "log", "--limit", "1000"), ("keys", "new", "--name", "x"), ("registry", "list")):
        one_line(run(*args), f"database {db} is damaged")
    assert not (data_dir / "keys" / "x.json").exists()
    backup = run("state", "backup", str(data_dir.parent / "backup.db"))
    one_line(backup, "refusing to back up|is damaged")
    assert not (data_dir.parent / "backup.db").exists()


def test_damage_to_a_critical_table_refuses_every_command(run, data_dir: Path) -> None:
    """own_sequences guards against signing a number twice: damage there stops everything,
    even in a state too big (over 16 MiB) for every open to check the whole file."""
    with open_state(data_dir) as state:
        state.execute("INSERT INTO modules VALUES ('padding', ?, zeroblob(?))", [17 << 20, 17 << 20])
        for index in range(2000):
            state.execute(
                "INSERT INTO own_sequences (signer, last_seq) VALUES (?, ?)", [f"5signer{index:06}", 1]
            )
        page = state.execute("SELECT rootpage FROM sqlite_master WHERE name = 'own_sequences'").fetchone()[0]
        page_size = state.execute("PRAGMA page_size").fetchone()[0]
        state.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(data_dir / "state.db", (page - 1) * page_size, page_size)
    for args in (("registry", "list"), ("keys", "new", "--name", "x"), ("audit", "log")):
        one_line(run(*args), "is damaged")
    assert not (data_dir / "keys" / "x.json").exists()


def test_damage_inside_the_audit_table_is_not_an_internal_error(run, data_dir: Path) -> None:
    _busy_state(data_dir)
    with open_state(data_dir) as state:
        root = state.execute("SELECT rootpage FROM sqlite_master WHERE name = 'audit_log'").fetchone()[0]
        page_size = state.execute("PRAGMA page_size").fetchone()[0]
        leaves = (
            [
                row[0]
                for row in state.execute(
                    "SELECT pageno FROM dbstat WHERE name = 'audit_log' AND pagetype = 'leaf'"
                )
            ]
            if _has_dbstat(state)
            else [root + 5]
        )
    _damage(data_dir / "state.db", (leaves[len(leaves) // 2] - 1) * page_size, page_size)
    for args in (("audit", "verify"), ("audit", "log", "--limit", "100000")):
        line = one_line(run(*args), "is damaged")
        assert "internal error" not in line


def _has_dbstat(state) -> bool:
    try:
        state.execute("SELECT 1 FROM dbstat LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        return False
    return True


def _keep_writing(data_dir: str, stop_after: int) -> None:
    with open_state(Path(data_dir)) as state:
        for index in range(stop_after):
            audit.append(state, "writer", "test.live", {"index": index})


@pytest.mark.slow
def test_an_online_backup_is_consistent_and_restores(run, data_dir: Path, tmp_path: Path) -> None:
    """A backup taken while another process writes is intact and opens as this data dir's state."""
    import json

    _busy_state(data_dir, 50)
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_keep_writing, args=(str(data_dir), 400))
    writer.start()
    backups = []
    for index in range(3):
        target = tmp_path / f"backup-{index}.db"
        result = run("--json", "state", "backup", str(target))
        assert result.exit_code == 0, result.stderr
        backups.append((target, json.loads(result.stdout)))
    writer.join(120)
    assert writer.exitcode == 0
    for target, info in backups:
        conn = sqlite3.connect(target)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT seq, hash FROM audit_head").fetchone() == (
            info["audit_entries"],
            info["audit_head"],
        )
        conn.close()
    # Restore the last backup: stop writers, copy it over state.db, drop the WAL files.
    target, info = backups[-1]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{data_dir / 'state.db'}{suffix}").unlink(missing_ok=True)
    (data_dir / "state.db").write_bytes(target.read_bytes())
    verified = run("--json", "audit", "verify")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["entries"] == info["audit_entries"]
    assert run("state", "check").exit_code == 0


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "missing-dir"])
def test_a_backup_never_writes_through_or_replaces_a_special_file(
    run, data_dir: Path, tmp_path: Path, kind
) -> None:
    import os

    open_state(data_dir).close()
    target = tmp_path / "out.db"
    if kind == "symlink":
        (tmp_path / "real").write_text("keep")
        target.symlink_to(tmp_path / "real")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    else:
        target = tmp_path / "nowhere" / "out.db"
    one_line(run("state", "backup", str(target)), str(target))
    if kind == "symlink":
        assert target.is_symlink() and (tmp_path / "real").read_text() == "keep"
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_state_check_on_a_healthy_state(run, data_dir: Path) -> None:
    import json

    assert run("keys", "new", "--name", "v1", "--scheme", "ed25519").exit_code == 0
    result = run("--json", "state", "check")
    assert result.exit_code == 0, result.stderr
    rows = {row["check"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"marker", "integrity", "schema", "identity", "audit"}
    assert all(row["result"] == "ok" for row in rows.values())
    assert rows["audit"]["detail"] == "1 entries chained"


def test_a_node_does_not_start_on_a_large_damaged_state(run, data_dir: Path) -> None:
    """Over 16 MiB, opening checks only the critical tables; a node checks the whole file first."""
    _busy_state(data_dir)
    with open_state(data_dir) as state:
        state.execute("INSERT INTO modules VALUES ('padding', ?, zeroblob(?))", [17 << 20, 17 << 20])
        leaf = state.execute("SELECT rootpage FROM sqlite_master WHERE name = 'audit_log'").fetchone()[0]
        page_size = state.execute("PRAGMA page_size").fetchone()[0]
        state.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(data_dir / "state.db", (leaf - 1) * page_size, page_size)
    assert run("registry", "list").exit_code == 0  # the documented limit: this open does not look there
    one_line(run("peer", "run", "--listen", "/ip4/127.0.0.1/tcp/0"), "is damaged")
    one_line(run("audit", "verify"), "is damaged")


def _chain(length: int) -> list:
    from platform_cli.core.audit import next_entry

    entries, head = [], None
    for index in range(length):
        entry = next_entry(
            head, ts_ms=1000 + index, actor="alice", action="test.step", detail={"index": index}
        )
        entries.append(entry)
        head = (entry.seq, entry.hash)
    return entries


def test_an_entry_hash_is_the_sha256_of_its_canonical_domain_tagged_fields() -> None:
    import hashlib

    import cbor2

    from platform_cli.core.audit import GENESIS_HASH, next_entry

    entry = next_entry(None, ts_ms=1000, actor="alice", action="test.step", detail={"index": 0})
    fields = ["platform/audit/v1", 1, 1000, "alice", "test.step", {"index": 0}, GENESIS_HASH]
    assert entry.hash == hashlib.sha256(cbor2.dumps(fields, canonical=True)).hexdigest()
    assert (entry.seq, entry.prev_hash, entry.detail) == (1, GENESIS_HASH, {"index": 0})


def test_every_chain_report_counts_the_entries_read_and_names_the_problem() -> None:
    from dataclasses import replace

    from platform_cli.core.audit import ChainReport, verify_chain

    chain = _chain(5)
    head = (5, chain[-1].hash)
    assert verify_chain(chain, head) == ChainReport(5)
    assert verify_chain(chain[:2] + chain[3:], head) == ChainReport(
        3, "entry 3 is missing or out of order (found 4)"
    )
    relinked = [*chain[:2], replace(chain[2], prev_hash=chain[0].hash), *chain[3:]]
    assert verify_chain(relinked, head) == ChainReport(3, "entry 3 does not link to entry 2")
    edited = [*chain[:3], replace(chain[3], actor="mallory"), chain[4]]
    assert verify_chain(edited, head) == ChainReport(
        4, "entry 4 was altered (its hash does not match its content)"
    )
    unencodable = [*chain[:4], replace(chain[4], detail=1.5, hash="")]
    assert verify_chain(unencodable, head) == ChainReport(
        5, "entry 5 was altered (its hash does not match its content)"
    )
    assert verify_chain(chain, None) == ChainReport(5, "the chain head record is missing")
    assert verify_chain(chain, (5, "f" * 64)) == ChainReport(
        5, "entry 5 does not match the chain head: it was rewritten"
    )
    assert verify_chain(chain[:4], head) == ChainReport(
        4, "chain head says entry 5, the log ends at entry 4: entries were removed"
    )
