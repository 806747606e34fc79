"""``--metrics HOST:PORT``: Prometheus metrics and ``/healthz`` for a running validator.

Every scrape reads the state (read-only, its own connection) and the supervisor's view
of its services, so the figures are those ``platform status`` shows. Served from a
thread by the standard library's WSGI server through prometheus-client's exporter.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from platform_cli.clock import now_ms
from platform_cli.errors import PlatformError
from platform_cli.node.health import ServiceHealth
from platform_cli.node.report import summary
from platform_cli.state.db import open_state

log = logging.getLogger("platform.node")

HealthView = Callable[[], dict[str, ServiceHealth]]


class NodeCollector:
    def __init__(self, data_dir: Path, netuid: int, mechid: int, services: HealthView) -> None:
        self.data_dir = data_dir
        self.netuid = netuid
        self.mechid = mechid
        self.services = services

    def describe(self) -> Iterable[Metric]:
        return []  # collected only at scrape time: the registry must not read the state at start

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("platform_service_up", "1 when the service is up", labels=["service"])
        restarts = CounterMetricFamily(
            "platform_service_restarts", "Restarts by the supervisor", labels=["service"]
        )
        for name, service in sorted(self.services().items()):
            up.add_metric([name], 1.0 if service.state == "up" else 0.0)
            restarts.add_metric([name], service.restarts)
        yield up
        yield restarts
        with open_state(self.data_dir, readonly=True) as state:
            report = summary(state, self.netuid, self.mechid, now_ms())
            refusals = state.execute(
                "SELECT outcome, reason, sum(count) FROM p2p_traffic WHERE outcome IN ('refused', 'dropped') "
                "GROUP BY outcome, reason"
            ).fetchall()
        peers = GaugeMetricFamily("platform_peers", "Peers by state", labels=["state"])
        for key, value in report["peers"].items():
            peers.add_metric([key], value)
        yield peers
        consensus = report["consensus"]
        yield GaugeMetricFamily(
            "platform_consensus_committed_height",
            "Newest committed height",
            value=consensus["committed_height"],
        )
        yield GaugeMetricFamily(
            "platform_consensus_height", "Height being decided", value=consensus["height"]
        )
        yield GaugeMetricFamily(
            "platform_consensus_round", "Round (view) at that height", value=consensus["round"]
        )
        yield CounterMetricFamily(
            "platform_consensus_evidence", "Equivocation evidence held", value=consensus["evidence"]
        )
        if consensus["last_height_ms"] is not None:
            yield GaugeMetricFamily(
                "platform_consensus_height_seconds",
                "Time between the last two commits",
                value=consensus["last_height_ms"] / 1000,
            )
        chain = report["chain"]
        if chain["synced"]:
            yield GaugeMetricFamily(
                "platform_chain_block", "Chain head at the newest sync", value=chain["block"]
            )
            yield GaugeMetricFamily("platform_epoch", "Epoch at the newest sync", value=chain["epoch"])
            yield GaugeMetricFamily(
                "platform_blocks_to_next_epoch",
                "Blocks left in the epoch",
                value=chain["blocks_to_next_epoch"],
            )
        evaluations = CounterMetricFamily("platform_evaluations", "Evaluations recorded", labels=["outcome"])
        for outcome, count in sorted(report["evaluations"]["by_outcome"].items()):
            evaluations.add_metric([outcome], count)
        yield evaluations
        yield GaugeMetricFamily(
            "platform_evaluations_pending",
            "Admitted submissions not yet evaluated",
            value=report["evaluations"]["pending"],
        )
        weights = CounterMetricFamily("platform_weight_submissions", "Weight submissions", labels=["outcome"])
        for outcome, count in sorted(report["weights"]["by_outcome"].items()):
            weights.add_metric([outcome], count)
        yield weights
        refused = CounterMetricFamily(
            "platform_messages_refused", "Messages refused or dropped", labels=["outcome", "reason"]
        )
        for outcome, reason, count in refusals:
            refused.add_metric([outcome, reason or "unspecified"], count)
        yield refused


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics.request %s", format % args)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise PlatformError(f"--metrics {text!r}: want HOST:PORT, e.g. 127.0.0.1:9100")
    return host.strip("[]"), int(port)


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 when every service is up)."""

    def __init__(self, address: tuple[str, int], collector: NodeCollector) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        self._metrics = make_wsgi_app(registry)
        self._services = collector.services
        try:
            self._server: WSGIServer = make_server(*address, self._app, handler_class=_QuietHandler)
        except OSError as exc:
            raise PlatformError(f"--metrics {address[0]}:{address[1]}: {exc.strerror or exc}") from None
        self.address = f"{self._server.server_address[0]}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            services = {name: s.state for name, s in sorted(self._services().items())}
            healthy = bool(services) and all(state == "up" for state in services.values())
            body = json.dumps({"healthy": healthy, "services": services}).encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        try:
            return self._metrics(environ, start_response)
        except PlatformError as exc:  # the state is unreadable right now: say so, do not crash the thread
            body = f"state unreadable: {exc}\n".encode()
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [body]

    def start(self) -> None:
        self._thread.start()
        log.info("metrics.serving address=%s", self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
