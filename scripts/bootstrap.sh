#!/usr/bin/env bash
# Set up .venv with exactly the versions in uv.lock (and the project, editable).
# Safe to re-run: an up-to-date environment is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9

if ! "$PYTHON" -m uv --version 2>/dev/null | grep -q "uv $UV_VERSION"; then
  echo "bootstrap: installing uv $UV_VERSION" >&2
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

# Only the default package index: never a machine-local one.
export UV_PYTHON_DOWNLOADS=never
unset PIP_FIND_LINKS UV_INDEX_URL UV_EXTRA_INDEX_URL
echo "bootstrap: syncing .venv with uv.lock" >&2
"$PYTHON" -m uv sync --quiet --locked --extra dev --python "$PYTHON"
