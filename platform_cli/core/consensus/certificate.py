"""Commit certificates: the quorum of signed precommits that decided an entry.

A certificate names the network, the height and round, the value id and the validator
set (its id and snapshot block) and carries the precommit envelopes, one per signer,
sorted by signer. Anyone holding the validator set verifies it offline: every precommit
is a ``consensus.precommit`` for exactly this (height, round, value, set) on this
network, signed by a distinct member, and together they are a quorum (more than two
thirds of the stake and of the validators). :func:`verify` names the first thing wrong.

Two forms: the canonical CBOR map (:meth:`Certificate.encode`, hashed into
:meth:`Certificate.id`) and a JSON document with the precommits in envelope file form
(``platform consensus verify CERT.json``), which may also carry the decided ``value``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.consensus.messages import (
    PRECOMMIT,
    MessageError,
    Step,
    Vote,
    is_hex64,
    parse,
    value_id,
)
from platform_cli.core.consensus.validators import ValidatorSet

CERT_VERSION = 1
_JSON_FIELDS = {"v", "network", "height", "round", "value_id", "set_id", "set_block", "precommits"}


class CertificateError(ValueError):
    """A certificate that does not prove its decision; the message says exactly why."""


@dataclass(frozen=True)
class Certificate:
    network: env.Network
    height: int
    round: int
    value_id: str
    set_id: str
    set_block: int
    precommits: tuple[env.Envelope, ...]

    def to_canonical(self) -> dict[str, Any]:
        return {
            "v": CERT_VERSION,
            "netuid": self.network.netuid,
            "genesis": self.network.genesis,
            "height": self.height,
            "round": self.round,
            "value": self.value_id,
            "set": self.set_id,
            "set_block": self.set_block,
            "precommits": [e.to_wire() for e in self.precommits],
        }

    def encode(self) -> bytes:
        return canonical.encode(self.to_canonical())

    @property
    def id(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()

    @property
    def signers(self) -> tuple[str, ...]:
        return tuple(e.signer for e in self.precommits)

    def to_json(self, value: Any = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "v": CERT_VERSION,
            "network": {"netuid": self.network.netuid, "genesis": self.network.genesis},
            "height": self.height,
            "round": self.round,
            "value_id": self.value_id,
            "set_id": self.set_id,
            "set_block": self.set_block,
            "precommits": [e.to_file_json() for e in self.precommits],
        }
        if value is not None:
            doc["value"] = value
        return doc


def build(
    network: env.Network,
    height: int,
    round_: int,
    value: str,
    validators: ValidatorSet,
    precommits: Iterable[env.Envelope],
) -> Certificate:
    chosen = sorted({e.signer: e for e in precommits}.values(), key=lambda e: e.signer)
    return Certificate(network, height, round_, value, validators.set_id, validators.block, tuple(chosen))


def decode(data: bytes) -> Certificate:
    try:
        value = canonical.decode(data)
    except canonical.CanonicalError as exc:
        raise CertificateError(f"certificate is not canonical CBOR: {exc}") from None
    fields = {"v", "netuid", "genesis", "height", "round", "value", "set", "set_block", "precommits"}
    if not isinstance(value, dict) or set(value) != fields or value["v"] != CERT_VERSION:
        raise CertificateError(f"a certificate is a version {CERT_VERSION} map with fields {sorted(fields)}")
    if not isinstance(value["precommits"], list) or not all(
        isinstance(p, bytes) for p in value["precommits"]
    ):
        raise CertificateError("precommits must be a list of envelopes in wire form")
    try:
        precommits = tuple(env.from_wire(p) for p in value["precommits"])
    except env.EnvelopeError as exc:
        raise CertificateError(f"a precommit is not an envelope: {exc}") from None
    return _checked(
        env.Network(value["netuid"], value["genesis"]),
        value["height"],
        value["round"],
        value["value"],
        value["set"],
        value["set_block"],
        precommits,
    )


def from_json(doc: Any) -> tuple[Certificate, Any]:
    """(certificate, value or None) from the JSON document."""
    if not isinstance(doc, dict):
        raise CertificateError("a certificate is a JSON object")
    missing = sorted(_JSON_FIELDS - set(doc))
    extra = sorted(set(doc) - _JSON_FIELDS - {"value"})
    if missing or extra:
        raise CertificateError(
            "certificate fields: "
            + ", ".join([f"missing {m!r}" for m in missing] + [f"unexpected {e!r}" for e in extra])
        )
    if doc["v"] != CERT_VERSION:
        raise CertificateError(f"certificate version {doc['v']!r} is not {CERT_VERSION}")
    network = doc["network"]
    if not isinstance(network, dict) or set(network) != {"netuid", "genesis"}:
        raise CertificateError("network must be an object with 'netuid' and 'genesis'")
    if not isinstance(doc["precommits"], list):
        raise CertificateError("precommits must be a list of signed envelopes")
    precommits = []
    for index, item in enumerate(doc["precommits"]):
        try:
            precommits.append(env.from_file_json(item))
        except env.EnvelopeError as exc:
            raise CertificateError(f"precommit {index}: {exc}") from None
    cert = _checked(
        env.Network(network["netuid"], network["genesis"]),
        doc["height"],
        doc["round"],
        doc["value_id"],
        doc["set_id"],
        doc["set_block"],
        tuple(precommits),
    )
    return cert, doc.get("value")


def _checked(
    network: env.Network,
    height: Any,
    round_: Any,
    value: Any,
    set_id: Any,
    set_block: Any,
    precommits: tuple[env.Envelope, ...],
) -> Certificate:
    for name, number in (("height", height), ("round", round_), ("set_block", set_block)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise CertificateError(f"{name} {number!r} is not a non-negative integer")
    if not isinstance(network.netuid, int) or not isinstance(network.genesis, str):
        raise CertificateError("network netuid must be an integer and genesis a string")
    for name, digest in (("value_id", value), ("set_id", set_id)):
        if not is_hex64(digest):
            raise CertificateError(f"{name} is not 64 lowercase hex digits")
    return Certificate(network, height, round_, value, set_id, set_block, precommits)


def _share(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage (a validator set's total stake is never 0)."""
    return f"{100 * part / whole:.2f}%"


