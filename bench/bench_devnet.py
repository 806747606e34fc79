"""Devnet benchmark: how fast a fresh devnet agrees, and what a validator costs.

- time from ``platform devnet up`` to the first epoch whose weights every validator set
  on the dev chain as one vector that scores miners;
- per validator process: CPU (% of one core) and resident memory at rest (the quiet
  middle of an epoch) and over a whole epoch;
- where one validator's CPU goes over a few epochs (py-spy samples, classified by the
  innermost frame of a known part): py-libp2p and trio, the sandbox, consensus, SQLite,
  the chain client, other.

Run: python bench/bench_devnet.py [VALIDATORS]   (default 4; needs py-spy, in the dev extra)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BLOCK_MS, TEMPO = 500, 30
EPOCH_S = BLOCK_MS * TEMPO / 1000
PROFILE_S = 3 * EPOCH_S
TICK = os.sysconf("SC_CLK_TCK")
PARTS = (
    ("sqlite", ("/sqlite3/", "sqlite_utils/", "platform_cli/state/")),
    ("sandbox", ("wasmtime/", "platform_cli/runtime/")),
    ("consensus", ("platform_cli/consensus/", "platform_cli/core/consensus/")),
    ("py-libp2p", ("libp2p/", "multiaddr/", "trio/", "nacl/", "cryptography/", "google/protobuf")),
    ("chain client", ("bittensor/", "async_substrate_interface/", "asyncio/", "websockets/")),
)


def platform(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "platform_cli", "--json", *args], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"platform {' '.join(args)} failed: {out.stderr}")
    return json.loads(out.stdout)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def usage(pids: list[int], seconds: float) -> list[tuple[float, float]]:
    before = [cpu_ticks(p) for p in pids]
    time.sleep(seconds)
    return [
        ((cpu_ticks(p) - b) / TICK / seconds * 100, rss_mib(p)) for p, b in zip(pids, before, strict=True)
    ]


def classify(raw: Path) -> Counter[str]:
    shares: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        part = "other"
        for frame in reversed(frames):
            found = next((name for name, marks in PARTS if any(m in frame for m in marks)), None)
            if found:
                part = found
                break
        shares[part] += int(count)
    return shares


def main(validators: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-devnet-")) / "devnet"
    began = time.monotonic()
    up = [
        "devnet", "up", "-n", str(validators), "--miners", "8",
        "--block-time-ms", str(BLOCK_MS), "--tempo", str(TEMPO), "--dir", str(root),
    ]  # fmt: skip
    platform(*up)
    nodes_up = time.monotonic() - began
    try:
        while True:
            report = platform("devnet", "status", "--dir", str(root))
            agreement = report["agreement"]
            if (
                agreement["weights_set_by_all"]
                and len(agreement["vector_hashes"]) == 1
                and all(v["weights_scored"] for v in report["validators"])
            ):
                break
            if time.monotonic() - began > 600:
                raise SystemExit("no agreement within 10 minutes")
            time.sleep(0.5)
        agreed = time.monotonic() - began
        print(f"validators                          {validators}")
        print(f"devnet up (every node up)           {nodes_up:.1f} s")
        print(
            f"first identical weights on chain    {agreed:.1f} s (epoch {agreement['epoch']}, target 120 s)"
        )
        manifest = json.loads((root / "devnet.json").read_text())
        pids = [v["pid"] for v in manifest["validators"]]
        epoch = usage(pids, EPOCH_S)
        time.sleep(EPOCH_S / 3)
        rest = usage(pids, EPOCH_S / 3)
        for index, ((cpu_e, rss_e), (cpu_r, rss_r)) in enumerate(zip(epoch, rest, strict=True)):
            print(
                f"validator-{index}: CPU {cpu_r:5.1f} % at rest, {cpu_e:5.1f} % over an epoch; "
                f"RSS {rss_r:6.1f} MiB at rest, {rss_e:6.1f} MiB over an epoch"
            )
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            print("CPU by part: py-spy not installed (pip install py-spy)")
            return
        raw = root / "profile.txt"
        subprocess.run(
            [spy, "record", "--pid", str(pids[1]), "--duration", str(int(PROFILE_S)), "--rate", "100",
             "--format", "raw", "--output", str(raw), "--nonblocking"],
            capture_output=True, check=True,
        )  # fmt: skip
        shares = classify(raw)
        total = sum(shares.values()) or 1
        print(f"CPU by part (validator-1, {PROFILE_S:.0f} s, {total} samples):")
        for part, count in shares.most_common():
            print(f"  {part:<13} {100 * count / total:5.1f} %")
    finally:
        platform("devnet", "down", "--dir", str(root))
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
