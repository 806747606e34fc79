"""What ``platform consensus status | log | show | evidence`` read from a node's state."""

from __future__ import annotations

from typing import Any

from platform_cli.core import canonical
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus import evidence as ev
from platform_cli.core.consensus.messages import Step
from platform_cli.errors import PlatformError
from platform_cli.state.db import State


def _actions(value: Any) -> list[str]:
    described = []
    for action in value.get("actions", []):
        kind = action.get("type", "?")
        if kind == "weights":
            described.append(f"weights epoch {action.get('epoch')}")
        elif kind == "validators":
            described.append(f"validator set of block {action.get('set', {}).get('block')}")
        else:
            described.append(f"{kind} effective {action.get('effective_block')}")
    return described


def status(state: State) -> dict[str, Any]:
    head = state.execute(
        "SELECT height, value_id, committed_ms FROM consensus_log ORDER BY height DESC LIMIT 1"
    ).fetchone()
    at = state.execute(
        "SELECT signer, height, round, step, locked_round, updated_ms FROM consensus_resume ORDER BY updated_ms DESC LIMIT 1"
    ).fetchone()
    return {
        "committed_height": head[0] if head else 0,
        "head_value_id": head[1] if head else None,
        "last_commit_ms": head[2] if head else None,
        "signer": at[0] if at else None,
        "height": at[1] if at else (head[0] + 1 if head else 1),
        "round": at[2] if at else 0,
        "step": Step(at[3]).name.lower() if at else None,
        "locked_round": at[4] if at else -1,
        "evidence": state.execute("SELECT count(*) FROM consensus_evidence").fetchone()[0],
        "committed_vectors": state.execute("SELECT count(*) FROM consensus_vectors").fetchone()[0],
    }


def log(state: State, *, from_height: int = 1, limit: int = 50) -> list[dict[str, Any]]:
    rows = state.execute(
        "SELECT height, value_id, value, certificate, committed_ms FROM consensus_log WHERE height >= ? "
        "ORDER BY height LIMIT ?",
        [from_height, limit],
    ).fetchall()
    out = []
    for height, value_id, value, certificate, committed_ms in rows:
        cert = certs.decode(certificate)
        out.append(
            {
                "height": height,
                "value_id": value_id,
                "round": cert.round,
                "signers": len(cert.precommits),
                "actions": "; ".join(_actions(canonical.decode(value))) or "(none)",
                "committed_ms": committed_ms,
            }
        )
    return out


def show(state: State, height: int) -> dict[str, Any]:
    """The entry at ``height`` and its certificate, in the JSON form ``consensus verify`` takes."""
    row = state.execute("SELECT value, certificate FROM consensus_log WHERE height = ?", [height]).fetchone()
    if row is None:
        top = state.execute("SELECT coalesce(max(height), 0) FROM consensus_log").fetchone()[0]
        raise PlatformError(f"no committed entry at height {height} (the log holds heights 1..{top})")
    value = canonical.decode(row[0])
    return certs.decode(row[1]).to_json(value)


def evidence(state: State, limit: int = 50) -> list[dict[str, Any]]:
    rows = state.execute(
        "SELECT evidence, received_ms FROM consensus_evidence ORDER BY received_ms DESC LIMIT ?", [limit]
    ).fetchall()
    return [{**ev.decode(data).to_json(), "received_ms": received} for data, received in rows]
