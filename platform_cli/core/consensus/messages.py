"""Consensus message kinds and their bodies (what each signed envelope carries).

Every consensus message is a signed envelope (``core/envelope.py``): the signature binds
the body to the network, the kind and the signer. Bodies:

- ``consensus.proposal``: ``{"height", "round", "set", "valid_round", "value"}``, the
  paper's ⟨PROPOSAL, h, round, v, validRound⟩ with the whole value (an entry, see
  ``entry.py``); ``valid_round`` is -1 when the proposer has none.
- ``consensus.prevote`` / ``consensus.precommit``: ``{"height", "round", "set", "value"}``
  where ``value`` is the value id (64 hex digits) or None for nil.
- ``consensus.bundle``: a validator's epoch score bundle (``weights.py``).
- ``consensus.evidence``: equivocation evidence relayed by a validator (``evidence.py``).
- ``consensus.reports``: a validator's report set for an epoch (``weights.py``), the data
  its bundle's root commits to; anyone can check it against the signed root.

``set`` is the id of the validator set the message was cast under, so a vote never
counts under another set. A message's *slot* is (height, round, step); an honest
validator signs at most one body per slot (``guard.py``), and two different signed
bodies of one signer at one slot are evidence of equivocation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any

from platform_cli.core import canonical

PROPOSAL = "consensus.proposal"
PREVOTE = "consensus.prevote"
PRECOMMIT = "consensus.precommit"
BUNDLE = "consensus.bundle"
EVIDENCE = "consensus.evidence"
REPORTS = "consensus.reports"
ROUND_KINDS = frozenset({PROPOSAL, PREVOTE, PRECOMMIT})
KINDS = ROUND_KINDS | {BUNDLE, EVIDENCE, REPORTS}
"""Every kind the ``consensus`` gossip topic carries."""

VALUE_DOMAIN = "platform/consensus/value/v1"
MAX_HEIGHT = 2**62
MAX_ROUND = 1_000_000
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Step(IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


STEP_OF_KIND = {PROPOSAL: Step.PROPOSE, PREVOTE: Step.PREVOTE, PRECOMMIT: Step.PRECOMMIT}
KIND_OF_STEP = {step: kind for kind, step in STEP_OF_KIND.items()}

Slot = tuple[int, int, int]
"""(height, round, step): where a message sits in the protocol."""


def slot_name(slot: Slot) -> str:
    """A slot as people read it: ``height 3 round 1 prevote``."""
    height, round_, step = slot
    return f"height {height} round {round_} {Step(step).name.lower()}"


class MessageError(ValueError):
    """A consensus body that does not follow the schema."""


def value_id(value: Any) -> str:
    """id(v): sha256 of the value's canonical encoding under the value domain."""
    return hashlib.sha256(canonical.encode([VALUE_DOMAIN, value])).hexdigest()


def is_hex64(text: Any) -> bool:
    return isinstance(text, str) and bool(_HEX64.fullmatch(text))


@dataclass(frozen=True)
class Proposal:
    height: int
    round: int
    set_id: str
    valid_round: int
    value: dict[str, Any]

    kind = PROPOSAL

    @property
    def slot(self) -> Slot:
        return (self.height, self.round, Step.PROPOSE)

    @cached_property
    def value_id(self) -> str:
        return value_id(self.value)

    def body(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "set": self.set_id,
            "valid_round": self.valid_round,
            "value": self.value,
        }


@dataclass(frozen=True)
class Vote:
    step: Step
    height: int
    round: int
    set_id: str
    value_id: str | None

    @property
    def kind(self) -> str:
        return KIND_OF_STEP[self.step]

    @property
    def slot(self) -> Slot:
        return (self.height, self.round, self.step)

    def body(self) -> dict[str, Any]:
        return {"height": self.height, "round": self.round, "set": self.set_id, "value": self.value_id}


Message = Proposal | Vote


def _uint(body: dict[str, Any], name: str, maximum: int) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise MessageError(f"{name} {value!r} is not an integer in 0..{maximum}")
    return value


def parse(kind: str, body: Any) -> Message:
    """The message a body of ``kind`` carries; :class:`MessageError` names the field at fault."""
    if kind not in ROUND_KINDS:
        raise MessageError(f"kind {kind!r} is not a proposal or a vote")
    fields = {"height", "round", "set", "value"} | ({"valid_round"} if kind == PROPOSAL else set())
    if not isinstance(body, dict) or set(body) != fields:
        raise MessageError(f"a {kind} body has exactly the fields {sorted(fields)}")
    height = _uint(body, "height", MAX_HEIGHT)
    round_ = _uint(body, "round", MAX_ROUND)
    if height < 1:
        raise MessageError("height starts at 1")
    if not is_hex64(body["set"]):
        raise MessageError("set is not a validator set id (64 hex digits)")
    if kind == PROPOSAL:
        valid_round = body["valid_round"]
        if (
            isinstance(valid_round, bool)
            or not isinstance(valid_round, int)
            or not -1 <= valid_round < round_
        ):
            raise MessageError(f"valid_round {valid_round!r} is not -1 or a round below {round_}")
        if not isinstance(body["value"], dict):
            raise MessageError("a proposal's value is a map")
        return Proposal(height, round_, body["set"], valid_round, body["value"])
    if body["value"] is not None and not is_hex64(body["value"]):
        raise MessageError("a vote's value is a value id (64 hex digits) or null")
    return Vote(STEP_OF_KIND[kind], height, round_, body["set"], body["value"])
