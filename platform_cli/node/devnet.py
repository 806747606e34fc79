"""``platform devnet``: a whole network on one machine.

The dev chain (one SQLite file), N validators (each a ``platform up`` process with its
own data dir, its hotkey from the devnet wallet and a metrics port) and a miners' node
whose simulated miners submit good and bad work to the shipped challenges. The devnet
sudo's signed updates of the shipped challenges are proposed on every validator, and
consensus commits them. Everything lives under one directory; ``devnet.json`` there names every
process (written as each starts, so ``down`` finds them even after an interrupted
``up``). Running ``up`` again on a stopped devnet continues it on the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from platform_cli.clock import now_ms
from platform_cli.errors import PlatformError
from platform_cli.node import health

MANIFEST_VERSION = 1
WALLET_VALIDATORS = 5
WALLET_MINERS = 36
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
SAMPLES: dict[str, tuple[str, ...]] = {
    "sort": ("good_shell.wasm", "good_insertion.wasm", "bad_unsorted.wasm", "bad_trap.wasm"),
    "predict": ("good_linear.bin", "poor_zeros.bin", "bad_length.bin"),
    "compress": ("good_rle.wasm", "literal.wasm", "bad_identity.wasm"),
}
"""The shipped challenges and the sample files the simulated miners submit, in turn."""

Say = Callable[[str], None]


def repo_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "fixtures" / "wallets").is_dir() or not (root / "challenges").is_dir():
        raise PlatformError(
            f"the devnet needs the repository's fixtures/ and challenges/ beside platform_cli ({root}): "
            "run it from a clone of the repository"
        )
    return root


@dataclass(frozen=True)
class Settings:
    validators: int = 4
    miners: int = 8
    block_time_ms: int = 500
    tempo: int = 30
    rate_limit: int = 10
    byzantine: int = 0
    """The last ``byzantine`` validators misbehave on purpose (``up --byzantine``)."""

    def check(self) -> None:
        if not 0 <= self.byzantine <= (self.validators - 1) // 3:
            raise PlatformError(
                f"--byzantine {self.byzantine}: {self.validators} validators tolerate at most "
                f"{(self.validators - 1) // 3} faulty ones"
            )
        if not 1 <= self.validators <= WALLET_VALIDATORS:
            raise PlatformError(
                f"-n {self.validators}: the devnet wallet holds validators 1..{WALLET_VALIDATORS}"
            )
        if not 0 <= self.miners <= WALLET_MINERS:
            raise PlatformError(f"--miners {self.miners}: the devnet wallet holds miners 0..{WALLET_MINERS}")
        if self.rate_limit >= self.tempo:
            raise PlatformError(
                f"a weights rate limit of {self.rate_limit} blocks leaves no room in an epoch of {self.tempo}"
            )


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def chain_db(self) -> Path:
        return self.root / "devchain.db"

    @property
    def manifest(self) -> Path:
        return self.root / "devnet.json"

    @property
    def miners(self) -> Path:
        return self.root / "miners"

    def validator(self, index: int) -> Path:
        return self.root / f"validator-{index}"

    def log(self, data_dir: Path) -> Path:
        return data_dir / "node.log"


# ---------------------------------------------------------------- the manifest


MANIFEST_MAX_BYTES = 1024 * 1024


def read_manifest(layout: Layout) -> dict[str, Any] | None:
    """The devnet's manifest (a bounded, regular file), or None where there is none."""
    from platform_cli.files import read_json

    if not layout.manifest.exists() and not layout.manifest.is_symlink():
        return None
    doc = read_json(layout.manifest, "devnet manifest", MANIFEST_MAX_BYTES)
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        raise PlatformError(f"{layout.manifest} is not a devnet manifest of version {MANIFEST_VERSION}")
    return doc


def _write_manifest(layout: Layout, doc: dict[str, Any]) -> None:
    temp = layout.manifest.with_suffix(".tmp")
    temp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(temp, layout.manifest)


_alive = health.pid_alive


