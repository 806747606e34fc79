"""The node's libp2p key: persistent in ``<data-dir>/p2p/node.key`` (ed25519, mode 0600)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Any

from platform_cli.errors import PlatformError


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / "p2p" / "node.key"


def load_or_create(data_dir: Path) -> Any:
    """The node's libp2p KeyPair, created on first use."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.identity_utils import load_identity, save_identity

    path = key_path(data_dir)
    if path.exists():
        try:
            return load_identity(str(path))
        except Exception as exc:  # the library raises several types for a bad file
            raise PlatformError(f"node key {path} is unreadable: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    pair = create_new_key_pair()
    save_identity(pair, str(path))
    os.chmod(path, 0o600)
    return pair


def peer_id(data_dir: Path) -> str:
    from libp2p.peer.id import ID

    return ID.from_pubkey(load_or_create(data_dir).public_key).to_base58()


def lock_node(data_dir: Path) -> IO[bytes]:
    """Hold ``<data-dir>/p2p/node.lock`` exclusively (released when the process ends).

    Two hosts on one data dir would race on the outbox and the replay windows; the
    heartbeat row cannot tell a starting node from a dead one, a kernel lock can."""
    path = Path(data_dir) / "p2p" / "node.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - held for the life of the node
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise PlatformError(
            f"another node ('platform peer run' or 'platform up') is using {data_dir} (it holds {path})"
        ) from None
    return handle
