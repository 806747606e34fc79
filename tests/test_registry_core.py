"""The challenge schema and the registry lifecycle, as pure functions."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from platform_cli.config import tomllib
from platform_cli.core.challenge import SemVer, SpecError, parse_spec, spec_from_canonical, version_key
from platform_cli.core.registry import (
    TRANSITIONS,
    Action,
    Event,
    Lifecycle,
    RegistryError,
    RegistryState,
    RegistryUpdate,
    apply_update,
    stage,
    transition,
)
from tests.conftest import FIXTURES

DOC = tomllib.loads((FIXTURES / "challenge" / "challenge.toml").read_text())


def spec(version: str = "1.0.0", challenge_id: str = "hello"):
    doc = copy.deepcopy(DOC)
    doc["challenge"]["version"] = version
    doc["challenge"]["id"] = challenge_id
    return parse_spec(doc)


def test_sample_spec_parses_and_round_trips() -> None:
    parsed = parse_spec(DOC)
    assert parsed.id == "hello" and parsed.resources.fuel == 10_000_000
    assert parsed.scoring.emission_ppm == 250_000 and parsed.network == "none"
    assert spec_from_canonical(parsed.to_canonical()) == parsed


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("challenge", "id", "Bad Id", "challenge.id"),
        ("challenge", "version", "1.0", "challenge.version"),
        ("challenge", "abi", 2, "challenge.abi"),
        ("challenge", "min_validators", 0, "challenge.min_validators"),
        ("module", "sha256", "abc", "module.sha256"),
        ("module", "path", "../escape.wasm", "module.path"),
        ("resources", "fuel", 1.5, "resources.fuel"),
        ("resources", "memory_bytes", 2**40, "resources.memory_bytes"),
        ("resources", "wall_ms", True, "resources.wall_ms"),
        ("network", "policy", "open", "network.policy"),
        ("scoring", "emission_ppm", 1_000_001, "scoring.emission_ppm"),
        ("challenge", "surprise", 1, "challenge.surprise"),
    ],
)
def test_spec_errors_name_the_field(section: str, key: str, value: object, message: str) -> None:
    doc = copy.deepcopy(DOC)
    doc[section][key] = value
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        parse_spec(doc)


def test_missing_required_field_is_named() -> None:
    doc = copy.deepcopy(DOC)
    del doc["resources"]["wall_ms"]
    with pytest.raises(SpecError, match=r"resources\.wall_ms is required"):
        parse_spec(doc)


def test_floats_in_params_are_refused() -> None:
    doc = copy.deepcopy(DOC)
    doc["params"] = {"threshold": 0.5}
    with pytest.raises(SpecError, match=r"params\.threshold"):
        parse_spec(doc)


def test_semver_precedence() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    assert sorted(ordered, key=version_key) == ordered
    assert str(SemVer.parse("1.2.3-rc.1")) == "1.2.3-rc.1"


def test_transition_table_is_the_documented_lifecycle() -> None:
    assert transition(Lifecycle.DRAFT, Event.ACTIVATE) is Lifecycle.ACTIVE
    assert transition(Lifecycle.ACTIVE, Event.DEPRECATE) is Lifecycle.DEPRECATED
    assert transition(Lifecycle.DEPRECATED, Event.RETIRE) is Lifecycle.RETIRED
    assert transition(Lifecycle.ACTIVE, Event.RETIRE) is Lifecycle.RETIRED
    for current in Lifecycle:
        for event in Event:
            if (current, event) not in TRANSITIONS:
                with pytest.raises(RegistryError):
                    transition(current, event)
    assert all(target is not Lifecycle.DRAFT for target in TRANSITIONS.values())


def states(registry: RegistryState) -> dict[tuple[str, str], str]:
    return {key: record.state.value for key, record in registry.versions.items()}


def test_full_lifecycle() -> None:
    registry = apply_update(RegistryState(), RegistryUpdate(Action.ADD, spec("1.0.0")))
    assert states(registry) == {("hello", "1.0.0"): "active"}
    registry = apply_update(registry, RegistryUpdate(Action.UPDATE, spec("1.1.0")))
    assert states(registry) == {("hello", "1.0.0"): "deprecated", ("hello", "1.1.0"): "active"}
    registry = apply_update(registry, RegistryUpdate(Action.RETIRE, spec("1.0.0")))
    registry = apply_update(registry, RegistryUpdate(Action.DEPRECATE, spec("1.1.0")))
    registry = apply_update(registry, RegistryUpdate(Action.RETIRE, spec("1.1.0")))
    assert set(states(registry).values()) == {"retired"}
    with pytest.raises(RegistryError, match="strictly increase"):
        apply_update(registry, RegistryUpdate(Action.UPDATE, spec("1.1.0")))
    registry = apply_update(registry, RegistryUpdate(Action.UPDATE, spec("2.0.0")))
    assert registry.active("hello").spec.version == "2.0.0"


def test_emergency_retire_of_an_active_version() -> None:
    registry = apply_update(RegistryState(), RegistryUpdate(Action.ADD, spec()))
    registry = apply_update(registry, RegistryUpdate(Action.RETIRE, spec()))
    assert states(registry) == {("hello", "1.0.0"): "retired"}


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ([(Action.UPDATE, "1.0.0")], "does not exist"),
        ([(Action.ADD, "1.0.0"), (Action.ADD, "2.0.0")], "already exists"),
        ([(Action.ADD, "1.0.0"), (Action.UPDATE, "0.9.0")], "strictly increase"),
        ([(Action.ADD, "1.0.0"), (Action.UPDATE, "1.0.0")], "strictly increase"),
        ([(Action.DEPRECATE, "1.0.0")], "no version"),
        (
            [(Action.ADD, "1.0.0"), (Action.RETIRE, "1.0.0"), (Action.DEPRECATE, "1.0.0")],
            "cannot deprecate a retired",
        ),
    ],
)
def test_invalid_sequences_are_refused(updates: list[tuple[Action, str]], message: str) -> None:
    registry = RegistryState()
    *prefix, last = updates
    for action, version in prefix:
        registry = apply_update(registry, RegistryUpdate(action, spec(version)))
    with pytest.raises(RegistryError, match=message):
        apply_update(registry, RegistryUpdate(last[0], spec(last[1])))


def test_deprecate_must_name_the_registered_metadata() -> None:
    registry = apply_update(RegistryState(), RegistryUpdate(Action.ADD, spec()))
    altered = dataclasses.replace(spec(), name="Renamed")
    with pytest.raises(RegistryError, match="differs"):
        apply_update(registry, RegistryUpdate(Action.DEPRECATE, altered))


def test_stage_records_a_draft_that_apply_activates() -> None:
    staged = stage(RegistryState(), RegistryUpdate(Action.ADD, spec()))
    assert states(staged) == {("hello", "1.0.0"): "draft"}
    assert states(apply_update(staged, RegistryUpdate(Action.ADD, spec()))) == {("hello", "1.0.0"): "active"}
    with pytest.raises(RegistryError, match="no version"):
        stage(staged, RegistryUpdate(Action.RETIRE, spec()))
    with pytest.raises(RegistryError, match="already proposed"):
        stage(staged, RegistryUpdate(Action.ADD, spec()))