def _processes(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from doc.get("validators", [])
    if doc.get("miners"):
        yield doc["miners"]


# ---------------------------------------------------------------- preparing


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


GENESIS_BLOCK = 1000
"""The dev chain's first block (the seed's ``start_block``): consensus starts from its set."""
TIMEOUTS = "propose_ms = 800\nprevote_ms = 400\nprecommit_ms = 400\ndelta_ms = 400\nrebroadcast_ms = 1500\n"


def _config(layout: Layout, key: str, port: int, bootstrap: list[str]) -> str:
    boot = ", ".join(json.dumps(b) for b in bootstrap)
    return (
        "# Written by 'platform devnet up': one node of the local devnet.\n"
        f'[chain]\nnetwork = "dev"\ndev_db = {json.dumps(str(layout.chain_db))}\n\n'
        f'[weights]\nhotkey = "{key}"\nlead_blocks = 5\n\n'
        f"[consensus]\ngenesis_block = {GENESIS_BLOCK}\n{TIMEOUTS}\n"
        f'[p2p]\nlisten = ["/ip4/127.0.0.1/tcp/{port}"]\nbootstrap = [{boot}]\nsync_interval_s = 5\n'
    )


def _seed(layout: Layout, settings: Settings) -> Path:
    """The fixture seed with stake only on the validators this devnet runs: a validator
    that never runs would hold stake the quorum counts on."""
    from platform_cli.chain.settings import DEFAULT_SEED

    seed = json.loads(DEFAULT_SEED.read_text())
    running = {f"validator-{i}" for i in range(settings.validators)}
    for neuron in seed["neurons"]:
        if neuron.get("hotkey_name", "").startswith("validator-") and neuron["hotkey_name"] not in running:
            neuron["stake_tao"] = 0
    if seed.get("start_block") != GENESIS_BLOCK:
        raise PlatformError(
            f"{DEFAULT_SEED}: start_block must be {GENESIS_BLOCK} (the devnet's consensus genesis)"
        )
    path = layout.root / "seed.json"
    path.write_text(json.dumps(seed, indent=1) + "\n")
    return path


def _sync(data_dir: Path) -> None:
    from platform_cli.chain.settings import chain_settings
    from platform_cli.chain.sync import sync
    from platform_cli.config import load_config
    from platform_cli.state.db import open_state

    config = load_config(data_dir)
    with open_state(data_dir) as state:
        asyncio.run(sync(state, chain_settings(config, data_dir), config.network.netuid))


def _import(data_dir: Path, name: str, wallet_hotkey: str, root: Path) -> None:
    from platform_cli.identity import KeyStore

    store = KeyStore(data_dir)
    if not store.path(name).exists():
        store.import_wallet(name, "devnet", wallet_hotkey, str(root / "fixtures" / "wallets"))


def _propose_challenges(data_dir: Path, root: Path) -> None:
    """The devnet sudo's signed updates of the shipped challenges, proposed: consensus
    commits them, and every validator activates them at the block the entry names."""
    from platform_cli import registry
    from platform_cli.config import load_config
    from platform_cli.state.db import open_state

    config = load_config(data_dir)
    with open_state(data_dir) as state:
        for challenge in SAMPLES:
            registry.propose(
                state, config, registry.load_update(str(root / "challenges" / challenge / "update.json"))
            )


def prepare(layout: Layout, settings: Settings, say: Say) -> None:
    """Create what does not exist yet: the chain, each node's data dir, config and keys."""
    from platform_cli.chain.dev.seed import init_dev_chain

    root = repo_root()
    layout.root.mkdir(parents=True, exist_ok=True)
    if not layout.chain_db.exists():
        say(f"dev chain: {layout.chain_db} (block {settings.block_time_ms} ms, tempo {settings.tempo})")
        chain = init_dev_chain(
            layout.chain_db,
            _seed(layout, settings),
            block_time_ms=settings.block_time_ms,
            tempo=settings.tempo,
            hyperparameters={"WeightsSetRateLimit": settings.rate_limit},
        )
        chain.release()
    for index in range(settings.validators):
        data_dir = layout.validator(index)
        if (data_dir / "platform.toml").exists():
            continue
        say(f"validator-{index}: data dir, key, the shipped challenges proposed, chain sync")
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "platform.toml").write_text(_config(layout, "validator", _free_port(), []))
        _import(data_dir, "validator", f"validator-{index}", root)
        _propose_challenges(data_dir, root)
        _sync(data_dir)
    if settings.miners and not (layout.miners / "platform.toml").exists():
        say(f"miners: {settings.miners} devnet miner keys")
        layout.miners.mkdir(parents=True, exist_ok=True)
        (layout.miners / "platform.toml").write_text(_config(layout, "miner-00", _free_port(), []))
        for index in range(settings.miners):
            _import(layout.miners, f"miner-{index:02d}", f"miner-{index:02d}", root)
        _sync(layout.miners)


