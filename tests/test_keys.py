"""`platform keys`: identities on disk, both schemes, and wallet import."""

from __future__ import annotations

import json
import stat
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
