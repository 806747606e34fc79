"""Four real `platform peer run` processes on 127.0.0.1, given one bootstrap address."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_cli.clock import now_ms
from platform_cli.core import dhtrec, gossip
from platform_cli.core import envelope as env
from platform_cli.core.envelope import Network
from platform_cli.identity import KeyStore
from platform_cli.p2p import keys, store
from platform_cli.p2p.config import GOSSIP_WINDOW
from platform_cli.state import sequences
from platform_cli.state.metagraph import Neuron, Snapshot, latest_snapshot, save_snapshot
from tests.p2p_helpers import (
    NETWORK,
    NodeProc,
    mesh_ready,
    prepare_node_dirs,
    queue,
    signer_of,
    start_mesh,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProc]]:
    nodes = start_mesh(tmp_path_factory.mktemp("mesh"), 4)
    try:
        mesh_ready(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _received_ms(node: NodeProc, msg_id: str) -> int:
    row = node.state.execute("SELECT received_ms FROM p2p_inbox WHERE msg_id = ?", [msg_id]).fetchone()
    return row[0]


def test_message_reaches_every_node_within_two_seconds(mesh: list[NodeProc], run) -> None:
    publisher = mesh[2]
    body = Path(publisher.data_dir / "body.json")
    body.write_text(json.dumps({"challenge": "hello", "payload": "x" * 100}))
    result = run(
        "--data-dir",
        str(publisher.data_dir),
        "--json",
        "peer",
        "publish",
        "submissions",
        str(body),
        "--key",
        "validator",
    )
    assert result.exit_code == 0, result.output
    queued = json.loads(result.stdout)
    created = publisher.state.execute(
        "SELECT created_ms FROM p2p_outbox WHERE id = ?", [queued["outbox_id"]]
    ).fetchone()[0]
    msg_id = queued["msg_id"]
    wait_for(lambda: all(msg_id in n.inbox_ids() for n in mesh), 10, what="delivery to all nodes")
    delays = [_received_ms(n, msg_id) - created for n in mesh if n is not publisher]
    assert max(delays) <= 2000, delays
    row = publisher.state.execute(
        "SELECT status FROM p2p_outbox WHERE id = ?", [queued["outbox_id"]]
    ).fetchone()
    assert row[0] == "published"


def test_500_messages_at_50_per_second_all_delivered(mesh: list[NodeProc]) -> None:
    publisher = mesh[1]
    ids = []
    start = time.monotonic()
    for i in range(500):
        ids.append(queue(publisher, "submissions", "submission", {"i": i, "pad": "p" * 900}))
        time.sleep(max(0.0, start + (i + 1) / 50 - time.monotonic()))
    wanted = set(ids)
    wait_for(lambda: all(wanted <= n.inbox_ids() for n in mesh), 60, 0.2, what="500 messages at every node")
    for node in mesh:
        assert wanted <= node.inbox_ids()
        assert not node.state.execute(
            "SELECT count(*) FROM p2p_traffic WHERE reason = 'rate_limited'"
        ).fetchone()[0]


def _seal(node: NodeProc, signer, *, kind: str, body, network: Network = NETWORK, ts_ms: int | None = None):
    """Seal with a sequence number reserved in ``node``'s state, as the node itself would."""
    now = now_ms()
    return env.seal(
        network=network,
        kind=kind,
        signer=signer.ss58,
        scheme=signer.scheme,
        seq=sequences.next_own_seq(node.state, signer.ss58, floor=now),
        ts_ms=now if ts_ms is None else ts_ms,
        body=body,
        sign=signer.sign,
    )


def register(mesh: list[NodeProc], hotkey: str) -> None:
    """A newer metagraph snapshot at every node, with ``hotkey`` registered (no permit)."""
    for node in mesh:
        snapshot = latest_snapshot(node.state, NETWORK.netuid)
        neuron = Neuron(len(snapshot.neurons), hotkey, hotkey, 0, False)
        save_snapshot(
            node.state, Snapshot(NETWORK.netuid, snapshot.block + 1, 360, (*snapshot.neurons, neuron))
        )


