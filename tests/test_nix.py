"""The Nix flake, checked offline.

Nix cannot fetch the flake's inputs (nixpkgs, pyproject.nix, uv2nix, build-system-pkgs) on
these machines, so nothing here builds the flake. What can be checked without them is: every
`.nix` file parses with Nix, `flake.lock` pins every input `flake.nix` declares, `uv.lock` is
current for `pyproject.toml`, and `nix/overrides.nix` covers exactly the locked packages that
uv2nix cannot take as locked when it prefers wheels. For that last check this module models
pyproject.nix's wheel selection (`pypa.selectWheels` in lib/pypa.nix): keep only the wheels
whose ABI, language and platform tags suit the interpreter and the platform, then rank them by
their best language tag alone (cp313 > cp39 > py3), keeping uv.lock's order among ties. A
`py3-none-any` wheel therefore ties with a `py3-none-manylinux` one and wins when it comes first.

.ci/run installs Debian's nix-bin; without it (or without the uv that scripts/bootstrap.sh
installs) these tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from platform_cli.config import tomllib
from tests.conftest import REPO

# The oldest glibc nixos-unstable can have here: 2.40 since NixOS 24.11, and the pin is newer.
NIXPKGS_GLIBC = (2, 40)
SHA256_SRI = re.compile(r"sha256-[A-Za-z0-9+/]{43}=")
GIT_REV = re.compile(r"[0-9a-f]{40}")
WHEEL_NAME = re.compile(
    r"(?P<dist>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<lang>[^-]+)-(?P<abi>[^-]+)-(?P<plat>.+)\.whl"
)
LEGACY_MANYLINUX = {
    "manylinux1": (2, 5),
    "manylinux2010": (2, 12),
    "manylinux2014": (2, 17),
}
NIX_CPU = {"x86_64-linux": "x86_64", "aarch64-linux": "aarch64"}
USER_CACHE = os.environ.get("XDG_CACHE_HOME") or f"{os.environ.get('HOME') or '/tmp'}/.cache"
"""Read at import, as scripts/bootstrap.sh reads it: each test runs with a HOME of its own."""


def _tool(*command: str) -> list[str]:
    """The command if it runs here; otherwise skip the test (fail it under CI)."""
    try:
        subprocess.run([*command, "--version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        message = f"{' '.join(command)} is not available (.ci/run and scripts/bootstrap.sh install it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return list(command)


def nix_eval(expression: str) -> Any:
    """Evaluate a Nix expression (relative paths from the repository) to JSON, offline."""
    command = _tool("nix-instantiate")
    done = subprocess.run(
        [*command, "--eval", "--strict", "--json", "-E", expression],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def nix_parse(path: Path) -> subprocess.CompletedProcess[str]:
    command = _tool("nix-instantiate")
    return subprocess.run(
        [*command, "--parse", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def nix_files() -> list[Path]:
    """Every .nix file of the tree, outside hidden folders (.git, .venv) and caches."""
    found: list[Path] = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and name != "__pycache__"]
        found.extend(Path(folder) / name for name in files if name.endswith(".nix"))
    return sorted(found)


def load_lock() -> dict[str, Any]:
    with (REPO / "uv.lock").open("rb") as handle:
        return tomllib.load(handle)


# --- every .nix file parses ---------------------------------------------------------------


def test_the_nix_files_are_the_flake_and_its_helpers() -> None:
    names = {path.relative_to(REPO).as_posix() for path in nix_files()}
    assert {
        "flake.nix",
        "nix/settings.nix",
        "nix/overrides.nix",
        "nix/wheels.nix",
        "nix/overlay.nix",
    } <= names


@pytest.mark.parametrize("path", nix_files(), ids=lambda path: path.relative_to(REPO).as_posix())
def test_nix_file_parses(path: Path) -> None:
    done = nix_parse(path)
    assert done.returncode == 0, done.stderr


def test_the_parse_check_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nix"
    broken.write_text("{ a = 1; b = ; }\n")
    done = nix_parse(broken)
    assert done.returncode != 0
    assert "syntax error" in done.stderr


# --- flake.lock pins every input ------------------------------------------------------------


def github_reference(url: str) -> dict[str, str]:
    """The parts of a `github:owner/repo[/ref]` flake reference."""
    match = re.fullmatch(r"github:(?P<owner>[^/]+)/(?P<repo>[^/]+)(/(?P<ref>[^/?]+))?", url)
    assert match, f"not a github: reference: {url}"
    return {key: value for key, value in match.groupdict().items() if value is not None}


def lock_problems(inputs: dict[str, Any], lock: dict[str, Any]) -> list[str]:
    """What keeps `lock` from pinning every input of `inputs` (flake.nix's, as JSON)."""
    problems: list[str] = []
    if lock.get("version") != 7:
        problems.append(f"lock version {lock.get('version')!r}, not 7")
    nodes = lock.get("nodes", {})
    root = nodes.get(lock.get("root"), {})
    if root.get("inputs") != {name: name for name in inputs}:
        problems.append(f"root inputs {root.get('inputs')!r} are not flake.nix's {sorted(inputs)}")
    for name, declared in inputs.items():
        node = nodes.get(name)
        if node is None:
            problems.append(f"{name}: no node")
            continue
        reference = github_reference(declared["url"])
        locked, original = node.get("locked", {}), node.get("original", {})
        if locked.get("type") != "github" or original.get("type") != "github":
            problems.append(f"{name}: not locked as a github input")
        for part in ("owner", "repo"):
            if locked.get(part, "").lower() != reference[part].lower():
                problems.append(f"{name}: locked {part} {locked.get(part)!r}, flake.nix {reference[part]!r}")
            if original.get(part) != reference[part]:
                problems.append(
                    f"{name}: original {part} {original.get(part)!r}, flake.nix {reference[part]!r}"
                )
        if original.get("ref") != reference.get("ref"):
            problems.append(
                f"{name}: original ref {original.get('ref')!r}, flake.nix {reference.get('ref')!r}"
            )
        if not GIT_REV.fullmatch(str(locked.get("rev", ""))):
            problems.append(f"{name}: no locked commit (rev {locked.get('rev')!r})")
        nar_hash = str(locked.get("narHash", ""))
        if not SHA256_SRI.fullmatch(nar_hash) or len(base64.b64decode(nar_hash[7:])) != 32:
            problems.append(f"{name}: no sha256 narHash ({nar_hash!r})")
        if not isinstance(locked.get("lastModified"), int):
            problems.append(f"{name}: no lastModified")
        follows = {key: [value["follows"]] for key, value in declared.get("inputs", {}).items()}
        if node.get("inputs", {}) != follows:
            problems.append(f"{name}: inputs {node.get('inputs')!r}, flake.nix follows {follows!r}")
    return problems


@pytest.fixture(scope="module")
def flake_inputs() -> dict[str, Any]:
    return nix_eval("(import ./flake.nix).inputs")


@pytest.fixture(scope="module")
def flake_lock() -> dict[str, Any]:
    return json.loads((REPO / "flake.lock").read_text())


def test_flake_declares_the_uv2nix_inputs(flake_inputs: dict[str, Any]) -> None:
    assert set(flake_inputs) == {"nixpkgs", "pyproject-nix", "uv2nix", "pyproject-build-systems"}


def test_flake_lock_pins_every_input(flake_inputs: dict[str, Any], flake_lock: dict[str, Any]) -> None:
    assert lock_problems(flake_inputs, flake_lock) == []


def _without_nar_hash(lock: dict[str, Any]) -> None:
    del lock["nodes"]["uv2nix"]["locked"]["narHash"]


def _short_rev(lock: dict[str, Any]) -> None:
    lock["nodes"]["nixpkgs"]["locked"]["rev"] = "d407951"


def _missing_input(lock: dict[str, Any]) -> None:
    del lock["nodes"]["pyproject-build-systems"]
    del lock["nodes"]["root"]["inputs"]["pyproject-build-systems"]


def _broken_follows(lock: dict[str, Any]) -> None:
    lock["nodes"]["uv2nix"]["inputs"] = {"nixpkgs": ["nixpkgs"]}


def _other_repository(lock: dict[str, Any]) -> None:
    lock["nodes"]["pyproject-nix"]["locked"]["repo"] = "poetry2nix"


def _truncated_hash(lock: dict[str, Any]) -> None:
    lock["nodes"]["nixpkgs"]["locked"]["narHash"] = "sha256-AAAA"


@pytest.mark.parametrize(
    "damage",
    [_without_nar_hash, _short_rev, _missing_input, _broken_follows, _other_repository, _truncated_hash],
)
def test_the_lock_check_refuses_a_damaged_lock(
    damage: Any, flake_inputs: dict[str, Any], flake_lock: dict[str, Any]
) -> None:
    damaged = copy.deepcopy(flake_lock)
    damage(damaged)
    assert lock_problems(flake_inputs, damaged) != []


# --- uv.lock is current ---------------------------------------------------------------------


def bootstrap_uv() -> list[str]:
    """The uv scripts/bootstrap.sh uses, found as it finds it: its pinned version from PATH,
    else from the given Python (``python3 -m uv``), else the one it installed into its own
    environment in the user's cache."""
    version = re.search(r"^UV_VERSION=(\S+)$", (REPO / "scripts" / "bootstrap.sh").read_text(), re.M)
    assert version, "scripts/bootstrap.sh pins no UV_VERSION"
    candidates = [
        ["uv"],
        [os.environ.get("PYTHON", "python3"), "-m", "uv"],
        [f"{USER_CACHE}/platform-bootstrap/uv-{version[1]}/bin/uv"],
    ]
    for command in candidates:
        try:
            reported = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
        except OSError:
            continue
        if reported.returncode == 0 and reported.stdout.split()[:2] == ["uv", version[1]]:
            return command
    return _tool("uv")  # none at the pinned version: skip (fail under CI)


def uv_lock_locked(project: Path) -> subprocess.CompletedProcess[str]:
    env = {
        key: value for key, value in os.environ.items() if key not in ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL")
    }
    env.pop("PIP_FIND_LINKS", None)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return subprocess.run(
        [*bootstrap_uv(), "lock", "--locked"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_uv_lock_is_current() -> None:
    done = uv_lock_locked(REPO)
    assert done.returncode == 0, done.stderr


def test_the_lock_check_refuses_a_stale_lock(tmp_path: Path) -> None:
    shutil.copy(REPO / "uv.lock", tmp_path / "uv.lock")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'version = "0.1.0"' in pyproject
    (tmp_path / "pyproject.toml").write_text(pyproject.replace('version = "0.1.0"', 'version = "0.1.1"', 1))
    (tmp_path / "README.md").write_text("stale\n")
    done = uv_lock_locked(tmp_path)
    assert done.returncode != 0
    assert "--locked" in done.stderr


# --- the overrides cover the packages uv2nix cannot take as locked ----------------------------


@dataclass(frozen=True)
class Target:
    """What pyproject.nix selects wheels for: a Nix system, glibc, and a CPython minor version."""

    system: str
    python: tuple[int, int]
    glibc: tuple[int, int] = NIXPKGS_GLIBC

    @property
    def cpu(self) -> str:
        return NIX_CPU[self.system]


def _platform_compatible(tag: str, target: Target) -> bool:
    if tag == "any":
        return True
    legacy = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(.+)", tag)
    if legacy:
        needs, cpu = LEGACY_MANYLINUX[legacy[1]], legacy[2]
    else:
        modern = re.fullmatch(r"manylinux_(\d+)_(\d+)_(.+)", tag)
        if modern is None:
            linux = re.fullmatch(r"linux_(.+)", tag)
            return bool(linux) and linux[1] == target.cpu
        needs, cpu = (int(modern[1]), int(modern[2])), modern[3]
    return cpu == target.cpu and needs <= target.glibc


def _language_rank(tag: str, target: Target) -> int | None:
    """The rank of a compatible language tag (cp313 -> 313, py3 -> 3), None if incompatible."""
    match = re.fullmatch(r"([a-z]+)(\d*)", tag)
    if match is None or match[1] not in ("py", "cp"):
        return None
    major, minor = target.python
    version = match[2]
    if version in ("", str(major)) or (
        version.startswith(str(major)) and int(f"{major}{minor}") >= int(version)
    ):
        return int(version or 0)
    return None


def compatible_wheels(file_names: list[str], target: Target) -> list[str]:
    """The wheels pyproject.nix would consider, best first, as `pypa.selectWheels` ranks them."""
    major, minor = target.python
    abis = {"none", "any", "abi3", f"cp{major}{minor}"}
    ranked: list[tuple[int, str]] = []
    for name in file_names:
        parts = WHEEL_NAME.fullmatch(name)
        assert parts, f"not a wheel file name: {name}"
        ranks = [
            rank for tag in parts["lang"].split(".") if (rank := _language_rank(tag, target)) is not None
        ]
        if (
            ranks
            and abis & set(parts["abi"].split("."))
            and any(_platform_compatible(tag, target) for tag in parts["plat"].split("."))
        ):
            ranked.append((max(ranks), name))
    return [name for _, name in sorted(ranked, key=lambda item: -item[0])]


def is_generic(name: str) -> bool:
    parts = WHEEL_NAME.fullmatch(name)
    assert parts
    return parts["plat"] == "any"


def wheel_names(package: dict[str, Any]) -> list[str]:
    return [wheel["url"].rsplit("/", 1)[1] for wheel in package.get("wheels", [])]


def needed_overrides(lock: dict[str, Any], targets: list[Target]) -> dict[str, set[str]]:
    """The locked registry packages, whatever their markers, that need an entry in each table."""
    needed: dict[str, set[str]] = {"manylinuxWheels": set(), "sdists": set(), "unbuildable": set()}
    for package in lock["package"]:
        if "registry" not in package["source"]:
            continue
        for target in targets:
            wheels = compatible_wheels(wheel_names(package), target)
            if not wheels:
                needed["sdists" if "sdist" in package else "unbuildable"].add(package["name"])
            elif is_generic(wheels[0]) and not all(is_generic(name) for name in wheels):
                needed["manylinuxWheels"].add(package["name"])
    return needed


@pytest.fixture(scope="module")
def settings() -> dict[str, Any]:
    return nix_eval("import ./nix/settings.nix")


@pytest.fixture(scope="module")
def targets(settings: dict[str, Any]) -> list[Target]:
    python = re.fullmatch(r"python(\d)(\d+)", settings["python"])
    assert python, settings["python"]
    return [Target(system, (int(python[1]), int(python[2]))) for system in settings["systems"]]


@pytest.fixture(scope="module")
def overrides() -> dict[str, Any]:
    return nix_eval("builtins.mapAttrs (_: builtins.attrNames) (import ./nix/overrides.nix)")


def test_the_flake_targets_linux_only(settings: dict[str, Any]) -> None:
    assert settings["systems"] and set(settings["systems"]) <= set(NIX_CPU)


def test_overrides_cover_exactly_the_packages_that_need_them(
    overrides: dict[str, list[str]], targets: list[Target]
) -> None:
    needed = needed_overrides(load_lock(), targets)
    assert needed.pop("unbuildable") == set()
    assert {table: set(names) for table, names in overrides.items()} == needed


def test_every_sdist_override_names_its_build_system() -> None:
    build_systems = nix_eval(
        "builtins.mapAttrs (_: sdist: sdist.buildSystem) (import ./nix/overrides.nix).sdists"
    )
    assert build_systems and all("setuptools" in system for system in build_systems.values())


def test_the_pinned_wheel_is_the_best_platform_wheel(
    overrides: dict[str, list[str]], targets: list[Target]
) -> None:
    lock = load_lock()
    for name in overrides["manylinuxWheels"]:
        (package,) = (package for package in lock["package"] if package["name"] == name)
        for target in targets:
            pinned = nix_eval(
                "let wheels = import ./nix/wheels.nix; lock = builtins.fromTOML (builtins.readFile ./uv.lock); "
                f'in wheels.manylinuxWheel "{target.cpu}" (wheels.lockedPackage lock "{name}")'
            )
            best = next(
                wheel for wheel in compatible_wheels(wheel_names(package), target) if not is_generic(wheel)
            )
            assert pinned["fileName"] == best
            (locked,) = (wheel for wheel in package["wheels"] if wheel["url"].endswith("/" + best))
            assert (pinned["url"], pinned["hash"]) == (locked["url"], locked["hash"])


def test_the_wheel_pin_refuses_an_ambiguous_lock() -> None:
    done = subprocess.run(
        [
            *_tool("nix-instantiate"),
            "--eval",
            "--strict",
            "-E",
            "let wheels = import ./nix/wheels.nix; lock = builtins.fromTOML (builtins.readFile ./uv.lock); "
            'in wheels.lockedPackage lock "hypothesis"',
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "expected exactly one version of hypothesis in uv.lock, found 2" in done.stderr


# The model itself, on the classes of wheel sets a lock can hold.
X86 = Target("x86_64-linux", (3, 13))
ARM = Target("aarch64-linux", (3, 13))


@pytest.mark.parametrize(
    ("names", "target", "expected"),
    [
        # a generic wheel ties with a platform wheel of the same language tag: lock order decides
        (["w-1-py3-none-any.whl", "w-1-py3-none-manylinux1_x86_64.whl"], X86, "w-1-py3-none-any.whl"),
        (
            ["w-1-py3-none-manylinux1_x86_64.whl", "w-1-py3-none-any.whl"],
            X86,
            "w-1-py3-none-manylinux1_x86_64.whl",
        ),
        # a CPython-specific or abi3 wheel outranks py3
        (
            ["c-1-cp313-cp313-manylinux_2_17_x86_64.whl", "c-1-py3-none-any.whl"],
            X86,
            "c-1-cp313-cp313-manylinux_2_17_x86_64.whl",
        ),
        (
            ["p-1-py3-none-any.whl", "p-1-cp39-abi3-manylinux2014_aarch64.whl"],
            ARM,
            "p-1-cp39-abi3-manylinux2014_aarch64.whl",
        ),
        # the other CPU's wheel, another CPython's, musl, macOS and Windows wheels do not count
        (["w-1-py3-none-manylinux1_x86_64.whl", "w-1-py3-none-any.whl"], ARM, "w-1-py3-none-any.whl"),
        (["c-1-cp312-cp312-manylinux_2_17_x86_64.whl"], X86, None),
        (["c-1-cp313-cp313-musllinux_1_2_x86_64.whl", "c-1-cp313-cp313-macosx_11_0_arm64.whl"], X86, None),
        (["c-1-cp313-cp313-win_amd64.whl"], X86, None),
        # a manylinux wheel for a newer glibc than nixpkgs has does not count
        (
            ["n-1-cp313-cp313-manylinux_2_41_x86_64.whl", "n-1-cp313-cp313-manylinux_2_34_x86_64.whl"],
            X86,
            "n-1-cp313-cp313-manylinux_2_34_x86_64.whl",
        ),
        (["n-1-cp313-cp313-manylinux_2_41_x86_64.whl"], X86, None),
        # a newer CPython's wheel does not count, an older py3x one does
        (
            ["c-1-cp314-cp314-manylinux_2_17_x86_64.whl", "o-1-py311-none-any.whl"],
            X86,
            "o-1-py311-none-any.whl",
        ),
    ],
)
def test_wheel_selection_model(names: list[str], target: Target, expected: str | None) -> None:
    wheels = compatible_wheels(names, target)
    assert (wheels[0] if wheels else None) == expected


def test_the_model_flags_each_kind_of_package() -> None:
    registry = {"registry": "https://pypi.org/simple"}
    lock = {
        "package": [
            {
                "name": "generic-first",
                "source": registry,
                "sdist": {},
                "wheels": [
                    {"url": "u/g-1-py3-none-any.whl"},
                    {"url": "u/g-1-py3-none-manylinux1_x86_64.whl"},
                ],
            },
            {
                "name": "fine",
                "source": registry,
                "wheels": [
                    {"url": "u/f-1-py3-none-any.whl"},
                    {"url": "u/f-1-cp313-cp313-manylinux1_x86_64.whl"},
                ],
            },
            {
                "name": "mac-only",
                "source": registry,
                "sdist": {},
                "wheels": [{"url": "u/m-1-cp313-cp313-macosx_12_0_arm64.whl"}],
            },
            {"name": "no-files", "source": registry, "wheels": []},
            {"name": "the-project", "source": {"editable": "."}},
        ]
    }
    assert needed_overrides(lock, [X86]) == {
        "manylinuxWheels": {"generic-first"},
        "sdists": {"mac-only"},
        "unbuildable": {"no-files"},
    }
