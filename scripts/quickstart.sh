#!/usr/bin/env bash
# Set up, then run the embedded default: a whole devnet on this machine (the dev chain,
# 4 validators each running 'platform up', 8 simulated miners), and watch it until every
# validator has set the same weights on the dev chain. The devnet keeps running in the
# background: 'platform devnet status', 'platform devnet logs -f', 'platform status
# --data-dir data/devnet/validator-0', and 'platform devnet down' to stop it. State goes
# to ./data (or $PLATFORM_DATA_DIR); run this again to continue the same devnet.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export PLATFORM_DATA_DIR=${PLATFORM_DATA_DIR:-$PWD/data}

platform devnet up
echo "waiting for every validator to set its weights on the dev chain (a few epochs of 15 s)..." >&2
for _ in $(seq 100); do
  if platform --json devnet status | python3 -c '
import json, sys
report = json.load(sys.stdin)
agreement, rows = report["agreement"], report["validators"]
paid = all(row["weights_scored"] for row in rows)  # miners scored, not only the burn
sys.exit(0 if agreement["weights_set_by_all"] and len(agreement["vector_hashes"]) == 1 and paid else 1)'; then
    break
  fi
  sleep 3
done
platform devnet status
echo >&2
echo "the devnet runs on: 'platform devnet logs -f' to follow it, 'platform devnet down' to stop it" >&2
