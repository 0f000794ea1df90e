#!/usr/bin/env python3
"""The desktop app with real audio devices: a real sound server, the system default microphone and
speaker, and a device plugged in mid-call.

A PulseAudio daemon (Debian's `pulseaudio`) is started here as this user, on a socket in a temp dir of
its own (no system-wide instance, nothing else of the machine's), with virtual devices: a microphone
that hears a 660 Hz sine (a remap source over a null sink that `gst-launch-1.0 audiotestsrc` plays
into: PulseAudio's module-sine-source hands out 0.2 s bursts on which pulsesrc stalls, 100 buffers of
10 ms not arriving in 10 s, which no real microphone does) as the default source, and a null sink as
the default speaker. Only the app is pointed at it
(PULSE_SERVER); Chromium (the peer, fake microphone at 1000 Hz) is not, so the sink carries nothing but
what the app plays. The production app under Xvfb (tauri-driver + WebKitWebDriver, the native engine)
keeps its Settings empty, i.e. the system default devices, not the `tone:HZ` test source nor the
`measure` sink:

1. bob (Chromium) calls the app and it accepts: Chromium hears 660 Hz (the sound server's microphone,
   through the app), and a recording of the default sink's monitor (`parec`) holds 1000 Hz (bob's tone,
   played by the app on the default speaker);
2. a null sink "USB Headphones" is loaded mid-call (`pactl load-module`): it appears in the in-call
   speaker menu without a restart (the engine's device monitor reports it); picked, the recording of
   its monitor holds bob's tone and the first sink falls silent;
3. a microphone "USB-Microphone" that hears 880 Hz is loaded: it appears in the microphone menu;
   picked, Chromium hears 880 Hz.

Run through scripts/test-desktop.sh (display, session bus, keyring, builds).
"""

import array
import math
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "media"))

from e2e_desktop import (APP, KEY, ROOT, SDK, SERVER, SHOTS, App,  # noqa: E402
                         fill_secret_key_form, free_port, launch, log, stop, wait_port)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

import test_media as web  # noqa: E402

UI_DIST = Path(os.environ.get("TINCAN_UI_DIST", ROOT / "ui" / "dist"))
MIC_TONE, NEW_MIC_TONE, BROWSER_TONE = 660.0, 880.0, 1000.0
TOLERANCE = 0.05
RATE = 8000  # the recordings' sample rate: bob's 1000 Hz is well inside it


