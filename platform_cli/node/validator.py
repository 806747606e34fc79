"""``platform up``: one validator process, its services composed and supervised.

The composition lives here and nowhere else: the P2P node (gossip, DHT, sync), the chain
service (metagraph and epoch schedule kept fresh), the evaluation service (every taken
submission evaluated, its report published) and the epoch weight loop, under one
supervisor that restarts a failed service with backoff. Each change of a service's state
and a heartbeat go to the state, so ``platform status``, the metrics endpoint and the
monitor see the node from other processes. SIGINT/SIGTERM cancel everything; each
service cleans up in its own ``finally``; what was committed to the state stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from platform_cli.chain.settings import ChainSettings, WeightSettings
from platform_cli.config import Config, NetworkConfig
from platform_cli.consensus.settings import ConsensusSettings
from platform_cli.identity import Signer
from platform_cli.node import health, services
from platform_cli.node.supervisor import Service, Supervisor
from platform_cli.p2p.config import NodeSettings
from platform_cli.state.db import open_state

log = logging.getLogger("platform.node")


@dataclass(frozen=True)
class ValidatorPlan:
    """Everything ``platform up`` checked before starting anything."""

    data_dir: Path
    network: NetworkConfig
    p2p: NodeSettings
    chain: ChainSettings
    weights: WeightSettings
    signer: Signer
    config: Config
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)
    jobs: int = 1
    metrics: tuple[str, int] | None = None
    only_consensus: bool = False
    """``consensus run``: the P2P node, the chain service and consensus, nothing else."""
    byzantine: bool = False
    """Devnet only: misbehave on purpose (``node/byzantine.py``)."""


def compose(plan: ValidatorPlan) -> tuple[list[Service], services.P2PService]:
    from platform_cli.node.evaluator import EvaluationService

    p2p = services.P2PService(plan.data_dir, plan.p2p, plan.network)
    composed: list[Service] = [p2p, services.chain_service(plan.data_dir, plan.chain, plan.network.netuid)]
    if not plan.only_consensus:
        composed.append(
            EvaluationService(
                plan.data_dir,
                plan.config,
                plan.signer,
                plan.jobs,
                p2p.fetch_content,
                byzantine=plan.byzantine,
            )
        )
    if plan.consensus.enabled:
        from platform_cli.consensus.service import ConsensusService

        composed.append(
            ConsensusService(
                plan.data_dir,
                plan.config,
                plan.signer,
                p2p,
                plan.consensus,
                plan.weights,
                plan.chain,
                byzantine=plan.byzantine,
            )
        )
    if not plan.only_consensus:
        composed.append(
            services.weights_service(
                plan.data_dir,
                plan.chain,
                plan.weights,
                plan.signer,
                plan.network.netuid,
                plan.consensus.enabled,
            )
        )
    if plan.byzantine:
        from platform_cli.node.byzantine import GarbageService

        composed.append(GarbageService(p2p))
    return composed, p2p


def run(plan: ValidatorPlan, say: Callable[[str], None]) -> None:
    """Run the validator until SIGINT/SIGTERM; ``say`` gets a line per step of the start."""
    from platform_cli.p2p import keys
    from platform_cli.p2p.node import check_ports_free

    lock = keys.lock_node(plan.data_dir)
    try:
        check_ports_free(plan.p2p.listen)
        # Only once the data dir and the ports are ours: a refusal stays one line.
        say(f"validator {plan.signer.ss58} on netuid {plan.network.netuid}, data dir {plan.data_dir}")
        trio.run(_main, plan, say)
    finally:
        lock.close()


async def _main(plan: ValidatorPlan, say: Callable[[str], None]) -> None:
    from platform_cli.p2p.node import watch_signals

    composed, p2p = compose(plan)
    state = open_state(plan.data_dir)
    metrics_server: Any = None
    try:
        health.register(state, [service.name for service in composed])

        def report(change: health.ServiceHealth) -> None:
            health.record(state, change)
            detail = f": {change.last_error}" if change.state == "failed" else ""
            say(f"service {change.name} {change.state}{detail}")

        supervisor = Supervisor(composed, report)
        if plan.metrics is not None:
            from platform_cli.node.metrics import MetricsServer, NodeCollector

            collector = NodeCollector(
                plan.data_dir, plan.network.netuid, plan.weights.mechid, lambda: dict(supervisor.health)
            )
            metrics_server = MetricsServer(plan.metrics, collector)
            metrics_server.start()
            say(f"metrics on http://{metrics_server.address}/metrics (health: /healthz)")
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, scope)
                nursery.start_soon(_heartbeat, state)
                await nursery.start(supervisor.run)
                print(
                    json.dumps(
                        {
                            "ready": True,
                            "peer_id": p2p.node.peer_id,
                            "addrs": p2p.node.addrs,
                            "hotkey": plan.signer.ss58,
                            "services": [s.name for s in composed],
                        }
                    ),
                    flush=True,
                )
    finally:
        if metrics_server is not None:
            metrics_server.stop()
        health.unregister(state)
        state.close()
        log.info("node.stopped")


async def _heartbeat(state: Any) -> None:
    while True:
        health.heartbeat(state)
        await trio.sleep(health.HEARTBEAT_MS / 1000)