def _set_bootstrap(layout: Layout, data_dir: Path, bootstrap: list[str]) -> None:
    """Point the node at the first validator (whose address is known once it runs)."""
    from platform_cli.config import read_toml

    path = data_dir / "platform.toml"
    doc = read_toml(path)
    port = int(doc["p2p"]["listen"][0].rsplit("/", 1)[1])
    path.write_text(_config(layout, doc["weights"]["hotkey"], port, bootstrap))


# ---------------------------------------------------------------- starting


def _spawn(data_dir: Path, args: list[str]) -> subprocess.Popen[bytes]:
    log = Layout(data_dir.parent).log(data_dir)
    with open(log, "ab") as sink:
        sink.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} start: platform {' '.join(args)}\n".encode())
        sink.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "platform_cli", "--data-dir", str(data_dir), *args],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,  # a Ctrl-C in the terminal stops 'devnet up', not the devnet
        )


def _ready(data_dir: Path, proc: subprocess.Popen[bytes], what: str, check: Callable[[Any], Any]) -> Any:
    from platform_cli.state.db import open_state

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Layout(data_dir.parent).log(data_dir).read_text()[-2000:]
            raise PlatformError(f"{what} exited with {proc.returncode} while starting; its log ends:\n{tail}")
        with contextlib.suppress(PlatformError), open_state(data_dir, readonly=True) as state:
            found = check(state)
            if found:
                return found
        time.sleep(0.25)
    raise PlatformError(
        f"{what} was not up within {START_TIMEOUT_S:.0f} s (see {Layout(data_dir.parent).log(data_dir)})"
    )


def _validator_up(state: Any, pid: int | None = None) -> list[str] | None:
    """The validator's addresses once it (the process ``pid``, if given) has every service up."""
    from platform_cli.p2p import store

    process = health.read_process(state)
    if process is None or not process.alive(now_ms()) or (pid is not None and process.pid != pid):
        return None
    services = health.read_services(state)
    node = store.read_node(state)
    if node is None or len(services) != len(process.services) or any(s.state != "up" for s in services):
        return None
    return node.addrs


def _node_up(state: Any, pid: int) -> list[str] | None:
    from platform_cli.p2p import store

    node = store.running_node(state)
    return node.addrs if node and node.pid == pid else None


def _challenges_active(state: Any) -> bool:
    from platform_cli import registry

    head = state.execute("SELECT max(block) FROM chain_schedules").fetchone()[0] or 0
    return set(SAMPLES) <= set(registry.active_at(state, head))


def _connected(state: Any) -> bool:
    from platform_cli.p2p import store

    return any(p["connected"] for p in store.peers(state))


