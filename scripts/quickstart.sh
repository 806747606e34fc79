#!/usr/bin/env bash
# Set up, then walk the embedded devnet through the registry: the devnet sudo owner signs
# the sample challenge offline, this node verifies and proposes it, and the audit chain
# is checked. State goes to ./data (or $PLATFORM_DATA_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
export PLATFORM_DATA_DIR=${PLATFORM_DATA_DIR:-$PWD/data}
step() { printf '\n== %s\n' "$*"; }

step "devnet sudo key (well-known, devnet only)"
platform keys show devnet-sudo 2>/dev/null || platform keys import --name devnet-sudo \
  --wallet devnet --hotkey sudo --wallet-path fixtures/wallets

step "sign the sample challenge offline"
update="$PLATFORM_DATA_DIR/hello-add.json"
platform registry sign fixtures/challenge/challenge.toml --key devnet-sudo --action add -o "$update"

step "verify it as any validator would"
platform registry verify "$update"

step "propose it for consensus"
platform registry propose "$update" || echo "(proposed in an earlier run: see the list below)"
platform registry list

step "check the audit chain"
platform audit verify
