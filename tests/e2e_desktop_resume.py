#!/usr/bin/env python3
"""The desktop app (native engine) keeps a call with a Chromium client through signaling drops.

The production app under Xvfb (tauri-driver + WebKitWebDriver; Debian's WebKitGTK has no WebRTC, so
the UI picks the native GStreamer engine) signs in as alice to a real tincan-server on loopback through
a loopback TCP proxy the test can cut (tests/media/cutproxy.py); bob runs the browser client in headless
Chromium, connected directly. The app's microphone is the engine's test tone (440 Hz) and its speaker the
measuring sink; Chromium's fake microphone plays 1000 Hz. Each side's `window.__tincan_media.peer_gaps`
lists the silences in the audio it receives (the app's from the engine's level reports, every 100 ms;
Chromium's from 10 ms samples).

(a) the app's signaling connection is cut for 10 s mid-call: the app shows "Reconnecting…" with the
    timer running, Chromium "alice is reconnecting…"; audio keeps crossing both ways with no gap
    > 200 ms; the app signs in again (a fresh UserSig for the new connection) and resumes the call;
ICE across the gap: the app's connection cut and Chromium frozen, so the app's engine rebuilds its
    connection and re-offers while offline; the offer is sent after the resume and audio comes back;
(b) tincan-server is killed (SIGKILL) and restarted mid-call: both sign in again, announce the call,
    the new server re-creates it; same audio check; hang-up from the app ends it on both sides;
(c) the server restarted with --resume-secs 3, a new call, the app's connection cut for 10 s: Chromium's
    side ends "Connection lost" after the grace period, the app's when it is back.
The longest gap each side measured is printed.

Run through scripts/test-desktop.sh e2e (display, session bus, keyring, builds).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "media"))

from e2e_desktop import (APP, KEY, SDK, SERVER, SHOTS, App,  # noqa: E402
                         fill_secret_key_form, free_port, launch, log, seed_settings, stop, wait_port)
from selenium.webdriver.common.keys import Keys  # noqa: E402

import test_media as web  # noqa: E402
from cutproxy import CutProxy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
UI_DIST = Path(os.environ.get("TINCAN_UI_DIST", ROOT / "ui" / "dist"))
APP_TONE, BROWSER_TONE = 440.0, 1000.0
TOLERANCE = 0.05
CUT_SECS = 10
MAX_GAP_MS = 200
GRACE_SECS = 3
GAPS = []


class Server:
    """tincan-server on one loopback port, killed (SIGKILL) and restarted at will."""

    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.log = open(SHOTS.parent / "resume-server.log", "w")

    def start(self, extra=()):
        self.proc = subprocess.Popen(
            [str(SERVER), "serve", "--listen", f"127.0.0.1:{self.port}", "--sdkappid", str(SDK),
             "--ui-dir", str(UI_DIST), "--dev-issue-sigs", "--memory-only", *extra],
            env=dict(os.environ, TINCAN_SECRET_KEY=KEY), stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def kill(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
            self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def app_media(app):
    return app.d.execute_script("return window.__tincan_media || null;") or {}


def app_hears(app, tone, samples=6):
    vals = []
    for _ in range(samples):
        hz = app_media(app).get("peer_peak_hz")
        if hz:
            vals.append(hz)
        time.sleep(0.15)
    if not vals:
        return False
    vals.sort()
    return abs(vals[len(vals) // 2] - tone) < tone * TOLERANCE


def browser_hears(drv, tone):
    hz = web.peak(drv, 5)
    return hz is not None and abs(hz - tone) < tone * TOLERANCE


def gap_since(m, since):
    gaps = [g[1] for g in (m.get("peer_gaps") or []) if g[0] + g[1] >= since]
    return max(gaps + [m.get("peer_silent_ms") or 0.0])


def app_shows(app, css):
    return bool(app.d.find_elements("css selector", css))


def browser_shows(drv, css):
    return bool(drv.find_elements("css selector", css))


def check_audio(label, app, browser, since):
    ma, mb = app_media(app), web.media(browser)
    ga, gb = gap_since(ma, since), gap_since(mb, since)
    for who, m in (("app", ma), ("Chromium", mb)):
        log(f"{label}: {who}'s gaps (start s after the cut, ms): " + ", ".join(
            f"{(g[0] - since) / 1000:+.2f}/{g[1]:.0f}" for g in (m.get("peer_gaps") or [])))
    GAPS.append((label, ga, gb))
    log(f"{label}: longest gap: the app (native) heard {ga:.0f} ms, Chromium heard {gb:.0f} ms")
    assert app_hears(app, BROWSER_TONE), "the app still hears Chromium's tone"
    assert browser_hears(browser, APP_TONE), "Chromium still hears the app's tone"
    assert ga <= MAX_GAP_MS and gb <= MAX_GAP_MS, f"{label}: audio gap app {ga:.0f} ms / Chromium {gb:.0f} ms"


def call_bob(app, browser):
    callee = app.find("#callee")
    callee.clear()
    callee.send_keys("bob")
    callee.send_keys(Keys.ENTER)
    app.find("#outgoing-view")
    web.wait_screen(browser, "incoming")
    time.sleep(0.3)
    web.click(browser, "#accept")
    app.find("#in-call-view")
    web.wait_screen(browser, "incall")
    web.wait_for("Chromium hears the app", lambda: web.media(browser)["first_audio_at"], 10)
    web.wait_for("the app hears Chromium", lambda: app_media(app).get("first_audio_at"), 10)
    time.sleep(1.5)
    assert app_hears(app, BROWSER_TONE) and browser_hears(browser, APP_TONE), "audio crosses both ways"


def main():
    for p in (APP, SERVER, UI_DIST / "index.html"):
        if not Path(p).exists():
            sys.exit(f"missing {p}: build it first (scripts/test-desktop.sh does)")
    procs, driver, browser, proxy = [], None, None, None
    server = Server()
    work = tempfile.mkdtemp(prefix="tincan-desktop-resume-")
    try:
        server.start()
        proxy = CutProxy(server.port)
        base = f"http://127.0.0.1:{server.port}"

        browser = web.chromium(work, "bob-resume", BROWSER_TONE)
        browser.get(base + "/")
        web.sign_in(browser, "bob")

        seed_settings("resume")
        app_env = dict(os.environ, TINCAN_EMBEDDED_PORT=str(free_port()))
        app_env.pop("TINCAN_SECRET_KEY", None)
        driver, drv = launch(["--server", f"ws://127.0.0.1:{proxy.port}/ws", "--profile", "resume"],
                             app_env, "app-resume.log")
        procs.append(drv)
        app = App(driver)
        fill_secret_key_form(app, "alice", KEY)
        app.find("#sign-in").click()
        app.find("#home-view")
        app.wait_text("#connection", "Online")
        assert "native" in (app_media(app).get("engine") or ""), app_media(app)

        # (a) the app's connection is cut for 10 s.
        call_bob(app, browser)
        since = time.time() * 1000
        proxy.cut()
        app.find("#call-reconnecting", timeout=10)
        web.wait_for("Chromium shows alice reconnecting", lambda: browser_shows(browser, "#peer-reconnecting"), 10)
        t1 = app.find("#timer").text
        time.sleep(1.2)
        assert app.find("#timer").text != t1, "the app's call timer keeps running while reconnecting"
        app.shot("21-resume-reconnecting-app")
        time.sleep(max(0.0, CUT_SECS - (time.time() * 1000 - since) / 1000))
        app.find("#in-call-view")
        assert web.screen(browser) == "incall"
        proxy.restore()
        restored = time.time()
        web.wait_for("the app resumed", lambda: not app_shows(app, "#call-reconnecting"), 20)
        web.wait_for("Chromium sees alice back", lambda: not browser_shows(browser, "#peer-reconnecting"), 10)
        log(f"the app resumed {time.time() - restored:.1f} s after the proxy came back")
        app.wait_text("#connection", "Online")
        time.sleep(1.0)
        check_audio("app cut 10 s", app, browser, since)

        # ICE across the gap: the app's signaling is cut and Chromium frozen, so the app's native
        # engine finds its connection broken while it cannot reach the server; it rebuilds its pipe and
        # re-offers (ice_restart). The offer is kept, sent after the resume, and answered: only then can
        # audio cross again (the old pipe is gone).
        restarts = app_media(app).get("ice_restarts") or 0
        pids = web.chromium_pids(os.path.join(work, "profile-bob-resume"))
        assert pids, "bob's Chromium processes"
        cut_at = time.time()
        proxy.cut()
        web.freeze(pids, True)
        try:
            web.wait_for("the app restarts ICE while offline",
                         lambda: (app_media(app).get("ice_restarts") or 0) > restarts, 20)
            log(f"the app restarted ICE {time.time() - cut_at:.1f} s into the cut")
            app.find("#call-reconnecting")
            time.sleep(max(0.0, CUT_SECS - (time.time() - cut_at)))
        finally:
            web.freeze(pids, False)
        time.sleep(1.0)
        proxy.restore()
        restored = time.time()
        web.wait_for("the app resumed", lambda: not app_shows(app, "#call-reconnecting"), 20)
        web.wait_for("the app hears Chromium again", lambda: app_hears(app, BROWSER_TONE, 4), 30)
        web.wait_for("Chromium hears the app again", lambda: browser_hears(browser, APP_TONE), 15)
        log(f"restart delivered after the resume: audio back both ways {time.time() - restored:.1f} s "
            "after the proxy came back")
        app.find("#in-call-view")
        assert web.screen(browser) == "incall"

        # (b) the server is killed and restarted mid-call.
        since = time.time() * 1000
        server.kill()
        app.find("#call-reconnecting", timeout=10)
        web.wait_for("Chromium reconnecting", lambda: browser_shows(browser, "#call-reconnecting"), 10)
        time.sleep(2.0)
        server.start()
        restarted = time.time()
        web.wait_for("the app resumed", lambda: not app_shows(app, "#call-reconnecting")
                     and not app_shows(app, "#peer-reconnecting"), 20)
        web.wait_for("Chromium resumed", lambda: not browser_shows(browser, "#call-reconnecting")
                     and not browser_shows(browser, "#peer-reconnecting"), 20)
        log(f"both resumed {time.time() - restarted:.1f} s after the server came back")
        time.sleep(1.0)
        check_audio("server restart", app, browser, since)
        app.find("#hang-up").click()
        app.find("#ended-view")
        app.wait_text("#call-status", "Call ended")
        web.wait_screen(browser, "callended")
        web.wait_for("Chromium: alice hung up", lambda: "alice hung up" in web.el(browser, "#call-message").text, 5)
        app.find("#dismiss").click()
        web.back_home(browser)

        # (c) a cut longer than the grace period.
        server.kill()
        server.start(["--resume-secs", str(GRACE_SECS)])
        app.wait_text("#connection", "Online", timeout=30)
        web.wait_for("Chromium online", lambda: "Online" in web.el(browser, "#connection").text, 30)
        app.find("#home-view")
        call_bob(app, browser)
        cut_at = time.time()
        proxy.cut()
        web.wait_screen(browser, "callended", GRACE_SECS + 10)
        log(f"Chromium's side ended {time.time() - cut_at:.1f} s after the cut (grace {GRACE_SECS} s)")
        assert web.el(browser, "#call-status").text == "Connection lost", web.el(browser, "main").text
        app.find("#in-call-view")
        time.sleep(max(0.0, CUT_SECS - (time.time() - cut_at)))
        proxy.restore()
        app.find("#ended-view", timeout=30)
        app.wait_text("#call-status", "Connection lost")
        log(f"the app: '{app.find('#call-message').text}'")
        app.shot("22-resume-grace-ran-out-app")
        log("PASS desktop native engine <-> Chromium through signaling drops")
    finally:
        if GAPS:
            log("longest audio gap measured: " + "; ".join(
                f"{label}: the app heard {ga:.0f} ms, Chromium heard {gb:.0f} ms" for label, ga, gb in GAPS))
        if browser is not None:
            browser.quit()
        stop(driver, procs)
        if proxy is not None:
            proxy.close()
        server.stop()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
