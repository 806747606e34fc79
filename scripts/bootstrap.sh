#!/usr/bin/env bash
# Set up .venv with exactly the versions in uv.lock (and the project, editable).
#
# Never installs anything into the Python it is given: Debian's and Ubuntu's system
# Python (and Fedora's, Homebrew's) refuse that (PEP 668, "externally managed"). The
# pinned uv comes from PATH when its version matches; otherwise it is installed into a
# small tools venv of its own in the user's cache. uv then creates .venv from that
# Python. Safe to re-run: an up-to-date environment is left as it is.
#
# PYTHON=/path/to/python3 picks the interpreter (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9
TOOLS="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/platform-bootstrap/uv-$UV_VERSION"

say() { echo "bootstrap: $*" >&2; }
fail() { say "$*"; exit 1; }

command -v "$PYTHON" >/dev/null || fail "no $PYTHON on PATH: install Python 3.10 to 3.14 (or set PYTHON=/path/to/python3)"
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$PYTHON" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 14))' \
  || fail "$PYTHON is Python $version; Platform needs Python 3.10 to 3.14 (set PYTHON=/path/to/python3)"

uv_matches() {
  local out
  out=$("$@" --version 2>/dev/null) || return 1
  [[ $out == "uv $UV_VERSION "* || $out == "uv $UV_VERSION" ]]
}

if uv_matches uv; then
  UV=(uv)
elif uv_matches "$PYTHON" -m uv; then
  UV=("$PYTHON" -m uv)  # already installed there: used, never installed
elif uv_matches "$TOOLS/bin/uv"; then
  UV=("$TOOLS/bin/uv")
else
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
    || fail "Python $version cannot create virtual environments (no venv/ensurepip): install the python$version-venv package (Debian, Ubuntu: sudo apt install python$version-venv)"
  say "installing uv $UV_VERSION into its own environment ($TOOLS)"
  rm -rf "$TOOLS"
  "$PYTHON" -m venv "$TOOLS" || fail "$PYTHON -m venv $TOOLS failed (see above)"
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" \
    || fail "could not install uv $UV_VERSION from the package index (see above)"
  UV=("$TOOLS/bin/uv")
fi

# Only the default package index: never a machine-local one.
export UV_PYTHON_DOWNLOADS=never
unset PIP_FIND_LINKS UV_INDEX_URL UV_EXTRA_INDEX_URL UV_FIND_LINKS
say "syncing .venv with uv.lock (Python $version)"
"${UV[@]}" sync --quiet --locked --extra dev --python "$PYTHON"
