"""The signing guard: the rule that keeps a validator from ever equivocating.

A validator signs consensus messages at slots (height, round, step) that only move
forward. Before signing at ``slot`` the guard looks at the highest slot already signed
and at what was signed at ``slot`` itself, if anything:

- the same body was signed at ``slot`` before: *reuse* that envelope, byte for byte
  (a re-send after a crash or for a peer that missed it says nothing new);
- a different body was signed at ``slot``, or ``slot`` is not above the highest signed
  slot: *refuse*;
- otherwise: *sign*, and the caller stores the envelope durably before sending it.

The adapter keeps the signed envelopes (``platform_cli/consensus``: SQLite with
``synchronous=FULL``, or memory in the simulator) and applies this rule inside the same
transaction that stores the new one, so a crash between signing and sending can never
lead to a second, different signature for one slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from platform_cli.core.consensus.messages import Slot
from platform_cli.core.envelope import Envelope


class Verdict(Enum):
    SIGN = "sign"
    REUSE = "reuse"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Signed:
    """A signed message as the guard remembers it: its slot, canonical body and envelope."""

    slot: Slot
    body: bytes
    envelope: Envelope


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    envelope: Envelope | None = None
    reason: str = ""


def decide(slot: Slot, body: bytes, *, at_slot: Signed | None, highest: Slot | None) -> Decision:
    """Whether a message with canonical ``body`` may be signed at ``slot``."""
    if at_slot is not None:
        if at_slot.body == body:
            return Decision(Verdict.REUSE, at_slot.envelope)
        return Decision(Verdict.REFUSE, reason=f"a different message was already signed at {slot}")
    if highest is not None and slot <= highest:
        return Decision(Verdict.REFUSE, reason=f"slot {slot} is not above the last signed slot {highest}")
    return Decision(Verdict.SIGN)
