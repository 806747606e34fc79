"""``platform peer``: the libp2p host (run it; list, connect, publish through it)."""

from __future__ import annotations

import click

from platform_cli import output
from platform_cli.context import AppContext
from platform_cli.errors import PlatformError
from platform_cli.files import read_limited
from platform_cli.state import audit

pass_app = click.make_pass_decorator(AppContext)
MESSAGE_FILE_MAX_BYTES = 1024 * 1024
"""A message file is read up to this size; the gossip cap (64 KiB) is checked after."""


@click.group()
def peer() -> None:
    """The libp2p host: run it, list/connect peers, publish messages."""


@peer.command("run")
@click.option("--listen", multiple=True, help="Multiaddr to listen on (repeatable) [default: p2p.listen].")
@click.option("--bootstrap", multiple=True, help="Multiaddr of a peer to dial (repeatable, added to config).")
@click.option("--key", "key_name", help="Key (platform keys) that signs this node's announcements.")
@pass_app
def run(app: AppContext, listen: tuple[str, ...], bootstrap: tuple[str, ...], key_name: str | None) -> None:
    """Run the node in the foreground until SIGINT/SIGTERM.

    Prints one JSON line with the peer id and listen addresses once it is up.
    """
    from platform_cli.p2p import store
    from platform_cli.p2p.config import check_addrs, load_settings

    settings = load_settings(app.config)
    settings = settings.with_overrides(
        listen=listen, bootstrap=tuple(dict.fromkeys(settings.bootstrap + bootstrap)), key=key_name
    )
    check_addrs(settings)
    from platform_cli.commands.trust import trusted_sudo
    from platform_cli.state import integrity

    trusted_sudo(app.config.network, app.state, required=True)
    integrity.require_intact(app.state.conn, app.state.path, quick=True)
    running = store.running_node(app.state)
    if running is not None:
        raise PlatformError(f"a node is already running on {app.data_dir} (pid {running.pid})")
    from platform_cli.p2p.node import run_forever

    app.serving()
    run_forever(app.data_dir, settings, app.config.network)


@peer.command("id")
@pass_app
def id_(app: AppContext) -> None:
    """Show this node's peer id (and its addresses when it is running)."""
    from platform_cli.p2p import keys, store

    node = store.running_node(app.state)
    record = {"peer_id": keys.peer_id(app.data_dir), "running": node is not None}
    if node is not None:
        record["addrs"] = node.addrs
        record["pid"] = node.pid
    output.record(record, as_json=app.json)


@peer.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """Peers the node knows: peer id, validator hotkey, address, latency."""
    from platform_cli.p2p import client, store

    client.require_node(app.state)
    rows = [
        {
            **row,
            "connected": bool(row["connected"]),
            "banned": row["banned_ms"] is not None,
            "latency_ms": None if row["latency_us"] is None else f"{row['latency_us'] / 1000:.2f}",
        }
        for row in store.peers(app.state)
    ]
    columns = ("peer_id", "hotkey", "addr", "latency_ms", "connected", "banned")
    output.table(rows, columns, as_json=app.json, empty="no peers yet")


@peer.command("connect")
@click.argument("multiaddr")
@pass_app
def connect(app: AppContext, multiaddr: str) -> None:
    """Dial MULTIADDR (must end in /p2p/<peer id>) from the running node."""
    from platform_cli.p2p import client
    from platform_cli.p2p.config import check_addr

    check_addr("peer connect", multiaddr, peer_id=True)
    result = client.call(app.state, "connect", {"addr": multiaddr})
    audit.append(app.state, "local", "peer.connect", {"addr": multiaddr, **result})
    output.record(result, as_json=app.json)


@peer.command("publish")
@click.argument("topic")
@click.argument("source", metavar="FILE|-")
@click.option("--key", "key_name", help="Sign the JSON body in FILE with this key (else FILE is signed).")
@click.option("--kind", help="Envelope kind when signing with --key [default: the topic's only kind].")
@pass_app
def publish(app: AppContext, topic: str, source: str, key_name: str | None, kind: str | None) -> None:
    """Queue a message on TOPIC (short name such as 'submissions', or the full id).

    FILE holds a signed envelope (JSON file form or wire CBOR), or with --key a JSON body
    to seal. The running node publishes it; the message is checked here first.
    """
    from platform_cli.core import envelope as env
    from platform_cli.p2p import client, outgoing

    data = read_limited(source, MESSAGE_FILE_MAX_BYTES, "message")
    parsed = outgoing.parse_input(data, source)
    client.require_node(app.state)
    network = app.config.network
    if key_name:
        if isinstance(parsed, env.Envelope):
            raise PlatformError(f"{source} is already a signed envelope: drop --key")
        from platform_cli.core import gossip
        from platform_cli.identity import KeyStore

        short, _ = outgoing.resolve_topic(network.netuid, topic)
        kinds = sorted(gossip.TOPICS[short].kinds)
        if kind is None and len(kinds) != 1:
            raise PlatformError(f"topic {short!r} carries several kinds: choose one with --kind ({kinds})")
        signer = KeyStore(app.data_dir).signer(key_name)
        parsed = outgoing.seal_for(app.state, network.network, signer, kind or kinds[0], parsed)
    elif not isinstance(parsed, env.Envelope):
        raise PlatformError(f"{source} is not a signed envelope: sign it with --key NAME")
    output.record(
        outgoing.queue_publish(app.state, network.network, network.sudo, topic, parsed), as_json=app.json
    )


@peer.command("rejections")
@pass_app
def rejections(app: AppContext) -> None:
    """Messages refused by admission or dropped before it, per topic, path and reason.

    Paths: gossip (from peers), sync, own (this node's publishes). Outcomes: refused,
    dropped (duplicates, banned peers...), forward_dropped (not forwarded to a peer).
    Counts are written by the running node every second.
    """
    from platform_cli.p2p import store

    columns = ("topic", "via", "outcome", "reason", "count", "last_detail")
    output.table(store.rejections(app.state), columns, as_json=app.json, empty="no rejections")


@peer.command("traffic")
@pass_app
def traffic(app: AppContext) -> None:
    """Messages per topic and path: received = admitted + refused + dropped."""
    from platform_cli.core.gossip import OUTCOMES
    from platform_cli.p2p import store

    output.table(store.traffic(app.state), ("topic", "via", *OUTCOMES), as_json=app.json, empty="no traffic")


@peer.command("inbox")
@click.option("--topic", help="Only this topic (full id).")
@click.option("--limit", type=click.IntRange(1, 2**63 - 1), default=50, show_default=True)
@pass_app
def inbox(app: AppContext, topic: str | None, limit: int) -> None:
    """Messages this node admitted, newest first."""
    from platform_cli.p2p import store
    from platform_cli.p2p.outgoing import resolve_topic

    columns = ("msg_id", "topic", "kind", "signer", "seq", "received_ms")
    full = resolve_topic(app.config.network.netuid, topic)[1] if topic else None
    rows = store.inbox_rows(app.state, topic=full, limit=limit)
    output.table(rows, columns, as_json=app.json, empty="inbox is empty")
