"""The registry's committed history through the adapter and the CLI: effective blocks,
`registry history`, the migration of older registries, the shipped emission shares."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from platform_cli import registry as reg
from platform_cli.config import load_config
from platform_cli.errors import PlatformError
from platform_cli.state import open_state
from tests.conftest import FIXTURES, REPO

Run = Callable[..., Result]
SHIPPED = [REPO / "challenges" / name / "update.json" for name in ("sort", "predict", "compress")] + [
    FIXTURES / "challenge" / "update-add.json"
]


def lines(result: Result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def propose(run: Run, path: Path) -> str:
    return lines(run("--json", "registry", "propose", str(path)))[0]["update_id"]


def sign_version(run: Run, toml: Path, out: Path, version: str, action: str, **scoring: int) -> Path:
    text = re.sub(r'version = "[^"]*"', f'version = "{version}"', toml.read_text(), count=1)
    for key, value in scoring.items():
        text = re.sub(rf"{key} = [0-9_]+", f"{key} = {value}", text)
    toml.write_text(text)
    result = run("registry", "sign", str(toml), "--key", "sudo", "--action", action, "-o", str(out))
    assert result.exit_code == 0, result.stderr
    return out


def test_commits_take_effect_at_their_block_and_never_go_back(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    toml = challenge_dir / "challenge.toml"
    config = load_config(data_dir)
    first = propose(run, sign_version(run, toml, tmp_path / "a.json", "1.0.0", "add"))
    with open_state(data_dir) as state:
        reg.commit_update(state, config, first, effective_block=100)
    second = propose(run, sign_version(run, toml, tmp_path / "b.json", "1.1.0", "update"))
    with open_state(data_dir) as state:
        before = state.execute("SELECT COUNT(*) FROM audit_log").fetchone()
        with pytest.raises(PlatformError, match="effective block 99 is before block 100"):
            reg.commit_update(state, config, second, effective_block=99)
        # Refused as the caller's mistake: nothing written, the update still pending.
        assert state.execute("SELECT COUNT(*) FROM audit_log").fetchone() == before
        assert state.execute(
            "SELECT status FROM registry_updates WHERE update_id = ?", [second]
        ).fetchone() == ("pending",)
        assert reg.active_at(state, 10**6)["hello"].spec.version == "1.0.0"
        after = reg.commit_update(state, config, second, effective_block=250)
        assert after.active_at(249)["hello"].spec.version == "1.0.0"
        assert reg.active_at(state, 250)["hello"].spec.version == "1.1.0"
        assert reg.active_at(state, 99) == {}

    history = lines(run("--json", "registry", "history"))
    assert [(h["version"], h["previous"], h["state"], h["effective_block"]) for h in history] == [
        ("1.0.0", "draft", "active", 100),
        ("1.0.0", "active", "deprecated", 250),
        ("1.1.0", "draft", "active", 250),
    ]
    assert [h["update_id"] for h in history] == [first, second, second]
    listed = lines(run("--json", "registry", "list"))
    assert [(r["version"], r["state"], r["effective_block"]) for r in listed] == [
        ("1.0.0", "deprecated", 250),
        ("1.1.0", "active", 250),
    ]
    table = run("registry", "history", "hello")
    assert table.exit_code == 0 and table.stdout.splitlines()[0].split() == [
        "SEQ",
        "ID",
        "VERSION",
        "PREVIOUS",
        "STATE",
        "EFFECTIVE_BLOCK",
    ]
    assert lines(run("--json", "registry", "history", "other")) == []
    audit = [json.loads(line) for line in run("--json", "audit", "log").stdout.splitlines()]
    applied = [e["detail"] for e in audit if e["action"] == "registry.apply"]
    assert sorted(d["effective_block"] for d in applied) == [100, 250]


def test_a_rejected_commit_writes_no_history(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    toml = challenge_dir / "challenge.toml"
    ids = [
        propose(run, sign_version(run, toml, tmp_path / f"{v}.json", v, "add")) for v in ("1.0.0", "2.0.0")
    ]
    with open_state(data_dir) as state:
        for update_id in ids:
            reg.commit_update(state, load_config(data_dir), update_id, effective_block=5)
        assert [h["version"] for h in reg.history(state)] == ["1.0.0"]


def test_older_registries_are_given_a_history_from_block_zero(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    """A registry committed before the history existed: its versions keep their states,
    in effect from block 0."""
    from platform_cli.state.migrations import migrate

    toml = challenge_dir / "challenge.toml"
    for version, action in (("1.0.0", "add"), ("1.1.0", "update")):
        update_id = propose(run, sign_version(run, toml, tmp_path / f"{version}.json", version, action))
        with open_state(data_dir) as state:
            reg.commit_update(state, load_config(data_dir), update_id, effective_block=7)
    draft = propose(run, sign_version(run, toml, tmp_path / "c.json", "1.2.0", "update"))
    with open_state(data_dir) as state:
        state.execute("DROP TABLE registry_history")
        state.execute("DELETE FROM _migrations WHERE name = 'm0015_registry_history'")
        assert migrate(state.db) == ["m0015_registry_history"]
        history = reg.history(state)
        assert [(h["version"], h["previous"], h["state"], h["effective_block"]) for h in history] == [
            ("1.0.0", "draft", "active", 0),
            ("1.0.0", "active", "deprecated", 0),
            ("1.1.0", "draft", "active", 0),
        ]
        assert reg.active_at(state, 0)["hello"].spec.version == "1.1.0"
        reg.commit_update(state, load_config(data_dir), draft, effective_block=0)
        assert reg.active_at(state, 0)["hello"].spec.version == "1.2.0"


def test_the_shipped_challenges_are_all_active_together_and_weights_compute(run: Run, data_dir: Path) -> None:
    """Their updates, all applied, share mechanism 0's emission exactly: the vector
    computes (it used to fail with "emission shares add up to 1250000 ppm")."""
    assert run("chain", "dev", "init", "--block-time-ms", "0").exit_code == 0
    assert run("chain", "sync").exit_code == 0
    with open_state(data_dir) as state:
        for path in SHIPPED:
            reg.commit_update(state, load_config(data_dir), propose(run, path), effective_block=0)
        active = reg.active_at(state, 0)
    assert sorted(active) == ["compress", "hello", "predict", "sort"]
    assert sum(r.spec.scoring.emission_ppm for r in active.values()) == 1_000_000
    computed = lines(run("--json", "weights", "compute"))[0]
    assert computed["scored"] == 0 and computed["burned_units"] == 10**9


def test_propose_refuses_a_share_over_the_budget(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    with open_state(data_dir) as state:
        for path in SHIPPED[:3]:
            reg.commit_update(state, load_config(data_dir), propose(run, path), effective_block=0)
    out = sign_version(
        run, challenge_dir / "challenge.toml", tmp_path / "u.json", "1.0.0", "add", emission_ppm=100_001
    )
    result = run("registry", "propose", str(out))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert (
        "error: update does not apply to the registry: activating hello 1.0.0 (100001 ppm) would make the "
        "active emission of mechanism 0 1000001 ppm, over 1000000" in result.stderr
    )
    assert lines(run("--json", "registry", "list", "--state", "draft")) == []
