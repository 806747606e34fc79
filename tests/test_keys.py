"""`platform keys`: identities on disk, both schemes, and wallet import."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from platform_cli.identity import KeyStore, verify_signature
from tests.conftest import FIXTURES


@pytest.mark.parametrize("scheme", ["sr25519", "ed25519"])
def test_new_key_is_private_and_signs(run, data_dir: Path, scheme: str) -> None:
    result = run("--json", "keys", "new", "--name", "v1", "--scheme", scheme)
    assert result.exit_code == 0, result.stderr
    shown = json.loads(run("--json", "keys", "show", "v1").stdout)
    assert shown["scheme"] == scheme and shown["ss58"].startswith("5")
    assert set(shown) == {"name", "scheme", "ss58", "source"}
    key_file = data_dir / "keys" / "v1.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    signer = KeyStore(data_dir).signer("v1")
    signature = signer.sign(b"message")
    assert verify_signature(scheme, shown["ss58"], b"message", signature)
    assert not verify_signature(scheme, shown["ss58"], b"messagE", signature)
    other = "ed25519" if scheme == "sr25519" else "sr25519"
    assert not verify_signature(other, shown["ss58"], b"message", signature)


def test_show_never_prints_the_secret(run, data_dir: Path) -> None:
    run("keys", "new", "--name", "v1")
    secret = json.loads((data_dir / "keys" / "v1.json").read_text())["secret"]["keyfile"]
    phrase = json.loads(secret)["secretPhrase"]
    for args in (("keys", "show", "v1"), ("--json", "keys", "show", "v1"), ("keys", "list")):
        out = run(*args).stdout
        assert phrase not in out and "secret" not in out


def test_import_a_bittensor_wallet_hotkey(run, sudo_key: str) -> None:
    shown = json.loads(run("--json", "keys", "show", sudo_key).stdout)
    expected = (FIXTURES / "wallets" / "devnet" / "hotkeys" / "sudopub.txt").read_text()
    assert json.loads(expected)["ss58Address"] == shown["ss58"]
    assert shown["scheme"] == "sr25519" and shown["source"] == "wallet:devnet/sudo"
    listed = [json.loads(line) for line in run("--json", "keys", "list").stdout.splitlines()]
    assert listed == [shown]


def test_import_of_a_missing_wallet_is_a_clear_error(run, tmp_path: Path) -> None:
    result = run(
        "keys",
        "import",
        "--name",
        "x",
        "--wallet",
        "nope",
        "--hotkey",
        "nope",
        "--wallet-path",
        str(tmp_path),
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read hotkey 'nope' of wallet 'nope'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_names_are_unique_and_validated(run) -> None:
    assert run("keys", "new", "--name", "v1").exit_code == 0
    again = run("keys", "new", "--name", "v1")
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = run("keys", "new", "--name", "../escape")
    assert bad.exit_code == 2 and "key name '../escape' is invalid" in bad.stderr
    missing = run("keys", "show", "ghost")
    assert missing.exit_code == 1 and "no key named 'ghost'" in missing.stderr


def test_empty_list_says_so(run) -> None:
    result = run("keys", "list")
    assert result.exit_code == 0 and result.stdout == "" and "no keys yet" in result.stderr


def test_a_key_file_whose_secret_does_not_match_is_refused(run, data_dir: Path) -> None:
    run("keys", "new", "--name", "a", "--scheme", "ed25519")
    run("keys", "new", "--name", "b", "--scheme", "ed25519")
    a = json.loads((data_dir / "keys" / "a.json").read_text())
    b = json.loads((data_dir / "keys" / "b.json").read_text())
    a["secret"] = b["secret"]
    (data_dir / "keys" / "a.json").write_text(json.dumps(a))
    from platform_cli.errors import PlatformError

    with pytest.raises(PlatformError, match="does not match"):
        KeyStore(data_dir).signer("a")


def _audited(data_dir: Path) -> list[dict]:
    conn = sqlite3.connect(data_dir / "state.db")
    try:
        rows = conn.execute("SELECT action, detail FROM audit_log ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [{"action": action, **json.loads(detail)} for action, detail in rows]


@pytest.mark.slow
def test_racing_processes_creating_one_name_make_exactly_one_key(data_dir: Path) -> None:
    """8 real processes race on `keys new --name same`: one wins, and it is what is stored."""
    from tests.hostile import REPO

    data_dir.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "platform_cli", "--data-dir", str(data_dir), "--json", "keys", "new"]
    for round_ in range(2):
        name = f"same{round_}"
        racers = [
            subprocess.Popen([*argv, "--name", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for _ in range(8)
        ]
        results = [(p.wait(120), p.stdout.read().decode(), p.stderr.read().decode()) for p in racers]
        for p in racers:
            p.stdout.close()
            p.stderr.close()
        winners = [json.loads(out) for code, out, _ in results if code == 0]
        assert len(winners) == 1, results
        losers = [err for code, _, err in results if code != 0]
        assert all(code == 1 for code, _, _ in results if code != 0), results
        assert all(
            err == f"error: key {name!r} already exists at {data_dir / 'keys' / name}.json\n"
            for err in losers
        )
        stored = json.loads((data_dir / "keys" / f"{name}.json").read_text())
        assert stored["ss58"] == winners[0]["ss58"]
        assert KeyStore(data_dir).signer(name).ss58 == winners[0]["ss58"]
        audited = [entry for entry in _audited(data_dir) if entry.get("name") == name]
        assert [(e["action"], e["ss58"]) for e in audited] == [("keys.new", winners[0]["ss58"])]
    assert sorted(os.listdir(data_dir / "keys")) == ["same0.json", "same1.json"]  # no stray files


def test_a_key_that_cannot_be_audited_is_not_kept(data_dir: Path, run) -> None:
    """The state is read-only but keys/ is writable: neither the key nor an entry appears."""
    from tests.hostile import fingerprint, one_error_line, platform, without_write_access

    assert run("keys", "new", "--name", "first").exit_code == 0
    (data_dir / "state.db").chmod(0o444)
    before = fingerprint(data_dir)
    result = platform(data_dir, "keys", "new", "--name", "half", prefix=without_write_access())
    one_error_line(result, "read-only")
    assert fingerprint(data_dir) == before
    assert sorted(os.listdir(data_dir / "keys")) == ["first.json"]


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from platform_cli.commands.keys import KEY_ACTIONS
from platform_cli.identity import KeyStore
from platform_cli.state import audit, open_state

data_dir, moment = Path(sys.argv[1]), sys.argv[2]
with open_state(data_dir) as state:
    def record(made):
        if moment == "after":
            audit.append(state, made.ss58, "keys.new", made.to_json())
        os.kill(os.getpid(), signal.SIGKILL)

    KeyStore(data_dir).new("killed", "sr25519", record, lambda ss58: audit.has_action(state, ss58, KEY_ACTIONS))
"""


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_writer_killed_around_its_audit_entry_leaves_both_or_neither(data_dir: Path, moment: str) -> None:
    """SIGKILL between the key file and its audit entry (or just after the entry): the next
    writer removes the unrecorded key, keeps the recorded one, and no temporary file stays."""
    from tests.hostile import REPO, platform

    assert platform(data_dir, "keys", "new", "--name", "first").returncode == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(data_dir), moment],
        env=env,
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    assert any(name.startswith(".killed.json.") for name in os.listdir(data_dir / "keys"))
    assert platform(data_dir, "keys", "new", "--name", "next").returncode == 0
    names = sorted(os.listdir(data_dir / "keys"))
    audited = {entry["name"] for entry in _audited(data_dir)}
    if moment == "before":
        assert names == ["first.json", "next.json"] and audited == {"first", "next"}
    else:
        assert names == ["first.json", "killed.json", "next.json"] and audited == {"first", "killed", "next"}
        assert (
            KeyStore(data_dir).signer("killed").ss58
            == json.loads((data_dir / "keys" / "killed.json").read_text())["ss58"]
        )


