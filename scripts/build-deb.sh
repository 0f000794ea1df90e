#!/usr/bin/env bash
# Builds the desktop installer(s) offline: `scripts/build-deb.sh` -> target/release/bundle/deb/*.deb
# (pass e.g. `deb,rpm` to get both). AppImage is configured in tauri.conf.json for release machines but
# cannot be built here: its bundler downloads AppRun/linuxdeploy from GitHub.
#
# The UI is built into target/bundle-dist (not ui/dist), so a concurrent `trunk serve`/`trunk build`
# in ui/ cannot race with it. Needs tauri-cli 2.x, trunk 0.21.14 and wasm-bindgen-cli 0.2.130.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUNDLES="${1:-deb}"
cargo tauri build --bundles "$BUNDLES" --config '{
  "build": {
    "beforeBuildCommand": {"script": "trunk build --release --dist ../target/bundle-dist", "cwd": "ui"},
    "frontendDist": "target/bundle-dist"
  }
}'
ls -la "${CARGO_TARGET_DIR:-target}"/release/bundle/*/
