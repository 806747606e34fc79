"""Where the running validator says how it is: its process and each service's state.

Written by ``platform up`` (rarely: on a service's change of state and a heartbeat every
few seconds) and read by ``platform status``, the metrics endpoint and the monitor,
which may run in other processes while the node works.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from platform_cli.clock import now_ms
from platform_cli.state.db import State, write_transaction

HEARTBEAT_MS = 5_000
STALE_MS = 4 * HEARTBEAT_MS
"""A node whose heartbeat is older than this (or whose pid is gone) is not running."""


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    state: str  # starting | up | failed | stopped
    restarts: int
    since_ms: int
    last_error: str


@dataclass(frozen=True)
class NodeProcess:
    pid: int
    started_ms: int
    heartbeat_ms: int
    services: list[str]

    def alive(self, now: int) -> bool:
        return now - self.heartbeat_ms <= STALE_MS and pid_alive(self.pid)


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists and is not a zombie (killed, not yet reaped)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: what kill said
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def register(state: State, services: list[str]) -> None:
    """This process is the data dir's node from now on; earlier service rows are history."""
    now = now_ms()
    with write_transaction(state):
        state.execute(
            "DELETE FROM node_services WHERE name NOT IN (SELECT value FROM json_each(?))",
            [json.dumps(services)],
        )
        state.execute(
            "INSERT INTO node_process (id, pid, started_ms, heartbeat_ms, services) VALUES (1, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, started_ms = excluded.started_ms, "
            "heartbeat_ms = excluded.heartbeat_ms, services = excluded.services",
            [os.getpid(), now, now, json.dumps(services)],
        )


def heartbeat(state: State) -> None:
    with write_transaction(state):
        state.execute(
            "UPDATE node_process SET heartbeat_ms = ? WHERE id = 1 AND pid = ?", [now_ms(), os.getpid()]
        )


def unregister(state: State) -> None:
    with write_transaction(state):
        state.execute("DELETE FROM node_process WHERE id = 1 AND pid = ?", [os.getpid()])


def record(state: State, health: ServiceHealth) -> None:
    with write_transaction(state):
        state.execute(
            "INSERT INTO node_services (name, state, restarts, since_ms, last_error, updated_ms) "
            "VALUES (:name, :state, :restarts, :since_ms, :last_error, :updated_ms) "
            "ON CONFLICT (name) DO UPDATE SET state = excluded.state, restarts = excluded.restarts, "
            "since_ms = excluded.since_ms, last_error = excluded.last_error, updated_ms = excluded.updated_ms",
            {**asdict(health), "updated_ms": now_ms()},
        )


def read_process(state: State) -> NodeProcess | None:
    row = state.execute(
        "SELECT pid, started_ms, heartbeat_ms, services FROM node_process WHERE id = 1"
    ).fetchone()
    return NodeProcess(row[0], row[1], row[2], json.loads(row[3])) if row else None


def read_services(state: State) -> list[ServiceHealth]:
    rows = state.execute(
        "SELECT name, state, restarts, since_ms, last_error FROM node_services ORDER BY name"
    ).fetchall()
    return [ServiceHealth(*row) for row in rows]