@pytest.mark.parametrize("problem", ["symlink", "group-writable", "other-writable", "foreign-owner"])
def test_an_unsafe_keys_directory_is_refused(run, data_dir: Path, tmp_path: Path, problem: str) -> None:
    """As ssh refuses ~/.ssh: a keys/ that someone else could change is never used."""
    assert run("keys", "new", "--name", "v1", "--scheme", "ed25519").exit_code == 0
    keys_dir = data_dir / "keys"
    if problem == "symlink":
        elsewhere = tmp_path / "elsewhere"
        keys_dir.rename(elsewhere)
        keys_dir.symlink_to(elsewhere)
        expected = "is a symbolic link"
    elif problem == "foreign-owner":
        if os.geteuid() != 0:
            pytest.skip("giving a directory to another user needs root")
        os.chown(keys_dir, 65534, 65534)
        expected = "is owned by uid 65534"
    else:
        keys_dir.chmod(0o770 if problem == "group-writable" else 0o707)
        expected = "is writable by group or others"
    for args in (
        ("keys", "new", "--name", "v2"),
        ("keys", "show", "v1"),
        ("keys", "list"),
        (
            "registry",
            "sign",
            str(FIXTURES / "challenge" / "challenge.toml"),
            "--key",
            "v1",
            "--action",
            "add",
        ),
    ):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.count("\n") == 1 and expected in result.stderr, (args, result.stderr)
    if problem == "symlink":
        assert sorted(os.listdir(tmp_path / "elsewhere")) == ["v1.json"]


