#!/usr/bin/env bash
# Tests of the desktop app (src-tauri, ui, crates/ipc), with real parts:
#   1. unit + integration tests (app core against a real tincan-server on loopback, UI reducer natively)
#   2. keyring tests against a real gnome-keyring under dbus-run-session, and the "no Secret Service" error
#   3. end to end: the production app binary under Xvfb, driven through tauri-driver + WebKitWebDriver,
#      screenshots in test-artifacts/screenshots/ (tests/e2e_desktop_resume.py: a call with Chromium kept
#      through a 10 s signaling cut, a server restart and a grace period that runs out); then the tray and the ringing notification as a
#      desktop sees them (tests/e2e_desktop_tray.py: its own StatusNotifierWatcher/host and
#      notification server on its own dbus-run-session); and real audio devices (tests/e2e_desktop_audio.py:
#      a PulseAudio of the test's own with a sine source and null sinks as the system default devices,
#      a speaker and a microphone plugged in mid-call)
#   4. deb: the e2e's production build bundled as a .deb (`cargo tauri bundle --debug`, no second
#      compile), installed with apt on this machine, the installed /usr/bin/tincan launched under Xvfb,
#      signed in on its local server, a screenshot, then removed (tests/e2e_deb.py; needs root or sudo)
#
# Usage: scripts/test-desktop.sh [unit|keyring|e2e|deb|all]...   (default: all = unit keyring e2e;
#   `e2e deb` in one run builds once)
# Needs (Debian 12): libwebkit2gtk-4.1-dev build-essential libxdo-dev libssl-dev
#   libayatana-appindicator3-dev librsvg2-dev pkg-config xvfb xauth webkit2gtk-driver gnome-keyring
#   dbus dbus-x11 python3-venv pulseaudio pulseaudio-utils; Rust tools trunk 0.21.14, wasm-bindgen-cli 0.2.130, tauri-driver 2.x and the
#   wasm32-unknown-unknown target; PyPI reachable once (selenium, dbus-next, python-xlib into target/e2e-venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

XVFB_PID=""
cleanup() { if [ -n "$XVFB_PID" ]; then kill "$XVFB_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "test-desktop: missing '$tool' (see the header of $0)" >&2; exit 1; }
  done
}

# A throwaway HOME / XDG layout, so no real keyring, settings or history are touched. Cargo and rustup
# keep using the real ones.
sandbox() {
  SANDBOX="$(mktemp -d -t tincan-desktop-test.XXXXXX)"
  mkdir -p "$SANDBOX/run" && chmod 700 "$SANDBOX/run"
  export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
  export HOME="$SANDBOX" XDG_DATA_HOME="$SANDBOX/share" XDG_CONFIG_HOME="$SANDBOX/config" \
         XDG_CACHE_HOME="$SANDBOX/cache" XDG_RUNTIME_DIR="$SANDBOX/run"
  # No client (the app's autoaudiosink, Chromium) starts a sound server of its own: only the audio
  # e2e runs one, on its own socket.
  mkdir -p "$SANDBOX/config/pulse" && echo "autospawn = no" >"$SANDBOX/config/pulse/client.conf"
}

unit() {
  step "unit and integration tests (tincan, tincan-ipc, tincan-ui)"
  cargo test -p tincan -p tincan-ipc -p tincan-ui
}

keyring() {
  need dbus-run-session gnome-keyring-daemon
  step "keyring tests against gnome-keyring"
  cargo test -p tincan --test keyring --no-run
  (
    sandbox
    dbus-run-session -- bash -c '
      set -euo pipefail
      echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
      cargo test -p tincan --test keyring -- --ignored real_'
    rm -rf "$SANDBOX"
  )
  step "keyring test with no Secret Service"
  DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent/tincan-test-bus" \
    cargo test -p tincan --test keyring -- --ignored no_secret_service
}

BUILT=""
build_e2e() {
  [ -n "$BUILT" ] && return
  need trunk wasm-bindgen python3
  step "build: UI (trunk), app (production: custom-protocol), tincan-server"
  # The UI goes to its own dist folder (other trunk runs in ui/ must not race with this one), and the
  # production binary embeds it from there (TAURI_CONFIG is merged into tauri.conf.json at build time).
  (cd ui && trunk build --dist "$ROOT/target/e2e/dist")
  TAURI_CONFIG='{"build":{"frontendDist":"target/e2e/dist"}}' \
    cargo build -p tincan --features custom-protocol
  # Copy it at once: any later plain `cargo build` in this workspace overwrites target/debug/tincan with a
  # dev binary that loads the dev server URL.
  mkdir -p target/e2e
  cp target/debug/tincan target/e2e/tincan
  cargo build -p tincan-server
  cp target/debug/tincan-server target/e2e/tincan-server
  if [ ! -x target/e2e-venv/bin/python ] || ! target/e2e-venv/bin/python -c 'import selenium, pytest, dbus_next, Xlib' 2>/dev/null; then
    step "python venv with selenium, dbus-next, python-xlib (target/e2e-venv)"
    python3 -m venv target/e2e-venv
    target/e2e-venv/bin/pip install --quiet 'selenium>=4.20,<5' pytest 'dbus-next>=0.2.3,<0.3' 'python-xlib>=0.33,<0.34'
  fi
  BUILT=1
}

