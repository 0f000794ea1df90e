#!/usr/bin/env bash
# Media end-to-end tests: audio crosses between two headless Chromium instances through a real
# tincan-server on loopback and the trunk-built UI (tests/media/test_media.py), and between the
# native engine (GStreamer) and Chromium in both calling directions (tests/media/test_native_interop.py),
# and headless Firefox ESR with Chromium and with the native engine, both directions each
# (tests/media/test_firefox.py); and a call across two hosts, network namespaces the test makes
# itself (tests/net: Chromium + tincan-server with TLS on one, the native engine on the other; wss and
# verified DTLS, both directions; skipped with the reason only where `ip netns add` is not permitted);
# and a live call surviving a signaling drop (tests/media/test_resume.py: one browser's connection cut
# for 10 s through a loopback proxy, the server killed and restarted, a cut longer than the grace period;
# the longest audio gap each side measured is printed); and calls through NAT with a real TURN relay
# (tests/net/test_turn_nat.py: two homes behind their own symmetric NAT, coturn and tincan-server in a
# "public" namespace; needs coturn and nftables from setup.sh: fails without them); and the web
# engine's relay-only mode without a relay (tests/media/test_relay_only.py: no candidate leaves the page).
#
# Usage: scripts/test-media.sh [pytest args]
# Needs (Debian 12): chromium chromium-driver firefox-esr (at /usr/bin), geckodriver 0.37.1
#   (cargo install), python3 with venv; trunk 0.21.14,
#   wasm-bindgen-cli 0.2.130 and the wasm32-unknown-unknown target; PyPI reachable once if selenium
#   and pytest are missing (they go into target/media-venv).
# Exits non-zero if audio does not cross (or any other check fails).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
START=$(date +%s)
export PATH="$HOME/.cargo/bin:$PATH"

for tool in chromium chromedriver firefox-esr geckodriver trunk wasm-bindgen python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "test-media: missing '$tool' (see the header of $0)" >&2; exit 1; }
done

echo "=== building tincan-server and the UI"
cargo build -p tincan-server
cargo build -p tincan-media --example native_peer
(cd ui && trunk build)

PY=python3
if ! "$PY" -c 'import selenium, pytest, websocket' 2>/dev/null; then
  VENV="$ROOT/target/media-venv"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -c 'import selenium, pytest, websocket' 2>/dev/null \
    || "$VENV/bin/pip" install --quiet selenium pytest websocket-client
  PY="$VENV/bin/python"
fi

export TINCAN_SERVER_BIN="$ROOT/target/debug/tincan-server"
export TINCAN_UI_DIST="$ROOT/ui/dist"
export TINCAN_NATIVE_PEER_BIN="$ROOT/target/debug/examples/native_peer"
echo "=== media e2e (headless Chromium x2, Firefox ESR, the native engine; tincan-server on loopback)"
status=0
"$PY" -m pytest -x -q -s -p no:cacheprovider tests/media/test_media.py tests/media/test_native_interop.py \
  tests/media/test_firefox.py tests/media/test_resume.py tests/media/test_relay_only.py tests/net/test_netns.py tests/net/test_two_hosts.py tests/net/test_turn_nat.py "$@" || status=$?
echo "=== test-media: $(( $(date +%s) - START )) s, exit $status"
exit $status
