"""The challenge registry: a lifecycle state machine and ``apply``.

Theory of operation
-------------------
Every challenge version moves through ``draft -> active -> deprecated -> retired``, with
``active -> retired`` for emergencies. Only the sudo owner changes the registry, through
signed updates of kind ``registry.update`` whose body is
``{"action": ACTION, "challenge": <canonical ChallengeSpec>}``:

- ``add``: a new id; its first version becomes active.
- ``update``: a new version of a known id, strictly greater than every version the id has
  had; it becomes active and the previously active version is deprecated.
- ``deprecate``: the named active version becomes deprecated.
- ``retire``: the named active or deprecated version becomes retired.

A proposed update that has not been agreed yet is a *draft* (see ``stage``); the
consensus engine calls ``apply`` once validators commit to it. Both are pure: state in,
new state out, or :class:`RegistryError` saying why not. Transitions are a table.

Committed history. ``apply`` takes the block from which the committed update takes
effect and appends one :class:`Transition` per version whose state it changed, in commit
order. Effective blocks never decrease along the history, so the registry *as of* any
block is the fold of a prefix of it (:meth:`RegistryState.lifecycle_at`,
:meth:`RegistryState.active_at`): "which version of a challenge was active at epoch E"
has one answer, the same on every validator, whatever was committed since.

Emission budget. The active versions of one Bittensor mechanism share its emission:
``stage`` and ``apply`` refuse an add or update that would take the mechanism's active
total of ``emission_ppm`` over 1,000,000. Every state of the history is one that
``apply`` produced, so no block ever sees the budget exceeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType

from platform_cli.core.challenge import PPM, ChallengeSpec, SpecError, spec_from_canonical, version_key
from platform_cli.core.envelope import Envelope

UPDATE_KIND = "registry.update"
MAX_BLOCK = 2**63 - 1


class Lifecycle(str, Enum):
    DRAFT = "draft"
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


class Action(str, Enum):
    ADD = "add"
    UPDATE = "update"
    DEPRECATE = "deprecate"
    RETIRE = "retire"


class Event(str, Enum):
    ACTIVATE = "activate"
    SUPERSEDE = "supersede"
    DEPRECATE = "deprecate"
    RETIRE = "retire"


TRANSITIONS: Mapping[tuple[Lifecycle, Event], Lifecycle] = MappingProxyType(
    {
        (Lifecycle.DRAFT, Event.ACTIVATE): Lifecycle.ACTIVE,
        (Lifecycle.ACTIVE, Event.SUPERSEDE): Lifecycle.DEPRECATED,
        (Lifecycle.ACTIVE, Event.DEPRECATE): Lifecycle.DEPRECATED,
        (Lifecycle.ACTIVE, Event.RETIRE): Lifecycle.RETIRED,
        (Lifecycle.DEPRECATED, Event.RETIRE): Lifecycle.RETIRED,
    }
)


class RegistryError(ValueError):
    """An update cannot be applied to the registry."""


def transition(current: Lifecycle, event: Event) -> Lifecycle:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise RegistryError(f"cannot {event.value} a {current.value} version") from None


@dataclass(frozen=True)
class VersionRecord:
    spec: ChallengeSpec
    state: Lifecycle
    update_id: str = ""


@dataclass(frozen=True)
class Transition:
    """One committed change of one version's state, in effect from ``effective_block``."""

    update_id: str
    challenge: str
    version: str
    previous: Lifecycle
    state: Lifecycle
    effective_block: int