def verify(
    cert: Certificate,
    validators: ValidatorSet,
    verify_signature: env.SignatureVerifier,
    *,
    value: Any = None,
) -> None:
    """Raise :class:`CertificateError` unless ``cert`` proves its decision under ``validators``."""
    if cert.set_id != validators.set_id:
        raise CertificateError(
            f"the certificate was signed under validator set {cert.set_id[:16]}… (block {cert.set_block}); "
            f"the given set is {validators.set_id[:16]}… (block {validators.block})"
        )
    if value is not None:
        try:
            decided = value_id(value)
        except canonical.CanonicalError as exc:
            raise CertificateError(f"the value is not canonical: {exc}") from None
        if decided != cert.value_id:
            raise CertificateError(
                f"the value's id is {decided[:16]}…, the certificate decides {cert.value_id[:16]}…"
            )
    seen: set[str] = set()
    expected = Vote(Step.PRECOMMIT, cert.height, cert.round, cert.set_id, cert.value_id)
    for index, envelope in enumerate(cert.precommits):
        where = f"precommit {index} ({envelope.signer})"
        if envelope.network != cert.network:
            raise CertificateError(f"{where}: signed for another network (netuid {envelope.network.netuid})")
        if envelope.kind != PRECOMMIT:
            raise CertificateError(f"{where}: kind {envelope.kind!r} is not {PRECOMMIT!r}")
        try:
            vote = parse(envelope.kind, envelope.body)
        except MessageError as exc:
            raise CertificateError(f"{where}: {exc}") from None
        if vote != expected:
            raise CertificateError(
                f"{where}: votes for height {vote.height} round {vote.round} value "
                f"{(vote.value_id or 'nil')[:16]}, not this certificate's decision"
            )
        if envelope.signer not in validators:
            raise CertificateError(f"{where}: the signer is not in the validator set")
        if envelope.signer in seen:
            raise CertificateError(f"{where}: the signer appears twice")
        seen.add(envelope.signer)
        if len(envelope.signature) != env.SIGNATURE_BYTES or not verify_signature(
            envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
        ):
            raise CertificateError(f"{where}: the signature does not verify")
    stake, count = validators.power(seen)
    if not validators.quorum(stake, count):
        raise CertificateError(
            f"the {count} signers hold {_share(stake, validators.total)} of the stake and are {count} of "
            f"{validators.size} validators: a quorum needs more than 2/3 of the stake and at least "
            f"{validators.quorum_size} validators"
        )
