"""What a data dir's state says about its validator, for ``status`` and the metrics.

Read-only and cheap (a handful of indexed queries), so a scrape or a ``status`` call
never competes with the node for more than a moment; it works whether or not the node
runs, and says which.
"""

from __future__ import annotations

from typing import Any

from platform_cli.node import health
from platform_cli.state.db import State

RECENT_ERRORS = 5


def summary(state: State, netuid: int, mechid: int, now: int) -> dict[str, Any]:
    process = health.read_process(state)
    running = process is not None and process.alive(now)
    return {
        "node": _node(process, running, now),
        "services": [_service(s, running) for s in health.read_services(state)] if process else [],
        "peers": _peers(state),
        "chain": _chain(state, netuid),
        "consensus": _consensus(state),
        "evaluations": _evaluations(state),
        "weights": _weights(state, netuid, mechid),
        "recent_errors": _errors(state, netuid),
    }


def _node(process: health.NodeProcess | None, running: bool, now: int) -> dict[str, Any]:
    if process is None:
        return {"running": False, "pid": None, "uptime_s": None, "heartbeat_age_s": None}
    return {
        "running": running,
        "pid": process.pid,
        "uptime_s": (now - process.started_ms) // 1000 if running else None,
        "heartbeat_age_s": (now - process.heartbeat_ms) // 1000,
    }


def _service(service: health.ServiceHealth, running: bool) -> dict[str, Any]:
    # A node that died without cleaning up leaves its services' rows: they are history.
    state = service.state if running else "stopped"
    return {
        "name": service.name,
        "state": state,
        "restarts": service.restarts,
        "last_error": service.last_error,
    }


def _peers(state: State) -> dict[str, int]:
    row = state.execute(
        "SELECT count(*), coalesce(sum(connected), 0), coalesce(sum(banned_ms IS NOT NULL), 0), "
        "coalesce(sum(connected AND hotkey IS NOT NULL), 0) FROM p2p_peers"
    ).fetchone()
    return {"known": row[0], "connected": row[1], "banned": row[2], "validators_connected": row[3]}


def _chain(state: State, netuid: int) -> dict[str, Any]:
    row = state.execute(
        "SELECT block, tempo, epoch_index, epoch_start, next_epoch_start FROM chain_schedules "
        "WHERE netuid = ? ORDER BY block DESC LIMIT 1",
        [netuid],
    ).fetchone()
    if row is None:
        return {"synced": False, "netuid": netuid}
    block, tempo, epoch, start, next_start = row
    return {
        "synced": True,
        "netuid": netuid,
        "block": block,
        "tempo": tempo,
        "epoch": epoch,
        "epoch_start": start,
        "next_epoch_start": next_start,
        "blocks_to_next_epoch": max(0, next_start - block),
    }


def _consensus(state: State) -> dict[str, Any]:
    height = state.execute("SELECT coalesce(max(height), 0) FROM consensus_log").fetchone()[0]
    at = state.execute(
        "SELECT height, round, step FROM consensus_resume ORDER BY updated_ms DESC LIMIT 1"
    ).fetchone()
    evidence = state.execute("SELECT count(*) FROM consensus_evidence").fetchone()[0]
    last_two = [
        r[0] for r in state.execute("SELECT committed_ms FROM consensus_log ORDER BY height DESC LIMIT 2")
    ]
    return {
        "last_height_ms": last_two[0] - last_two[1] if len(last_two) == 2 else None,
        "committed_height": height,
        "height": at[0] if at else height + 1,
        "round": at[1] if at else 0,
        "evidence": evidence,
    }


def _evaluations(state: State) -> dict[str, Any]:
    outcomes = dict(state.execute("SELECT outcome, count(*) FROM evaluations GROUP BY outcome").fetchall())
    pending = state.execute(
        "SELECT count(*) FROM miner_submissions m WHERE NOT EXISTS "
        "(SELECT 1 FROM evaluations e WHERE e.submission_sha256 = m.sha256 AND e.challenge_id = m.challenge_id)"
    ).fetchone()[0]
    return {"total": sum(outcomes.values()), "by_outcome": outcomes, "pending": pending}


def _weights(state: State, netuid: int, mechid: int) -> dict[str, Any]:
    row = state.execute(
        "SELECT epoch, outcome, block, vector_hash, message FROM weight_submissions "
        "WHERE netuid = ? AND mechid = ? ORDER BY id DESC LIMIT 1",
        [netuid, mechid],
    ).fetchone()
    counts = dict(
        state.execute(
            "SELECT outcome, count(*) FROM weight_submissions WHERE netuid = ? AND mechid = ? GROUP BY outcome",
            [netuid, mechid],
        ).fetchall()
    )
    last = None
    if row:
        last = {
            "epoch": row[0],
            "outcome": row[1],
            "block": row[2],
            "vector_hash": row[3],
            "confirmed": row[1] == "confirmed",
            "message": row[4],
        }
    return {"last": last, "by_outcome": counts}


def _errors(state: State, netuid: int) -> list[dict[str, Any]]:
    """The newest failures worth a look: failed services and weights that did not land."""
    errors = [
        {"what": f"service {s.name}", "error": s.last_error, "at_ms": s.since_ms}
        for s in health.read_services(state)
        if s.last_error
    ]
    for epoch, outcome, message, created in state.execute(
        "SELECT epoch, outcome, message, created_ms FROM weight_submissions "
        "WHERE netuid = ? AND outcome IN ('failed', 'missed') ORDER BY id DESC LIMIT ?",
        [netuid, RECENT_ERRORS],
    ):
        errors.append({"what": f"weights epoch {epoch} {outcome}", "error": message, "at_ms": created})
    errors.sort(key=lambda e: e["at_ms"], reverse=True)
    return errors[:RECENT_ERRORS]
