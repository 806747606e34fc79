#!/usr/bin/env bash
# Mutation score per module (mutmut 3, see mutation/modules.toml): scripts/mutation.sh [MODULE...]
# Slow (minutes per module): not part of CI. Exit 2 when a module scores under 90%.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/mutmut ]] || { echo "error: no .venv/bin/mutmut: run scripts/bootstrap.sh" >&2; exit 1; }
exec .venv/bin/python mutation/run.py "$@"
