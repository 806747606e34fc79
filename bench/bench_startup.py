"""Start-up time of `platform --help` and `platform registry verify`, as ratios to a
minimal click application's `--help` measured in the same run (runs interleaved, so
machine noise hits all three alike). Targets: --help <= 1.3x, registry verify <= 2.5x.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "25"))
TARGETS = {"platform --help": 1.3, "platform registry verify": 2.5}


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    data_dir = tempfile.mkdtemp(prefix="bench-startup-")
    env = {**os.environ, "PLATFORM_DATA_DIR": data_dir}
    update = str(REPO / "fixtures" / "challenge" / "update-add.json")
    commands = {
        "minimal click --help": [sys.executable, str(REPO / "bench" / "minimal_click.py"), "--help"],
        "platform --help": [sys.executable, "-m", "platform_cli", "--help"],
        "platform registry verify": [sys.executable, "-m", "platform_cli", "registry", "verify", update],
    }
    for argv in commands.values():  # warm the page cache and .pyc files
        timed(argv, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, argv in commands.items():
            samples[name].append(timed(argv, env))
    base = statistics.median(samples["minimal click --help"])
    print(f"start-up time, median of {RUNS} interleaved runs")
    failed = False
    for name, values in samples.items():
        median = statistics.median(values)
        line = f"  {name:28s} {median * 1000:7.1f} ms  {median / base:5.2f}x"
        if name in TARGETS:
            ok = median / base <= TARGETS[name]
            failed |= not ok
            line += f"  (target <= {TARGETS[name]}x: {'ok' if ok else 'MISSED'})"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
