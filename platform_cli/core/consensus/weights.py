"""Per-epoch weight vectors through consensus, without leader censorship.

Theory of operation
-------------------
1. Each validator fixes its *report set* for the epoch: its score reports as sorted
   ``[challenge, miner, score]`` triples. Its ``root`` (sha256 of the canonical set,
   under a domain tag, the validator and the epoch) is what the validator signs, in a
   ``consensus.bundle`` envelope ``{"epoch", "root", "count"}`` broadcast to everyone
   (like CometBFT's vote extensions). The report set itself travels as data addressed
   by its root (sync, DHT): its bytes are checked against the signed root.
2. After the epoch's cutoff (plus a grace period for propagation) a proposer proposes a
   ``weights`` action naming the bundles it uses, from validators holding a quorum
   (more than two thirds of the stake and of the validators), the inputs of the
   aggregation (snapshot block, challenges with their shares, burn uid) and the vector
   with its ``vector_hash``.
3. Every validator checks the bundles' signatures, recomputes the vector with the pure
   aggregation (``core/aggregation.py``) from the named report sets, and prevotes for the
   value only if the ``vector_hash`` is identical. It also refuses a proposal that leaves
   out a bundle it has held since before the cutoff (:func:`omitted`).

Why the leader cannot censor: if honest validators that held a bundle before the cutoff
are enough that no quorum forms without one of them (``ValidatorSet.blocks_quorum``),
every quorum of prevotes for a value includes one of them, and that one prevoted only
after checking the bundle was named. So a value that leaves the bundle out never gathers
the polka it needs to be locked or decided. A bundle sent in time by an honest validator
reaches every honest validator before the cutoff on a working network, and the honest
validators always block a quorum (they are one). See ``docs/consensus.md``.

``vector_hash`` is the hash ``chain/records.py``'s ``Vector.vector_hash`` computes (a test
keeps them equal), over the aggregated units before chain-specific padding and u16
conversion, which each validator applies at submission.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from platform_cli.core import canonical
from platform_cli.core import envelope as env
from platform_cli.core.aggregation import (
    SCORE_MAX,
    AggregationError,
    ChallengeShare,
    ScoreReport,
    aggregate,
)
from platform_cli.core.consensus.entry import embed, unembed
from platform_cli.core.consensus.messages import BUNDLE, is_hex64
from platform_cli.core.consensus.validators import ValidatorSet

REPORT_SET_DOMAIN = "platform/consensus/report-set/v1"
WEIGHTS = "weights"
MAX_REPORTS = 100_000
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


class WeightsError(ValueError):
    """A report set, bundle or weights action that does not follow the rules."""


def _uint(value: Any, name: str, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise WeightsError(f"{name} {value!r} is not an integer in 0..{maximum}")
    return value


@dataclass(frozen=True)
class ReportSet:
    validator: str
    epoch: int
    entries: tuple[tuple[str, str, int], ...]

    def __post_init__(self) -> None:
        if list(self.entries) != sorted(set(self.entries)):
            raise WeightsError("report set entries must be unique and sorted")
        keys = [(c, m) for c, m, _ in self.entries]
        if len(keys) != len(set(keys)):
            raise WeightsError("a report set scores each (challenge, miner) once")

    @classmethod
    def of(cls, validator: str, epoch: int, reports: Iterable[tuple[str, str, int]]) -> ReportSet:
        return cls(validator, epoch, tuple(sorted(set(reports))))

    def to_canonical(self) -> dict[str, Any]:
        return {"validator": self.validator, "epoch": self.epoch, "reports": [list(e) for e in self.entries]}

    @cached_property
    def root(self) -> str:
        payload = canonical.encode(
            [REPORT_SET_DOMAIN, self.validator, self.epoch, [list(e) for e in self.entries]]
        )
        return hashlib.sha256(payload).hexdigest()

    def score_reports(self) -> list[ScoreReport]:
        return [ScoreReport(self.validator, c, m, s) for c, m, s in self.entries]


def report_set_from_canonical(value: Any) -> ReportSet:
    if not isinstance(value, dict) or set(value) != {"validator", "epoch", "reports"}:
        raise WeightsError("a report set is a map with 'validator', 'epoch' and 'reports'")
    reports = value["reports"]
    if not isinstance(reports, list) or len(reports) > MAX_REPORTS:
        raise WeightsError(f"reports must be a list of at most {MAX_REPORTS}")
    entries = []
    for item in reports:
        if not isinstance(item, list) or len(item) != 3:
            raise WeightsError("a report is [challenge, miner, score]")
        challenge, miner, score = item
        if not isinstance(challenge, str) or not _SLUG.fullmatch(challenge):
            raise WeightsError(f"challenge {challenge!r} is not a challenge id")
        if not isinstance(miner, str) or not 1 <= len(miner) <= 64:
            raise WeightsError(f"miner {miner!r} is not a hotkey")
        entries.append((challenge, miner, _uint(score, "score", SCORE_MAX)))
    if not isinstance(value["validator"], str):
        raise WeightsError("validator is not a hotkey")
    return ReportSet(value["validator"], _uint(value["epoch"], "epoch"), tuple(entries))


@dataclass(frozen=True)
class Bundle:
    """A validator's signed commitment to its report set for an epoch."""

    envelope: env.Envelope
    epoch: int
    root: str
    count: int

    @property
    def signer(self) -> str:
        return self.envelope.signer


