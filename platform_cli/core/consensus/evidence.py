"""Equivocation evidence: two different signed bodies of one signer at one slot.

An honest validator signs at most one body per (height, round, step) (its signing guard
refuses anything else), so two valid signatures of one signer over different bodies at
the same slot prove that signer faulty: a proposer that proposed two values, a voter
that voted twice. The same body signed twice (another sequence number or time) is not a
conflict: it says the same thing.

Evidence is the pair of envelopes, ordered by message id so that one pair has one
encoding. :func:`verify` checks it offline: same network and signer, same slot, both
signatures valid, different bodies; with a validator set, also that the signer is in it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.consensus.messages import ROUND_KINDS, MessageError, Slot, parse, slot_name
from platform_cli.core.consensus.validators import ValidatorSet

EVIDENCE_VERSION = 1


class EvidenceError(ValueError):
    """Evidence that does not prove an equivocation; the message says why."""


@dataclass(frozen=True)
class Evidence:
    first: env.Envelope
    second: env.Envelope

    @property
    def signer(self) -> str:
        return self.first.signer

    @property
    def slot(self) -> Slot:
        return parse(self.first.kind, self.first.body).slot

    def to_canonical(self) -> dict[str, Any]:
        return {"v": EVIDENCE_VERSION, "messages": [self.first.to_wire(), self.second.to_wire()]}

    def encode(self) -> bytes:
        return canonical.encode(self.to_canonical())

    @property
    def id(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        height, round_, step = self.slot
        return {
            "v": EVIDENCE_VERSION,
            "signer": self.signer,
            "height": height,
            "round": round_,
            "step": step,
            "messages": [self.first.to_file_json(), self.second.to_file_json()],
        }


def _slot(envelope: env.Envelope) -> Slot | None:
    if envelope.kind not in ROUND_KINDS:
        return None
    try:
        return parse(envelope.kind, envelope.body).slot
    except MessageError:
        return None


def conflict(a: env.Envelope, b: env.Envelope) -> Evidence | None:
    """The evidence ``a`` and ``b`` make together, or None if they do not conflict.

    Signatures are not checked here: callers pass envelopes they already verified.
    """
    if a.signer != b.signer or a.network != b.network or a.kind != b.kind:
        return None
    slot = _slot(a)
    if slot is None or slot != _slot(b) or canonical.encode(a.body) == canonical.encode(b.body):
        return None
    first, second = sorted((a, b), key=lambda e: e.message_id())
    return Evidence(first, second)


def decode(data: bytes) -> Evidence:
    try:
        value = canonical.decode(data)
    except canonical.CanonicalError as exc:
        raise EvidenceError(f"evidence is not canonical CBOR: {exc}") from None
    if not isinstance(value, dict) or set(value) != {"v", "messages"} or value["v"] != EVIDENCE_VERSION:
        raise EvidenceError(f"evidence is a version {EVIDENCE_VERSION} map with 'v' and 'messages'")
    messages = value["messages"]
    if (
        not isinstance(messages, list)
        or len(messages) != 2
        or not all(isinstance(m, bytes) for m in messages)
    ):
        raise EvidenceError("evidence holds exactly two envelopes in wire form")
    try:
        return _pair(env.from_wire(messages[0]), env.from_wire(messages[1]))
    except env.EnvelopeError as exc:
        raise EvidenceError(f"evidence message: {exc}") from None


def from_json(doc: Any) -> Evidence:
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list) or len(doc["messages"]) != 2:
        raise EvidenceError("evidence is a JSON object with a 'messages' list of two signed envelopes")
    try:
        return _pair(env.from_file_json(doc["messages"][0]), env.from_file_json(doc["messages"][1]))
    except env.EnvelopeError as exc:
        raise EvidenceError(f"evidence message: {exc}") from None


def _pair(a: env.Envelope, b: env.Envelope) -> Evidence:
    if a.message_id() > b.message_id():
        raise EvidenceError("evidence messages are not in message-id order")
    return Evidence(a, b)


def _signed(envelope: env.Envelope, verify_signature: env.SignatureVerifier) -> bool:
    return len(envelope.signature) == env.SIGNATURE_BYTES and verify_signature(
        envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
    )


def verify(
    evidence: Evidence,
    verify_signature: env.SignatureVerifier,
    *,
    validators: ValidatorSet | None = None,
) -> None:
    """Raise :class:`EvidenceError` unless ``evidence`` proves its signer equivocated."""
    a, b = evidence.first, evidence.second
    if a.message_id() >= b.message_id():
        raise EvidenceError("the two messages are the same message, or not in message-id order")
    if a.signer != b.signer:
        raise EvidenceError(f"the messages have different signers ({a.signer}, {b.signer})")
    if a.network != b.network:
        raise EvidenceError("the messages belong to different networks")
    if a.kind != b.kind or a.kind not in ROUND_KINDS:
        raise EvidenceError(f"kinds {a.kind!r} and {b.kind!r} are not the same proposal or vote kind")
    try:
        slot_a, slot_b = parse(a.kind, a.body).slot, parse(b.kind, b.body).slot
    except MessageError as exc:
        raise EvidenceError(f"a message body is malformed: {exc}") from None
    if slot_a != slot_b:
        raise EvidenceError(
            f"the messages are at different slots: {slot_name(slot_a)} and {slot_name(slot_b)}"
        )
    if canonical.encode(a.body) == canonical.encode(b.body):
        raise EvidenceError("the messages say the same thing: no conflict")
    for name, envelope in (("first", a), ("second", b)):
        if not _signed(envelope, verify_signature):
            raise EvidenceError(f"the {name} message's signature does not verify for {envelope.signer}")
    if validators is not None and a.signer not in validators:
        raise EvidenceError(f"{a.signer} is not in the validator set")