def _run_rogue(mesh: list[NodeProc], tmp_path: Path, plan: list[tuple[str, env.Envelope]]) -> str:
    """Publish ``plan`` from a hostile peer connected to every node; its peer id."""
    args = [sys.executable, str(Path(__file__).parent / "p2p_rogue.py")]
    for node in mesh:
        args += ["--connect", node.addrs[0]]
    for i, (short, envelope) in enumerate(plan):
        path = tmp_path / f"msg{i}.bin"
        path.write_bytes(envelope.to_wire())
        args += ["--publish", f"{gossip.topic_name(NETWORK.netuid, short)}={path}"]
    rogue = subprocess.run(args, capture_output=True, timeout=120)
    assert rogue.returncode == 0, rogue.stderr.decode()[-3000:]
    return rogue.stdout.decode().split()[-1]


def test_hostile_messages_are_rejected_by_every_node(mesh: list[NodeProc], tmp_path: Path, run) -> None:
    validator = signer_of(mesh[0])
    outsider = KeyStore(tmp_path / "outsider").new("outsider", "ed25519")
    outsider_signer = KeyStore(tmp_path / "outsider").signer(outsider.name)
    good = _seal(mesh[0], validator, kind="submission", body={"ok": 1})
    forged = dataclasses.replace(
        _seal(mesh[0], validator, kind="submission", body={"forged": 1}), signature=bytes(64)
    )
    hostile = {
        "bad_signature": ("submissions", forged),
        "wrong_network": (
            "submissions",
            _seal(mesh[0], validator, kind="submission", body={}, network=Network(100, "other")),
        ),
        "wrong_role": ("evaluations", _seal(mesh[0], outsider_signer, kind="evaluation", body={"score": 5})),
        "oversized": (
            "submissions",
            _seal(mesh[0], validator, kind="submission", body={"blob": b"x" * 300_000}),
        ),
        "wrong_kind": ("submissions", _seal(mesh[0], validator, kind="evaluation", body={})),
        "stale": (
            "submissions",
            _seal(mesh[0], validator, kind="submission", body={}, ts_ms=now_ms() - 3_600_000),
        ),
    }
    plan = [("submissions", good), ("submissions", good)]  # the second copy is a replay
    plan += list(hostile.values())
    _run_rogue(mesh, tmp_path, plan)

    def counters(node: NodeProc) -> dict[str, int]:
        return {r["reason"]: r["count"] for r in store.rejections(node.state)}

    wanted = {*hostile, "replay"}
    wait_for(lambda: all(wanted <= set(counters(n)) for n in mesh), 30, what="rejections at every node")
    listed = run("--data-dir", str(mesh[1].data_dir), "--json", "peer", "rejections")
    assert listed.exit_code == 0, listed.output
    assert wanted <= {json.loads(line)["reason"] for line in listed.stdout.splitlines()}
    bad_ids = {envelope.message_id() for _, envelope in hostile.values()}
    for node in mesh:
        assert good.message_id() in node.inbox_ids()
        assert not bad_ids & node.inbox_ids()


def test_a_peer_that_keeps_forwarding_invalid_messages_is_banned(
    mesh: list[NodeProc], tmp_path: Path
) -> None:
    outsider = KeyStore(tmp_path / "k").new("miner", "ed25519")
    miner = KeyStore(tmp_path / "k").signer(outsider.name)
    register(mesh, miner.ss58)  # a miner's submissions are welcome: only the forgeries are not
    forgeries = [
        (
            "submissions",
            dataclasses.replace(_seal(mesh[0], miner, kind="submission", body={"i": i}), signature=bytes(64)),
        )
        for i in range(int(gossip.BAN_POINTS / gossip.FAULT_POINTS) + 2)
    ]
    valid = _seal(mesh[0], miner, kind="submission", body={"after": "the forgeries"})
    rogue_id = _run_rogue(mesh, tmp_path, [*forgeries, ("submissions", valid)])

    def banned(node: NodeProc) -> bool:
        return any(r["peer_id"] == rogue_id and r["banned_ms"] for r in store.peers(node.state))

    wait_for(lambda: all(banned(n) for n in mesh), 30, what="every node to ban the rogue peer")
    time.sleep(1.0)  # give a wrongly forwarded copy time to show up before asserting absence
    assert all(valid.message_id() not in n.inbox_ids() for n in mesh)


