#!/usr/bin/env bash
# Launch time of the desktop app (window to sign-in view) against a Tauri hello-world's (window to
# its page), both measured in the same run: scripts/measure-launch.sh [runs] (default 5).
# Not part of CI (it builds a second Tauri app); README's "Size and launch time" has the figures.
#
# Builds: the UI as shipped (trunk --release: opt-level z, LTO, wasm-opt), the production app binary
# embedding it (debug profile, as the e2e tests build it; PROFILE=release for the release one) and the
# hello-world in tests/launch/hello with the same tauri (versions from the root Cargo.lock, same
# features), all into this repository's target/. Then Xvfb, a session bus and an unlocked
# gnome-keyring, as scripts/test-desktop.sh sets up, and tests/launch/measure.py.
# Needs what scripts/test-desktop.sh's e2e step needs (and its target/e2e-venv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS="${1:-5}"
PROFILE="${PROFILE:-debug}"
cargo_profile=(); [ "$PROFILE" = release ] && cargo_profile=(--release)
OUT="$ROOT/target/launch"
mkdir -p "$OUT"

echo "== UI (trunk build --release) -> target/launch/dist"
(cd ui && trunk build --release --dist "$OUT/dist")
ls -l "$OUT"/dist/*.wasm
echo "== app ($PROFILE, custom-protocol)"
TAURI_CONFIG='{"build":{"frontendDist":"target/launch/dist"}}' \
  cargo build -p tincan --features custom-protocol "${cargo_profile[@]}"
cp "target/$PROFILE/tincan" "$OUT/tincan"
echo "== hello-world ($PROFILE)"
cp Cargo.lock tests/launch/hello/Cargo.lock
cargo build --manifest-path tests/launch/hello/Cargo.toml --target-dir "$ROOT/target" --offline "${cargo_profile[@]}"
rm -f tests/launch/hello/Cargo.lock
cp "target/$PROFILE/tincan-launch-hello" "$OUT/hello"

[ -x target/e2e-venv/bin/python ] || { echo "measure-launch: run scripts/test-desktop.sh e2e once (target/e2e-venv)" >&2; exit 1; }
XVFB_PID=""
SANDBOX="$(mktemp -d -t tincan-launch.XXXXXX)"
cleanup() { [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null; rm -rf "$SANDBOX"; }
trap cleanup EXIT
if [ -z "${DISPLAY:-}" ]; then
  export DISPLAY=":$((190 + RANDOM % 100))"
  Xvfb "$DISPLAY" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
  XVFB_PID=$!
  sleep 1
fi
mkdir -p "$SANDBOX/run" && chmod 700 "$SANDBOX/run"
export XDG_RUNTIME_DIR="$SANDBOX/run"
dbus-run-session -- bash -c '
  set -euo pipefail
  echo -n launch-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  target/e2e-venv/bin/python tests/launch/measure.py --app "$0/tincan" --hello "$0/hello" --runs "$1"' "$OUT" "$RUNS"