@dataclass(frozen=True)
class RegistryState:
    """All versions of all challenges, keyed by ``(id, version)``, and the committed
    history that led to their non-draft states."""

    versions: Mapping[tuple[str, str], VersionRecord] = field(default_factory=dict)
    history: tuple[Transition, ...] = ()

    def of(self, challenge_id: str) -> list[VersionRecord]:
        records = [r for (cid, _), r in self.versions.items() if cid == challenge_id]
        return sorted(records, key=lambda r: version_key(r.spec.version))

    def active(self, challenge_id: str) -> VersionRecord | None:
        return next((r for r in self.of(challenge_id) if r.state is Lifecycle.ACTIVE), None)

    def with_record(self, record: VersionRecord) -> RegistryState:
        versions = dict(self.versions)
        versions[(record.spec.id, record.spec.version)] = record
        return replace(self, versions=versions)

    @property
    def last_effective_block(self) -> int:
        return self.history[-1].effective_block if self.history else 0

    def lifecycle_at(self, block: int) -> dict[tuple[str, str], Lifecycle]:
        """The state of every version that had a committed change in effect at ``block``."""
        states: dict[tuple[str, str], Lifecycle] = {}
        for change in self.history:
            if change.effective_block > block:
                break  # effective blocks never decrease: the rest is later still
            states[(change.challenge, change.version)] = change.state
        return states

    def active_at(self, block: int) -> dict[str, VersionRecord]:
        """Challenge id -> its version active at ``block`` by the committed history."""
        return {
            key[0]: VersionRecord(self.versions[key].spec, Lifecycle.ACTIVE, self.versions[key].update_id)
            for key, state in self.lifecycle_at(block).items()
            if state is Lifecycle.ACTIVE
        }


def active_emission(state: RegistryState) -> dict[int, int]:
    """Mechanism id -> the sum of ``emission_ppm`` over its active versions."""
    totals: dict[int, int] = {}
    for record in state.versions.values():
        if record.state is Lifecycle.ACTIVE:
            mechanism = record.spec.scoring.mechanism
            totals[mechanism] = totals.get(mechanism, 0) + record.spec.scoring.emission_ppm
    return totals


def _check_emission(before: RegistryState, after: RegistryState, spec: ChallengeSpec) -> None:
    """Refuse a change that takes a mechanism's active emission over the budget.

    A change that lowers an over-budget total (a registry from before the rule) passes,
    so such a registry can always be brought back within the budget.
    """
    old = active_emission(before)
    for mechanism, total in sorted(active_emission(after).items()):
        if total > PPM and total > old.get(mechanism, 0):
            raise RegistryError(
                f"activating {spec.id} {spec.version} ({spec.scoring.emission_ppm} ppm) would make the "
                f"active emission of mechanism {mechanism} {total} ppm, over {PPM}: deprecate or retire "
                "another challenge of that mechanism first, or lower the share"
            )


@dataclass(frozen=True)
class RegistryUpdate:
    action: Action
    spec: ChallengeSpec


def parse_update(envelope: Envelope) -> RegistryUpdate:
    """Read the body of a ``registry.update`` envelope."""
    if envelope.kind != UPDATE_KIND:
        raise RegistryError(f"kind {envelope.kind!r} is not {UPDATE_KIND!r}")
    body = envelope.body
    if not isinstance(body, dict) or set(body) != {"action", "challenge"}:
        raise RegistryError("update body must have exactly 'action' and 'challenge'")
    try:
        action = Action(body["action"])
    except ValueError:
        raise RegistryError(f"unknown action {body['action']!r}") from None
    try:
        spec = spec_from_canonical(body["challenge"])
    except SpecError as exc:
        raise RegistryError(f"challenge metadata: {exc}") from None
    return RegistryUpdate(action, spec)


def authorize(envelope: Envelope, sudo: str) -> RegistryUpdate:
    """The parsed update, if the (already verified) envelope is from the sudo owner."""
    if envelope.signer != sudo:
        raise RegistryError(f"signed by {envelope.signer}, not by the sudo owner {sudo}")
    return parse_update(envelope)