def test_only_noise_is_offered(mesh: list[NodeProc]) -> None:
    args = [sys.executable, str(Path(__file__).parent / "p2p_rogue.py"), "--plaintext"]
    result = subprocess.run([*args, "--connect", mesh[0].addrs[0]], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().startswith("refused")


def test_peer_list_maps_peers_to_announced_validator_hotkeys(mesh: list[NodeProc], run) -> None:
    hotkeys = {n.peer_id: signer_of(n).ss58 for n in mesh}

    def listed() -> list[dict]:
        result = run("--data-dir", str(mesh[0].data_dir), "--json", "peer", "list")
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines()]

    def all_bound() -> bool:
        rows = {r["peer_id"]: r for r in listed()}
        others = [p for p in hotkeys if p != mesh[0].peer_id]
        return all(rows.get(p, {}).get("hotkey") == hotkeys[p] and rows[p]["latency_ms"] for p in others)

    wait_for(all_bound, 45, 0.2, what="announcements binding hotkeys to peer ids, and latencies")
    rows = {r["peer_id"]: r for r in listed()}
    assert all(rows[n.peer_id]["connected"] for n in mesh[1:])
    assert mesh[0].peer_id not in rows


def test_peer_connect_dials_through_the_running_node(mesh: list[NodeProc], tmp_path: Path, run) -> None:
    (lonely_dir,) = prepare_node_dirs(tmp_path, 1)
    lonely = NodeProc(lonely_dir, tmp_path / "lonely.log")
    lonely.start()
    register(mesh, signer_of(lonely).ss58)  # a registered miner: its submissions are welcome
    try:
        alone = queue(lonely, "submissions", "submission", {"published": "before any peer"})
        wait_for(lambda: alone in lonely.inbox_ids(), 10, what="the isolated node's own copy")
        time.sleep(GOSSIP_WINDOW + 3)  # out of the gossip cache (with slack for late heartbeats)
        unannounced = run("--data-dir", str(lonely_dir), "dht", "provide", dhtrec.content_key(b"alone"))
        assert unannounced.exit_code == 1  # no peer to take the provider record
        assert "was not announced: no peer took the provider record" in unannounced.stderr
        result = run("--data-dir", str(lonely_dir), "--json", "peer", "connect", mesh[3].addrs[0])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"peer_id": mesh[3].peer_id}
        wait_for(lambda: lonely.connected_peers() >= 1, 20, what="the connection in the peer table")
        wait_for(lambda: alone in mesh[3].inbox_ids(), 20, what="sync of what the node published alone")
        via = mesh[3].state.execute("SELECT via FROM p2p_inbox WHERE msg_id = ?", [alone]).fetchone()
        assert via == ("sync",)
        bad = run(
            "--data-dir",
            str(lonely_dir),
            "peer",
            "connect",
            "/ip4/127.0.0.1/tcp/1/p2p/" + keys.peer_id(tmp_path),
        )
        assert bad.exit_code == 1
        assert bad.stderr.startswith("error: connect failed:")
        assert lonely.signal(signal.SIGINT) == 0
        assert store.read_node(lonely.state) is None
    finally:
        lonely.stop()


def test_publish_refuses_an_oversized_message_at_the_command(mesh: list[NodeProc], run) -> None:
    node = mesh[0]
    big = node.data_dir / "big.json"
    big.write_text(json.dumps({"blob": "x" * 300_000}))
    before = node.state.execute("SELECT count(*) FROM p2p_outbox").fetchone()[0]
    result = run(
        "--data-dir", str(node.data_dir), "peer", "publish", "submissions", str(big), "--key", "validator"
    )
    assert result.exit_code == 1
    assert "exceeds the gossip cap" in result.stderr
    assert node.state.execute("SELECT count(*) FROM p2p_outbox").fetchone()[0] == before


def test_outbox_row_fails_when_the_nodes_own_admission_refuses_it(mesh: list[NodeProc]) -> None:
    node = mesh[0]
    stale = _seal(node, signer_of(node), kind="submission", body={"old": 1}, ts_ms=now_ms() - 3_600_000)
    row_id = store.queue_outgoing(node.state, gossip.topic_name(NETWORK.netuid, "submissions"), stale)

    def outcome() -> tuple[str, str] | None:
        row = node.state.execute("SELECT status, error FROM p2p_outbox WHERE id = ?", [row_id]).fetchone()
        return row if row[0] != "queued" else None

    status, error = wait_for(outcome, 20, what="the outbox row's outcome")
    assert status == "failed"
    assert error.startswith("refused by this node's admission (stale:")
    assert stale.message_id() not in node.inbox_ids()


