#!/usr/bin/env python3
"""The .deb as a user gets it: installed with apt on this machine, the INSTALLED /usr/bin/tincan launched
under Xvfb, signed in on its built-in local server, a screenshot taken, then the package removed (also
when a check fails) and checked gone.

    TINCAN_DEB=target/deb-ci/debug/bundle/deb/tincan_0.1.0_amd64.deb python tests/e2e_deb.py

Needs root or sudo for apt-get, a display, a session bus and an unlocked Secret Service: run it through
`scripts/test-desktop.sh deb`, which builds the package from the e2e's production build and sets those up.

Checks: `apt-get install ./tincan_*.deb` resolves the package's dependencies from the machine's apt
sources; dpkg owns /usr/bin/tincan, the menu entry and the hicolor icons; the installed binary is the
production build (it shows its own sign-in view, not a dev server's URL); signing in on the built-in
local server reaches the home view, online; `apt-get remove` leaves neither the package nor the binary.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e_desktop  # noqa: E402
from e2e_desktop import ROOT, SHOTS, App, free_port, launch, log, stop, wait_port  # noqa: E402

INSTALLED = Path("/usr/bin/tincan")
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"]


def root(cmd):
    return cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd]


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), **kw)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def installed():
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "tincan"], capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


def remove():
    """Removes the package; returns whether it and its binary are gone."""
    if installed():
        try:
            run(root([*APT, "remove", "tincan"]))
        except AssertionError as e:
            log(f"removal failed: {e}")
    gone = not installed() and not INSTALLED.exists()
    log(f"after apt-get remove: package {'gone' if not installed() else 'STILL INSTALLED'}, "
        f"/usr/bin/tincan {'gone' if not INSTALLED.exists() else 'STILL THERE'}")
    return gone


def check_files():
    owner = run(["dpkg", "-S", str(INSTALLED)]).strip()
    assert owner.startswith("tincan:"), owner
    files = run(["dpkg", "-L", "tincan"]).split()
    desktop = Path("/usr/share/applications/tincan.desktop")
    assert str(desktop) in files, files
    entry = desktop.read_text()
    assert "Exec=tincan" in entry and "Icon=tincan" in entry, entry
    icons = [f for f in files if f.startswith("/usr/share/icons/hicolor/") and f.endswith("/apps/tincan.png")]
    assert icons, f"no hicolor icons in the package: {files}"
    log(f"dpkg owns {INSTALLED}, {desktop.name} and {len(icons)} icons "
        f"({', '.join(sorted(Path(i).parts[5] for i in icons))})")


def sign_in_installed():
    """The installed app, driven like the e2e's build (tauri-driver starts /usr/bin/tincan)."""
    e2e_desktop.APP = INSTALLED  # launch() reads the module's APP
    port = free_port()
    env = dict(os.environ, TINCAN_EMBEDDED_PORT=str(port))
    for var in ("TINCAN_IPC_AUDIT", "TINCAN_SERVER", "TINCAN_SECRET_KEY"):
        env.pop(var, None)
    driver, procs = None, []
    try:
        started = time.time()
        driver, drv = launch(["--profile", "deb"], env, "app-deb.log")
        procs.append(drv)
        app = App(driver)
        app.find("#sign-in-view", timeout=30)
        app.wait_text("#sign-in-view", "built-in local server")
        log(f"the installed app shows its sign-in view {time.time() - started:.1f} s after launch")
        app.find("#user-id").send_keys("alice")
        app.find("#sign-in").click()
        app.find("#home-view")
        app.wait_text("#connection", "Online")
        wait_port(port)
        log(f"signed in on the built-in local server (port {port})")
        app.shot("41-deb-installed-home")
        # The whole display as X draws it (not only the webview's own rendering).
        shot = SHOTS / "42-deb-installed-display.png"
        subprocess.run(["import", "-window", "root", str(shot)], check=True, timeout=30)
        log(f"screenshot {shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot}")
    finally:
        stop(driver, procs)


def main():
    deb = Path(os.environ.get("TINCAN_DEB", ""))
    if not deb.is_file():
        sys.exit(f"TINCAN_DEB={deb}: no such package (scripts/test-desktop.sh deb builds it)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    if installed():
        log("a tincan package was installed before this test: it is replaced and removed at the end")
    started = time.time()
    ok = False
    try:
        # `./` so apt takes it as a file; its Depends come from the machine's apt sources.
        run(root([*APT, "install", "--no-install-recommends", str(deb.resolve())]))
        assert installed() and INSTALLED.exists(), "apt-get install left no /usr/bin/tincan"
        log(f"installed {deb.name} ({deb.stat().st_size / 2**20:.1f} MiB) in {time.time() - started:.1f} s")
        check_files()
        sign_in_installed()
        ok = True
    finally:
        gone = remove()
    assert gone, "apt-get remove tincan must leave neither the package nor /usr/bin/tincan"
    if ok:
        log(f"PASS the .deb installs, runs, signs in and uninstalls ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
