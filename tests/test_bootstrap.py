"""`scripts/bootstrap.sh` on a stock Debian/Ubuntu Python: an externally managed one (PEP 668).

The bootstrap runs in a temporary copy of the repository with ``python3`` resolving to
the system interpreter and no ``uv`` on ``PATH``, so it has to bring its own uv without
touching that interpreter. Downloads are avoided by pointing uv and pip at the user's
caches (the tests' ``HOME`` is a temporary directory).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")
UV_VERSION = "0.13.9"


def externally_managed(python: Path) -> bool:
    if not python.exists():
        return False
    stdlib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return bool(stdlib) and (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


needs_system_python = pytest.mark.skipif(
    not externally_managed(SYSTEM_PYTHON),
    reason=f"{SYSTEM_PYTHON} is missing or not externally managed (no PEP 668 marker): nothing to prove here",
)


def clone(tmp_path: Path) -> Path:
    """The repository's tracked files as they are in the work tree (uncommitted edits included)."""
    target = tmp_path / "clone"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def bin_dir_without_uv(tmp_path: Path) -> Path:
    """A PATH entry with python3 = the system interpreter and the basic tools, and no uv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
    for tool in ("bash", "sh", "env", "grep", "rm", "dirname", "cat", "git", "uname", "mkdir", "ln", "cp"):
        found = shutil.which(tool, path="/usr/bin:/bin")
        if found:
            (bin_dir / tool).symlink_to(found)
    return bin_dir


def bootstrap_env(tmp_path: Path, path: str, **extra: str) -> dict[str, str]:
    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PYTHON"))}
    env.update(
        PATH=path,
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        UV_CACHE_DIR=str(real_home / ".cache" / "uv"),
        PIP_CACHE_DIR=str(real_home / ".cache" / "pip"),
        **extra,
    )
    return env


def bootstrap(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/bootstrap.sh"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def system_has_uv() -> bool:
    return (
        subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "uv", "--version"], capture_output=True, check=False
        ).returncode
        == 0
    )


@pytest.mark.slow
@needs_system_python
def test_bootstrap_with_an_externally_managed_python(tmp_path: Path) -> None:
    repo = clone(tmp_path)
    env = bootstrap_env(tmp_path, str(bin_dir_without_uv(tmp_path)))
    had_uv = system_has_uv()
    first = bootstrap(repo, env)
    if subprocess.run([str(SYSTEM_PYTHON), "-c", "import ensurepip, venv"], capture_output=True).returncode:
        assert first.returncode == 1 and first.stderr.count("\n") == 1, first.stderr
        assert "install the python3." in first.stderr and "-venv package" in first.stderr
        return
    assert first.returncode == 0, first.stderr
    assert "externally-managed-environment" not in first.stderr
    assert f"installing uv {UV_VERSION} into its own environment" in first.stderr
    assert system_has_uv() == had_uv  # nothing was installed into the system interpreter
    venv_python = repo / ".venv" / "bin" / "python"
    assert venv_python.exists()
    base = subprocess.run(
        [str(venv_python), "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert base.stdout.strip() == "/usr"  # .venv is built on the system interpreter
    helped = subprocess.run(
        [str(repo / ".venv" / "bin" / "platform"), "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0 and "Commands:" in helped.stdout

    marker = repo / ".venv" / "pyvenv.cfg"
    stamp = marker.stat().st_mtime_ns
    again = bootstrap(repo, env)  # a re-run is a no-op
    assert again.returncode == 0, again.stderr
    assert "installing uv" not in again.stderr
    assert marker.stat().st_mtime_ns == stamp


def real_uv() -> str | None:
    """The uv binary on PATH, seen through a pyenv shim if that is what PATH holds."""
    if shutil.which("pyenv"):
        home = pwd.getpwuid(os.getuid()).pw_dir  # the tests' HOME hides pyenv's root
        env = {**os.environ, "HOME": home}
        found = subprocess.run(["pyenv", "which", "uv"], capture_output=True, text=True, env=env, check=False)
        if found.returncode == 0:
            return found.stdout.strip()
    return shutil.which("uv")


@pytest.mark.slow
@needs_system_python
def test_a_matching_uv_on_path_is_used(tmp_path: Path) -> None:
    uv = real_uv()
    if (
        uv is None
        or UV_VERSION not in subprocess.run([uv, "--version"], capture_output=True, text=True).stdout
    ):
        pytest.skip(f"no uv {UV_VERSION} on PATH")
    repo = clone(tmp_path)
    bin_dir = bin_dir_without_uv(tmp_path)
    (bin_dir / "uv").symlink_to(uv)
    result = bootstrap(repo, bootstrap_env(tmp_path, str(bin_dir)))
    assert result.returncode == 0, result.stderr
    assert "installing uv" not in result.stderr and not (tmp_path / "cache" / "platform-bootstrap").exists()
    assert (repo / ".venv" / "bin" / "platform").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("old-python", "Platform needs Python 3.10 to 3.14"),
        ("no-python", "no python3 on PATH"),
        ("no-ensurepip", "cannot create virtual environments (no venv/ensurepip): install the python3."),
    ],
)
def test_what_the_machine_lacks_is_said_in_one_line(tmp_path: Path, setup: str, message: str) -> None:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "bootstrap.sh", repo / "scripts" / "bootstrap.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "rm", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool, path="/usr/bin:/bin"))
    extra: dict[str, str] = {}
    if setup == "old-python":
        old = next(
            (p for p in Path("/root/.pyenv/versions").glob("3.[6-9].*/bin/python3") if p.exists()), None
        )
        old = old or shutil.which("python3.9") or shutil.which("python3.8")
        if old is None:
            pytest.skip("no Python older than 3.10 on this machine")
        (bin_dir / "python3").symlink_to(old)
    elif setup == "no-ensurepip":
        # Debian without python3-venv: `import ensurepip` fails. Shadow it the same way.
        if not SYSTEM_PYTHON.exists():
            pytest.skip(f"no {SYSTEM_PYTHON}")
        (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
        shadow = tmp_path / "shadow"
        shadow.mkdir()
        (shadow / "ensurepip.py").write_text("raise ImportError('ensurepip is not installed')\n")
        extra["PYTHONPATH"] = str(shadow)
    result = bootstrap(repo, {**bootstrap_env(tmp_path, str(bin_dir)), **extra})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("bootstrap: "), result.stderr
    assert message in result.stderr