def _cli_json(run, node: NodeProc, *args: str) -> dict:
    result = run("--data-dir", str(node.data_dir), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _mirrored(node: NodeProc, key: str) -> bytes | None:
    row = node.state.execute("SELECT value FROM p2p_dht_records WHERE key = ?", [dhtrec.dht_key(key)])
    found = row.fetchone()
    return found[0] if found else None


def test_dht_record_put_at_a_is_read_at_d_after_local_copies_are_dropped(
    mesh: list[NodeProc], tmp_path: Path, run
) -> None:
    a, d = mesh[0], mesh[3]
    content = tmp_path / "submission.bin"
    content.write_bytes(b"miner submission " * 100)
    put = _cli_json(run, a, "dht", "put", "/sub/", str(content))
    key = put["key"]
    assert key == "/sub/" + hashlib.sha256(content.read_bytes()).hexdigest()  # the human form, for people
    assert put["dht_key"] == dhtrec.dht_key(key) and len(put["dht_key"]) <= dhtrec.MAX_KEY_BYTES
    assert _mirrored(a, key) == content.read_bytes()
    assert _mirrored(mesh[1], key) is None and _mirrored(mesh[2], key) is None  # replicas: memory only
    assert _cli_json(run, a, "dht", "forget", key)["key"] == key
    _cli_json(run, d, "dht", "forget", put["dht_key"])  # either form
    assert _mirrored(a, key) is None and _mirrored(d, key) is None
    got = _cli_json(run, d, "dht", "get", key)
    assert bytes.fromhex(got["value_hex"]) == content.read_bytes()
    assert got["dht_key"] == put["dht_key"]
    assert _mirrored(d, key) == content.read_bytes()


def test_dht_refuses_records_that_do_not_match_their_key_or_role(
    mesh: list[NodeProc], tmp_path: Path, run
) -> None:
    a = mesh[0]
    content = tmp_path / "x.bin"
    content.write_bytes(b"some bytes")
    wrong = "/sub/" + hashlib.sha256(b"other bytes").hexdigest()
    result = run("--data-dir", str(a.data_dir), "dht", "put", wrong, str(content))
    assert result.exit_code == 1
    assert "does not hash to its key" in result.stderr
    # Bypassing the command's check: the node's DHT validator refuses it too.
    request = store.queue_request(a.state, "dht.put", {"key": dhtrec.dht_key(wrong), "value": b"some bytes"})
    wait_for(lambda: store.request_result(a.state, request), 20, what="the node's answer")
    status, error = store.request_result(a.state, request)
    assert status == "failed" and "does not hash to its key" in error
    request = store.queue_request(a.state, "dht.put", {"key": "/other/x", "value": b"v"})
    wait_for(lambda: store.request_result(a.state, request), 20, what="the node's answer")
    assert store.request_result(a.state, request)[0] == "failed"  # no validator: strict DHT refuses
    assert _mirrored(a, wrong) is None
    KeyStore(a.data_dir).new("stranger", "ed25519")
    result = run("--data-dir", str(a.data_dir), "dht", "put", "/eval/e1", str(content), "--key", "stranger")
    assert result.exit_code == 1
    assert "not a validator" in result.stderr


def test_dht_signed_record_provide_and_providers(mesh: list[NodeProc], tmp_path: Path, run) -> None:
    b, c = mesh[1], mesh[2]
    content = tmp_path / "eval.bin"
    content.write_bytes(b"score table")
    key = _cli_json(run, b, "dht", "put", "/eval/epoch-7", str(content), "--key", "validator")["key"]
    assert key == f"/eval/{signer_of(b).ss58}/epoch-7"
    _cli_json(run, c, "dht", "forget", key)
    got = bytes.fromhex(_cli_json(run, c, "dht", "get", key)["value_hex"])
    record = env.from_wire(got)
    assert record.signer == signer_of(b).ss58 and record.kind == "dht.evaluation"
    assert record.body == {"key": key, "data": b"score table"}
    # c, another validator, may not put its own record under b's key.
    theirs = run("--data-dir", str(c.data_dir), "dht", "put", key, str(content), "--key", "validator")
    assert theirs.exit_code == 1
    assert "not by the key's owner" in theirs.stderr
    snapshot_key = dhtrec.content_key(b"snapshot 7")
    assert _cli_json(run, b, "dht", "provide", snapshot_key)["announced"] is True
    result = run("--data-dir", str(c.data_dir), "--json", "dht", "providers", snapshot_key)
    assert result.exit_code == 0, result.output
    assert {"peer_id": b.peer_id} in [json.loads(line) for line in result.stdout.splitlines()]


def _standard_client(mesh: list[NodeProc], *args: str) -> dict:
    """A plain Kademlia client process (py-libp2p's KadDHT) connected to every node."""
    argv = [sys.executable, str(Path(__file__).parent / "p2p_rogue.py"), *args]
    for node in mesh:
        argv += ["--connect", node.addrs[0]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_a_standard_kademlia_client_puts_and_gets_records_under_compact_keys(
    mesh: list[NodeProc], tmp_path: Path, run
) -> None:
    """A client that knows nothing of our commands looks the compact key up (FIND_NODE)
    and stores it at our nodes; it reads a validator's signed record the same way."""
    content = tmp_path / "standard.bin"
    content.write_bytes(b"put by a standard client")
    key = dhtrec.dht_key(dhtrec.content_key(content.read_bytes()))
    assert _standard_client(mesh, "--dht-put", f"{key}={content}") == {"put": key}
    for node in mesh:  # stored at our nodes by the client's own put (nobody else had it)
        got = _cli_json(run, node, "dht", "get", dhtrec.content_key(content.read_bytes()))
        assert bytes.fromhex(got["value_hex"]) == content.read_bytes()
    record = tmp_path / "signed.bin"
    record.write_bytes(b"a validator's table")
    put = _cli_json(run, mesh[1], "dht", "put", "/ckpt/epoch-9", str(record), "--key", "validator")
    found = _standard_client(mesh, "--dht-get", put["dht_key"])
    assert (
        found["found"]
        and env.from_wire(bytes.fromhex(found["value_hex"])).body["data"] == record.read_bytes()
    )
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"does not hash to its key")
    _standard_client(mesh, "--dht-put", f"{dhtrec.dht_key(dhtrec.content_key(b'other'))}={bogus}")
    got = run("--data-dir", str(mesh[0].data_dir), "dht", "get", dhtrec.content_key(b"other"))
    assert got.exit_code == 1  # our validators refused the standard client's bad record everywhere


def _replays(node: NodeProc) -> int:
    row = node.state.execute("SELECT coalesce(sum(count), 0) FROM p2p_traffic WHERE reason = 'replay'")
    return row.fetchone()[0]


def test_sigkilled_node_restarts_reconnects_and_syncs_what_it_missed(
    mesh: list[NodeProc], tmp_path: Path
) -> None:
    victim = mesh[3]
    assert victim.proc is not None
    (seen_before,) = victim.state.execute(
        "SELECT envelope FROM p2p_inbox WHERE kind = 'submission' ORDER BY rowid DESC LIMIT 1"
    ).fetchone()
    victim.proc.kill()
    victim.proc.wait(timeout=10)
    wait_for(lambda: mesh[0].connected_peers() == 2, 20, what="the others to notice the kill")
    missed = [queue(mesh[1], "submissions", "submission", {"while_away": i}) for i in range(20)]
    wait_for(lambda: set(missed) <= mesh[2].inbox_ids(), 20, what="delivery among the survivors")
    # Let the messages age out of the peers' gossip caches (with slack for heartbeats that
    # run late on a loaded machine): only sync can bring them now.
    time.sleep(GOSSIP_WINDOW + 3)
    victim.stop()
    victim.start()  # same data dir and key, a new port; it re-dials its bootstrap by itself
    wait_for(lambda: set(missed) <= victim.inbox_ids(), 45, 0.2, what="sync of missed messages")
    marks = ",".join("?" * len(missed))
    via = victim.state.execute(
        f"SELECT DISTINCT via FROM p2p_inbox WHERE msg_id IN ({marks})", missed
    ).fetchall()
    assert ("sync",) in via  # at least what left every gossip cache came by sync
    wait_for(lambda: victim.connected_peers() >= 1, 20, what="reconnection")
    after = queue(mesh[0], "submissions", "submission", {"after_restart": 1})
    wait_for(lambda: after in victim.inbox_ids(), 20, what="gossip to the restarted node")
    # Replay protection survived the kill: a message seen before it is refused after it.
    replays = _replays(victim)
    _run_rogue([victim], tmp_path, [("submissions", env.from_wire(seen_before))])
    wait_for(lambda: _replays(victim) > replays, 20, what="the replay to be refused")


def test_sigterm_exits_cleanly(mesh: list[NodeProc]) -> None:
    node = mesh[2]
    assert node.signal(signal.SIGTERM) == 0
    assert store.read_node(node.state) is None
