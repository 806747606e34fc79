"""The monitor, driven by Textual's pilot over real states: what it shows, drill-down,
refresh on new rows, switching validators, the log filter, and that it never writes."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from textual.widgets import DataTable, Log, Static

from platform_cli.cli import cli
from platform_cli.tui.app import Detail, MonitorApp
from tests.chain_helpers import import_args, uid
from tests.conftest import FIXTURES, REPO

SORT = REPO / "challenges" / "sort"
GOOD = FIXTURES / "submissions" / "sort" / "good_shell.wasm"
OTHER = FIXTURES / "submissions" / "sort" / "good_insertion.wasm"


def cli_in(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def validator_state(data_dir: Path, chain_db: Path) -> None:
    """A validator's state: the dev chain synced, sort active, an evaluation, a vector."""
    from platform_cli import registry
    from platform_cli.config import load_config
    from platform_cli.state import open_state

    data_dir.mkdir(parents=True)
    (data_dir / "platform.toml").write_text(f'[chain]\ndev_db = "{chain_db}"\n')
    if not chain_db.exists():
        cli_in(data_dir, "chain", "dev", "init", "--block-time-ms", "0")
    cli_in(data_dir, *import_args("validator", "validator-0"))
    cli_in(data_dir, "chain", "sync")
    update_id = cli_in(data_dir, "--json", "registry", "propose", str(SORT / "update.json")).split(
        '"update_id": "'
    )[1][:64]
    with open_state(data_dir) as state:
        registry.commit_update(state, load_config(data_dir), update_id, effective_block=0)
    cli_in(data_dir, "eval", "run", str(SORT), str(GOOD))
    cli_in(data_dir, "weights", "compute")
    (data_dir / "node.log").write_text("INFO platform.node service up\nWARNING platform.weights fallback\n")


@pytest.fixture
def states(tmp_path: Path) -> list[Path]:
    dirs = [tmp_path / "v0", tmp_path / "v1"]
    for data_dir in dirs:
        validator_state(data_dir, tmp_path / "devchain.db")
    return dirs


def texts(app: MonitorApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def digest(path: Path) -> str:
    """The database and its write-ahead log (the -shm index changes on reads too: not data)."""
    files = sorted(p for p in path.iterdir() if p.name in ("state.db", "state.db-wal") and p.stat().st_size)
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


async def settle(pilot: Any, app: MonitorApp, predicate: Any) -> None:
    for _ in range(100):
        await pilot.pause(0.05)
        if predicate():
            return
    raise AssertionError("the monitor did not show it")


def test_the_monitor_shows_the_state_and_drills_down(states: list[Path]) -> None:
    untouched = digest(states[1])
    asyncio.run(drive(states))
    # It only read: the second validator's state files are byte for byte what they were.
    assert digest(states[1]) == untouched


async def drive(states: list[Path]) -> None:
    app = MonitorApp(states, refresh_s=0.2)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot, app, lambda: app.snapshot is not None)
        status = texts(app, "#status")
        assert "chain not synced" not in status and "epoch" in status
        assert "committed height 0" in texts(app, "#consensus")
        evaluations = app.query_one("#evaluations", DataTable)
        assert evaluations.row_count == 1 and evaluations.get_row_at(0)[3] == "ok"
        registry = app.query_one("#registry", DataTable)
        assert registry.get_row_at(0)[:3] == ["sort", "1.0.0", "active"]
        weights = app.query_one("#weights", DataTable)
        assert weights.row_count >= 1 and any(
            row[0] == uid("sudo") for row in map(weights.get_row_at, range(weights.row_count))
        )

        # Drill-down: the evaluation's whole record.
        app.query_one("#tabs").active = "tab-evaluations"
        evaluations.focus()
        await pilot.press("enter")
        await settle(pilot, app, lambda: isinstance(app.screen, Detail))
        assert '"outcome": "ok"' in str(app.screen.query_one("#detail-body", Static).render())
        await pilot.press("escape")

        # A new evaluation appears at the next refresh.
        cli_in(states[0], "eval", "run", str(SORT), str(OTHER))
        await settle(pilot, app, lambda: evaluations.row_count == 2)

        # The log, filtered.
        await pilot.press("slash")
        await pilot.press(*"WARNING", "enter")
        log = app.query_one("#log", Log)
        await settle(pilot, app, lambda: log.line_count == 1)

        # The next validator.
        app.set_focus(None)  # leave the filter box, as a click elsewhere would
        await pilot.press("n")
        await settle(pilot, app, lambda: app.snapshot is not None and app.snapshot.data_dir == states[1])
        assert app.query_one("#evaluations", DataTable).row_count == 1
        await pilot.press("q")


def test_the_monitor_on_a_state_it_cannot_read_says_so(tmp_path: Path) -> None:
    async def drive_missing() -> None:
        app = MonitorApp([tmp_path / "nothing"], refresh_s=0.2)
        async with app.run_test() as pilot:
            await settle(pilot, app, lambda: "cannot read the state" in texts(app, "#status"))
            await pilot.press("q")

    asyncio.run(drive_missing())


def test_monitor_refuses_a_data_dir_without_a_state(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "empty"), "monitor"])
    assert result.exit_code == 1 and result.stderr.startswith("error: no state at")


SNAPSHOTS = Path(__file__).parent / "snapshots"


def fixture_state(tmp_path: Path) -> Path:
    """A validator's state with nothing machine- or time-dependent left in what the monitor
    shows: the dev chain at its first block, one evaluation with its times fixed."""
    from platform_cli.state import open_state

    data_dir = tmp_path / "validator-0"
    validator_state(data_dir, tmp_path / "devchain.db")
    with open_state(data_dir) as state:
        state.execute("UPDATE evaluations SET wall_ms = 12, compile_ms = 3, created_ms = 0")
    (data_dir / "node.log").write_text("INFO platform.node node.service_up service=p2p\n")
    return data_dir


async def steady_screenshot(pilot: Any, app: MonitorApp) -> str:
    """The screen once it stops changing: a tab switch moves the focus, and the footer
    recomposes its keys for the new bindings a moment later (on a loaded machine, later
    than a fixed pause)."""
    previous = ""
    for _ in range(100):
        await pilot.pause(0.1)
        # Rich names the SVG's classes by a hash that differs between runs: not content.
        shot = re.sub(r"terminal-\d+", "terminal", app.export_screenshot())
        if shot == previous and app.query("FooterKey"):
            return shot
        previous = shot
    raise AssertionError("the monitor's screen did not settle")


@pytest.mark.parametrize("tab", ["tab-weights", "tab-evaluations", "tab-registry"])
def test_the_monitor_screens_match_their_snapshots(tmp_path: Path, tab: str) -> None:
    """Each tab of a fixture state, rendered at 120x36, against the SVG kept in
    tests/snapshots (PLATFORM_UPDATE_SNAPSHOTS=1 rewrites them after a deliberate change)."""
    import os

    data_dir = fixture_state(tmp_path)

    async def render() -> str:
        app = MonitorApp([data_dir], refresh_s=60)
        app.animation_level = "none"  # the tab underline would be caught mid-slide
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, app, lambda: app.snapshot is not None)
            app.query_one("#tabs").active = tab
            return await steady_screenshot(pilot, app)

    svg = asyncio.run(render())
    kept = SNAPSHOTS / f"monitor-{tab}.svg"
    if os.environ.get("PLATFORM_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        kept.write_text(svg)
    assert kept.exists(), f"no snapshot {kept}: run with PLATFORM_UPDATE_SNAPSHOTS=1 once"
    assert svg == kept.read_text(), f"the {tab} screen differs from {kept}"
