"""``platform up`` and ``platform status``: the supervisor, and a real validator process.

The supervisor is exercised with small services written here (its contract is the
service protocol); the validator runs as a real process on the embedded dev chain, with
real libp2p, and is watched the way an operator would: ``status``, ``/metrics``,
``/healthz``, signals.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

from platform_cli.config import DEVNET_SUDO
from platform_cli.node.health import ServiceHealth
from platform_cli.node.supervisor import Supervisor, describe
from tests.chain_helpers import import_key, ok
from tests.p2p_helpers import _read_line, wait_for

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

# ---------------------------------------------------------------- the supervisor


class Flaky:
    """Fails ``failures`` times (before or after it is up, as told), then stays up."""

    def __init__(
        self, name: str, failures: int, *, fail_before_up: bool = False, start_delay: float = 0
    ) -> None:
        self.name = name
        self.failures = failures
        self.fail_before_up = fail_before_up
        self.start_delay = start_delay
        self.starts = 0
        self.cleanups = 0

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.starts += 1
        try:
            await trio.sleep(self.start_delay)
            if self.fail_before_up and self.starts <= self.failures:
                raise OSError(f"cannot bind, attempt {self.starts}")
            task_status.started()
            if self.starts <= self.failures:
                await trio.sleep(0.01)
                raise RuntimeError(f"lost the connection, run {self.starts}\nsecond line")
            await trio.sleep_forever()
        finally:
            self.cleanups += 1


def supervise(services: list[Any], until: Any, timeout: float = 10) -> tuple[list[ServiceHealth], bool]:
    changes: list[ServiceHealth] = []
    ready_at: list[int] = []

    async def main() -> None:
        supervisor = Supervisor(services, changes.append, base_backoff_ms=10, max_backoff_ms=40)
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.run)
                ready_at.append(len(changes))
                while not until(supervisor):
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()

    trio.run(main)
    return changes, bool(ready_at)


def test_a_failed_service_is_restarted_with_its_error_recorded() -> None:
    flaky, steady = Flaky("flaky", 2), Flaky("steady", 0)
    changes, ready = supervise([flaky, steady], lambda s: s.health["flaky"].restarts == 2 and s.all_up())
    assert ready
    assert flaky.starts == 3 and steady.starts == 1
    assert flaky.cleanups == 3  # every run cleaned up, the last one at the cancel
    flaky_states = [(c.state, c.restarts) for c in changes if c.name == "flaky"]
    assert flaky_states == [
        ("starting", 0), ("up", 0), ("failed", 1), ("starting", 1), ("up", 1),
        ("failed", 2), ("starting", 2), ("up", 2), ("stopped", 2),
    ]  # fmt: skip
    failed = [c for c in changes if c.name == "flaky" and c.state == "failed"]
    assert failed[-1].last_error == "RuntimeError: lost the connection, run 2"  # one line
    assert [c.state for c in changes if c.name == "steady"] == ["starting", "up", "stopped"]


def test_ready_only_once_every_service_has_been_up() -> None:
    slow = Flaky("slow", 2, fail_before_up=True)
    changes, ready = supervise([Flaky("fast", 0), slow], lambda s: s.all_up())
    assert ready
    first_all_up = next(i for i, c in enumerate(changes) if c.name == "slow" and c.state == "up")
    assert [c.state for c in changes[: first_all_up + 1] if c.name == "slow"] == [
        "starting", "failed", "starting", "failed", "starting", "up",
    ]  # fmt: skip
    assert slow.starts == 3


def test_backoff_grows_between_restarts() -> None:
    flaky = Flaky("flaky", 4, fail_before_up=True)
    began = time.monotonic()
    supervise([flaky], lambda s: s.all_up())
    # 10 + 20 + 40 + 40 ms (capped) of backoff at the least.
    assert time.monotonic() - began >= 0.11
    assert flaky.starts == 5


def test_a_report_that_fails_does_not_take_the_services_down() -> None:
    async def main() -> int:
        calls = 0

        def report(change: ServiceHealth) -> None:
            nonlocal calls
            calls += 1
            raise OSError("database or disk is full")

        supervisor = Supervisor([Flaky("a", 1)], report, base_backoff_ms=10)
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            with trio.fail_after(5):
                while supervisor.health["a"].restarts < 1 or not supervisor.all_up():
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        return calls

    assert trio.run(main) >= 5


def test_describe_takes_the_innermost_single_failure() -> None:
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [ValueError("bad value\nmore")])])
    assert describe(group) == "ValueError: bad value"
    assert describe(TimeoutError()) == "TimeoutError"


def test_duplicate_service_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([Flaky("a", 0), Flaky("a", 0)], lambda change: None)


# ---------------------------------------------------------------- a real validator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_validator(
    run: Any, data_dir: Path, chain_table: str = 'network = "dev"', network_table: str = ""
) -> None:
    ok(run("chain", "dev", "init"))
    import_key(run, "validator", "validator-0")
    (data_dir / "platform.toml").write_text(
        f'[network]\n{network_table}\n[chain]\n{chain_table}\n[p2p]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n'
    )


class Validator:
    def __init__(self, data_dir: Path, metrics_port: int) -> None:
        self.data_dir = data_dir
        self.metrics = f"127.0.0.1:{metrics_port}"
        self.log = data_dir / "up.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "platform_cli",
                    "--data-dir",
                    str(data_dir),
                    "up",
                    "--metrics",
                    self.metrics,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def ready(self, timeout: float = 90) -> dict[str, Any]:
        line = _read_line(self.proc, timeout)
        assert line, f"not ready:\n{self.log.read_text()[-3000:]}"
        return json.loads(line)

    def status(self) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-m", "platform_cli", "--data-dir", str(self.data_dir), "--json", "status"],
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.metrics}{path}", timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except urllib.error.URLError:
            return 0, ""  # not listening (yet, or any more)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout=30)


def metric(text: str, name: str) -> float:
    """The value of one series, ``name`` with its labels as the exposition format prints them."""
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics:\n{text}")


def test_up_runs_a_validator_that_status_and_metrics_show_truthfully(run: Any, data_dir: Path) -> None:
    prepare_validator(run, data_dir)
    validator = Validator(data_dir, free_port())
    try:
        ready = validator.ready()
        assert ready["services"] == ["p2p", "chain", "evaluations", "weights"]
        assert ready["peer_id"].startswith("12D3KooW") and ready["addrs"]
        status = validator.status()
        assert status["node"]["running"] and status["node"]["pid"] == validator.proc.pid
        assert {s["name"]: (s["state"], s["restarts"]) for s in status["services"]} == {
            "p2p": ("up", 0),
            "chain": ("up", 0),
            "evaluations": ("up", 0),
            "weights": ("up", 0),
        }
        assert status["chain"]["synced"] and status["chain"]["netuid"] == 100
        code, body = validator.get("/healthz")
        assert code == 200 and json.loads(body) == {
            "healthy": True,
            "services": {"chain": "up", "evaluations": "up", "p2p": "up", "weights": "up"},
        }
        code, text = validator.get("/metrics")
        assert code == 200
        assert metric(text, 'platform_service_up{service="p2p"}') == 1.0
        assert metric(text, 'platform_service_restarts_total{service="chain"}') == 0.0
        assert metric(text, "platform_chain_block") == status["chain"]["block"]
        assert metric(text, "platform_consensus_committed_height") == 0.0
        began = time.monotonic()
        assert validator.stop() == 0
        assert time.monotonic() - began < 15
    finally:
        validator.stop(signal.SIGKILL)
    status = validator.status()
    assert not status["node"]["running"]
    assert status["services"] == []  # a clean stop leaves no service claiming to run
    assert "Traceback" not in validator.log.read_text()


def test_a_failing_service_is_restarted_and_shows_in_status_and_metrics(run: Any, data_dir: Path) -> None:
    dead_endpoint = f"ws://127.0.0.1:{free_port()}"
    prepare_validator(
        run,
        data_dir,
        chain_table=f'network = "{dead_endpoint}"\ntimeout_s = 1\nretries = 0',
        network_table=f'netuid = 100\nsudo = "{DEVNET_SUDO}"',
    )
    validator = Validator(data_dir, free_port())
    try:
        wait_for(lambda: validator.get("/healthz")[0] == 503, 90, what="the metrics endpoint")

        def chain_restarted() -> dict[str, Any] | None:
            services = {s["name"]: s for s in validator.status()["services"]}
            chain = services.get("chain")
            return chain if chain and chain["restarts"] >= 2 else None

        chain = wait_for(chain_restarted, 90, interval=0.5, what="two restarts of the chain service")
        assert chain["last_error"]
        code, body = validator.get("/healthz")
        assert code == 503 and not json.loads(body)["healthy"]
        _, text = validator.get("/metrics")
        assert metric(text, 'platform_service_restarts_total{service="chain"}') >= 2
        assert metric(text, 'platform_service_up{service="p2p"}') == 1.0
        assert validator.proc.poll() is None  # one failing service never takes the node down
        assert validator.stop() == 0
    finally:
        validator.stop(signal.SIGKILL)
    log = validator.log.read_text()
    assert "up: service chain failed:" in log and "Traceback" not in log


def test_status_after_a_sigkill_says_the_node_is_not_running(run: Any, data_dir: Path) -> None:
    prepare_validator(run, data_dir)
    validator = Validator(data_dir, free_port())
    validator.ready()
    validator.stop(signal.SIGKILL)
    status = validator.status()
    assert status["node"]["running"] is False and status["node"]["pid"] == validator.proc.pid
    assert {s["state"] for s in status["services"]} == {"stopped"}
    result = run("status")
    assert result.exit_code == 0 and "NOT running" in result.stdout


def test_up_without_a_config_says_how_to_make_one(run: Any) -> None:
    result = run("up")
    assert result.exit_code == 1
    assert (
        result.stderr.count("\n") == 1 and "devnet up" in result.stderr and "platform.toml" in result.stderr
    )


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (("--metrics", "localhost"), "", "want HOST:PORT"),
        ((), "[p2p]\nlisten = 3\n", "p2p.listen"),
        ((), '[weights]\nhotkey = "nobody"\n', "nobody"),
        ((), "[nodes]\n", "not a known table"),
    ],
)
def test_up_checks_config_flags_and_key_before_starting(
    run: Any, data_dir: Path, args: tuple[str, ...], config: str, message: str
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if config:
        (data_dir / "platform.toml").write_text(config)
    else:
        prepare_validator(run, data_dir)
    result = run("up", *args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_status_of_a_fresh_data_dir(run: Any) -> None:
    result = run("--json", "status")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["node"] == {"running": False, "pid": None, "uptime_s": None, "heartbeat_age_s": None}
    assert report["weights"] == {"last": None, "by_outcome": {}}
    assert report["chain"]["synced"] is False
