"""The monitor: a node's (or a devnet's validators') state, live, read-only.

Every second a worker thread reads a :class:`~platform_cli.tui.data.Snapshot` and the UI
updates its tables in place (rows are replaced, the cursor stays), so nothing flickers and
the UI never waits on SQLite. ``n``/``p`` switch between a devnet's validators; ``enter``
on an evaluation or a commit opens its record (a commit with its certificate's
verification); ``/`` filters the log; ``ctrl+p`` opens the command palette.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Log, Static, TabbedContent, TabPane

from platform_cli.tui import data

REFRESH_S = 1.0
BAR_WIDTH = 24


def _bar(share: float) -> str:
    filled = round(share * BAR_WIDTH)
    return "█" * filled + "·" * (BAR_WIDTH - filled)


class Detail(ModalScreen[None]):
    """One record in full (an evaluation, a commit with its certificate's verification)."""

    BINDINGS: ClassVar = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, title: str, record: dict[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.record = record

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(f"[b]{self.title_text}[/b]", id="detail-title")
            yield Static(json.dumps(self.record, indent=2, sort_keys=True, default=str), id="detail-body")


class MonitorApp(App[None]):
    TITLE = "platform monitor"
    CSS = """
    #summary { height: 9; }
    #status, #consensus { width: 1fr; border: round $primary; padding: 0 1; }
    #tabs { height: 1fr; }
    #log-filter { dock: top; }
    #detail { background: $surface; border: thick $primary; padding: 1 2; margin: 2 4; }
    """
    BINDINGS: ClassVar = [
        Binding("q", "quit", "Quit"),
        Binding("n", "next_node", "Next validator"),
        Binding("p", "previous_node", "Previous validator"),
        Binding("r", "refresh", "Refresh"),
        Binding("slash", "filter_log", "Filter log"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, data_dirs: list[Path], *, refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self.data_dirs = data_dirs
        self.index = 0
        self.refresh_s = refresh_s
        self.snapshot: data.Snapshot | None = None
        self.log_filter = ""
        self._connections: dict[Path, tuple[Any, int]] = {}
        """data dir -> (read-only connection, netuid), opened on its first refresh."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="summary"):
            yield Static(id="status")
            yield Static(id="consensus")
        with TabbedContent(id="tabs"):
            with TabPane("Weights", id="tab-weights"):
                yield DataTable(id="weights", cursor_type="row")
            with TabPane("Evaluations", id="tab-evaluations"):
                yield DataTable(id="evaluations", cursor_type="row")
            with TabPane("Commits", id="tab-commits"):
                yield DataTable(id="commits", cursor_type="row")
            with TabPane("Registry", id="tab-registry"):
                yield DataTable(id="registry", cursor_type="row")
            with TabPane("Peers", id="tab-peers"):
                yield DataTable(id="peers", cursor_type="row")
            with TabPane("Log", id="tab-log"), Vertical():
                yield Input(placeholder="filter the log (enter)", id="log-filter")
                yield Log(id="log")
        yield Footer()

    def on_mount(self) -> None:
        columns = {
            "weights": ("uid", "hotkey", "units", "share", ""),
            "evaluations": (
                "id",
                "challenge",
                "version",
                "outcome",
                "score",
                "fuel",
                "wall ms",
                "submission",
            ),
            "commits": ("height", "round", "signers", "decided", "value"),
            "registry": ("challenge", "version", "state", "effective block", "module"),
            "peers": ("peer id", "hotkey", "latency ms", "connected", "banned"),
        }
        for table_id, names in columns.items():
            self.query_one(f"#{table_id}", DataTable).add_columns(*names)
        self.set_interval(self.refresh_s, self.action_refresh)
        self.action_refresh()

    # ------------------------------------------------------------ reading, off the UI thread

    def action_refresh(self) -> None:
        self._load(self.data_dirs[self.index])

    @work(thread=True, exclusive=True, group="read")
    def _load(self, data_dir: Path) -> None:
        try:
            if data_dir not in self._connections:
                self._connections[data_dir] = (data.connect(data_dir), data.netuid_of(data_dir))
            state, netuid = self._connections[data_dir]
            snapshot = data.read(state, data_dir, netuid)
        except Exception as exc:  # a data dir being created, a locked read: say so, try again
            self.call_from_thread(self._show_error, data_dir, str(exc))
            return
        self.call_from_thread(self._show, snapshot)

    def on_unmount(self) -> None:
        for state, _ in self._connections.values():
            state.close()

    def _show_error(self, data_dir: Path, error: str) -> None:
        self.query_one("#status", Static).update(
            f"[b]{data_dir}[/b]\n[red]cannot read the state: {error}[/red]"
        )

    # ------------------------------------------------------------ showing

    def _show(self, snapshot: data.Snapshot) -> None:
        if snapshot.data_dir != self.data_dirs[self.index]:
            return  # the user switched validators meanwhile
        self.snapshot = snapshot
        report = snapshot.report
        node, chain, consensus = report["node"], report["chain"], report["consensus"]
        self.sub_title = f"{snapshot.data_dir.name}  ({self.index + 1}/{len(self.data_dirs)})"
        running = f"running, pid {node['pid']}" if node["running"] else "[red]not running[/red]"
        services = "  ".join(f"{s['name']}:{s['state']}" for s in report["services"]) or "-"
        epoch = (
            f"epoch {chain['epoch']}, block {chain['block']}, {chain['blocks_to_next_epoch']} blocks to the next"
            if chain["synced"]
            else "chain not synced"
        )
        last = report["weights"]["last"]
        weights = (
            f"weights: epoch {last['epoch']} {last['outcome']}" + (" (on chain)" if last["confirmed"] else "")
            if last
            else "weights: none yet"
        )
        peers = report["peers"]
        self.query_one("#status", Static).update(
            f"[b]node[/b] {running}\n{services}\n{epoch}\n{weights}\n"
            f"peers {peers['connected']} connected ({peers['validators_connected']} validators), "
            f"{peers['banned']} banned\nevaluations pending {report['evaluations']['pending']}"
        )
        self.query_one("#consensus", Static).update(
            f"[b]consensus[/b] committed height {consensus['committed_height']}\n"
            f"deciding height {consensus['height']}, round {consensus['round']}\n"
            f"evidence {snapshot.evidence}\n"
            + "\n".join(f"#{c['height']} r{c['round']} {c['actions']}" for c in snapshot.commits[:3])
        )
        self._fill(
            "weights",
            [
                (w["uid"], w["hotkey"][:16], w["units"], f"{100 * w['share']:.2f}%", _bar(w["share"]))
                for w in snapshot.weights
            ],
        )
        self._fill(
            "evaluations",
            [
                (
                    e["id"],
                    e["challenge_id"],
                    e["challenge_version"],
                    e["outcome"],
                    e["score"],
                    e["fuel_used"] if e["fuel_used"] is not None else "-",
                    e["wall_ms"],
                    e["submission_sha256"][:16],
                )
                for e in snapshot.evaluations
            ],
            keys=[str(e["id"]) for e in snapshot.evaluations],
        )
        self._fill(
            "commits",
            [
                (c["height"], c["round"], c["signers"], c["actions"], c["value_id"][:16])
                for c in snapshot.commits
            ],
            keys=[str(c["height"]) for c in snapshot.commits],
        )
        self._fill(
            "registry",
            [
                (r["id"], r["version"], r["state"], r["effective_block"] if r["effective_block"] is not None else "-",
                 r["module_sha256"][:16])
                for r in snapshot.registry
            ],
        )  # fmt: skip
        self._fill(
            "peers",
            [
                (
                    p["peer_id"][-16:],
                    (p["hotkey"] or "-")[:16],
                    f"{p['latency_us'] / 1000:.1f}" if p["latency_us"] is not None else "-",
                    "yes" if p["connected"] else "no",
                    "yes" if p["banned_ms"] else "no",
                )
                for p in snapshot.peers
            ],
        )
        log = self.query_one("#log", Log)
        log.clear()
        log.write_lines([line for line in snapshot.log if self.log_filter in line])

    def _fill(self, table_id: str, rows: list[tuple[Any, ...]], keys: list[str] | None = None) -> None:
        """Replace a table's rows, keeping the cursor where it was."""
        table = self.query_one(f"#{table_id}", DataTable)
        cursor = table.cursor_row
        table.clear()
        for index, row in enumerate(rows):
            table.add_row(*row, key=keys[index] if keys else None)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))

    # ------------------------------------------------------------ actions

    def action_next_node(self) -> None:
        self.index = (self.index + 1) % len(self.data_dirs)
        self.action_refresh()

    def action_previous_node(self) -> None:
        self.index = (self.index - 1) % len(self.data_dirs)
        self.action_refresh()

    def action_filter_log(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "tab-log"
        self.query_one("#log-filter", Input).focus()

    def action_help(self) -> None:
        self.push_screen(
            Detail(
                "keys",
                {
                    "n / p": "next / previous validator of a devnet",
                    "r": "refresh now (every second anyway)",
                    "enter": "an evaluation's record; a commit with its certificate checked",
                    "/": "filter the log",
                    "ctrl+p": "command palette",
                    "q": "quit",
                },
            )
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.log_filter = event.value
        self.action_refresh()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        table_id = event.data_table.id
        key = event.row_key.value
        if key is None:
            return
        data_dir = self.data_dirs[self.index]
        if table_id == "evaluations":
            self.push_screen(Detail(f"evaluation {key}", data.evaluation_detail(data_dir, int(key))))
        elif table_id == "commits":
            self.push_screen(Detail(f"commit {key}", data.commit_detail(data_dir, int(key))))


def devnet_dirs(root: Path) -> list[Path]:
    from platform_cli.node.devnet import Layout, read_manifest

    doc = read_manifest(Layout(root))
    if doc is None:
        from platform_cli.errors import PlatformError

        raise PlatformError(f"no devnet in {root}: 'platform devnet up' starts one")
    return [Path(v["data_dir"]) for v in doc["validators"]]
