#!/usr/bin/env bash
# Set up, then run one validator's pipeline on the embedded devnet: the dev chain, the
# registry (the devnet sudo owner's signed challenges), deterministic WASM evaluations of
# sample submissions, and the epoch's weight vector. State goes to ./data (or
# $PLATFORM_DATA_DIR); run it again to continue on the same state.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export PLATFORM_DATA_DIR=${PLATFORM_DATA_DIR:-$PWD/data}
step() { printf '\n== %s\n' "$*"; }

step "the embedded dev chain and its metagraph"
platform chain dev status >/dev/null 2>&1 || platform chain dev init
platform chain sync

step "the devnet sudo key (well-known, devnet only) signs the sample challenge offline"
platform keys show devnet-sudo >/dev/null 2>&1 || platform keys import --name devnet-sudo \
  --wallet devnet --hotkey sudo --wallet-path fixtures/wallets
update="$PLATFORM_DATA_DIR/hello-add.json"
platform registry sign fixtures/challenge/challenge.toml --key devnet-sudo --action add -o "$update"

step "verify the signed updates as any validator would, and propose them"
for signed in "$update" challenges/*/update.json; do
  platform registry verify "$signed" >/dev/null && echo "valid: $signed"
  platform registry propose "$signed" >/dev/null 2>&1 && echo "proposed: $signed" \
    || echo "already proposed: $signed"
done
platform registry list

step "evaluate sample submissions in the WASM sandbox (2 workers; malformed ones are refused)"
refused="(refused submissions are not evaluated; the others are recorded)"
platform eval run --jobs 2 challenges/sort fixtures/submissions/sort/*.wasm || echo "$refused"
platform eval run challenges/predict fixtures/submissions/predict/*.bin || echo "$refused"
platform eval run challenges/compress fixtures/submissions/compress/*.wasm || echo "$refused"

step "replay the newest evaluation bit for bit"
newest=$(platform --json eval list --limit 1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["id"])')
platform eval replay "$newest"

step "this epoch's weight vector (no challenge is active until consensus applies one)"
platform weights compute

step "check the audit chain"
platform audit verify
