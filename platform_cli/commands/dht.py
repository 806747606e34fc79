"""``platform dht``: records in the Kademlia DHT, through the running node."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from platform_cli import output
from platform_cli.context import AppContext
from platform_cli.errors import PlatformError
from platform_cli.files import read_limited
from platform_cli.state import audit

pass_app = click.make_pass_decorator(AppContext)


@click.group()
def dht() -> None:
    """Put/get/provide/find records in the Kademlia DHT.

    Namespaces: /sub/<sha256 hex> holds content whose sha256 is the key;
    /eval/<signer ss58>/<name> and /ckpt/<signer ss58>/<name> hold records signed by that
    validator (put with --key; '/eval/<name>' is completed with the key's ss58).

    The DHT stores each record under a compact key that any Kademlia peer can route
    (/<namespace>/<base64url sha256>, shown as dht_key); every command takes either form.
    """


@dht.command("put")
@click.argument("key")
@click.argument("source", metavar="FILE|-")
@click.option("--key", "key_name", help="Sign the record with this key (/eval/ and /ckpt/ namespaces).")
@pass_app
def put(app: AppContext, key: str, source: str, key_name: str | None) -> None:
    """Store FILE's bytes under KEY (use KEY '/sub/' to have the hash computed)."""
    from platform_cli.core.dhtrec import MAX_RECORD_BYTES
    from platform_cli.p2p import client, records

    data = read_limited(source, MAX_RECORD_BYTES, "value")
    human, compact, value = records.prepare(app.state, app.data_dir, app.config.network, key, data, key_name)
    client.require_node(app.state)
    stored = client.call(app.state, "dht.put", {"key": compact, "value": value})
    result = {"key": human, "dht_key": compact, "size": stored["size"]}
    audit.append(app.state, key_name or "local", "dht.put", result)
    output.record(result, as_json=app.json)


@dht.command("get")
@click.argument("key")
@click.option(
    "-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write the value here."
)
@pass_app
def get(app: AppContext, key: str, out: Path | None) -> None:
    """Fetch the value under KEY (local copy first, then the network)."""
    result = _ask(app, "dht.get", key)
    if not result["found"]:
        raise PlatformError(f"no record under {key!r} in the DHT")
    value = bytes.fromhex(result["value_hex"])
    found = {"key": key, "dht_key": result["dht_key"], "size": len(value)}
    if out is not None:
        out.write_bytes(value)
        output.record({**found, "written": str(out)}, as_json=app.json)
    elif app.json:
        output.record({**found, "value_hex": value.hex()}, as_json=True)
    else:
        sys.stdout.buffer.write(value)


@dht.command("provide")
@click.argument("key")
@pass_app
def provide(app: AppContext, key: str) -> None:
    """Announce that this node provides KEY."""
    result = _ask(app, "dht.provide", key)
    audit.append(app.state, "local", "dht.provide", result)
    if not result["announced"]:
        raise PlatformError(f"{key!r} was not announced: no peer took the provider record")
    output.record(result, as_json=app.json)


@dht.command("providers")
@click.argument("key")
@pass_app
def providers(app: AppContext, key: str) -> None:
    """Peers that announced they provide KEY."""
    result = _ask(app, "dht.providers", key)
    rows = [{"peer_id": p} for p in result["providers"]]
    output.table(rows, ("peer_id",), as_json=app.json, empty=f"no providers for {key!r}")


@dht.command("forget")
@click.argument("key")
@pass_app
def forget(app: AppContext, key: str) -> None:
    """Drop this node's local copy of KEY (the network keeps its copies)."""
    result = _ask(app, "dht.forget", key)
    audit.append(app.state, "local", "dht.forget", result)
    output.record(result, as_json=app.json)


def _ask(app: AppContext, op: str, key: str) -> dict:
    """Check KEY here, then ask the running node to do ``op`` with its compact form; the
    answer names KEY as given and the compact form as ``dht_key``."""
    from platform_cli.p2p import client, records

    compact = records.resolve_key(key)
    return {**client.call(app.state, op, {"key": compact}), "key": key, "dht_key": compact}
