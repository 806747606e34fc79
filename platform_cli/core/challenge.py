"""Challenge metadata: the schema of ``challenge.toml`` and its canonical form.

``parse_spec`` turns a decoded TOML mapping into a validated :class:`ChallengeSpec`,
naming the field at fault in every error. ``ChallengeSpec.to_canonical`` is the form that
is signed and hashed; ``spec_from_canonical`` reads it back (from a signed update).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from platform_cli.core import canonical

ABI_VERSIONS = (1,)
NETWORK_POLICIES = ("none",)
PPM = 1_000_000
MAX_MODULE_BYTES = 8 * 1024 * 1024

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)
MAX_VERSION_CHARS = 64
MAX_VERSION_NUMBER = 2**53 - 1
"""Version numbers every client parses exactly (JavaScript's safe integers, as npm's semver)."""
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


DEFAULT_SUBMISSIONS_PER_EPOCH = 4
MAX_SUBMISSIONS_PER_EPOCH = 1024


class SpecError(ValueError):
    """challenge metadata is invalid; the message names the field."""


def is_challenge_id(text: object) -> bool:
    """A challenge id is a slug: a-z, 0-9 and inner '-', at most 64 characters."""
    return isinstance(text, str) and _SLUG_RE.fullmatch(text) is not None


@dataclass(frozen=True)
class SemVer:
    """A semantic version ordered by precedence (SemVer 2.0.0 section 11)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[tuple[int, int | str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> SemVer:
        match = (
            _SEMVER_RE.fullmatch(text) if isinstance(text, str) and len(text) <= MAX_VERSION_CHARS else None
        )
        if not match:
            raise SpecError(
                f"version {text!r} is not a semantic version (MAJOR.MINOR.PATCH, at most {MAX_VERSION_CHARS} characters)"
            )
        numbers = [*match.group(1, 2, 3), *(p for p in (match.group(4) or "").split(".") if p.isdigit())]
        if any(int(number) > MAX_VERSION_NUMBER for number in numbers):
            raise SpecError(f"version {text!r} has a number above {MAX_VERSION_NUMBER}")
        pre: tuple[tuple[int, int | str], ...] = ()
        if match.group(4):
            pre = tuple((0, int(part)) if part.isdigit() else (1, part) for part in match.group(4).split("."))
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)), pre)

    def sort_key(self) -> tuple[Any, ...]:
        # A release ranks above any of its pre-releases.
        return (self.major, self.minor, self.patch, not self.prerelease, self.prerelease)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(part) for _, part in self.prerelease)
        return text


def version_key(text: str) -> tuple[Any, ...]:
    return SemVer.parse(text).sort_key()


@dataclass(frozen=True)
class ResourcePolicy:
    fuel: int
    memory_bytes: int
    wall_ms: int
    max_input_bytes: int
    max_output_bytes: int


@dataclass(frozen=True)
class Scoring:
    emission_ppm: int
    mechanism: int = 0


