"""The challenge schema and the registry lifecycle, as pure functions."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_cli.config import DEVNET_SUDO, tomllib
from platform_cli.core import envelope as env
from platform_cli.core.challenge import (
    DEFAULT_SUBMISSIONS_PER_EPOCH,
    MAX_SUBMISSIONS_PER_EPOCH,
    MAX_VERSION_NUMBER,
    PPM,
    SemVer,
    SpecError,
    is_challenge_id,
    parse_spec,
    spec_from_canonical,
    version_key,
)
from platform_cli.core.registry import (
    MAX_BLOCK,
    TRANSITIONS,
    UPDATE_KIND,
    Action,
    Event,
    Lifecycle,
    RegistryError,
    RegistryState,
    RegistryUpdate,
    VersionRecord,
    active_emission,
    apply,
    apply_update,
    stage,
    transition,
)
from tests.conftest import FIXTURES, REPO

DOC = tomllib.loads((FIXTURES / "challenge" / "challenge.toml").read_text())
SHIPPED = [REPO / "challenges" / name / "challenge.toml" for name in ("sort", "predict", "compress")] + [
    FIXTURES / "challenge" / "challenge.toml"
]


def spec(
    version: str = "1.0.0", challenge_id: str = "hello", emission_ppm: int = 100_000, mechanism: int = 0
):
    doc = copy.deepcopy(DOC)
    doc["challenge"]["version"] = version
    doc["challenge"]["id"] = challenge_id
    doc["scoring"] = {"emission_ppm": emission_ppm, "mechanism": mechanism}
    return parse_spec(doc)


def signed(action: Action, challenge, seq: int = 1) -> env.Envelope:
    """An update envelope from the sudo key (``apply`` takes envelopes already verified)."""
    return env.seal(
        network=env.Network(100, "platform-devnet"),
        kind=UPDATE_KIND,
        signer=DEVNET_SUDO,
        scheme="sr25519",
        seq=seq,
        ts_ms=seq,
        body={"action": action.value, "challenge": challenge.to_canonical()},
        sign=lambda payload: b"\x00" * 64,
    )


def commit(registry: RegistryState, action: Action, challenge, block: int, seq: int = 1) -> RegistryState:
    return apply(registry, signed(action, challenge, seq), DEVNET_SUDO, effective_block=block)


def test_sample_spec_parses_and_round_trips() -> None:
    parsed = parse_spec(DOC)
    assert parsed.id == "hello" and parsed.resources.fuel == 10_000_000
    assert parsed.scoring.emission_ppm == 100_000 and parsed.network == "none"
    assert spec_from_canonical(parsed.to_canonical()) == parsed


def test_spec_hash_covers_every_field() -> None:
    base = spec()
    assert len(base.spec_sha256()) == 64 and base.spec_sha256() == spec().spec_sha256()
    more_fuel = dataclasses.replace(base, resources=dataclasses.replace(base.resources, fuel=10_000_001))
    assert more_fuel.spec_sha256() != base.spec_sha256()
    assert dataclasses.replace(base, params={"k": 1}).spec_sha256() != base.spec_sha256()


@pytest.mark.parametrize("text", ["hello\n", "Hello", "-hello", "hello-", "", "a" * 65, None, 7])
def test_challenge_ids_are_whole_slugs(text: object) -> None:
    assert not is_challenge_id(text)
    if isinstance(text, str):
        doc = copy.deepcopy(DOC)
        doc["challenge"]["id"] = text
        with pytest.raises(SpecError, match=r"challenge\.id"):
            parse_spec(doc)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("challenge", "version", "1.0.0\n"),
        ("module", "sha256", "a" * 64 + "\n"),
        ("challenge", "entrypoint", "run\n"),
    ],
)
def test_a_trailing_newline_is_not_part_of_a_valid_field(section: str, key: str, value: str) -> None:
    doc = copy.deepcopy(DOC)
    doc[section][key] = value
    with pytest.raises(SpecError, match=rf"{section}\.{key}"):
        parse_spec(doc)


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


def test_transition_table_is_exactly_the_documented_transitions() -> None:
    assert dict(TRANSITIONS) == {
        (Lifecycle.DRAFT, Event.ACTIVATE): Lifecycle.ACTIVE,
        (Lifecycle.ACTIVE, Event.SUPERSEDE): Lifecycle.DEPRECATED,
        (Lifecycle.ACTIVE, Event.DEPRECATE): Lifecycle.DEPRECATED,
        (Lifecycle.ACTIVE, Event.RETIRE): Lifecycle.RETIRED,
        (Lifecycle.DEPRECATED, Event.RETIRE): Lifecycle.RETIRED,
    }


def test_versions_are_ordered_numerically_not_as_text() -> None:
    registry = apply_update(RegistryState(), RegistryUpdate(Action.ADD, spec("1.9.0")))
    registry = apply_update(registry, RegistryUpdate(Action.UPDATE, spec("1.10.0")))
    assert registry.active("hello").spec.version == "1.10.0"
    backwards = apply_update(RegistryState(), RegistryUpdate(Action.ADD, spec("1.10.0")))
    with pytest.raises(RegistryError, match=r"1\.9\.0 of 'hello' is not greater than 1\.10\.0"):
        apply_update(backwards, RegistryUpdate(Action.UPDATE, spec("1.9.0")))


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
        (
            [(Action.ADD, "1.0.0"), (Action.DEPRECATE, "1.0.0"), (Action.DEPRECATE, "1.0.0")],
            "cannot deprecate a deprecated version",
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


# ---------------------------------------------------------------- committed history


def test_history_records_each_change_with_its_effective_block() -> None:
    registry = commit(RegistryState(), Action.ADD, spec("1.0.0"), block=10)
    registry = commit(registry, Action.UPDATE, spec("1.1.0"), block=50, seq=2)
    changes = [(t.version, t.previous.value, t.state.value, t.effective_block) for t in registry.history]
    assert changes == [
        ("1.0.0", "draft", "active", 10),
        ("1.0.0", "active", "deprecated", 50),
        ("1.1.0", "draft", "active", 50),
    ]
    assert {t.update_id for t in registry.history[1:]} == {
        signed(Action.UPDATE, spec("1.1.0"), 2).message_id()
    }
    assert registry.active_at(9) == {}
    assert registry.active_at(10)["hello"].spec.version == "1.0.0"
    assert registry.active_at(49)["hello"].spec.version == "1.0.0"
    assert registry.active_at(50)["hello"].spec.version == "1.1.0"
    assert registry.lifecycle_at(49) == {("hello", "1.0.0"): Lifecycle.ACTIVE}
    assert registry.lifecycle_at(10**12) == {
        ("hello", "1.0.0"): Lifecycle.DEPRECATED,
        ("hello", "1.1.0"): Lifecycle.ACTIVE,
    }


def test_a_draft_is_not_history() -> None:
    staged = stage(RegistryState(), RegistryUpdate(Action.ADD, spec()))
    assert staged.history == () and staged.active_at(10**9) == {}
    committed = commit(staged, Action.ADD, spec(), block=0)
    assert [t.previous for t in committed.history] == [Lifecycle.DRAFT]
    assert committed.active_at(0)["hello"].state is Lifecycle.ACTIVE


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (9, "before block 10"),
        (-1, "outside"),
        (2**63, "outside"),
        (True, "not an integer"),
        ("10", "not an integer"),
    ],
)
def test_effective_blocks_never_go_back(block: object, message: str) -> None:
    registry = commit(RegistryState(), Action.ADD, spec("1.0.0"), block=10)
    with pytest.raises(RegistryError, match=message):
        commit(registry, Action.UPDATE, spec("1.1.0"), block=block, seq=2)  # type: ignore[arg-type]
    assert commit(registry, Action.UPDATE, spec("1.1.0"), block=10, seq=2).active_at(10)[
        "hello"
    ].spec.version == ("1.1.0")


def test_a_refused_update_leaves_history_untouched() -> None:
    registry = commit(RegistryState(), Action.ADD, spec("1.0.0"), block=10)
    with pytest.raises(RegistryError, match="already exists"):
        commit(registry, Action.ADD, spec("2.0.0"), block=20, seq=2)
    assert len(registry.history) == 1


# ---------------------------------------------------------------- emission budget


def test_an_update_over_the_emission_budget_is_refused_by_stage_and_apply() -> None:
    registry = commit(RegistryState(), Action.ADD, spec(challenge_id="a", emission_ppm=700_000), block=0)
    over = RegistryUpdate(Action.ADD, spec(challenge_id="b", emission_ppm=300_001))
    message = r"active emission of mechanism 0 1000001 ppm, over 1000000"
    with pytest.raises(RegistryError, match=message):
        stage(registry, over)
    with pytest.raises(RegistryError, match=message):
        commit(registry, Action.ADD, over.spec, block=0, seq=2)
    # Exactly the budget fits; another mechanism has its own budget.
    full = commit(registry, Action.ADD, spec(challenge_id="b", emission_ppm=300_000), block=0, seq=2)
    full = commit(full, Action.ADD, spec(challenge_id="c", emission_ppm=PPM, mechanism=1), block=0, seq=3)
    assert active_emission(full) == {0: PPM, 1: PPM}
    # A new version replaces its predecessor's share: a raise must fit, a cut always does.
    with pytest.raises(RegistryError, match="over 1000000"):
        apply_update(full, RegistryUpdate(Action.UPDATE, spec("1.1.0", "a", 700_001)))
    cut = apply_update(full, RegistryUpdate(Action.UPDATE, spec("1.1.0", "a", 600_000)))
    assert active_emission(cut) == {0: 900_000, 1: PPM}
    # Moving a challenge to a full mechanism is refused like any other raise there.
    with pytest.raises(RegistryError, match="mechanism 1"):
        apply_update(full, RegistryUpdate(Action.UPDATE, spec("1.1.0", "a", 1, mechanism=1)))


def test_a_registry_over_budget_from_before_the_rule_can_be_brought_back() -> None:
    legacy = RegistryState(
        {
            ("a", "1.0.0"): VersionRecord(spec(challenge_id="a", emission_ppm=700_000), Lifecycle.ACTIVE),
            ("b", "1.0.0"): VersionRecord(spec(challenge_id="b", emission_ppm=550_000), Lifecycle.ACTIVE),
        }
    )
    lowered = apply_update(legacy, RegistryUpdate(Action.UPDATE, spec("1.1.0", "a", 600_000)))
    assert active_emission(lowered) == {0: 1_150_000}
    with pytest.raises(RegistryError, match="over 1000000"):
        apply_update(lowered, RegistryUpdate(Action.ADD, spec(challenge_id="c", emission_ppm=1)))
    retired = apply_update(
        lowered, RegistryUpdate(Action.RETIRE, spec(challenge_id="b", emission_ppm=550_000))
    )
    assert active_emission(retired) == {0: 600_000}


def test_the_shipped_challenges_can_all_be_active_at_once() -> None:
    registry = RegistryState()
    for block, path in enumerate(SHIPPED):
        shipped = parse_spec(tomllib.loads(path.read_text()))
        registry = commit(registry, Action.ADD, shipped, block=block, seq=block + 1)
    assert set(registry.active_at(len(SHIPPED))) == {"sort", "predict", "compress", "hello"}
    assert active_emission(registry) == {0: PPM}


_ACTIONS = st.sampled_from(list(Action))
_STEP = st.tuples(
    _ACTIONS,
    st.sampled_from(["a", "b", "c"]),
    st.integers(0, 5),  # minor version
    st.sampled_from([0, 1, 150_000, 333_333, 400_000, 600_000, 999_999, PPM]),
    st.sampled_from([0, 1]),  # mechanism
    st.integers(0, 3),  # blocks after the previous commit
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, max_size=40))
def test_no_update_sequence_ever_takes_a_mechanism_over_budget(steps: list[tuple]) -> None:
    """Random sequences of updates (most refused): the active total of every mechanism
    stays within the budget in the committed state and at every block of the history,
    and an add or update is refused for emission only when it would really exceed it."""
    registry, block = RegistryState(), 0
    for seq, (action, cid, minor, ppm, mechanism, gap) in enumerate(steps, start=1):
        block += gap
        candidate = spec(f"1.{minor}.0", cid, ppm, mechanism)
        if action in (Action.DEPRECATE, Action.RETIRE):
            known = [r.spec for r in registry.of(cid) if r.state is not Lifecycle.DRAFT]
            candidate = known[-1] if known else candidate
        try:
            registry = commit(registry, action, candidate, block=block, seq=seq)
        except RegistryError as exc:
            if "over 1000000" in str(exc):
                previous = registry.active(cid)
                others = sum(
                    r.spec.scoring.emission_ppm
                    for r in registry.versions.values()
                    if r.state is Lifecycle.ACTIVE
                    and r.spec.scoring.mechanism == mechanism
                    and r is not previous
                )
                assert others + ppm > PPM
        totals = active_emission(registry)
        assert all(total <= PPM for total in totals.values()), totals
    for at in range(block + 1):
        per_mechanism: dict[int, int] = {}
        for record in registry.active_at(at).values():
            m = record.spec.scoring.mechanism
            per_mechanism[m] = per_mechanism.get(m, 0) + record.spec.scoring.emission_ppm
        assert all(total <= PPM for total in per_mechanism.values()), (at, per_mechanism)
    assert [t.effective_block for t in registry.history] == sorted(
        t.effective_block for t in registry.history
    )


def with_body(body: object, kind: str = UPDATE_KIND, signer: str = DEVNET_SUDO) -> env.Envelope:
    return env.seal(
        network=env.Network(100, "platform-devnet"),
        kind=kind,
        signer=signer,
        scheme="sr25519",
        seq=1,
        ts_ms=1,
        body=body,
        sign=lambda payload: b"\x00" * 64,
    )


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        (with_body({}, kind="registry.vote"), "kind 'registry.vote' is not 'registry.update'"),
        (with_body(["action", "challenge"]), "update body must have exactly 'action' and 'challenge'"),
        (with_body({"action": "add"}), "update body must have exactly 'action' and 'challenge'"),
        (with_body({"action": "grow", "challenge": {}}), "unknown action 'grow'"),
        (with_body({"action": "add", "challenge": {}}), "challenge metadata: "),
        (
            with_body({}, signer="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"),
            f"signed by 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY, not by the sudo owner {DEVNET_SUDO}",
        ),
    ],
)
def test_an_update_that_cannot_be_read_is_refused_saying_why(envelope: env.Envelope, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        apply(RegistryState(), envelope, DEVNET_SUDO, effective_block=1)
    assert str(info.value).startswith(message)


def test_the_effective_block_range_includes_its_bounds_and_never_goes_back() -> None:
    registry = commit(RegistryState(), Action.ADD, spec("1.0.0"), MAX_BLOCK)
    assert registry.last_effective_block == MAX_BLOCK
    with pytest.raises(RegistryError) as info:
        commit(registry, Action.UPDATE, spec("1.1.0"), MAX_BLOCK - 1)
    assert str(info.value) == (
        f"effective block {MAX_BLOCK - 1} is before block {MAX_BLOCK}, "
        "where the previous committed update takes effect"
    )


# ---------------------------------------------------------------- which update changed a version


def test_each_version_names_the_committed_update_that_last_changed_it() -> None:
    add, update, deprecate = (
        signed(Action.ADD, spec("1.0.0"), 1),
        signed(Action.UPDATE, spec("1.1.0"), 2),
        signed(Action.DEPRECATE, spec("1.1.0"), 3),
    )
    registry = apply(RegistryState(), add, DEVNET_SUDO, effective_block=1)
    assert registry.versions[("hello", "1.0.0")].update_id == add.message_id()
    assert registry.active_at(1)["hello"].update_id == add.message_id()
    registry = apply(registry, update, DEVNET_SUDO, effective_block=2)
    assert registry.versions[("hello", "1.1.0")].update_id == update.message_id()
    assert registry.active_at(2)["hello"].update_id == update.message_id()
    # A superseded version keeps the update that activated it.
    assert registry.versions[("hello", "1.0.0")].update_id == add.message_id()
    registry = apply(registry, deprecate, DEVNET_SUDO, effective_block=3)
    assert registry.versions[("hello", "1.1.0")].update_id == deprecate.message_id()


def test_an_uncommitted_update_names_no_update() -> None:
    registry = apply_update(RegistryState(), RegistryUpdate(Action.ADD, spec()))
    assert registry.versions[("hello", "1.0.0")].update_id == ""
    registry = apply_update(registry, RegistryUpdate(Action.DEPRECATE, spec()), update_id="u2")
    registry = apply_update(registry, RegistryUpdate(Action.RETIRE, spec()))
    assert registry.versions[("hello", "1.0.0")] == VersionRecord(spec(), Lifecycle.RETIRED, "u2")


def test_history_lists_only_changed_versions_in_version_order() -> None:
    registry = commit(RegistryState(), Action.ADD, spec("1.9.0", "b"), block=1)
    registry = commit(registry, Action.ADD, spec("1.0.0", "a"), block=2, seq=2)
    registry = commit(registry, Action.UPDATE, spec("1.10.0", "b"), block=3, seq=3)
    changes = [(t.challenge, t.version, t.state.value, t.effective_block) for t in registry.history]
    assert changes == [
        ("b", "1.9.0", "active", 1),
        ("a", "1.0.0", "active", 2),
        ("b", "1.9.0", "deprecated", 3),  # 1.9.0 before 1.10.0: by version, not by text
        ("b", "1.10.0", "active", 3),
    ]


def test_a_draft_must_be_committed_with_the_metadata_it_was_proposed_with() -> None:
    staged = stage(RegistryState(), RegistryUpdate(Action.ADD, spec()))
    renamed = dataclasses.replace(spec(), name="Renamed")
    with pytest.raises(RegistryError) as info:
        apply_update(staged, RegistryUpdate(Action.ADD, renamed))
    assert str(info.value) == "hello 1.0.0 was proposed with other metadata"


def test_the_emission_refusal_says_what_to_do() -> None:
    full = apply_update(RegistryState(), RegistryUpdate(Action.ADD, spec(challenge_id="a", emission_ppm=PPM)))
    with pytest.raises(RegistryError) as info:
        apply_update(full, RegistryUpdate(Action.ADD, spec(challenge_id="b", emission_ppm=1)))
    assert str(info.value) == (
        "activating b 1.0.0 (1 ppm) would make the active emission of mechanism 0 1000001 ppm, "
        "over 1000000: deprecate or retire another challenge of that mechanism first, or lower the share"
    )


def test_an_over_budget_registry_may_replace_a_share_with_an_equal_one() -> None:
    legacy = RegistryState(
        {
            ("a", "1.0.0"): VersionRecord(spec(challenge_id="a", emission_ppm=700_000), Lifecycle.ACTIVE),
            ("b", "1.0.0"): VersionRecord(spec(challenge_id="b", emission_ppm=550_000), Lifecycle.ACTIVE),
        }
    )
    same = apply_update(legacy, RegistryUpdate(Action.UPDATE, spec("1.1.0", "a", 700_000)))
    assert active_emission(same) == {0: 1_250_000}
    with pytest.raises(RegistryError, match="1250001 ppm"):
        apply_update(legacy, RegistryUpdate(Action.UPDATE, spec("1.1.0", "a", 700_001)))


def test_a_spec_built_around_the_parser_cannot_exceed_the_budget_alone() -> None:
    """``parse_spec`` caps a share at the budget; a spec built directly is still refused."""
    base = spec(mechanism=3)
    greedy = dataclasses.replace(base, scoring=dataclasses.replace(base.scoring, emission_ppm=PPM + 1))
    with pytest.raises(RegistryError, match="mechanism 3 1000001 ppm, over 1000000"):
        apply_update(RegistryState(), RegistryUpdate(Action.ADD, greedy))


# ---------------------------------------------------------------- challenge metadata, exactly

_DELETE = object()


def edited(path: str, value: object) -> dict:
    """The sample document with ``section.key`` set to ``value`` (or deleted)."""
    doc = copy.deepcopy(DOC)
    *sections, key = path.split(".")
    table = doc
    for section in sections:
        table = table.setdefault(section, {})
    if value is _DELETE:
        del table[key]
    else:
        table[key] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("challenge.id", "Bad Id", "challenge.id 'Bad Id' is not a slug (a-z, 0-9, '-')"),
        ("challenge.id", 7, "challenge.id must be a str, got 7"),
        (
            "challenge.version",
            "1.0",
            "challenge.version '1.0' is not a semantic version (MAJOR.MINOR.PATCH, at most 64 characters)",
        ),
        (
            "challenge.version",
            "1.0.0-" + "a" * 59,
            f"challenge.version '1.0.0-{'a' * 59}' is not a semantic version "
            "(MAJOR.MINOR.PATCH, at most 64 characters)",
        ),
        (
            "challenge.version",
            f"{MAX_VERSION_NUMBER + 1}.0.0",
            f"challenge.version '{MAX_VERSION_NUMBER + 1}.0.0' has a number above {MAX_VERSION_NUMBER}",
        ),
        (
            "challenge.version",
            f"0.{MAX_VERSION_NUMBER + 1}.0",
            f"challenge.version '0.{MAX_VERSION_NUMBER + 1}.0' has a number above {MAX_VERSION_NUMBER}",
        ),
        (
            "challenge.version",
            f"0.0.{MAX_VERSION_NUMBER + 1}",
            f"challenge.version '0.0.{MAX_VERSION_NUMBER + 1}' has a number above {MAX_VERSION_NUMBER}",
        ),
        (
            "challenge.version",
            f"0.0.0-rc.{MAX_VERSION_NUMBER + 1}",
            f"challenge.version '0.0.0-rc.{MAX_VERSION_NUMBER + 1}' has a number above {MAX_VERSION_NUMBER}",
        ),
        ("challenge.abi", 2, "challenge.abi = 2 is not supported (supported: (1,))"),
        ("challenge.abi", True, "challenge.abi must be an integer, got True"),
        ("challenge.entrypoint", "run-it", "challenge.entrypoint 'run-it' is not an export name"),
        ("challenge.entrypoint", "a" * 65, f"challenge.entrypoint '{'a' * 65}' is not an export name"),
        ("challenge.name", _DELETE, "challenge.name is required"),
        ("challenge.name", b"Hello", "challenge.name must be a str, got b'Hello'"),
        ("challenge.min_validators", 0, "challenge.min_validators = 0 is outside 1..1024"),
        ("challenge.min_validators", 1025, "challenge.min_validators = 1025 is outside 1..1024"),
        ("challenge.submissions_per_epoch", 0, "challenge.submissions_per_epoch = 0 is outside 1..1024"),
        (
            "challenge.submissions_per_epoch",
            1025,
            "challenge.submissions_per_epoch = 1025 is outside 1..1024",
        ),
        ("challenge.surprise", 1, "unknown field challenge.surprise"),
        ("extra", {}, "unknown field challenge.toml.extra"),
        ("module", "hello.wasm", "challenge.toml.module must be a dict, got 'hello.wasm'"),
        ("module.path", "", "module.path '' must be a relative path inside the challenge"),
        ("module.path", "/abs.wasm", "module.path '/abs.wasm' must be a relative path inside the challenge"),
        (
            "module.path",
            "a/../b.wasm",
            "module.path 'a/../b.wasm' must be a relative path inside the challenge",
        ),
        ("module.sha256", "A" * 64, f"module.sha256 '{'A' * 64}' is not 64 lowercase hex digits"),
        ("module.size", 1, "unknown field module.size"),
        ("resources.fuel", 999, "resources.fuel = 999 is outside 1000..10000000000000"),
        ("resources.fuel", 10**13 + 1, "resources.fuel = 10000000000001 is outside 1000..10000000000000"),
        ("resources.memory_bytes", 65535, "resources.memory_bytes = 65535 is outside 65536..4294967296"),
        (
            "resources.memory_bytes",
            2**32 + 1,
            "resources.memory_bytes = 4294967297 is outside 65536..4294967296",
        ),
        ("resources.wall_ms", 0, "resources.wall_ms = 0 is outside 1..600000"),
        ("resources.wall_ms", 600_001, "resources.wall_ms = 600001 is outside 1..600000"),
        ("resources.max_input_bytes", -1, "resources.max_input_bytes = -1 is outside 0..67108864"),
        (
            "resources.max_input_bytes",
            2**26 + 1,
            "resources.max_input_bytes = 67108865 is outside 0..67108864",
        ),
        ("resources.max_output_bytes", 0, "resources.max_output_bytes = 0 is outside 1..67108864"),
        (
            "resources.max_output_bytes",
            2**26 + 1,
            "resources.max_output_bytes = 67108865 is outside 1..67108864",
        ),
        ("resources.fuel", 1.5, "resources.fuel must be an integer, got 1.5"),
        ("resources.cpu", 1, "unknown field resources.cpu"),
        ("network.policy", "open", "network.policy 'open' is not supported (only 'none' in ABI v1)"),
        ("network.hosts", [], "unknown field network.hosts"),
        ("scoring.emission_ppm", -1, "scoring.emission_ppm = -1 is outside 0..1000000"),
        ("scoring.emission_ppm", PPM + 1, "scoring.emission_ppm = 1000001 is outside 0..1000000"),
        ("scoring.mechanism", 256, "scoring.mechanism = 256 is outside 0..255"),
        ("scoring.mechanism", -1, "scoring.mechanism = -1 is outside 0..255"),
        ("scoring.burn", 1, "unknown field scoring.burn"),
        ("params", [], "challenge.toml.params must be a dict, got []"),
    ],
)
def test_spec_errors_say_exactly_what_is_wrong(path: str, value: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(edited(path, value))
    assert str(info.value) == message


def test_a_document_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(["challenge"])
    assert str(info.value) == "[challenge.toml] must be a table"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("challenge.version", "1.0.0-" + "a" * 58),  # 64 characters
        ("challenge.version", f"{MAX_VERSION_NUMBER}.{MAX_VERSION_NUMBER}.{MAX_VERSION_NUMBER}"),
        ("challenge.version", f"0.0.0-x{MAX_VERSION_NUMBER + 1}"),  # not a number: no bound
        ("challenge.id", "a"),
        ("challenge.id", "a" * 64),
        ("challenge.entrypoint", "_" + "a" * 63),
        ("challenge.min_validators", 1),
        ("challenge.min_validators", 1024),
        ("challenge.submissions_per_epoch", 1),
        ("challenge.submissions_per_epoch", MAX_SUBMISSIONS_PER_EPOCH),
        ("module.path", "..wasm/x..y"),
        ("resources.fuel", 1000),
        ("resources.fuel", 10**13),
        ("resources.memory_bytes", 65536),
        ("resources.memory_bytes", 2**32),
        ("resources.wall_ms", 1),
        ("resources.wall_ms", 600_000),
        ("resources.max_input_bytes", 0),
        ("resources.max_input_bytes", 2**26),
        ("resources.max_output_bytes", 1),
        ("resources.max_output_bytes", 2**26),
        ("scoring.emission_ppm", 0),
        ("scoring.emission_ppm", PPM),
        ("scoring.mechanism", 255),
    ],
)
def test_spec_values_at_their_limits_are_accepted(path: str, value: object) -> None:
    parsed = parse_spec(edited(path, value))
    assert spec_from_canonical(parsed.to_canonical()) == parsed


def test_optional_fields_take_their_documented_defaults() -> None:
    doc = copy.deepcopy(DOC)
    for section, key in [
        ("challenge", "description"),
        ("challenge", "entrypoint"),
        ("challenge", "min_validators"),
        ("scoring", "mechanism"),
    ]:
        del doc[section][key]
    del doc["network"]
    parsed = parse_spec(doc)
    assert (parsed.description, parsed.entrypoint, parsed.min_validators) == ("", "evaluate", 1)
    assert (parsed.scoring.mechanism, parsed.network, parsed.params) == (0, "none", {})
    assert parsed.submissions_per_epoch == DEFAULT_SUBMISSIONS_PER_EPOCH == 4


def test_the_canonical_form_is_pinned_and_leaves_out_a_default_submission_limit() -> None:
    parsed = parse_spec(DOC)
    assert parsed.to_canonical() == {
        "id": "hello",
        "version": "1.0.0",
        "name": "Hello",
        "description": "A minimal challenge used by the registry tests.",
        "abi": 1,
        "entrypoint": "evaluate",
        "module_path": "hello.wasm",
        "module_sha256": "e7de771c7c753befbc9d57fc16ce282fdcfa0b7ec1487ce0accdc49a992198b5",
        "resources": {
            "fuel": 10_000_000,
            "memory_bytes": 16_777_216,
            "wall_ms": 1_000,
            "max_input_bytes": 65_536,
            "max_output_bytes": 4_096,
        },
        "scoring": {"emission_ppm": 100_000, "mechanism": 0},
        "min_validators": 1,
        "network": "none",
        "params": {},
    }
    assert parsed.spec_sha256() == "b7f2e19066603a00cf4bd147760aa7daef2143035d9b1291eeb4c10b13dd85fd"
    five = parse_spec(edited("challenge.submissions_per_epoch", 5))
    assert five.to_canonical()["submissions_per_epoch"] == 5
    assert spec_from_canonical(five.to_canonical()).submissions_per_epoch == 5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "challenge metadata must be a map"),
        ({**spec().to_canonical(), "extra": 1}, "unknown field challenge.extra"),
        ({k: v for k, v in spec().to_canonical().items() if k != "name"}, "challenge.name is required"),
        (
            {**spec().to_canonical(), "submissions_per_epoch": 4},
            "challenge metadata is not in canonical form",
        ),
        ({**spec().to_canonical(), "abi": "1"}, "challenge.abi must be an integer, got '1'"),
        ({**spec().to_canonical(), "resources": []}, "challenge.resources must be a dict, got []"),
    ],
)
def test_signed_metadata_is_read_back_strictly(value: object, message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_canonical(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("1.2.3", (1, 2, 3, ())),
        ("0.0.0-rc.1", (0, 0, 0, ((1, "rc"), (0, 1)))),
        ("10.20.30-0.a-b", (10, 20, 30, ((0, 0), (1, "a-b")))),
    ],
)
def test_semver_parts_and_text(text: str, parts: tuple) -> None:
    parsed = SemVer.parse(text)
    assert (parsed.major, parsed.minor, parsed.patch, parsed.prerelease) == parts
    assert str(parsed) == text
    assert parsed.sort_key() == (*parts[:3], not parts[3], parts[3])


@pytest.mark.parametrize("text", [None, 1, "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0+build"])
def test_semver_refuses_what_is_not_a_version(text: object) -> None:
    with pytest.raises(SpecError, match="is not a semantic version"):
        SemVer.parse(text)  # type: ignore[arg-type]


def test_params_are_kept_as_written() -> None:
    parsed = parse_spec(edited("params.levels", [1, 2, {"name": "x"}]))
    assert parsed.params == {"levels": [1, 2, {"name": "x"}]}
    assert parsed.to_canonical()["params"] == {"levels": [1, 2, {"name": "x"}]}
