"""What the monitor shows, read from a data dir's state: read-only, one short read.

The monitor never writes: the state is opened read-only (``mode=ro``), in a worker
thread, once a refresh; a monitor on a busy node costs it a few indexed reads a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platform_cli import evaluation, registry
from platform_cli.clock import now_ms
from platform_cli.config import load_config
from platform_cli.consensus import queries
from platform_cli.node.report import summary
from platform_cli.p2p import store
from platform_cli.state.db import State, open_state

LOG_LINES = 200


@dataclass(frozen=True)
class Snapshot:
    data_dir: Path
    report: dict[str, Any]
    peers: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]
    registry: list[dict[str, Any]]
    weights: list[dict[str, Any]]
    weights_epoch: int | None
    commits: list[dict[str, Any]]
    evidence: int
    log: list[str]


def connect(data_dir: Path) -> State:
    """A read-only connection the monitor keeps for its refreshes (each from a worker thread)."""
    return open_state(data_dir, readonly=True, any_thread=True)


def netuid_of(data_dir: Path) -> int:
    return load_config(data_dir).network.netuid


def read(state: State, data_dir: Path, netuid: int) -> Snapshot:
    report = summary(state, netuid, 0, now_ms())
    vector = state.execute(
        "SELECT epoch, weights FROM weight_vectors WHERE netuid = ? ORDER BY epoch DESC LIMIT 1", [netuid]
    ).fetchone()
    hotkeys = dict(
        state.execute(
            "SELECT uid, hotkey FROM metagraph_neurons WHERE netuid = ? AND block = "
            "(SELECT max(block) FROM metagraph_snapshots WHERE netuid = ?)",
            [netuid, netuid],
        ).fetchall()
    )
    weights = []
    if vector is not None:
        total = sum(w for _, w in json.loads(vector[1])) or 1
        weights = [
            {"uid": uid, "hotkey": hotkeys.get(uid, ""), "units": units, "share": units / total}
            for uid, units in sorted(json.loads(vector[1]), key=lambda p: -p[1])
        ]
    commits = queries.log(state, from_height=max(1, report["consensus"]["committed_height"] - 9), limit=10)
    return Snapshot(
        data_dir=data_dir,
        report=report,
        peers=store.peers(state),
        evaluations=evaluation.list_evaluations(state, limit=50),
        registry=registry.list_versions(state),
        weights=weights,
        weights_epoch=vector[0] if vector else None,
        commits=list(reversed(commits)),
        evidence=report["consensus"]["evidence"],
        log=_tail(data_dir / "node.log"),
    )


def _tail(path: Path) -> list[str]:
    """The last lines of the node's log, when it writes one (a devnet's nodes do)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            return handle.read().decode(errors="replace").splitlines()[-LOG_LINES:]
    except OSError:
        return []


def evaluation_detail(data_dir: Path, eval_id: int) -> dict[str, Any]:
    with open_state(data_dir, readonly=True) as state:
        return evaluation.show_evaluation(state, eval_id)


def commit_detail(data_dir: Path, height: int) -> dict[str, Any]:
    """The certificate of ``height`` and whether it verifies against the set of its block."""
    from platform_cli.consensus.certfiles import validator_set_from_state
    from platform_cli.core.consensus import certificate as certs
    from platform_cli.errors import PlatformError
    from platform_cli.identity import verify_signature

    config = load_config(data_dir)
    with open_state(data_dir, readonly=True) as state:
        doc = queries.show(state, height)
        cert, value = certs.from_json(doc)
        try:
            validators = validator_set_from_state(state, config.network.netuid, cert.set_block, 0)
            certs.verify(cert, validators, verify_signature, value=value)
            verdict = f"verifies: {len(cert.precommits)} of {validators.size} validators signed"
        except (PlatformError, certs.CertificateError) as exc:
            verdict = f"does not verify: {exc}"
    return {"height": height, "verification": verdict, **doc}
