"""`platform registry` as the sudo owner and validators use it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from platform_cli.config import DEVNET_SUDO

Run = Callable[..., Result]


def sign(run: Run, toml: Path, out: Path, action: str = "add", key: str = "sudo") -> dict:
    result = run("registry", "sign", str(toml), "--key", key, "--action", action, "-o", str(out))
    assert result.exit_code == 0, result.stderr
    return json.loads(out.read_text())


def verify(run: Run, path: Path, *extra: str) -> Result:
    return run("registry", "verify", str(path), *extra)


def refused(result: Result, pattern: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture
def signed(run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "update.json"
    sign(run, challenge_dir / "challenge.toml", out)
    return out


def test_sign_then_verify(run: Run, signed: Path) -> None:
    result = run("--json", "registry", "verify", str(signed))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["challenge"] == "hello" and report["action"] == "add"
    assert report["signer"] == "5DVH4ASWcfJ5cUE31CtsCvoE78wisVsJRXagswAReC6zq33M"


def test_verify_reads_stdin(run: Run, signed: Path) -> None:
    assert run("registry", "verify", "-", input=signed.read_bytes()).exit_code == 0


def test_one_byte_of_the_module_changed(run: Run, signed: Path) -> None:
    doc = json.loads(signed.read_text())
    module = bytearray(base64.b64decode(doc["module"]))
    module[-1] ^= 0x01
    doc["module"] = base64.b64encode(bytes(module)).decode()
    signed.write_text(json.dumps(doc))
    refused(verify(run, signed), "module hashes to .* the signed metadata says")


def test_module_swapped_along_with_its_declared_hash(run: Run, signed: Path) -> None:
    doc = json.loads(signed.read_text())
    module = base64.b64decode(doc["module"]) + b"\x00"
    doc["module"] = base64.b64encode(module).decode()
    doc["envelope"]["body"]["challenge"]["module_sha256"] = hashlib.sha256(module).hexdigest()
    signed.write_text(json.dumps(doc))
    refused(verify(run, signed), "signature does not verify")


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "Hello!"), ("description", ""), ("min_validators", 2), ("version", "1.0.1")],
)
def test_one_metadata_field_changed(run: Run, signed: Path, field: str, value: object) -> None:
    doc = json.loads(signed.read_text())
    doc["envelope"]["body"]["challenge"][field] = value
    signed.write_text(json.dumps(doc))
    refused(verify(run, signed), "signature does not verify")


def test_resource_policy_changed(run: Run, signed: Path) -> None:
    doc = json.loads(signed.read_text())
    doc["envelope"]["body"]["challenge"]["resources"]["fuel"] *= 10
    signed.write_text(json.dumps(doc))
    refused(verify(run, signed), "signature does not verify")


def test_signed_by_a_key_that_is_not_sudo(run: Run, challenge_dir: Path, tmp_path: Path) -> None:
    assert run("keys", "new", "--name", "mallory").exit_code == 0
    out = tmp_path / "forged.json"
    sign(run, challenge_dir / "challenge.toml", out, key="mallory")
    refused(verify(run, out), "not by the sudo owner")


def test_sudo_override_on_the_command_line(run: Run, challenge_dir: Path, tmp_path: Path) -> None:
    new = run("--json", "keys", "new", "--name", "owner", "--scheme", "ed25519")
    owner = json.loads(new.stdout)["ss58"]
    out = tmp_path / "owner.json"
    sign(run, challenge_dir / "challenge.toml", out, key="owner")
    assert verify(run, out, "--sudo", owner).exit_code == 0
    refused(verify(run, out), "not by the sudo owner")


def test_replayed_with_another_netuid(run: Run, signed: Path, data_dir: Path) -> None:
    """Relabelled for subnet 7 and shown to a subnet-7 node: the signature breaks."""
    (data_dir / "platform.toml").write_text(f'[network]\nnetuid = 7\nsudo = "{DEVNET_SUDO}"\n')
    doc = json.loads(signed.read_text())
    doc["envelope"]["netuid"] = 7
    signed.write_text(json.dumps(doc))
    refused(verify(run, signed), "signature does not verify")


def test_update_for_another_network_is_refused(run: Run, signed: Path, data_dir: Path) -> None:
    (data_dir / "platform.toml").write_text(f'[network]\nnetuid = 7\nsudo = "{DEVNET_SUDO}"\n')
    refused(verify(run, signed), "signed for netuid 100 .* this network is netuid 7")


def test_the_sequence_at_the_registry_window_edge_is_refused(run: Run, signed: Path, data_dir: Path) -> None:
    from platform_cli.core.registry import UPDATE_KIND
    from platform_cli.registry import UPDATE_REPLAY_WINDOW
    from platform_cli.state import open_state, sequences

    seq = json.loads(signed.read_text())["envelope"]["seq"]
    with open_state(data_dir) as state:
        sequences.accept(
            state, DEVNET_SUDO, seq + UPDATE_REPLAY_WINDOW, kind=UPDATE_KIND, size=UPDATE_REPLAY_WINDOW
        )
    refused(run("registry", "propose", str(signed)), "older than the replay window")


def test_replay_after_propose(run: Run, signed: Path) -> None:
    assert run("registry", "propose", str(signed)).exit_code == 0
    refused(verify(run, signed), "replay")
    refused(run("registry", "propose", str(signed)), "replay")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"envelope": {}}', "envelope fields: missing"),
        (b'{"envelope": 1.5}', "not an integer"),
        (b"[]", "expected an object"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"envelope": ' + b"9" * 5000 + b"}", "not acceptable JSON"),
    ],
)
def test_garbage_input_gets_a_clear_error(run: Run, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    refused(verify(run, path), message)


def test_missing_file(run: Run, tmp_path: Path) -> None:
    refused(verify(run, tmp_path / "nope.json"), "cannot read .*nope.json")


def test_propose_list_show_and_commit(run: Run, signed: Path, data_dir: Path) -> None:
    from platform_cli import registry as reg
    from platform_cli.config import load_config
    from platform_cli.state import open_state

    proposed = run("--json", "registry", "propose", str(signed))
    assert proposed.exit_code == 0, proposed.stderr
    update_id = json.loads(proposed.stdout)["update_id"]
    listed = run("--json", "registry", "list")
    assert [json.loads(line)["state"] for line in listed.stdout.splitlines()] == ["draft"]

    with open_state(data_dir) as state:
        reg.commit_update(state, load_config(data_dir), update_id, effective_block=0)
        module = state.execute("SELECT content FROM modules").fetchone()[0]
    assert (
        hashlib.sha256(module).hexdigest()
        == json.loads(signed.read_text())["envelope"]["body"]["challenge"]["module_sha256"]
    )

    active = run("--json", "registry", "list", "--state", "active")
    assert [json.loads(line)["id"] for line in active.stdout.splitlines()] == ["hello"]
    shown = json.loads(run("--json", "registry", "show", "hello").stdout)
    assert shown["state"] == "active" and shown["update_id"] == update_id
    assert shown["resources"]["wall_ms"] == 1000
    refused(run("registry", "show", "hello", "--version", "9.9.9"), "no version 9.9.9")
    assert run("audit", "verify").exit_code == 0


def test_lifecycle_through_signed_updates(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    from platform_cli import registry as reg
    from platform_cli.config import load_config
    from platform_cli.state import open_state

    toml = challenge_dir / "challenge.toml"
    ids = []
    for action in ("add", "deprecate", "retire"):
        out = tmp_path / f"{action}.json"
        doc = sign(run, toml, out, action=action)
        assert ("module" in doc) == (action == "add")
        result = run("--json", "registry", "propose", str(out))
        assert result.exit_code == 0, result.stderr
        with open_state(data_dir) as state:
            reg.commit_update(
                state, load_config(data_dir), json.loads(result.stdout)["update_id"], effective_block=0
            )
        ids.append(json.loads(result.stdout)["update_id"])
    shown = json.loads(run("--json", "registry", "show", "hello").stdout)
    assert shown["state"] == "retired"


def test_propose_refuses_an_update_that_does_not_apply(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "update.json"
    sign(run, challenge_dir / "challenge.toml", out, action="update")
    refused(run("registry", "propose", str(out)), "does not exist; use action 'add'")
    assert run("--json", "registry", "list").stdout == ""


def test_sign_refuses_a_module_that_does_not_match(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path
) -> None:
    (challenge_dir / "hello.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    out = tmp_path / "update.json"
    result = run(
        "registry",
        "sign",
        str(challenge_dir / "challenge.toml"),
        "--key",
        "sudo",
        "--action",
        "add",
        "-o",
        str(out),
    )
    refused(result, r"module\.sha256 is .* but .*hello\.wasm hashes to")
    assert not out.exists()


def test_sign_reports_bad_metadata_with_file_and_field(run: Run, sudo_key: str, challenge_dir: Path) -> None:
    toml = challenge_dir / "challenge.toml"
    toml.write_text(toml.read_text().replace("fuel = 10_000_000", "fuel = 1.5"))
    result = run("registry", "sign", str(toml), "--key", "sudo", "--action", "add")
    refused(result, r"challenge\.toml: resources\.fuel must be an integer, got 1\.5")


def test_updates_signed_long_apart_are_accepted_in_any_order(run: Run, signed: Path) -> None:
    """The shipped challenge updates were signed long before this one; proposing the
    newest first must not lock the older ones out."""
    from tests.conftest import REPO

    assert run("registry", "propose", str(signed)).exit_code == 0
    for name in ("sort", "predict"):
        result = run("registry", "propose", str(REPO / "challenges" / name / "update.json"))
        assert result.exit_code == 0, result.stderr
    refused(run("registry", "propose", str(REPO / "challenges" / "sort" / "update.json")), "replay")


def test_a_signature_of_the_wrong_length_is_refused(run: Run, signed: Path) -> None:
    doc = json.loads(signed.read_text())
    doc["envelope"]["signature"] = doc["envelope"]["signature"][:-1]
    signed.write_text(json.dumps(doc))
    refused(verify(run, signed), "signature must be 128 lowercase hex digits")


def test_special_files_are_refused_not_read(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path
) -> None:
    import os

    fifo = tmp_path / "update.fifo"
    os.mkfifo(fifo)
    refused(verify(run, fifo), "is not a regular file")
    toml = challenge_dir / "challenge.toml"
    (challenge_dir / "zero.wasm").symlink_to("/dev/zero")
    toml.write_text(toml.read_text().replace('path = "hello.wasm"', 'path = "zero.wasm"'))
    sign_args = ("registry", "sign", str(toml), "--key", "sudo", "--action", "add")
    refused(run(*sign_args), r"module\.path 'zero\.wasm' leads outside")
    os.unlink(challenge_dir / "zero.wasm")
    os.mkfifo(challenge_dir / "zero.wasm")
    refused(run(*sign_args), "zero.wasm is not a regular file")


def test_a_rejected_proposal_leaves_no_draft_behind(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    from platform_cli import registry as reg
    from platform_cli.config import load_config
    from platform_cli.state import open_state

    toml = challenge_dir / "challenge.toml"
    ids = []
    for version in ("1.0.0", "2.0.0"):
        toml.write_text(re.sub(r'version = "[^"]*"', f'version = "{version}"', toml.read_text(), count=1))
        out = tmp_path / f"{version}.json"
        sign(run, toml, out, action="add")
        ids.append(json.loads(run("--json", "registry", "propose", str(out)).stdout)["update_id"])
    with open_state(data_dir) as state:
        for update_id in ids:
            reg.commit_update(state, load_config(data_dir), update_id, effective_block=0)
        status = dict(state.execute("SELECT version, status FROM registry_updates").fetchall())
    assert status == {"1.0.0": "applied", "2.0.0": "rejected"}
    listed = [json.loads(line) for line in run("--json", "registry", "list").stdout.splitlines()]
    assert [(r["version"], r["state"]) for r in listed] == [("1.0.0", "active")]
    out = tmp_path / "update-2.0.0.json"
    sign(run, toml, out, action="update")
    assert run("registry", "propose", str(out)).exit_code == 0


def _ledger(data_dir: Path) -> tuple[object, ...]:
    """What signing records: the audit head and our sequence numbers."""
    from tests.hostile import fingerprint

    state = fingerprint(data_dir)
    return state["audit_head"], state["own_sequences"]


@pytest.mark.parametrize(
    "kind", ["missing-dir", "symlink", "dangling-symlink", "fifo", "directory", "device"]
)
def test_sign_output_that_cannot_be_written_records_nothing(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path, kind: str
) -> None:
    import os

    target = tmp_path / "out.json"
    if kind == "missing-dir":
        target = tmp_path / "nonexistent" / "x.json"
    elif kind == "symlink":
        (tmp_path / "real.json").write_text("keep")
        target.symlink_to(tmp_path / "real.json")
    elif kind == "dangling-symlink":
        target.symlink_to(tmp_path / "nowhere.json")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    else:
        target = Path("/dev/full")
    before = _ledger(data_dir)
    result = run(
        "registry",
        "sign",
        str(challenge_dir / "challenge.toml"),
        "--key",
        "sudo",
        "--action",
        "add",
        "-o",
        str(target),
    )
    refused(result, re.escape(str(target)))
    assert _ledger(data_dir) == before
    if kind == "symlink":
        assert target.is_symlink() and (tmp_path / "real.json").read_text() == "keep"
    if kind == "dangling-symlink":
        assert target.is_symlink() and not (tmp_path / "nowhere.json").exists()
    if kind == "device":
        assert Path("/dev/full").is_char_device()
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_sign_to_stdout_and_over_a_regular_file(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    toml = str(challenge_dir / "challenge.toml")
    printed = run("registry", "sign", toml, "--key", "sudo", "--action", "add", "-o", "-")
    assert printed.exit_code == 0 and json.loads(printed.stdout)["envelope"]["kind"]
    target = tmp_path / "out.json"
    target.write_text("an older update")
    assert run("registry", "sign", toml, "--key", "sudo", "--action", "add", "-o", str(target)).exit_code == 0
    written = json.loads(target.read_text())
    assert written["envelope"]["seq"] == json.loads(printed.stdout)["envelope"]["seq"] + 1
    assert verify(run, target).exit_code == 0
    entries = [json.loads(line) for line in run("--json", "audit", "log").stdout.splitlines()]
    assert [e["detail"]["seq"] for e in entries if e["action"] == "registry.sign"] == [
        json.loads(printed.stdout)["envelope"]["seq"],
        written["envelope"]["seq"],
    ]


@pytest.mark.parametrize(
    "version", ["1.0." + "9" * 31, "9007199254740992.0.0", "1.0.0-rc." + "1" * 20, "1.0.0-" + "a" * 60]
)
def test_oversized_versions_are_refused(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path, data_dir: Path, version: str
) -> None:
    toml = challenge_dir / "challenge.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
    before = _ledger(data_dir)
    result = run(
        "registry", "sign", str(toml), "--key", "sudo", "--action", "add", "-o", str(tmp_path / "u.json")
    )
    refused(result, "version .* (has a number above 9007199254740991|is not a semantic version)")
    assert _ledger(data_dir) == before and not (tmp_path / "u.json").exists()


def test_the_largest_version_numbers_still_sign(
    run: Run, sudo_key: str, challenge_dir: Path, tmp_path: Path
) -> None:
    toml = challenge_dir / "challenge.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', 'version = "9007199254740991.0.0"'))
    assert (
        sign(run, toml, tmp_path / "u.json")["envelope"]["body"]["challenge"]["version"]
        == "9007199254740991.0.0"
    )


def test_a_nul_byte_in_the_module_path_is_one_clear_error(
    run: Run, sudo_key: str, challenge_dir: Path, data_dir: Path
) -> None:
    toml = challenge_dir / "challenge.toml"
    toml.write_text(toml.read_text().replace('path = "hello.wasm"', 'path = "hello\\u0000.wasm"'))
    before = _ledger(data_dir)
    refused(
        run("registry", "sign", str(toml), "--key", "sudo", "--action", "add"),
        r"module\.path 'hello\\x00\.wasm' contains a NUL byte",
    )
    assert _ledger(data_dir) == before
