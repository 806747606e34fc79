"""Build the shipped challenges, sample submissions and hostile corpus from WAT sources.

Needs nothing but the wasmtime package (``wasmtime.wat2wasm``), so every machine can
reproduce the committed ``.wasm`` files byte for byte::

    python challenges/build.py            # rebuild, rewrite module.sha256 in challenge.toml
    python challenges/build.py --check    # exit 1 unless every committed file is identical

Challenge sources are templates: ``{{prelude}}`` inserts lib/prelude.wat,
``{{str:TEXT}}`` and ``{{bytes:NAME}}`` become ``(i32.const PTR) (i32.const LEN)`` of a
data segment, ``{{ptr:NAME}}`` just its pointer, ``{{heap}}`` the first free address.
"""

from __future__ import annotations

import argparse
import csv
import re
import struct
import sys
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
SUBMISSIONS = REPO / "fixtures" / "submissions"
HOSTILE = REPO / "fixtures" / "hostile"
DATA_BASE = 1024
_TOKEN = re.compile(r"\{\{(str|bytes|ptr):([^}]*)\}\}")


def wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def compose(source: str, blobs: dict[str, bytes]) -> str:
    prelude = (ROOT / "lib" / "prelude.wat").read_text()
    text = source.replace("{{prelude}}", prelude)
    layout: dict[str, tuple[int, bytes]] = {}
    cursor = DATA_BASE

    def place(key: str, data: bytes) -> int:
        nonlocal cursor
        if key not in layout:
            layout[key] = (cursor, data)
            cursor = (cursor + len(data) + 7) & ~7
        return layout[key][0]

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        data = name.encode() if kind == "str" else blobs[name]
        ptr = place(f"{kind}:{name}", data)
        return f"(i32.const {ptr})" if kind == "ptr" else f"(i32.const {ptr}) (i32.const {len(data)})"

    text = _TOKEN.sub(substitute, text)
    segments = "\n".join(f'  (data (i32.const {ptr}) "{wat_bytes(data)}")' for ptr, data in layout.values())
    heap = (cursor + 4095) & ~4095
    return text.replace("{{data}}", segments).replace("{{heap}}", str(heap))


def sort_module(gaps: list[int]) -> str:
    template = (ROOT / "sort" / "sort.wat.tmpl").read_text()
    passes = "\n".join(f"    (call $pass (local.get $p) (local.get $n) (i32.const {g}))" for g in gaps)
    return template.replace("{{gaps}}", str(gaps)).replace("{{passes}}", passes)


def dataset() -> bytes:
    with open(ROOT / "predict" / "dataset.csv", newline="") as handle:
        rows = [(int(r["x"]), int(r["y_milli"])) for r in csv.DictReader(handle)]
    return b"".join(struct.pack("<i", y) for _, y in rows)


def predictions(kind: str) -> bytes:
    with open(ROOT / "predict" / "dataset.csv", newline="") as handle:
        rows = [(int(r["x"]), int(r["y_milli"])) for r in csv.DictReader(handle)]
    if kind == "linear":  # a least-squares line, in integers
        n = len(rows)
        sx, sy = sum(x for x, _ in rows), sum(y for _, y in rows)
        sxx, sxy = sum(x * x for x, _ in rows), sum(x * y for x, y in rows)
        den = n * sxx - sx * sx
        return b"".join(
            struct.pack("<i", ((n * sxy - sx * sy) * x + (sy * sxx - sx * sxy)) // den) for x, _ in rows
        )
    if kind == "zeros":
        return bytes(4 * len(rows))
    return bytes(100)


def outputs() -> dict[Path, bytes]:
    """Every built file, by path."""
    files: dict[Path, bytes] = {}
    reference_wat = sort_module([1])
    reference = wasmtime.wat2wasm(reference_wat)
    shell_wat = sort_module([57, 23, 10, 4, 1])
    files[ROOT / "sort" / "reference.wat"] = reference_wat.encode()
    files[ROOT / "sort" / "reference.wasm"] = reference
    blobs = {"reference": reference, "dataset": dataset()}
    for name in ("sort", "predict", "compress"):
        text = compose((ROOT / name / "challenge.wat").read_text(), blobs)
        files[ROOT / name / "challenge.wasm"] = wasmtime.wat2wasm(text)
    files[SUBMISSIONS / "sort" / "good_insertion.wasm"] = reference
    files[SUBMISSIONS / "sort" / "good_shell.wat"] = shell_wat.encode()
    for wat in sorted(SUBMISSIONS.glob("*/*.wat")):
        if wat.name != "good_shell.wat":
            files[wat.with_suffix(".wasm")] = wasmtime.wat2wasm(wat.read_text())
    files[SUBMISSIONS / "sort" / "good_shell.wasm"] = wasmtime.wat2wasm(shell_wat)
    files[SUBMISSIONS / "sort" / "malformed.wasm"] = b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0fgarbage"
    for wat in sorted(HOSTILE.glob("*.wat")):
        files[wat.with_suffix(".wasm")] = wasmtime.wat2wasm(compose(wat.read_text(), blobs))
    files[HOSTILE / "malformed.wasm"] = b"\0asm\x01\0\0\0\x0a\x05\x01\x03\x00\x0b"
    for kind, filename in (
        ("linear", "good_linear.bin"),
        ("zeros", "poor_zeros.bin"),
        ("short", "bad_length.bin"),
    ):
        files[SUBMISSIONS / "predict" / filename] = predictions(kind)
    return files


def update_toml(path: Path, sha: str) -> bytes:
    text = path.read_text()
    return re.sub(r'(?m)^sha256 = "[0-9a-f]*"$', f'sha256 = "{sha}"', text).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args()
    files = outputs()
    import hashlib

    for name in ("sort", "predict", "compress"):
        sha = hashlib.sha256(files[ROOT / name / "challenge.wasm"]).hexdigest()
        toml = ROOT / name / "challenge.toml"
        files[toml] = update_toml(toml, sha)
    differ = [p for p, data in files.items() if not p.exists() or p.read_bytes() != data]
    if args.check:
        for path in differ:
            print(f"differs: {path.relative_to(REPO)}", file=sys.stderr)
        print(f"{len(files) - len(differ)} of {len(files)} built files identical")
        return 1 if differ else 0
    for path in differ:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[path])
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
