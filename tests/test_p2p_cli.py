"""P2P commands without a running node: clear errors, no traceback, nothing queued."""

from __future__ import annotations

import json
import socket

import pytest

PEER = "12D3KooWP6R5to2iZxbZpqnfeVgL1jRghqv92zU7bHnrHkio2AB3"


@pytest.mark.parametrize(
    "args",
    [
        ("peer", "list"),
        (
            "peer",
            "connect",
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWP6R5to2iZxbZpqnfeVgL1jRghqv92zU7bHnrHkio2AB3",
        ),
        ("dht", "get", "/sub/" + "0" * 64),
        ("dht", "providers", "/sub/" + "0" * 64),
    ],
)
def test_commands_say_when_no_node_is_running(run, args) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert "no node is running on this data dir" in result.stderr
    assert "Traceback" not in result.output


def test_peer_id_is_persistent_without_a_node(run) -> None:
    first = json.loads(run("--json", "peer", "id").stdout)
    second = json.loads(run("--json", "peer", "id").stdout)
    assert first == second
    assert first["peer_id"].startswith("12D3KooW")
    assert first["running"] is False


def test_publish_without_a_node_queues_nothing(run, data_dir, tmp_path) -> None:
    body = tmp_path / "b.json"
    body.write_text("{}")
    result = run("peer", "publish", "submissions", str(body))
    assert result.exit_code == 1
    assert "no node is running" in result.stderr


def test_dht_key_outside_our_namespaces_is_refused(run) -> None:
    result = run("dht", "get", "/other/key")
    assert result.exit_code == 1
    assert "namespace one of" in result.stderr


def test_run_refuses_bad_addresses_and_taken_ports(run) -> None:
    bad = run("peer", "run", "--listen", "/ip4/1.2.3/tcp/x")
    assert bad.exit_code == 1
    assert "p2p.listen: '/ip4/1.2.3/tcp/x' is not a valid multiaddr" in bad.stderr
    no_id = run("peer", "run", "--bootstrap", "/ip4/127.0.0.1/tcp/4001")
    assert no_id.exit_code == 1
    assert "must end with /p2p/<peer id>" in no_id.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run("peer", "run", "--listen", f"/ip4/127.0.0.1/tcp/{port}")
    assert busy.exit_code == 1
    assert busy.stderr == f"error: cannot listen on /ip4/127.0.0.1/tcp/{port}: Address already in use\n"


def test_config_errors_name_the_file_and_field(run, data_dir) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "platform.toml").write_text("[p2p]\nrate_per_signer = 0\n")
    result = run("peer", "run")
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"error: {data_dir / 'platform.toml'}: p2p.rate_per_signer = 0 must be an integer >= 1\n"
    )


def test_run_refuses_an_unknown_announcement_key(run, data_dir) -> None:
    result = run("peer", "run", "--listen", "/ip4/127.0.0.1/tcp/0", "--key", "nosuch")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no key named 'nosuch'")


def test_a_second_node_on_the_same_data_dir_is_refused(run, data_dir) -> None:
    from platform_cli.p2p import keys

    held = keys.lock_node(data_dir)  # as a first `peer run` still starting up holds it
    try:
        result = run("peer", "run", "--listen", "/ip4/127.0.0.1/tcp/0")
    finally:
        held.close()
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: another node ('platform peer run' or 'platform up') is using {data_dir} "
        f"(it holds {data_dir / 'p2p' / 'node.lock'})\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("peer", "run", "--listen", "/ip4/127.0.0.1/udp/4001"), "must start with /ip4/<address>/tcp/<port>"),
        (
            ("peer", "run", "--listen", "/dns4/example.com/tcp/4001"),
            "must start with /ip4/<address>/tcp/<port>",
        ),
        (
            ("peer", "run", "--listen", "/ip4/127.0.0.1/tcp/0/p2p/" + PEER),
            "must be just /ip4/<address>/tcp/<port>",
        ),
        (("peer", "connect", "garbage"), "peer connect: 'garbage' is not a valid multiaddr"),
        (("peer", "connect", "/ip4/127.0.0.1/tcp/4001"), "must end with /p2p/<peer id>"),
        (
            ("peer", "connect", "/ip4/127.0.0.1/udp/4001/p2p/" + PEER),
            "must start with /ip4/<address>/tcp/<port>",
        ),
        (("dht", "get", "/sub/xyz"), "must be /sub/<sha256 hex of the value>"),
        (("dht", "provide", "snapshot-7"), "must be /sub/<sha256 hex> or /<namespace>/<signer ss58>/<name>"),
        (("dht", "providers", "/eval/e1"), "must be /sub/<sha256 hex> or /<namespace>/<signer ss58>/<name>"),
        (("dht", "forget", "/sub/12"), "must be /sub/<sha256 hex of the value>"),
    ],
)
def test_bad_addresses_and_keys_are_refused_in_the_command(run, args, message) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "no node is running" not in result.stderr  # refused before asking the node
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_sealing_a_body_outside_the_canonical_model_is_a_user_error(tmp_path) -> None:
    from platform_cli.errors import PlatformError
    from platform_cli.identity import KeyStore
    from platform_cli.p2p import outgoing
    from platform_cli.state import open_state
    from tests.p2p_helpers import NETWORK

    KeyStore(tmp_path).new("validator", "ed25519")
    with (
        open_state(tmp_path) as state,
        pytest.raises(PlatformError, match="cannot seal a 'submission' message"),
    ):
        outgoing.seal_for(state, NETWORK, KeyStore(tmp_path).signer("validator"), "submission", {"a": 10**30})


def test_message_and_value_files_must_be_regular(run, tmp_path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    published = run("peer", "publish", "submissions", str(fifo))
    assert (
        published.exit_code == 1
        and published.stderr.strip() == f"error: message {fifo} is not a regular file"
    )
    put = run("dht", "put", "/sub/", "/dev/zero")
    assert put.exit_code == 1 and "value /dev/zero is not a regular file" in put.stderr
    inbox = run("peer", "inbox", "--topic", "nope")
    assert inbox.exit_code == 1 and "unknown topic 'nope'" in inbox.stderr