class Pulse:
    """A PulseAudio daemon of this test's own, on a unix socket in `dir`."""

    def __init__(self, dir):
        self.dir = Path(dir)
        (self.dir / "run").mkdir(mode=0o700, parents=True)
        self.sock = self.dir / "pulse.sock"
        self.server = f"unix:{self.sock}"
        # Clients of this test that must not reach any sound server (Chromium) do not autospawn one.
        self.client_conf = self.dir / "client.conf"
        self.client_conf.write_text("autospawn = no\n")
        env = dict(os.environ, HOME=str(self.dir), XDG_RUNTIME_DIR=str(self.dir / "run"),
                   XDG_CONFIG_HOME=str(self.dir / "config"))
        env.pop("PULSE_SERVER", None)
        self.log = open(SHOTS.parent / "audio-pulseaudio.log", "w")
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
             "--realtime=no", "--high-priority=no", "--log-target=stderr", "--log-level=notice",
             "-L", f"module-native-protocol-unix socket={self.sock} auth-anonymous=1",
             "-L", "module-null-sink sink_name=speakers sink_properties=device.description=Speakers"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.feeds = []
        end = time.time() + 10
        while subprocess.run(["pactl", "info"], env=self.env(), capture_output=True).returncode != 0:
            if time.time() > end or self.proc.poll() is not None:
                raise AssertionError("pulseaudio did not start (see audio-pulseaudio.log)")
            time.sleep(0.1)
        self.microphone("mic", "Microphone", MIC_TONE)
        self.pactl("set-default-sink", "speakers")
        self.pactl("set-default-source", "mic")

    def microphone(self, name, description, hz):
        """A source `name` that hears a `hz` sine: a remap source (a microphone to clients, not a
        monitor) over the monitor of a null sink that a tone plays into."""
        self.pactl("load-module", "module-null-sink", f"sink_name={name}_feed",
                   f"sink_properties=device.description={description}-feed")
        self.pactl("load-module", "module-remap-source", f"source_name={name}", f"master={name}_feed.monitor",
                   f"source_properties=device.description={description}")
        self.feeds.append(subprocess.Popen(
            ["gst-launch-1.0", "-q", "audiotestsrc", "is-live=true", "wave=sine", f"freq={hz}", "volume=0.4",
             "!", "audioconvert", "!", "pulsesink", f"device={name}_feed"],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=self.log))

    def env(self):
        return dict(os.environ, PULSE_SERVER=self.server, PULSE_CLIENTCONFIG=str(self.client_conf))

    def pactl(self, *args):
        out = subprocess.run(["pactl", *args], env=self.env(), capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, f"pactl {' '.join(args)}: {out.stderr}"
        return out.stdout.strip()

    def sink_inputs(self):
        """Which sink each playback stream is on (sink index -> count)."""
        return self.pactl("list", "short", "sink-inputs")

    def record(self, device, secs=1.2, skip=0.3):
        """`secs` of `device` (a sink's monitor), mono s16 at RATE Hz, the first `skip` s dropped."""
        p = subprocess.Popen(["parec", "-d", device, "--raw", "--format=s16le", f"--rate={RATE}",
                              "--channels=1", "--latency-msec=20"],
                             env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            want = int((secs + skip) * RATE) * 2
            data = b""
            # An idle sink's monitor sends nothing at all: that counts as silence after the time is up.
            end = time.time() + secs + skip + 1
            while len(data) < want and time.time() < end:
                if not select.select([p.stdout], [], [], max(0.0, end - time.time()))[0]:
                    break
                chunk = os.read(p.stdout.fileno(), want - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            p.kill()
            p.wait()
        samples = array.array("h")
        samples.frombytes(data[: len(data) // 2 * 2])
        return [s / 32768.0 for s in samples[int(skip * RATE):]]

    def stop(self):
        for f in self.feeds:
            f.kill()
            f.wait()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def rms(x):
    return math.sqrt(sum(v * v for v in x) / len(x)) if x else 0.0


def goertzel(x, hz):
    w = 2 * math.pi * hz / RATE
    c = 2 * math.cos(w)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + c * s1 - s2, s1
    return s1 * s1 + s2 * s2 - c * s1 * s2


def peak_hz(x, lo=150, hi=3000, step=10):
    """The loudest frequency of `x` (a coarse scan, then a fine one around the best)."""
    x = x[: RATE]  # one second is plenty and keeps the pure-Python scan short
    best = max(range(lo, hi, step), key=lambda f: goertzel(x, f))
    return max((best + d / 2 for d in range(-2 * step, 2 * step + 1)), key=lambda f: goertzel(x, f))


def app_media(app):
    return app.d.execute_script("return window.__tincan_media || null;")


def options(app, css):
    return [o.get_attribute("value") for o in app.d.find_elements(By.CSS_SELECTOR, f"{css} option")]


def near(hz, want):
    return hz is not None and abs(hz - want) < want * TOLERANCE


def heard(pulse, device):
    """(peak Hz, RMS) of what `device` plays."""
    x = pulse.record(device)
    return (peak_hz(x) if rms(x) > 0.003 else None), rms(x)


def main():
    for p in (APP, SERVER, UI_DIST / "index.html"):
        if not Path(p).exists():
            sys.exit(f"missing {p}: build it first (scripts/test-desktop.sh does)")
    for tool in ("pulseaudio", "pactl", "parec"):
        if shutil.which(tool) is None:
            sys.exit(f"missing {tool}: apt-get install pulseaudio pulseaudio-utils (scripts/setup.sh does)")
    app_log = SHOTS.parent / "app-audio.log"
    app_log.unlink(missing_ok=True)
    procs, driver, browser, pulse = [], None, None, None
    work = tempfile.mkdtemp(prefix="tincan-desktop-audio-")
    started = time.time()
    try:
        pulse = Pulse(os.path.join(work, "pulse"))
        log(f"pulseaudio on {pulse.server}: default sink 'speakers', default source 'mic' ({MIC_TONE:.0f} Hz sine)")
        # Nothing but the app may reach that server: Chromium's own audio stays off it.
        os.environ["PULSE_CLIENTCONFIG"] = str(pulse.client_conf)
        os.environ.pop("PULSE_SERVER", None)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        url = f"ws://127.0.0.1:{port}/ws"
        procs.append(subprocess.Popen(
            [str(SERVER), "serve", "--listen", f"127.0.0.1:{port}", "--sdkappid", str(SDK),
             "--ui-dir", str(UI_DIST), "--dev-issue-sigs", "--memory-only"],
            env=dict(os.environ, TINCAN_SECRET_KEY=KEY), stdout=subprocess.DEVNULL,
            stderr=open(SHOTS.parent / "audio-server.log", "w")))
        wait_port(port)

        browser = web.chromium(work, "bob-audio", BROWSER_TONE)
        browser.get(base + "/")
        web.sign_in(browser, "bob")
        log("bob signed in from Chromium")

        # alice in the app, with empty device settings: the system default microphone and speaker.
        app_env = pulse.env()
        app_env["TINCAN_EMBEDDED_PORT"] = str(free_port())
        app_env.pop("TINCAN_SECRET_KEY", None)
        driver, drv = launch(["--server", url, "--profile", "audio"], app_env, "app-audio.log")
        procs.append(drv)
        app = App(driver)
        fill_secret_key_form(app, "alice", KEY)
        app.find("#sign-in").click()
        app.find("#home-view")
        app.wait_text("#connection", "Online")
        assert "native" in ((app_media(app) or {}).get("engine") or ""), app_media(app)

        # bob calls the app; it accepts (its engine was made while it rang).
        web.dial(browser, "alice")
        app.find("#incoming-view")
        web.wait_for("the app's media session is ready while ringing",
                     lambda: (app_media(app) or {}).get("active"), 5)
        time.sleep(0.5)  # bob's offer reaches the ringing app
        app.find("#accept").click()
        app.find("#in-call-view")
        web.wait_screen(browser, "incall")
        web.wait_for("Chromium hears the app", lambda: web.media(browser)["first_audio_at"], 10)
        web.wait_for("the app hears Chromium", lambda: (app_media(app) or {}).get("first_audio_at"), 10)
        time.sleep(1.0)

        # 1. The default microphone reaches bob; bob reaches the default speaker.
        hz_browser = web.peak(browser)
        log(f"Chromium hears {hz_browser} Hz (the default microphone is a {MIC_TONE:.0f} Hz sine)")
        log(f"streams: recording {pulse.pactl('list', 'short', 'source-outputs')!r}; playing {pulse.sink_inputs()!r}")
        if not near(hz_browser, MIC_TONE):
            log(f"Chromium's media: {web.media(browser)}")
            log(f"the app's media: {app_media(app)}")
        assert near(hz_browser, MIC_TONE), "Chromium must hear the system default microphone"
        hz, level = heard(pulse, "speakers.monitor")
        log(f"the default speaker plays {hz} Hz (RMS {level:.3f}); bob sends {BROWSER_TONE:.0f} Hz")
        assert near(hz, BROWSER_TONE), "the default speaker must play bob's tone"
        app.shot("35-in-call-default-devices")

        # 2. Headphones plugged in mid-call: listed without a restart; picked, they play bob.
        plugged = time.time()
        pulse.pactl("load-module", "module-null-sink", "sink_name=headphones",
                    "sink_properties=device.description=USB-Headphones")
        web.wait_for("the new speaker in the in-call menu", lambda: "headphones" in options(app, "#output-device"), 10)
        log(f"'USB-Headphones' listed {time.time() - plugged:.1f} s after it was plugged in")
        # Reported by the native engine's own device watch (not only the webview's devicechange).
        web.wait_for("the engine's device watch", lambda: "audio devices changed" in app_log.read_text(), 5)
        assert "speakers.monitor" not in options(app, "#input-device"), "a speaker's monitor is no microphone"
        Select(app.find("#output-device")).select_by_value("headphones")
        time.sleep(1.5)
        hz, level = heard(pulse, "headphones.monitor")
        log(f"the new speaker plays {hz} Hz (RMS {level:.3f})")
        assert near(hz, BROWSER_TONE), "the speaker picked mid-call must play bob's tone"
        _, old_level = heard(pulse, "speakers.monitor")
        log(f"the first speaker now: RMS {old_level:.4f}")
        assert old_level < 0.003, "the first speaker must fall silent once another is picked"

        # 3. A microphone plugged in mid-call: listed; picked, bob hears it.
        plugged = time.time()
        pulse.microphone("usbmic", "USB-Microphone", NEW_MIC_TONE)
        web.wait_for("the new microphone in the in-call menu", lambda: "usbmic" in options(app, "#input-device"), 10)
        log(f"'USB-Microphone' listed {time.time() - plugged:.1f} s after it was plugged in")
        Select(app.find("#input-device")).select_by_value("usbmic")
        hz_browser = web.wait_for("Chromium hears the new microphone",
                                  lambda: (lambda h: h if near(h, NEW_MIC_TONE) else None)(web.peak(browser)), 10)
        log(f"Chromium hears {hz_browser} Hz after the switch (the new microphone: {NEW_MIC_TONE:.0f} Hz)")
        assert (app_media(app) or {}).get("error") is None, app_media(app)
        app.shot("36-in-call-plugged-devices")

        web.click(browser, "#hang-up")
        app.find("#ended-view")
        web.wait_screen(browser, "callended")
        log(f"PASS desktop app with real audio devices ({time.time() - started:.0f} s)")
    finally:
        if browser is not None:
            browser.quit()
        stop(driver, procs)
        if pulse is not None:
            pulse.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