def bundle_body(report_set: ReportSet) -> dict[str, Any]:
    return {"epoch": report_set.epoch, "root": report_set.root, "count": len(report_set.entries)}


def parse_bundle(envelope: env.Envelope) -> Bundle:
    """Shape only (the caller verifies the signature)."""
    if envelope.kind != BUNDLE:
        raise WeightsError(f"kind {envelope.kind!r} is not {BUNDLE!r}")
    body = envelope.body
    if not isinstance(body, dict) or set(body) != {"epoch", "root", "count"}:
        raise WeightsError("a bundle body has exactly 'epoch', 'root' and 'count'")
    if not is_hex64(body["root"]):
        raise WeightsError("bundle root is not 64 hex digits")
    return Bundle(
        envelope, _uint(body["epoch"], "epoch"), body["root"], _uint(body["count"], "count", MAX_REPORTS)
    )


@dataclass(frozen=True)
class WeightsContext:
    """What a validator expects the epoch's vector to be computed over."""

    netuid: int
    mechid: int
    epoch: int
    snapshot_block: int
    stakes: Mapping[str, int]
    uids: Mapping[str, int]
    challenges: tuple[ChallengeShare, ...]
    burn_uid: int | None

    def inputs(self) -> dict[str, Any]:
        """The fields a weights action names, to compare with a proposal's."""
        return {
            "netuid": self.netuid,
            "mechid": self.mechid,
            "epoch": self.epoch,
            "snapshot_block": self.snapshot_block,
            "challenges": [[c.challenge, c.emission_ppm, c.min_validators] for c in self.challenges],
            "burn_uid": self.burn_uid,
        }


def vector_hash(netuid: int, mechid: int, epoch: int, snapshot_block: int, weights: Mapping[int, int]) -> str:
    """The hash that identifies an epoch's vector, in consensus and in `platform weights`' records."""
    body = {
        "netuid": netuid,
        "mechid": mechid,
        "epoch": epoch,
        "snapshot_block": snapshot_block,
        "weights": [[uid, w] for uid, w in sorted(weights.items())],
    }
    return hashlib.sha256(canonical.encode(body)).hexdigest()


def compute(context: WeightsContext, report_sets: Iterable[ReportSet]) -> tuple[dict[int, int], str]:
    """The vector (uid -> units) and its hash, by the pure aggregation."""
    reports = [r for s in report_sets for r in s.score_reports()]
    try:
        result = aggregate(reports, context.stakes, context.challenges, context.uids, context.burn_uid)
    except AggregationError as exc:
        raise WeightsError(f"aggregation refuses the inputs: {exc}") from None
    weights = dict(result.weights)
    digest = vector_hash(context.netuid, context.mechid, context.epoch, context.snapshot_block, weights)
    return weights, digest


@dataclass(frozen=True)
class WeightsAction:
    inputs: dict[str, Any]
    bundles: tuple[env.Envelope, ...]
    weights: tuple[tuple[int, int], ...]
    vector_hash: str

    @property
    def epoch(self) -> int:
        return int(self.inputs["epoch"])

    @property
    def mechid(self) -> int:
        return int(self.inputs["mechid"])

    def to_canonical(self) -> dict[str, Any]:
        return {
            "type": WEIGHTS,
            **self.inputs,
            "bundles": [embed(b) for b in self.bundles],
            "weights": [list(w) for w in self.weights],
            "vector_hash": self.vector_hash,
        }


_ACTION_FIELDS = {"type", "netuid", "mechid", "epoch", "snapshot_block", "challenges", "burn_uid"} | {
    "bundles",
    "weights",
    "vector_hash",
}


