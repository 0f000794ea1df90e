#!/usr/bin/env python3
"""The full desktop app carries a call's audio to a browser, with its native media engine.

Debian's WebKitGTK has no RTCPeerConnection, so the app's UI picks the native engine (GStreamer
webrtcbin in the backend). This drives the production app under Xvfb through tauri-driver +
WebKitWebDriver, and a headless Chromium running the browser client (served by the same real
tincan-server on loopback):

1. the app signs in (SDKAppID + secret key), and its settings choose the test-tone microphone
   (440 Hz, picked by name in Settings' menu) and the measuring output: configuration, not a test-only code path;
2. the app calls bob, who is signed in from Chromium (fake microphone: 1000 Hz); Chromium accepts;
3. audio crosses both ways: Chromium hears 440 Hz, the app's engine hears 1000 Hz; Chromium freezes for
   6 s, the app restarts ICE, and audio crosses both ways again;
4. the app hangs up; both sides show the call ended with its duration; the app's history lists it;
5. bob calls the app from Chromium; the app (its engine ready while ringing) accepts; audio crosses both
   ways; the speaker is switched mid-call from the in-call panel; bob hangs up.

Run through scripts/test-desktop.sh (display, session bus, keyring, builds).
"""

import os
import statistics
import subprocess
import sys
import shutil
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "media"))

from e2e_desktop import (APP, KEY, ROOT, SDK, SERVER, SHOTS, App,  # noqa: E402
                         fill_secret_key_form, free_port, launch, log, stop, wait_port)
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

import test_media as web  # noqa: E402

UI_DIST = Path(os.environ.get("TINCAN_UI_DIST", ROOT / "ui" / "dist"))
APP_TONE, BROWSER_TONE = 440.0, 1000.0
TOLERANCE = 0.05


def app_media(app):
    return app.d.execute_script("return window.__tincan_media || null;")


def app_peak(app, samples=8):
    vals = []
    for _ in range(samples):
        m = app_media(app) or {}
        if m.get("peer_peak_hz"):
            vals.append(m["peer_peak_hz"])
        time.sleep(0.15)
    return statistics.median(vals) if vals else None


