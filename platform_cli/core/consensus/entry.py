"""Entries: the values consensus decides, one per height, chained by hash.

An entry is the canonical map ``{"height": h, "prev": P, "actions": [...]}``. ``prev`` is
the id of the entry decided at height h - 1 (for height 1, :func:`genesis_id` of the
network and its first validator set), so a certificate for one entry also certifies the
whole history before it. An entry's id is :func:`messages.value_id` of the map: the
value id the votes name is the log's hash link.

Each action is a map with a ``type`` (``actions.py`` holds the table of types); unknown
types are refused, so adding a type is a protocol upgrade every validator makes. Signed
envelopes inside actions (a sudo-signed update, validators' bundles) are carried as the
hex of their wire form (:func:`embed`): the entry commits to their exact bytes, and a
value stays cheap to encode and hash however many envelopes it carries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from platform_cli.core import canonical
from platform_cli.core.consensus.messages import MAX_HEIGHT, is_hex64, value_id
from platform_cli.core.envelope import Envelope, EnvelopeError, Network, from_wire

GENESIS_DOMAIN = "platform/consensus/genesis/v1"
MAX_ACTIONS = 64


class EntryError(ValueError):
    """A value that is not a well-formed entry."""


def embed(envelope: Envelope) -> str:
    """An envelope as an action carries it: the hex of its wire form."""
    return envelope.to_wire().hex()


def unembed(text: object) -> Envelope:
    """The envelope :func:`embed` gave; :class:`EnvelopeError` if it is not one."""
    if not isinstance(text, str):
        raise EnvelopeError("malformed", "an embedded envelope is the hex of its wire form")
    return _unembed(text)


@lru_cache(maxsize=4096)
def _unembed(text: str) -> Envelope:
    """Decoding is strict and costly; the same bytes come back at every check of a value."""
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise EnvelopeError("malformed", "an embedded envelope is not hex") from None
    return from_wire(data, max_size=len(data))


def genesis_id(network: Network, set_id: str) -> str:
    """The ``prev`` of height 1: binds the log to its network and first validator set."""
    payload = canonical.encode([GENESIS_DOMAIN, network.netuid, network.genesis, set_id])
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class Entry:
    height: int
    prev: str
    actions: tuple[dict[str, Any], ...] = ()

    def to_canonical(self) -> dict[str, Any]:
        return {"height": self.height, "prev": self.prev, "actions": list(self.actions)}

    @cached_property
    def id(self) -> str:
        return value_id(self.to_canonical())


def parse_entry(value: Any) -> Entry:
    """Shape only; whether the actions apply is ``actions.check``'s question."""
    if not isinstance(value, dict) or set(value) != {"height", "prev", "actions"}:
        raise EntryError("an entry is a map with exactly 'height', 'prev' and 'actions'")
    height = value["height"]
    if isinstance(height, bool) or not isinstance(height, int) or not 1 <= height <= MAX_HEIGHT:
        raise EntryError(f"entry height {height!r} is not a positive integer")
    if not is_hex64(value["prev"]):
        raise EntryError("entry prev is not a hash (64 hex digits)")
    actions = value["actions"]
    if not isinstance(actions, list) or len(actions) > MAX_ACTIONS:
        raise EntryError(f"entry actions must be a list of at most {MAX_ACTIONS}")
    for index, action in enumerate(actions):
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            raise EntryError(f"action {index} is not a map with a 'type'")
    return Entry(height, value["prev"], tuple(actions))