def up(layout: Layout, settings: Settings, say: Say, *, explicit: bool = True) -> dict[str, Any]:
    """Start every node of the devnet that is not running (all of them on a new one).

    A node that crashed or was killed is started again on its own state and catches up;
    the simulated miners submit only when the devnet is new. An existing devnet keeps
    the settings it was made with (``explicit``: the caller chose others; say so).
    """
    settings.check()
    previous = read_manifest(layout)
    if previous is not None:
        kept = Settings(**previous["settings"])
        if kept != settings and explicit:
            say(f"continuing the devnet in {layout.root} with the settings it was made with: {kept}")
        settings = kept
    fresh = previous is None
    prepare(layout, settings, say)
    doc: dict[str, Any] = previous or {
        "version": MANIFEST_VERSION,
        "root": str(layout.root),
        "chain_db": str(layout.chain_db),
        "started_ms": now_ms(),
        "settings": settings.__dict__,
        "validators": [
            {
                "name": f"validator-{i}",
                "data_dir": str(layout.validator(i)),
                "pid": None,
                "metrics": None,
                "byzantine": i >= settings.validators - settings.byzantine,
            }
            for i in range(settings.validators)
        ],
        "miners": None,
    }
    started: list[tuple[dict[str, Any], subprocess.Popen[bytes]]] = []
    bootstrap = _first_validator_addr(doc)
    for entry in doc["validators"]:
        if _alive(entry["pid"]):
            continue
        data_dir = Path(entry["data_dir"])
        _set_bootstrap(layout, data_dir, [] if entry is doc["validators"][0] else bootstrap[:1])
        entry["metrics"] = entry["metrics"] or f"127.0.0.1:{_free_port()}"
        faulty = ["--byzantine"] if entry.get("byzantine") else []
        proc = _spawn(data_dir, ["-v", "up", "--metrics", entry["metrics"], *faulty])
        entry["pid"] = proc.pid
        _write_manifest(layout, doc)  # before waiting: 'down' must find it whatever happens next
        started.append((entry, proc))
        if entry is doc["validators"][0]:
            bootstrap = _ready(data_dir, proc, entry["name"], partial(_validator_up, pid=proc.pid))
            say(f"{entry['name']} up: {bootstrap[0]}")
    for entry, proc in started:
        if entry is not doc["validators"][0]:
            _ready(Path(entry["data_dir"]), proc, entry["name"], partial(_validator_up, pid=proc.pid))
            say(f"{entry['name']} up")
    miners = doc.get("miners")
    if settings.miners and not (miners and _alive(miners["pid"])):
        _set_bootstrap(layout, layout.miners, bootstrap[:1])
        proc = _spawn(layout.miners, ["-v", "peer", "run", "--key", "miner-00"])
        doc["miners"] = {"name": "miners", "data_dir": str(layout.miners), "pid": proc.pid}
        _write_manifest(layout, doc)
        _ready(layout.miners, proc, "the miners' node", partial(_node_up, pid=proc.pid))
        _ready(layout.miners, proc, "the miners' node (connecting)", _connected)
        say("miners' node up")
        if fresh:
            say("waiting for consensus to activate the shipped challenges")
            first = doc["validators"][0]
            _ready(
                Path(first["data_dir"]), started[0][1] if started else proc, "consensus", _challenges_active
            )
            doc["submissions"] = submit_samples(layout, settings.miners)
            say(f"{settings.miners} miners submitted")
    _write_manifest(layout, doc)
    return doc


def _first_validator_addr(doc: dict[str, Any]) -> list[str]:
    """The running first validator's addresses: the others bootstrap from it."""
    from platform_cli.state.db import open_state

    first = doc["validators"][0]
    if not _alive(first["pid"]):
        return []
    with open_state(Path(first["data_dir"]), readonly=True) as state:
        return _validator_up(state) or []


