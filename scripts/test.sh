#!/usr/bin/env bash
# Runs every check and test, with real parts:
#   1. cargo fmt --check, cargo clippy -D warnings (native, and the UI for wasm32)
#   2. cargo test --workspace: protocol, UserSig vectors, property tests, the server on loopback with
#      real WebSocket clients, the desktop backend against a real server, two native media engines
#      then a short benchmark run (crates/bench: tincan against a bare relay; figures printed, never asserted)
#      and a 20 s churn soak of 2,000 clients against the server process (correctness checked, figures printed)
#      then the fuzz targets, 20 s each (scripts/fuzz.sh: client-message decoder, UserSig decoder, SDP checks)
#   3. keyring tests against a real gnome-keyring (dbus-run-session)
#   4. the desktop app in its real webview (Xvfb + tauri-driver + WebKitWebDriver), including a call
#      whose audio the app's native engine carries to the browser client in headless Chromium, and its
#      tray and ringing notification through a StatusNotifierWatcher and a notification server on the
#      test's own session bus (tests/e2e_desktop_tray.py)
#   5. media: two headless Chromium instances hear each other through a real server (also over https/wss);
#      Firefox ESR calls Chromium and the native engine both ways; the native engine and Chromium hear each
#      other in both calling directions (tampered fingerprints refused); a call across two hosts in network
#      namespaces the test makes (wss + verified DTLS)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
start=$(date +%s)

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (native)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo clippy (ui, wasm32)"
(cd ui && cargo clippy --target wasm32-unknown-unknown -- -D warnings)
echo "== cargo test"
cargo test --workspace
echo "== micro-benchmarks built and run once each (criterion, crates/proto/benches; measured by cargo bench, BENCHMARKS.md)"
cargo test -p tincan-proto --benches
echo "== benchmark smoke run (crates/bench; figures are printed, never asserted; BENCHMARKS.md)"
cargo build -p tincan-server -p tincan-bench
timeout 120 target/debug/tincan-bench smoke
echo "== churn soak (crates/bench: 2,000 clients call, hang up and reconnect at random for 20 s; fails only on a lost, misrouted or doubled message or a user left busy)"
timeout 200 target/debug/tincan-bench soak --clients 2000 --secs 20  # ~30 s; longer only when it fails (it waits for answers before reporting)
echo "== fuzzing (scripts/fuzz.sh: client messages, UserSigs, SDP; 20 s each here)"
FUZZ_SECS="${FUZZ_SECS:-20}" scripts/fuzz.sh
echo "== keyring tests"
scripts/test-desktop.sh keyring
echo "== desktop end to end, then its build as an installed .deb (apt install, launch, sign in, remove)"
scripts/test-desktop.sh e2e deb
echo "== media end to end"
scripts/test-media.sh
echo "== all tests passed in $(( $(date +%s) - start )) s"
