#!/usr/bin/env bash
# Sign an "add" update for every shipped challenge, and for the sample challenge in
# fixtures/challenge, with the devnet sudo key from fixtures/wallets (run after build.py
# changes a module or after editing a challenge.toml). The key is imported into a
# throwaway data dir; sr25519 signatures are randomized, so the files differ run to run
# while verifying the same way. The shipped shares of emission fit together: all of them
# can be active at once (the registry refuses more than 1,000,000 ppm per mechanism).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
platform --data-dir "$tmp" keys import --name sudo --wallet devnet --hotkey sudo \
  --wallet-path fixtures/wallets >/dev/null
for challenge in sort predict compress; do
  platform --data-dir "$tmp" registry sign "challenges/$challenge/challenge.toml" \
    --key sudo --action add -o "challenges/$challenge/update.json"
done
platform --data-dir "$tmp" registry sign fixtures/challenge/challenge.toml \
  --key sudo --action add -o fixtures/challenge/update-add.json