def submit_samples(layout: Layout, miners: int) -> list[dict[str, Any]]:
    """Each miner submits one sample file to one shipped challenge, good and bad in turn."""
    from platform_cli.config import load_config
    from platform_cli.identity import KeyStore
    from platform_cli.state.db import open_state
    from platform_cli.submissions import submit

    root = repo_root()
    challenges = list(SAMPLES)
    config = load_config(layout.miners)
    sent = []
    with open_state(layout.miners) as state:
        for index in range(miners):
            challenge = challenges[index % len(challenges)]
            files = SAMPLES[challenge]
            sample = files[(index // len(challenges)) % len(files)]
            content = (root / "fixtures" / "submissions" / challenge / sample).read_bytes()
            signer = KeyStore(layout.miners).signer(f"miner-{index:02d}")
            result = submit(state, config, signer, challenge, content)
            sent.append(
                {
                    "miner": f"miner-{index:02d}",
                    "challenge": challenge,
                    "file": sample,
                    "sha256": result["sha256"],
                }
            )
    return sent


# ---------------------------------------------------------------- watching and stopping


def status(layout: Layout) -> dict[str, Any]:
    from platform_cli.config import load_config
    from platform_cli.node.report import summary
    from platform_cli.state.db import open_state

    doc = read_manifest(layout)
    if doc is None:
        raise PlatformError(f"no devnet in {layout.root}: 'platform devnet up' starts one")
    rows, confirmed_by = [], []
    for entry in doc["validators"]:
        data_dir = Path(entry["data_dir"])
        netuid = load_config(data_dir).network.netuid
        with open_state(data_dir, readonly=True) as state:
            report = summary(state, netuid, 0, now_ms())
            confirmed = state.execute(
                "SELECT s.epoch, s.vector_hash, v.detail FROM weight_submissions s LEFT JOIN weight_vectors v "
                "ON v.netuid = s.netuid AND v.mechid = s.mechid AND v.epoch = s.epoch "
                "WHERE s.outcome = 'confirmed' ORDER BY s.epoch DESC LIMIT 20"
            ).fetchall()
        newest = confirmed[0] if confirmed else None
        rows.append(
            {
                "name": entry["name"],
                "byzantine": entry.get("byzantine", False),
                "running": report["node"]["running"],
                "services_up": sum(s["state"] == "up" for s in report["services"]),
                "services": len(report["services"]),
                "height": report["consensus"]["committed_height"],
                "epoch": report["chain"].get("epoch"),
                "peers": report["peers"]["connected"],
                "evaluations": report["evaluations"]["total"],
                "weights_epoch": newest[0] if newest else None,
                "weights_hash": newest[1] if newest else None,
                "weights_scored": json.loads(newest[2]).get("scored") if newest and newest[2] else None,
                "metrics": entry.get("metrics"),
            }
        )
        confirmed_by.append({epoch: digest for epoch, digest, _ in confirmed})
    honest = [c for c, row in zip(confirmed_by, rows, strict=True) if not row["byzantine"]]
    return {"root": doc["root"], "validators": rows, "agreement": agreement(honest)}


def agreement(confirmed_by: list[dict[int, str]]) -> dict[str, Any]:
    """The newest epoch whose weights every (honest) validator confirmed on the chain, and
    the vectors they set for it (one hash when they agree)."""
    common = set.intersection(*(set(c) for c in confirmed_by)) if confirmed_by else set()
    if not common:
        return {"weights_set_by_all": False, "epoch": None, "vector_hashes": []}
    epoch = max(common)
    return {
        "weights_set_by_all": True,
        "epoch": epoch,
        "vector_hashes": sorted({c[epoch] for c in confirmed_by}),
    }


def down(layout: Layout, say: Say) -> list[str]:
    doc = read_manifest(layout)
    if doc is None:
        raise PlatformError(f"no devnet in {layout.root}")
    stopping = [p for p in _processes(doc) if _alive(p.get("pid"))]
    for process in stopping:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process["pid"], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(_alive(p["pid"]) for p in stopping):
        time.sleep(0.1)
    for process in stopping:
        if _alive(process["pid"]):
            say(f"{process['name']} did not stop within {STOP_TIMEOUT_S:.0f} s: killed")
            with contextlib.suppress(ProcessLookupError):
                os.kill(process["pid"], signal.SIGKILL)
        say(f"{process['name']} stopped")
    return [p["name"] for p in stopping]


def log_paths(layout: Layout, name: str | None) -> list[Path]:
    doc = read_manifest(layout)
    if doc is None:
        raise PlatformError(f"no devnet in {layout.root}")
    entries = list(_processes(doc))
    if name is not None:
        entries = [e for e in entries if e["name"] == name]
        if not entries:
            known = ", ".join(e["name"] for e in _processes(doc))
            raise PlatformError(f"no process {name!r} in the devnet (known: {known})")
    return [Layout(layout.root).log(Path(e["data_dir"])) for e in entries]
