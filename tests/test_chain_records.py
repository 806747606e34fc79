"""What ``platform weights`` keeps: the epoch's vector (fixed once it may have reached the
chain), the write-ahead submission rows and how each is settled, and the audit entries
that go with every step."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from platform_cli.chain import records
from platform_cli.chain.records import Vector
from platform_cli.core.consensus import weights as consensus_weights
from platform_cli.errors import PlatformError
from platform_cli.state import audit
from platform_cli.state.db import open_state

NETUID = 7
HOTKEY = "validator-hotkey"


@pytest.fixture
def state(tmp_path: Path):
    with open_state(tmp_path / "data") as opened:
        yield opened


def vector(epoch: int = 4, weights: dict[int, int] | None = None, mechid: int = 0) -> Vector:
    weights = {2: 600, 0: 400} if weights is None else weights
    u16 = {uid: w * 65535 // 1000 for uid, w in weights.items()}
    return Vector(NETUID, mechid, epoch, 1000 + epoch, weights, u16, {"source": "test"})


def rows(state) -> list[dict]:
    return list(reversed(records.history(state, NETUID, limit=1000)))


def last_audit(state) -> audit.AuditEntry:
    [entry] = audit.entries(state, last=1)
    return entry


def test_the_vector_hash_is_the_one_consensus_agrees_on_and_covers_every_field() -> None:
    v = vector()
    assert v.vector_hash == consensus_weights.vector_hash(NETUID, 0, 4, 1004, {0: 400, 2: 600})
    assert len(v.vector_hash) == 64
    variants = [
        Vector(NETUID + 1, 0, 4, 1004, v.weights, v.u16),
        Vector(NETUID, 1, 4, 1004, v.weights, v.u16),
        Vector(NETUID, 0, 5, 1004, v.weights, v.u16),
        Vector(NETUID, 0, 4, 1005, v.weights, v.u16),
        Vector(NETUID, 0, 4, 1004, {0: 401, 2: 599}, v.u16),
    ]
    assert len({v.vector_hash, *(other.vector_hash for other in variants)}) == 6
    # The u16 row and the detail are derived: they do not name a different vector.
    assert Vector(NETUID, 0, 4, 1004, {2: 600, 0: 400}, {}, {"x": 1}).vector_hash == v.vector_hash
    assert v.summary() == {
        "netuid": NETUID,
        "mechid": 0,
        "epoch": 4,
        "snapshot_block": 1004,
        "vector_hash": v.vector_hash,
        "uids": 2,
    }


def test_store_then_load_round_trips_and_load_picks_the_newest_or_the_asked_epoch(state) -> None:
    assert records.load(state, NETUID, 0) is None
    records.store(state, vector(epoch=4))
    records.store(state, vector(epoch=6, weights={1: 1000}))
    records.store(state, vector(epoch=5, mechid=1))
    assert records.load(state, NETUID, 0) == vector(epoch=6, weights={1: 1000})
    assert records.load(state, NETUID, 0, epoch=4) == vector(epoch=4)
    assert records.load(state, NETUID, 1) == vector(epoch=5, mechid=1)
    assert records.load(state, NETUID, 0, epoch=5) is None
    assert records.load(state, NETUID + 1, 0) is None
    entry = last_audit(state)
    assert (entry.actor, entry.action) == ("weights", "weights.compute")
    assert entry.detail == vector(epoch=5, mechid=1).summary()


def test_a_stored_vector_is_replaced_until_a_submission_may_have_sent_it(state) -> None:
    first, second = vector(), vector(weights={0: 1000})
    records.store(state, first)
    records.store(state, second)
    assert records.load(state, NETUID, 0, 4) == second
    assert records.fixed_by(state, NETUID, 0, 4) is None
    # A refusal before sending fixes nothing.
    records.refused(state, second, HOTKEY, "no permit")
    assert records.fixed_by(state, NETUID, 0, 4) is None
    records.store(state, first)
    pending = records.begin(state, first, HOTKEY)
    assert records.fixed_by(state, NETUID, 0, 4) == (pending, "pending", first.vector_hash)
    with pytest.raises(PlatformError) as refused:
        records.store(state, second)
    text = str(refused.value)
    assert f"submission #{pending} may have sent it (its outcome is unknown)" in text
    assert f"epoch 4's vector {first.vector_hash[:16]}… is fixed: submission #{pending} " in text
    assert "platform weights show --epoch 4" in text
    assert records.load(state, NETUID, 0, 4) == first
    # Storing the same vector again is harmless; other epochs and mechanisms are free.
    records.store(state, first)
    records.store(state, vector(epoch=5, weights={0: 1000}))
    records.store(state, vector(mechid=1, weights={0: 1000}))


@pytest.mark.parametrize("outcome", ["submitted", "confirmed"])
def test_a_settled_submission_fixes_the_vector_and_names_its_outcome(state, outcome: str) -> None:
    first = vector()
    records.store(state, first)
    row = records.begin(state, first, HOTKEY)
    records.finish(state, row, outcome, "set_weights", 1010, "in block")
    assert records.fixed_by(state, NETUID, 0, 4) == (row, outcome, first.vector_hash)
    with pytest.raises(PlatformError, match=rf"submission #{row} \({outcome}\) sent it"):
        records.store(state, vector(weights={0: 1000}))


def test_fixed_by_names_the_oldest_submission_of_the_stored_vector_only(state) -> None:
    first, second = vector(), vector(weights={0: 1000})
    records.store(state, first)
    failed = records.begin(state, first, HOTKEY)
    records.finish(state, failed, "failed", "set_weights", None, "refused by the chain")
    records.store(state, second)
    assert records.fixed_by(state, NETUID, 0, 4) is None
    older = records.begin(state, second, HOTKEY)
    newer = records.begin(state, second, "other-hotkey")
    records.finish(state, newer, "confirmed", "set_weights", 1010, "in block")
    assert records.fixed_by(state, NETUID, 0, 4) == (older, "pending", second.vector_hash)
    assert records.fixed_by(state, NETUID, 0, 5) is None
    assert records.fixed_by(state, NETUID, 1, 4) is None
    assert records.fixed_by(state, NETUID + 1, 0, 4) is None


def test_begin_writes_the_pending_row_and_audits_the_exact_u16_row(state) -> None:
    v = vector()
    row = records.begin(state, v, HOTKEY)
    assert row > 0
    [history] = rows(state)
    assert {
        k: history[k] for k in ("id", "epoch", "mechid", "hotkey", "outcome", "path", "block", "message")
    } == {
        "id": row,
        "epoch": 4,
        "mechid": 0,
        "hotkey": HOTKEY,
        "outcome": "pending",
        "path": "",
        "block": None,
        "message": "submitting",
    }
    assert history["vector_hash"] == v.vector_hash
    entry = last_audit(state)
    assert (entry.actor, entry.action) == (HOTKEY, "weights.pending")
    assert entry.detail == {
        "id": row,
        "netuid": NETUID,
        "mechid": 0,
        "epoch": 4,
        "snapshot_block": 1004,
        "vector_hash": v.vector_hash,
        "u16": [[0, 26214], [2, 39321]],
    }
    # An empty vector has nothing to record beyond its row.
    before = audit.head(state)
    records.begin(state, vector(weights={}), HOTKEY)
    assert audit.head(state) == before


@pytest.mark.parametrize(
    ("outcome", "action"),
    [
        ("submitted", "weights.submitted"),
        ("confirmed", "weights.confirmed"),
        ("failed", "weights.failed"),
        ("pending", "weights.unknown"),
    ],
)
def test_finish_sets_the_outcome_and_audits_it(state, outcome: str, action: str) -> None:
    v = vector()
    row = records.begin(state, v, HOTKEY)
    other = records.begin(state, v, HOTKEY)
    records.finish(state, row, outcome, "commit_reveal", 1010, "the chain said so")
    by_id = {r["id"]: r for r in rows(state)}
    assert (by_id[row]["outcome"], by_id[row]["path"], by_id[row]["block"], by_id[row]["message"]) == (
        outcome,
        "commit_reveal",
        1010,
        "the chain said so",
    )
    assert (by_id[other]["outcome"], by_id[other]["message"]) == ("pending", "submitting")
    entry = last_audit(state)
    assert (entry.actor, entry.action) == (HOTKEY, action)
    assert entry.detail == {
        "netuid": NETUID,
        "mechid": 0,
        "epoch": 4,
        "hotkey": HOTKEY,
        "vector_hash": v.vector_hash,
        "id": row,
        "path": "commit_reveal",
        "block": 1010,
        "message": "the chain said so",
    }


def test_a_refusal_is_one_failed_row_with_its_reason(state) -> None:
    v = vector()
    row = records.refused(state, v, HOTKEY, "no validator permit")
    [history] = rows(state)
    assert (history["id"], history["outcome"], history["block"], history["path"]) == (row, "failed", None, "")
    assert history["message"] == "refused before sending: no validator permit"
    entry = last_audit(state)
    assert (entry.actor, entry.action) == (HOTKEY, "weights.refused")
    assert entry.detail["message"] == "refused before sending: no validator permit"
    assert (entry.detail["id"], entry.detail["path"], entry.detail["block"]) == (row, "", None)


def test_a_missed_epoch_is_a_row_and_an_error_in_the_log(state, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="platform.weights"):
        records.record_missed(state, NETUID, 0, 9, HOTKEY, "deadline passed")
    [history] = rows(state)
    assert (history["epoch"], history["outcome"], history["message"]) == (9, "missed", "deadline passed")
    assert history["vector_hash"] == Vector(NETUID, 0, 9, 0, {}, {}).vector_hash
    entry = last_audit(state)
    assert (entry.actor, entry.action) == (HOTKEY, "weights.missed")
    assert (entry.detail["path"], entry.detail["block"], entry.detail["message"]) == (
        "",
        None,
        "deadline passed",
    )
    [logged] = caplog.records
    assert logged.levelno == logging.ERROR
    assert (
        logged.getMessage()
        == f"weights.missed netuid={NETUID} epoch=9 hotkey={HOTKEY} reason=deadline passed"
    )


def test_resolve_pending_settles_only_this_epochs_pending_rows_of_this_hotkey(state) -> None:
    v = vector()
    mine = records.begin(state, v, HOTKEY)
    theirs = records.begin(state, v, "other-hotkey")
    later = records.begin(state, vector(epoch=5), HOTKEY)
    other_mech = records.begin(state, vector(mechid=1), HOTKEY)
    failed = records.refused(state, v, HOTKEY, "no permit")
    records.resolve_pending(state, NETUID, 0, HOTKEY, 4, 1010)
    by_id = {r["id"]: r for r in rows(state)}
    assert (by_id[mine]["outcome"], by_id[mine]["block"], by_id[mine]["path"]) == ("submitted", 1010, "")
    assert by_id[mine]["message"] == "found on chain after an interrupted submission (last update 1010)"
    assert last_audit(state).action == "weights.submitted"
    assert [by_id[i]["outcome"] for i in (theirs, later, other_mech, failed)] == [
        "pending",
        "pending",
        "pending",
        "failed",
    ]
    assert len(by_id) == 5


def test_resolve_pending_without_a_row_records_what_the_chain_shows(state) -> None:
    records.resolve_pending(state, NETUID, 0, HOTKEY, 4, 1010)
    [history] = rows(state)
    assert (history["epoch"], history["outcome"], history["block"], history["path"]) == (
        4,
        "submitted",
        1010,
        "",
    )
    assert history["vector_hash"] == Vector(NETUID, 0, 4, 0, {}, {}).vector_hash
    assert history["message"] == "weights for this epoch found on chain"
    entry = last_audit(state)
    assert (entry.actor, entry.action, entry.detail["block"]) == (HOTKEY, "weights.submitted", 1010)


def test_last_done_epoch_counts_landed_and_missed_epochs_only(state) -> None:
    assert records.last_done_epoch(state, NETUID, 0, HOTKEY) is None
    records.record_missed(state, NETUID, 0, 3, HOTKEY, "late")
    assert records.last_done_epoch(state, NETUID, 0, HOTKEY) == 3
    records.refused(state, vector(epoch=8), HOTKEY, "no permit")
    records.begin(state, vector(epoch=9), HOTKEY)
    records.resolve_pending(state, NETUID, 0, "other-hotkey", 10, 2000)
    records.resolve_pending(state, NETUID, 1, HOTKEY, 11, 2000)
    assert records.last_done_epoch(state, NETUID, 0, HOTKEY) == 3
    confirmed = records.begin(state, vector(epoch=5), HOTKEY)
    records.finish(state, confirmed, "confirmed", "set_weights", 1500, "in block")
    assert records.last_done_epoch(state, NETUID, 0, HOTKEY) == 5
    records.resolve_pending(state, NETUID, 0, HOTKEY, 6, 1600)
    assert records.last_done_epoch(state, NETUID, 0, HOTKEY) == 6


def test_history_is_newest_first_limited_and_per_subnet(state) -> None:
    ids = [records.begin(state, vector(epoch=e), HOTKEY) for e in range(4)]
    records.begin(state, Vector(NETUID + 1, 0, 1, 0, {}, {}), HOTKEY)
    listed = records.history(state, NETUID, limit=3)
    assert [r["id"] for r in listed] == ids[::-1][:3]
    assert list(listed[0]) == [*records.HISTORY_KEYS, "created_ms"]
    assert listed[0]["created_ms"] > 0
    assert len(records.history(state, NETUID)) == 4
    more = [records.begin(state, vector(epoch=e), HOTKEY) for e in range(4, 60)]
    assert [r["id"] for r in records.history(state, NETUID)] == (ids + more)[::-1][:50]


def test_committed_reads_the_vector_consensus_agreed_on(state) -> None:
    assert records.committed(state, NETUID, 0, 4) is None
    state.execute(
        "INSERT INTO consensus_vectors (netuid, mechid, epoch, height, vector_hash, snapshot_block, weights, "
        "committed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [NETUID, 0, 4, 12, "ab" * 32, 1004, "[[0, 400], [2, 600]]", 1],
    )
    assert records.committed(state, NETUID, 0, 4) == records.Committed(12, "ab" * 32, ((0, 400), (2, 600)))
    assert records.committed(state, NETUID, 1, 4) is None
    assert records.committed(state, NETUID, 0, 5) is None
    assert records.committed(state, NETUID + 1, 0, 4) is None
