"""Run mutmut 3 on one module of mutation/modules.toml at a time and print its score.

mutmut reads its settings from ``[tool.mutmut]`` in the pyproject.toml of the directory
it runs in and copies that tree to ``./mutants``. Each module therefore gets a scratch
copy of the checkout (tracked and untracked, not ignored files) in ``mutants/<module>/``
whose pyproject.toml names the one source to mutate and its fast tests; mutmut's own
copy lands in ``mutants/<module>/mutants/`` and its results are kept there, so a re-run
only checks mutants whose code changed. Runs use one child process under ``nice``.

Score: killed (or timed out) / (mutants - equivalent); survivors, "no tests" and
suspicious mutants count against it unless mutation/equivalent.toml lists them.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import tomllib

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "mutation"
SCRATCH = REPO / "mutants"
TARGET = 90.0
KILLED = {1, 3, 36, -24, 24, 152, 255}  # mutmut's "killed" and "timeout" exit codes
ALSO_COPY = ["fixtures", "challenges", "docs", "README.md"]


@dataclass(frozen=True)
class Score:
    module: str
    mutants: int
    killed: int
    equivalent: int
    survivors: tuple[str, ...]
    seconds: float

    @property
    def percent(self) -> float:
        counted = self.mutants - self.equivalent
        return 100.0 * self.killed / counted if counted else 100.0


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def _sync_copy(workdir: Path) -> None:
    """Copy the checkout into ``workdir``, touching only files whose content changed."""
    for name in _tracked_files():
        source, target = REPO / name, workdir / name
        if not source.is_file():
            continue
        if target.exists() and filecmp.cmp(source, target, shallow=False):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _configure(workdir: Path, source: str, tests: list[str]) -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["platform_cli"]\n'
        f"only_mutate = {_toml_list([source])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        # faulthandler's teardown in mutmut's forked children removes wasmtime's trap
        # handlers, so a sandbox test would die on SIGILL instead of trapping.
        'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-p", "no:faulthandler",'
        ' "-m", "not slow"]\n'
        f"also_copy = {_toml_list(ALSO_COPY)}\n"
    )
    target = workdir / "pyproject.toml"
    if not target.exists() or target.read_text() != pyproject:
        target.write_text(pyproject)


def _results(workdir: Path) -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for meta in (workdir / "mutants").rglob("*.py.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def _mutmut(command: list[str], workdir: Path, out: TextIO, name: str) -> None:
    done = subprocess.run(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"error: mutmut failed on {name} (exit {done.returncode}); see {out.name}")


def run_module(name: str, module: dict, equivalent: dict[str, str]) -> Score:
    workdir = SCRATCH / name
    workdir.mkdir(parents=True, exist_ok=True)
    _sync_copy(workdir)
    _configure(workdir, module["source"], module["tests"])
    # mutmut re-traces only new or changed tests, so an unchanged test that now reaches a
    # new or renamed function would never be run against its mutants: trace them all.
    (workdir / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    started = time.monotonic()
    mutmut = Path(sys.executable).with_name("mutmut")
    log = workdir / "mutmut.log"
    command = ["nice", "-n", "10", str(mutmut), "run", "--max-children", "1"]
    with log.open("w") as out:
        _mutmut(command, workdir, out, name)
        # mutmut skips mutants it checked before: survivors are re-checked by name, so a
        # new test gets its chance to kill them.
        survivors = [k for k, code in _results(workdir).items() if code not in KILLED]
        if survivors:
            _mutmut([*command, *survivors], workdir, out, name)
    seconds = time.monotonic() - started
    codes = _results(workdir)
    killed = sum(1 for code in codes.values() if code in KILLED)
    survivors = tuple(sorted(k for k, code in codes.items() if code not in KILLED and k not in equivalent))
    listed = sum(1 for k, code in codes.items() if code not in KILLED and k in equivalent)
    return Score(name, len(codes), killed, listed, survivors, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="names from mutation/modules.toml (default: all)")
    args = parser.parse_args()
    modules = tomllib.loads((HERE / "modules.toml").read_text())["modules"]
    equivalent_doc = tomllib.loads((HERE / "equivalent.toml").read_text())
    unknown = [m for m in args.modules if m not in modules]
    if unknown:
        print(f"error: unknown module(s) {', '.join(unknown)}; known: {', '.join(modules)}", file=sys.stderr)
        return 1
    scores = []
    for name in args.modules or list(modules):
        score = run_module(name, modules[name], equivalent_doc.get(name, {}))
        scores.append(score)
        for survivor in score.survivors:
            print(f"survived: {survivor}")
    print(f"{'module':<20} {'mutants':>7} {'killed':>6} {'equiv':>5} {'score':>7} {'time':>8}")
    for s in scores:
        print(
            f"{s.module:<20} {s.mutants:>7} {s.killed:>6} {s.equivalent:>5} "
            f"{s.percent:>6.1f}% {s.seconds:>7.0f}s"
        )
    return 0 if all(s.percent >= TARGET for s in scores) else 2


if __name__ == "__main__":
    sys.exit(main())