@dataclass(frozen=True)
class ChallengeSpec:
    id: str
    version: str
    name: str
    description: str
    abi: int
    entrypoint: str
    module_path: str
    module_sha256: str
    resources: ResourcePolicy
    scoring: Scoring
    min_validators: int
    network: str = "none"
    params: dict[str, Any] = field(default_factory=dict)
    submissions_per_epoch: int = DEFAULT_SUBMISSIONS_PER_EPOCH
    """How many files one miner may submit for this challenge in one epoch."""

    def to_canonical(self) -> dict[str, Any]:
        value = asdict(self)
        value["resources"] = asdict(self.resources)
        value["scoring"] = asdict(self.scoring)
        if self.submissions_per_epoch == DEFAULT_SUBMISSIONS_PER_EPOCH:
            # Left out at its default, so metadata signed before the field existed keeps
            # its canonical bytes, its hash and its signature.
            del value["submissions_per_epoch"]
        return value

    def canonical_bytes(self) -> bytes:
        return canonical.encode(self.to_canonical())

    def spec_sha256(self) -> str:
        """The hash of the signed metadata: names exactly what an evaluation ran under."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()


_LIMITS: dict[str, tuple[int, int]] = {
    "fuel": (1_000, 10**13),
    "memory_bytes": (64 * 1024, 4 * 1024**3),
    "wall_ms": (1, 600_000),
    "max_input_bytes": (0, 64 * 1024**2),
    "max_output_bytes": (1, 64 * 1024**2),
}


class _Fields:
    """Reads typed fields out of one TOML table, naming ``section.key`` in errors."""

    def __init__(self, table: Any, section: str) -> None:
        if not isinstance(table, dict):
            raise SpecError(f"[{section}] must be a table")
        self.table = table
        self.section = section

    def name(self, key: str) -> str:
        return f"{self.section}.{key}"

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                raise SpecError(f"{self.name(key)} is required")
            return default
        value = self.table[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise SpecError(f"{self.name(key)} must be an integer, got {value!r}")
        if not isinstance(value, kind):
            raise SpecError(f"{self.name(key)} must be a {kind.__name__}, got {value!r}")
        return value

    def bounded(self, key: str, low: int, high: int, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if not low <= value <= high:
            raise SpecError(f"{self.name(key)} = {value} is outside {low}..{high}")
        return value

    def reject_unknown(self, known: set[str]) -> None:
        unknown = sorted(set(self.table) - known)
        if unknown:
            raise SpecError(f"unknown field {self.name(unknown[0])}")


def parse_spec(doc: Any) -> ChallengeSpec:
    """Validate a decoded ``challenge.toml`` mapping."""
    root = _Fields(doc, "challenge.toml")
    root.reject_unknown({"challenge", "module", "resources", "network", "scoring", "params"})
    meta = _Fields(root.get("challenge", dict), "challenge")
    meta.reject_unknown(
        {
            "id",
            "version",
            "name",
            "description",
            "abi",
            "entrypoint",
            "min_validators",
            "submissions_per_epoch",
        }
    )
    challenge_id = meta.get("id", str)
    if not is_challenge_id(challenge_id):
        raise SpecError(f"challenge.id {challenge_id!r} is not a slug (a-z, 0-9, '-')")
    version = meta.get("version", str)
    try:
        SemVer.parse(version)
    except SpecError as exc:
        raise SpecError(f"challenge.{exc}") from None
    abi = meta.get("abi", int)
    if abi not in ABI_VERSIONS:
        raise SpecError(f"challenge.abi = {abi} is not supported (supported: {ABI_VERSIONS})")
    entrypoint = meta.get("entrypoint", str, "evaluate")
    if not _IDENT_RE.fullmatch(entrypoint):
        raise SpecError(f"challenge.entrypoint {entrypoint!r} is not an export name")

    module = _Fields(root.get("module", dict), "module")
    module.reject_unknown({"path", "sha256"})
    module_path = module.get("path", str)
    if not module_path or module_path.startswith("/") or ".." in module_path.split("/"):
        raise SpecError(f"module.path {module_path!r} must be a relative path inside the challenge")
    sha256 = module.get("sha256", str)
    if not _SHA256_RE.fullmatch(sha256):
        raise SpecError(f"module.sha256 {sha256!r} is not 64 lowercase hex digits")

    res = _Fields(root.get("resources", dict), "resources")
    res.reject_unknown(set(_LIMITS))
    resources = ResourcePolicy(**{key: res.bounded(key, *bounds) for key, bounds in _LIMITS.items()})

    net = _Fields(root.get("network", dict, {}), "network")
    net.reject_unknown({"policy"})
    policy = net.get("policy", str, "none")
    if policy not in NETWORK_POLICIES:
        raise SpecError(f"network.policy {policy!r} is not supported (only 'none' in ABI v1)")

    sc = _Fields(root.get("scoring", dict), "scoring")
    sc.reject_unknown({"emission_ppm", "mechanism"})
    scoring = Scoring(sc.bounded("emission_ppm", 0, PPM), sc.bounded("mechanism", 0, 255, 0))

    params = root.get("params", dict, {})
    try:
        canonical.check_value(params, path="params")
    except canonical.CanonicalError as exc:
        raise SpecError(str(exc)) from None

    return ChallengeSpec(
        id=challenge_id,
        version=version,
        name=meta.get("name", str),
        description=meta.get("description", str, ""),
        abi=abi,
        entrypoint=entrypoint,
        module_path=module_path,
        module_sha256=sha256,
        resources=resources,
        scoring=scoring,
        min_validators=meta.bounded("min_validators", 1, 1024, 1),
        network=policy,
        params=params,
        submissions_per_epoch=meta.bounded(
            "submissions_per_epoch", 1, MAX_SUBMISSIONS_PER_EPOCH, DEFAULT_SUBMISSIONS_PER_EPOCH
        ),
    )


def spec_from_canonical(value: Any) -> ChallengeSpec:
    """Read a spec back from its canonical (signed) form."""
    if not isinstance(value, dict):
        raise SpecError("challenge metadata must be a map")
    fields = _Fields(value, "challenge")
    fields.reject_unknown({f for f in ChallengeSpec.__dataclass_fields__})
    doc = {
        "challenge": {
            "id": fields.get("id", str),
            "version": fields.get("version", str),
            "name": fields.get("name", str),
            "description": fields.get("description", str),
            "abi": fields.get("abi", int),
            "entrypoint": fields.get("entrypoint", str),
            "min_validators": fields.get("min_validators", int),
            "submissions_per_epoch": fields.get("submissions_per_epoch", int, DEFAULT_SUBMISSIONS_PER_EPOCH),
        },
        "module": {"path": fields.get("module_path", str), "sha256": fields.get("module_sha256", str)},
        "resources": fields.get("resources", dict),
        "network": {"policy": fields.get("network", str)},
        "scoring": fields.get("scoring", dict),
        "params": fields.get("params", dict),
    }
    spec = parse_spec(doc)
    if spec.to_canonical() != value:
        raise SpecError("challenge metadata is not in canonical form")
    return spec