start_xvfb() {
  display=":$((90 + RANDOM % 100))"
  Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
  XVFB_PID=$!
  sleep 1
}

e2e() {
  need Xvfb dbus-run-session gnome-keyring-daemon tauri-driver WebKitWebDriver chromium chromedriver pulseaudio pactl parec
  build_e2e
  step "end to end under Xvfb"
  rm -rf test-artifacts/screenshots
  mkdir -p test-artifacts/screenshots
  local display
  start_xvfb
  (
    sandbox
    # (WEBKIT_DISABLE_COMPOSITING_MODE=1 makes WebKitWebDriver screenshots hang: leave it unset.)
    export DISPLAY="$display" TINCAN_IPC_AUDIT="$ROOT/test-artifacts/ipc-audit.jsonl" \
           TINCAN_APP="$ROOT/target/e2e/tincan" TINCAN_SERVER_BIN="$ROOT/target/e2e/tincan-server" \
           TINCAN_UI_DIST="$ROOT/target/e2e/dist"
    dbus-run-session -- bash -c '
      set -euo pipefail
      echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
      timeout 300 target/e2e-venv/bin/python tests/e2e_desktop.py
      timeout 300 target/e2e-venv/bin/python tests/e2e_desktop_media.py
      timeout 180 target/e2e-venv/bin/python tests/e2e_desktop_audio.py
      timeout 300 target/e2e-venv/bin/python tests/e2e_desktop_resume.py' && status=0 || status=$?
    rm -rf "$SANDBOX"
    exit $status
  )
  step "tray and notifications through a StatusNotifierWatcher and a notification server (own session bus)"
  (
    sandbox
    export DISPLAY="$display" TINCAN_APP="$ROOT/target/e2e/tincan" \
           TINCAN_SERVER_BIN="$ROOT/target/e2e/tincan-server" TINCAN_UI_DIST="$ROOT/target/e2e/dist"
    dbus-run-session -- bash -c '
      set -euo pipefail
      echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
      timeout 180 target/e2e-venv/bin/python tests/e2e_desktop_tray.py' && status=0 || status=$?
    rm -rf "$SANDBOX"
    exit $status
  )
  cleanup
  XVFB_PID=""
  ls test-artifacts/screenshots
}

# The .deb of the e2e's production build (its binary, debug info stripped: 18 MB instead of 110), made
# by the tauri bundler in a staging folder of its own so the workspace's target/debug is not touched,
# installed, run and removed by tests/e2e_deb.py. A release .deb (scripts/build-deb.sh) is the same
# package with an LTO build inside; building that here would compile the whole app a second time.
deb() {
  need Xvfb dbus-run-session gnome-keyring-daemon tauri-driver WebKitWebDriver objcopy apt-get import
  if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
    echo "test-desktop: deb installs a package: run as root or with passwordless sudo" >&2; exit 1
  fi
  build_e2e
  step "bundle the e2e's production build as a .deb (cargo tauri bundle --debug)"
  local stage="$ROOT/target/deb-ci"
  rm -rf "$stage"
  mkdir -p "$stage/debug"
  objcopy --strip-debug target/e2e/tincan "$stage/debug/tincan"
  CARGO_TARGET_DIR="$stage" cargo tauri bundle --debug --bundles deb --ci
  local pkg
  pkg="$(ls "$stage"/debug/bundle/deb/tincan_*.deb)"
  step "install the .deb with apt, run the installed tincan under Xvfb, remove it"
  mkdir -p test-artifacts/screenshots
  local display
  start_xvfb
  (
    sandbox
    export DISPLAY="$display" TINCAN_DEB="$pkg"
    dbus-run-session -- bash -c '
      set -euo pipefail
      echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
      timeout 240 target/e2e-venv/bin/python tests/e2e_deb.py' && status=0 || status=$?
    rm -rf "$SANDBOX"
    exit $status
  ) && status=0 || status=$?
  cleanup
  XVFB_PID=""
  rm -rf "$stage"
  return $status
}

start=$(date +%s)
[ $# -eq 0 ] && set -- all
for WHAT in "$@"; do
  case "$WHAT" in
    unit) unit ;;
    keyring) keyring ;;
    e2e) e2e ;;
    deb) deb ;;
    all) unit; keyring; e2e ;;
    *) echo "usage: $0 [unit|keyring|e2e|deb|all]..." >&2; exit 2 ;;
  esac
done
echo "test-desktop: $* passed in $(( $(date +%s) - start )) s"