def main():
    for p in (APP, SERVER, UI_DIST / "index.html"):
        if not Path(p).exists():
            sys.exit(f"missing {p}: build it first (scripts/test-desktop.sh does)")
    procs, driver, browser = [], None, None
    work = tempfile.mkdtemp(prefix="tincan-desktop-media-")
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        url = f"ws://127.0.0.1:{port}/ws"
        env = dict(os.environ, TINCAN_SECRET_KEY=KEY)
        procs.append(subprocess.Popen(
            [str(SERVER), "serve", "--listen", f"127.0.0.1:{port}", "--sdkappid", str(SDK),
             "--ui-dir", str(UI_DIST), "--dev-issue-sigs", "--memory-only"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(SHOTS.parent / "media-server.log", "w")))
        wait_port(port)

        # bob, in a browser.
        browser = web.chromium(work, "bob-desktop", BROWSER_TONE)
        browser.get(base + "/")
        web.sign_in(browser, "bob")
        log("bob signed in from Chromium")

        # alice, in the desktop app.
        app_env = dict(os.environ, TINCAN_EMBEDDED_PORT=str(free_port()))
        app_env.pop("TINCAN_SECRET_KEY", None)
        driver, drv = launch(["--server", url, "--profile", "media"], app_env, "app-media.log")
        procs.append(drv)
        app = App(driver)
        fill_secret_key_form(app, "alice", KEY)
        app.find("#sign-in").click()
        app.find("#home-view")
        app.wait_text("#connection", "Online")
        snap = app_media(app) or {}
        log(f"desktop media engine: {snap.get('engine')}")
        assert "native" in (snap.get("engine") or ""), f"the app should use the native engine here: {snap}"

        # Settings: the test tone as microphone, the measuring output as speaker.
        app.find("#open-settings").click()
        app.find("#settings-view")
        for field, value in (("#microphone", f"tone:{int(APP_TONE)}"), ("#speaker", "measure")):
            Select(app.find(field)).select_by_value(value)
        app.find("#save-settings").click()
        time.sleep(0.5)
        if app.d.find_elements("css selector", "#settings-view"):
            app.find("#back").click()
        app.find("#home-view")

        # Call bob; the browser accepts.
        callee = app.find("#callee")
        callee.send_keys("bob")
        callee.send_keys(Keys.ENTER)
        app.find("#outgoing-view")
        web.wait_screen(browser, "incoming")
        time.sleep(0.3)
        web.click(browser, "#accept")
        app.find("#in-call-view")
        web.wait_screen(browser, "incall")

        mb = web.wait_for("Chromium hears the app",
                          lambda: web.media(browser)["first_audio_at"] and web.media(browser), 10)
        ma = web.wait_for("the app hears Chromium",
                          lambda: (app_media(app) or {}).get("first_audio_at") and app_media(app), 10)
        accept_at = mb["accept_at"]
        log(f"desktop(native)->Chromium: accept -> first audio: Chromium {mb['first_audio_at'] - accept_at:.0f} ms")
        time.sleep(1.0)
        hz_browser = web.peak(browser)
        hz_app = app_peak(app)
        log(f"Chromium hears {hz_browser} Hz (app sends {APP_TONE}); the app hears {hz_app} Hz (Chromium sends {BROWSER_TONE})")
        assert hz_browser and abs(hz_browser - APP_TONE) < APP_TONE * TOLERANCE, "Chromium must hear the app's tone"
        assert hz_app and abs(hz_app - BROWSER_TONE) < BROWSER_TONE * TOLERANCE, "the app must hear Chromium's tone"
        assert ma.get("packets_received") is not None
        app.shot("11-in-call-native-engine")

        # Chromium freezes (SIGSTOP) for 6 s: the app's native engine notices the silence, rebuilds its
        # connection and re-offers (ICE restart); when Chromium thaws, audio crosses both ways again and
        # the call never left the in-call view.
        pids = web.chromium_pids(os.path.join(work, "profile-bob-desktop"))
        assert pids, "bob's Chromium processes"
        frozen = time.time()
        web.freeze(pids, True)
        try:
            web.wait_for("the app restarts ICE", lambda: ((app_media(app) or {}).get("ice_restarts") or 0) >= 1, 15)
            log(f"the app restarted ICE {time.time() - frozen:.1f} s after Chromium froze")
            time.sleep(max(0.0, 6 - (time.time() - frozen)))
        finally:
            web.freeze(pids, False)
        thawed = time.time()
        web.wait_for("the app hears Chromium again",
                     lambda: (lambda h: h if h and abs(h - BROWSER_TONE) < BROWSER_TONE * TOLERANCE else None)(app_peak(app, 4))
                     and (app_media(app) or {}).get("ice_state") == "connected", 30)
        web.wait_for("Chromium hears the app again",
                     lambda: (lambda h: h if h and abs(h - APP_TONE) < APP_TONE * TOLERANCE else None)(web.peak(browser)), 15)
        log(f"audio back both ways {time.time() - thawed:.1f} s after Chromium thawed")
        app.find("#in-call-view")
        assert (app_media(app) or {}).get("error") is None, app_media(app)

        # Hang up from the app: both sides show the end with the duration; history lists it.
        time.sleep(1.0)
        app.find("#hang-up").click()
        app.find("#ended-view")
        app.wait_text("#call-status", "Call ended")
        web.wait_screen(browser, "callended")
        web.wait_for("duration on Chromium",
                     lambda: "The call lasted" in web.el(browser, "#call-message").text, 5)
        app.wait_text("#call-message", "lasted")
        app.shot("12-ended-native-engine")
        app.find("#dismiss").click()
        app.wait_text("#history", "answered")
        log("history lists the answered call")

        # bob calls the app. While it rings, the native engine is already set up (microphone closed),
        # so accepting only opens the microphone and answers.
        web.back_home(browser)
        web.dial(browser, "alice")
        app.find("#incoming-view")
        web.wait_for("the app's media session is ready while ringing",
                     lambda: (app_media(app) or {}).get("active"), 5)
        time.sleep(0.5)  # bob's offer reaches the ringing app
        app.find("#accept").click()
        app.find("#in-call-view")
        web.wait_screen(browser, "incall")
        ma = web.wait_for("the app (callee) hears Chromium",
                          lambda: (app_media(app) or {}).get("first_audio_at") and app_media(app), 10)
        log(f"Chromium->desktop(native): accept -> first audio: app {ma['first_audio_at'] - ma['accept_at']:.0f} ms")
        web.wait_for("Chromium hears the app", lambda: web.media(browser)["first_audio_at"], 10)
        time.sleep(1.0)
        hz_app, hz_browser = app_peak(app), web.peak(browser)
        log(f"callee app hears {hz_app} Hz; Chromium hears {hz_browser} Hz")
        assert hz_app and abs(hz_app - BROWSER_TONE) < BROWSER_TONE * TOLERANCE, "the callee app must hear Chromium"
        assert hz_browser and abs(hz_browser - APP_TONE) < APP_TONE * TOLERANCE, "Chromium must hear the callee app"

        # The speaker, switched mid-call from the in-call panel: to the default output, then back to the
        # measuring one, which hears Chromium again (a fresh sink in the running call).
        # The menu shows the speaker in use (the one Settings chose), by name.
        out = Select(app.find("#output-device"))
        assert out.first_selected_option.get_attribute("value") == "measure", out.first_selected_option.text
        assert out.first_selected_option.text == "Measuring output (tests)"
        assert Select(app.find("#input-device")).first_selected_option.text == f"Test tone {int(APP_TONE)} Hz"
        Select(app.find("#output-device")).select_by_value("")
        time.sleep(1.0)
        err = (app_media(app) or {}).get("error")
        log(f"speaker -> default output: media error {err}")
        if err is None:
            # A pick in the call is what Settings holds afterwards, and the menu stays on it.
            assert Select(app.find("#output-device")).first_selected_option.get_attribute("value") == ""
            saved = app.d.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "window.__TAURI__.core.invoke('get_settings', {}).then(done, e => done({error: e}));")
            assert saved.get("speaker") is None, saved
        Select(app.find("#output-device")).select_by_value("measure")
        time.sleep(1.5)
        hz_app = app_peak(app)
        log(f"speaker -> measuring output again: the app hears {hz_app} Hz")
        assert hz_app and abs(hz_app - BROWSER_TONE) < BROWSER_TONE * TOLERANCE
        assert (app_media(app) or {}).get("error") is None, app_media(app)
        app.shot("13-in-call-native-callee")
        web.click(browser, "#hang-up")
        app.find("#ended-view")
        app.wait_text("#call-message", "lasted")
        web.wait_screen(browser, "callended")
        log("PASS desktop native engine <-> Chromium (both directions)")
    finally:
        if browser is not None:
            browser.quit()
        stop(driver, procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