def test_a_link_planted_at_a_key_name_is_not_followed(run, data_dir: Path, tmp_path: Path) -> None:
    assert run("keys", "new", "--name", "v1").exit_code == 0
    target = tmp_path / "target"
    target.write_text("untouched")
    (data_dir / "keys" / "v2.json").symlink_to(target)
    result = run("keys", "new", "--name", "v2")
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert target.read_text() == "untouched"
    assert not [n for n in os.listdir(data_dir / "keys") if n.endswith(".tmp")]


def test_a_secret_open_to_others_is_not_used(run, data_dir: Path) -> None:
    assert run("keys", "new", "--name", "v1", "--scheme", "ed25519").exit_code == 0
    key_file = data_dir / "keys" / "v1.json"
    key_file.chmod(0o644)
    assert run("keys", "show", "v1").exit_code == 0  # the address is public
    signed = run(
        "registry", "sign", str(FIXTURES / "challenge" / "challenge.toml"), "--key", "v1", "--action", "add"
    )
    assert signed.exit_code == 1
    assert signed.stderr == f"error: key file {key_file} is open to others (mode 0644): chmod 600 it\n"


def test_list_shows_the_healthy_keys_and_flags_the_broken_ones(run, data_dir: Path) -> None:
    for name in ("a", "c", "e"):
        assert run("keys", "new", "--name", name, "--scheme", "ed25519").exit_code == 0
    (data_dir / "keys" / "b.json").write_bytes(b"\x00\xff not json")
    os.mkfifo(data_dir / "keys" / "d.json")
    listed = run("--json", "keys", "list")
    assert listed.exit_code == 1
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["name"] for row in rows] == ["a", "b", "c", "d", "e"]
    assert [row["name"] for row in rows if "problem" in row] == ["b", "d"]
    assert all(row["ss58"].startswith("5") for row in rows if "problem" not in row)
    assert "is not a regular file" in rows[3]["problem"]
    assert listed.stderr == "error: 2 key file(s) cannot be used: b, d (see the problem column)\n"
    table = run("keys", "list")
    assert "PROBLEM" in table.stdout.splitlines()[0] and table.exit_code == 1


@pytest.mark.parametrize("command", ["registry sign", "eval publish", "weights submit"])
def test_a_truncated_sr25519_secret_is_one_clear_error(run, data_dir: Path, command: str) -> None:
    assert run("keys", "new", "--name", "v1").exit_code == 0
    key_file = data_dir / "keys" / "v1.json"
    doc = json.loads(key_file.read_text())
    doc["secret"]["keyfile"] = doc["secret"]["keyfile"][:40]
    key_file.write_text(json.dumps(doc))
    args = {
        "registry sign": (
            "registry",
            "sign",
            str(FIXTURES / "challenge" / "challenge.toml"),
            "--action",
            "add",
        ),
        "eval publish": ("eval", "publish", "1"),
        "weights submit": ("weights", "submit", "--dry-run"),
    }[command]
    result = run(*args, "--key", "v1")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: key file {key_file} holds no usable secret: ")
    assert result.stderr.count("\n") == 1
