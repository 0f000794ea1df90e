#!/usr/bin/env bash
# Installs what a fresh Debian 12 / Ubuntu machine lacks to build, run and test tincan.
# Idempotent: each package or tool is installed only when it is missing.
set -euo pipefail

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: Tauri/WebKitGTK build deps, the headless test rig (Xvfb, WebKitWebDriver,
# gnome-keyring, dbus), Chromium and Firefox ESR for browser tests, GStreamer for the native media engine,
# and a real tray host and notification daemon that draw under Xvfb (status-notifier-watcher,
# gtk-sni-tray-standalone, dunst) for the tray e2e's screenshots; coturn and nftables for the NAT tests;
# a sound server and its tools (pulseaudio, pactl, parec) that the audio e2e runs on a socket of its own.
APT_PACKAGES=(
  build-essential pkg-config file curl libssl-dev
  libwebkit2gtk-4.1-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev
  xvfb xauth imagemagick webkit2gtk-driver gnome-keyring dbus dbus-x11 libsecret-tools
  chromium chromium-driver firefox-esr fonts-dejavu-core python3-venv
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-nice gstreamer1.0-libav gstreamer1.0-tools
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils dunst
  coturn nftables
  pulseaudio pulseaudio-utils
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# coturn is here for the NAT tests (tests/net/test_turn_nat.py), which start their own turnserver
# inside a test namespace; the package's system service must not run (or start at boot) on a test machine.
if command -v systemctl >/dev/null && systemctl is-enabled coturn >/dev/null 2>&1; then
  need_root systemctl disable --now coturn >/dev/null 2>&1 || need_root systemctl disable coturn >/dev/null 2>&1 || true
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install Rust with rustup first (https://rustup.rs)" >&2
  exit 1
fi
export PATH="$HOME/.cargo/bin:$PATH"

rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' \
  || rustup target add wasm32-unknown-unknown

# Cargo tools, pinned to versions that build with this toolchain (see docs/ or toolchain notes):
# trunk 0.22 needs rustc 1.96; wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock 2>/dev/null || true)
install_tool() { # binary, cargo install args...
  local bin=$1; shift
  if ! command -v "$bin" >/dev/null; then
    echo "setup: cargo install $*"
    cargo install "$@"
  fi
}
install_tool trunk --locked trunk --version 0.21.14
install_tool cargo-tauri --locked tauri-cli --version '^2'
install_tool tauri-driver --locked tauri-driver --version '^2'
# Firefox's WebDriver (no Debian package; crates.io only; 0.37.1 builds with rustc 1.95, ~4.5 min).
install_tool geckodriver --locked geckodriver --version 0.37.1
if [ -n "${WASM_BINDGEN_VERSION}" ]; then
  if ! wasm-bindgen --version 2>/dev/null | grep -q " ${WASM_BINDGEN_VERSION}$"; then
    echo "setup: cargo install wasm-bindgen-cli ${WASM_BINDGEN_VERSION}"
    cargo install wasm-bindgen-cli --version "${WASM_BINDGEN_VERSION}" --force
  fi
fi
# Fuzzing (scripts/fuzz.sh): libFuzzer needs a nightly rustc; cargo-fuzz 0.13.2 builds with 1.95.
rustup toolchain list 2>/dev/null | grep -q '^nightly' \
  || rustup toolchain install nightly --profile minimal
install_tool cargo-fuzz --locked cargo-fuzz --version 0.13.2
echo "setup: ok"
