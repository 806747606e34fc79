"""Bounded, regular-files-only reads of TOML and JSON inputs, on real special files."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from platform_cli import files
from platform_cli.errors import PlatformError

DEEP_TOML = {
    "arrays": "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "inline tables": "a = " + "{b = " * 2000 + "1" + "}" * 2000 + "\n",
    "dotted keys": ".".join(["k"] * 5000) + " = 1\n",
    "headers": "[" + ".".join(["t"] * 100) + "]\nx = 1\n",
}


def hostile(tmp_path: Path, kind: str) -> Path:
    """A real file of each hostile kind (the 100 MB file is sparse: no disk is spent)."""
    path = tmp_path / f"input-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate(100 * 1024 * 1024)
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("reader", [files.read_toml, files.read_json])
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "is not a regular file"),
        ("dev-zero", "is not a regular file"),
        ("huge", "is 104857600 bytes, larger than 1048576"),
        ("directory", "is a directory"),
        ("dangling", "No such file or directory"),
        ("binary", "is not UTF-8 text"),
    ],
)
def test_hostile_files_are_refused_at_once_naming_the_file(tmp_path, reader, kind, message) -> None:
    path = hostile(tmp_path, kind)
    started = time.monotonic()
    with pytest.raises(PlatformError, match=message) as caught:
        reader(path, "input")
    assert str(path) in str(caught.value)
    assert time.monotonic() - started < 5  # a FIFO never blocks, /dev/zero is never read


@pytest.mark.parametrize("shape", sorted(DEEP_TOML))
def test_deep_toml_is_refused(tmp_path, shape) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(DEEP_TOML[shape])
    with pytest.raises(PlatformError, match=r"deep\.toml: nested too deeply \(at most 32 levels\)"):
        files.read_toml(path)


def test_deep_json_is_refused(tmp_path) -> None:
    for depth in (40, 100_000):
        path = tmp_path / f"deep-{depth}.json"
        path.write_text("[" * depth + "]" * depth)
        with pytest.raises(PlatformError, match="nested too deeply"):
            files.read_json(path)
    shallow = tmp_path / "ok.json"
    shallow.write_text("[" * 32 + "]" * 32)
    assert files.read_json(shallow) is not None


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        (files.read_toml, "a = " + "9" * 5000, "invalid TOML"),
        (files.read_toml, "a = [", "invalid TOML"),
        (files.read_json, "9" * 5000, "invalid JSON"),
        (files.read_json, "{", "invalid JSON"),
    ],
)
def test_malformed_content_names_the_file(tmp_path, reader, text, message) -> None:
    path = tmp_path / "input"
    path.write_text(text)
    with pytest.raises(PlatformError, match=f"{path}: {message}"):
        reader(path)


def test_empty_toml_is_an_empty_document(tmp_path) -> None:
    assert files.read_toml(hostile(tmp_path, "empty")) == {}
    with pytest.raises(PlatformError, match="invalid JSON"):
        files.read_json(hostile(tmp_path, "empty"))


def test_a_nul_byte_in_a_path_is_refused(tmp_path) -> None:
    with pytest.raises(PlatformError, match="contains a NUL byte"):
        files.read_toml(str(tmp_path / "a\0b"))
    with pytest.raises(PlatformError, match=re.escape("module.path 'a\\x00b' contains a NUL byte")):
        files.inside(tmp_path, "a\0b", "module.path")