def parse_action(value: dict[str, Any]) -> WeightsAction:
    if set(value) != _ACTION_FIELDS:
        raise WeightsError(f"a weights action has exactly the fields {sorted(_ACTION_FIELDS)}")
    for name in ("netuid", "mechid", "epoch", "snapshot_block"):
        _uint(value[name], name)
    if value["burn_uid"] is not None:
        _uint(value["burn_uid"], "burn_uid", 65535)
    challenges = value["challenges"]
    if not isinstance(challenges, list) or not all(
        isinstance(c, list) and len(c) == 3 and isinstance(c[0], str) for c in challenges
    ):
        raise WeightsError("challenges must be a list of [id, emission_ppm, min_validators]")
    for _, ppm, minimum in challenges:
        _uint(ppm, "emission_ppm", 10**6)
        _uint(minimum, "min_validators", 2**16)
    if not isinstance(value["bundles"], list):
        raise WeightsError("bundles must be a list of signed bundle envelopes")
    try:
        bundles = tuple(unembed(b) for b in value["bundles"])
    except env.EnvelopeError as exc:
        raise WeightsError(f"a named bundle is not an envelope: {exc}") from None
    weights = value["weights"]
    if not isinstance(weights, list) or not all(isinstance(w, list) and len(w) == 2 for w in weights):
        raise WeightsError("weights must be a list of [uid, units]")
    pairs = tuple((_uint(u, "uid", 65535), _uint(w, "units")) for u, w in weights)
    if [u for u, _ in pairs] != sorted({u for u, _ in pairs}):
        raise WeightsError("weights must be sorted by uid, each uid once")
    if not is_hex64(value["vector_hash"]):
        raise WeightsError("vector_hash is not 64 hex digits")
    inputs = {k: value[k] for k in ("netuid", "mechid", "epoch", "snapshot_block", "challenges", "burn_uid")}
    return WeightsAction(inputs, bundles, pairs, value["vector_hash"])


def _signed(envelope: env.Envelope, verify_signature: env.SignatureVerifier) -> bool:
    return len(envelope.signature) == env.SIGNATURE_BYTES and verify_signature(
        envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
    )


def check_bundles(
    action: WeightsAction,
    network: env.Network,
    validators: ValidatorSet,
    verify_signature: env.SignatureVerifier,
    held: Iterable[Bundle] = (),
) -> list[Bundle]:
    """The named bundles, each signed by a distinct member for this epoch; together a quorum.

    A bundle identical to one in ``held`` (verified when it arrived) is not verified again.
    """
    verified = {b.envelope.signature: b.envelope for b in held}
    bundles = []
    for index, envelope in enumerate(action.bundles):
        where = f"bundle {index} ({envelope.signer})"
        if envelope.network != network:
            raise WeightsError(f"{where} is signed for another network")
        try:
            bundle = parse_bundle(envelope)
        except WeightsError as exc:
            raise WeightsError(f"{where}: {exc}") from None
        if bundle.epoch != action.epoch:
            raise WeightsError(f"{where} is for epoch {bundle.epoch}, not {action.epoch}")
        if envelope.signer not in validators:
            raise WeightsError(f"{where}: the signer is not a validator")
        if bundles and envelope.signer <= bundles[-1].signer:
            raise WeightsError("bundles must be sorted by signer, one per validator")
        if verified.get(envelope.signature) != envelope and not _signed(envelope, verify_signature):
            raise WeightsError(f"{where}: the signature does not verify")
        bundles.append(bundle)
    if not validators.is_quorum(b.signer for b in bundles):
        raise WeightsError(
            f"the {len(bundles)} named bundles do not come from a quorum of the validators (more than 2/3 of the stake and at least {validators.quorum_size} validators)"
        )
    return bundles


def omitted(action: WeightsAction, held_before_cutoff: Collection[str]) -> list[str]:
    """Validators whose bundle we held before the cutoff and the action leaves out."""
    named = {b.signer for b in action.bundles}
    return sorted(s for s in held_before_cutoff if s not in named)


def resolve(
    bundles: Iterable[Bundle], report_set: Callable[[str], ReportSet | None]
) -> tuple[list[ReportSet], list[Bundle]]:
    """(report sets found, bundles whose report set we lack); a set must match its bundle."""
    found, missing = [], []
    for bundle in bundles:
        reports = report_set(bundle.root)
        if reports is None:
            missing.append(bundle)
            continue
        if (
            reports.root != bundle.root
            or reports.validator != bundle.signer
            or reports.epoch != bundle.epoch
            or len(reports.entries) != bundle.count
        ):
            raise WeightsError(
                f"the report set stored under root {bundle.root[:16]}… does not match {bundle.signer}'s bundle"
            )
        found.append(reports)
    return found, missing


def build_action(
    context: WeightsContext, bundles: Iterable[Bundle], report_sets: Iterable[ReportSet]
) -> WeightsAction:
    """The action a proposer proposes: every bundle it holds (one per validator), sorted."""
    ordered = sorted(bundles, key=lambda b: b.signer)
    weights, digest = compute(context, report_sets)
    return WeightsAction(
        context.inputs(), tuple(b.envelope for b in ordered), tuple(sorted(weights.items())), digest
    )