def stage(state: RegistryState, update: RegistryUpdate) -> RegistryState:
    """Check that ``update`` applies, and for add/update record its version as a draft."""
    pending = state.versions.get((update.spec.id, update.spec.version))
    if (
        update.action in (Action.ADD, Action.UPDATE)
        and pending is not None
        and pending.state is Lifecycle.DRAFT
    ):
        raise RegistryError(f"{update.spec.id} {update.spec.version} is already proposed and pending")
    apply_update(state, update)
    if update.action in (Action.ADD, Action.UPDATE):
        return state.with_record(VersionRecord(update.spec, Lifecycle.DRAFT))
    return state


def check_effective_block(state: RegistryState, effective_block: int) -> None:
    """A committed update takes effect at a block no earlier than the previous one's."""
    if isinstance(effective_block, bool) or not isinstance(effective_block, int):
        raise RegistryError(f"effective block {effective_block!r} is not an integer")
    if not 0 <= effective_block <= MAX_BLOCK:
        raise RegistryError(f"effective block {effective_block} is outside 0..{MAX_BLOCK}")
    if effective_block < state.last_effective_block:
        raise RegistryError(
            f"effective block {effective_block} is before block {state.last_effective_block}, "
            "where the previous committed update takes effect"
        )


def apply(state: RegistryState, envelope: Envelope, sudo: str, *, effective_block: int) -> RegistryState:
    """Apply a verified, agreed update envelope; the entry point of the consensus engine.

    The changes take effect from ``effective_block`` and are appended to the history.
    """
    check_effective_block(state, effective_block)
    update = authorize(envelope, sudo)
    update_id = envelope.message_id()
    after = apply_update(state, update, update_id=update_id)
    changes = [
        Transition(
            update_id,
            key[0],
            key[1],
            state.versions[key].state if key in state.versions else Lifecycle.DRAFT,
            record.state,
            effective_block,
        )
        for key, record in sorted(
            after.versions.items(), key=lambda item: (item[0][0], version_key(item[0][1]))
        )
        if record.state is not Lifecycle.DRAFT
        and (key not in state.versions or state.versions[key].state is not record.state)
    ]
    return replace(after, history=(*state.history, *changes))


def apply_update(state: RegistryState, update: RegistryUpdate, update_id: str = "") -> RegistryState:
    spec = update.spec
    key = (spec.id, spec.version)
    existing = state.versions.get(key)
    history = [r for r in state.of(spec.id) if r.state is not Lifecycle.DRAFT]

    if update.action in (Action.ADD, Action.UPDATE):
        if update.action is Action.ADD and history:
            raise RegistryError(f"challenge {spec.id!r} already exists; use action 'update'")
        if update.action is Action.UPDATE and not history:
            raise RegistryError(f"challenge {spec.id!r} does not exist; use action 'add'")
        if history and version_key(spec.version) <= version_key(history[-1].spec.version):
            raise RegistryError(
                f"version {spec.version} of {spec.id!r} is not greater than "
                f"{history[-1].spec.version}; versions must strictly increase"
            )
        new_state = state
        previous = state.active(spec.id)
        if previous is not None:
            new_state = new_state.with_record(
                replace(previous, state=transition(previous.state, Event.SUPERSEDE))
            )
        draft = existing if existing is not None else VersionRecord(spec, Lifecycle.DRAFT)
        if draft.spec != spec:
            raise RegistryError(f"{spec.id} {spec.version} was proposed with other metadata")
        new_state = new_state.with_record(
            VersionRecord(spec, transition(draft.state, Event.ACTIVATE), update_id)
        )
        _check_emission(state, new_state, spec)
        return new_state

    if existing is None or existing.state is Lifecycle.DRAFT:
        raise RegistryError(f"challenge {spec.id!r} has no version {spec.version} to {update.action.value}")
    if existing.spec != spec:
        raise RegistryError(f"metadata of {spec.id} {spec.version} differs from the registered version")
    event = Event.DEPRECATE if update.action is Action.DEPRECATE else Event.RETIRE
    return state.with_record(
        replace(existing, state=transition(existing.state, event), update_id=update_id or existing.update_id)
    )
