#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit/property/integration tests (real server on
# loopback, real WebSocket clients), then the desktop tests when their script is present.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
if [ -x scripts/test-desktop.sh ]; then
  echo "== desktop tests"
  scripts/test-desktop.sh
fi
