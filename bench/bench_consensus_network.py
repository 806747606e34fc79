"""Consensus between real processes: commit latency and heights per second on loopback.

A devnet of 4 validators (``platform up`` each, 127.0.0.1) runs for a while; then
UPDATES sudo-signed registry updates are proposed at once, so heights follow one another
back to back (at most 8 updates an entry). For every committed height:

- latency: from the signing of the proposal that was decided (its proposer's signing log)
  to the commit on each validator (each one's log), in ms; p50 and p99 over all
  (height, validator) pairs, and the same for the last validator to commit;
- rounds: how many heights needed a view change;
- heights per second while updates were pending.

Run: python bench/bench_consensus_network.py   (targets: p50 <= 50 ms, p99 <= 250 ms)
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UPDATES = 40
WARMUP_S = 20


def platform(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "platform_cli", *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"platform {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def sign_updates(work: Path) -> list[Path]:
    sudo = work / "sudo"
    platform("--data-dir", str(sudo), "keys", "import", "--name", "sudo", "--wallet", "devnet", "--hotkey", "sudo",
             "--wallet-path", str(REPO / "fixtures" / "wallets"))  # fmt: skip
    paths = []
    for index in range(UPDATES):
        folder = work / f"c{index:02d}"
        shutil.copytree(REPO / "fixtures" / "challenge", folder)
        toml = folder / "challenge.toml"
        text = re.sub(r'^id = "hello"', f'id = "b{index:02d}"', toml.read_text(), flags=re.M)
        toml.write_text(re.sub(r"emission_ppm = [0-9_]+", "emission_ppm = 2_000", text))
        out = work / f"u{index:02d}.json"
        platform(
            "--data-dir",
            str(sudo),
            "registry",
            "sign",
            str(toml),
            "--key",
            "sudo",
            "--action",
            "add",
            "-o",
            str(out),
        )
        paths.append(out)
    return paths


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def p99(values: list[int]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-consensus-"))
    root = work / "devnet"
    updates = sign_updates(work)
    platform(
        "devnet",
        "up",
        "-n",
        "4",
        "--miners",
        "0",
        "--block-time-ms",
        "250",
        "--tempo",
        "40",
        "--dir",
        str(root),
    )
    try:
        time.sleep(WARMUP_S)
        dbs = [root / f"validator-{i}" / "state.db" for i in range(4)]
        before = rows(dbs[0], "SELECT coalesce(max(height), 0) FROM consensus_log")[0][0]
        began = time.monotonic()
        for update in updates:
            platform("--data-dir", str(root / "validator-0"), "consensus", "propose", str(update))
        proposed = time.monotonic()
        while len(rows(dbs[0], "SELECT 1 FROM registry_updates WHERE status = 'applied'")) < UPDATES + 3:
            if time.monotonic() - began > 300:
                raise SystemExit("the updates were not committed within 5 minutes")
            time.sleep(0.2)
        done = time.monotonic()
        after = rows(dbs[0], "SELECT max(height) FROM consensus_log")[0][0]
        time.sleep(2)
        proposals = {}
        for db in dbs:
            for height, round_, signed in rows(
                db, "SELECT height, round, signed_ms FROM consensus_signed WHERE step = 0"
            ):
                proposals[(height, round_)] = signed
        committed: dict[int, list[int]] = {}
        rounds: dict[int, int] = {}
        from platform_cli.core.consensus import certificate as certs

        for db in dbs:
            for height, cert, committed_ms in rows(
                db, "SELECT height, certificate, committed_ms FROM consensus_log"
            ):
                decided = certs.decode(cert).round
                rounds[height] = decided
                if (height, decided) in proposals:
                    committed.setdefault(height, []).append(committed_ms - proposals[(height, decided)])
        each = [ms for values in committed.values() for ms in values]
        last = [max(values) for values in committed.values() if len(values) == 4]
        print("validators                 4 processes on 127.0.0.1 (block 250 ms)")
        print(
            f"heights measured           {len(committed)} ({sum(1 for r in rounds.values() if r > 0)} needed a view change)"
        )
        print(
            f"commit latency, each       p50 {statistics.median(each):.0f} ms, p99 {p99(each):.0f} ms (target 50 / 250)"
        )
        print(f"commit latency, last node  p50 {statistics.median(last):.0f} ms, p99 {p99(last):.0f} ms")
        print(
            f"under load                 {after - before} heights for {UPDATES} updates in {done - began:.1f} s "
            f"({(after - before) / (done - began):.2f} heights/s; proposing took {proposed - began:.1f} s)"
        )
    finally:
        platform("devnet", "down", "--dir", str(root))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
