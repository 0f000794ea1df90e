"""Audio crosses: two headless Chromium instances, a real tincan-server on loopback, the trunk-built UI.

Each browser's fake microphone plays its own tone (A: 440 Hz, B: 1000 Hz, WAV files made here). A calls
B, B accepts; each side must hear the OTHER side's tone (Web Audio analyser on the received stream)
and getStats must count inbound audio packets. Then: mute on A silences B's received audio; hang-up
shows the call ended with its duration on both sides; decline, busy and ring timeout show the right
words on the caller's screen. Accept -> first remote audio is printed for each call.

Run through scripts/test-media.sh (it builds the UI and the server first). Environment:
  TINCAN_SERVER_BIN  path of the tincan-server binary
  TINCAN_UI_DIST     the trunk `dist` folder
"""

import base64
import hashlib
import json
import math
import os
import socket
import ssl
import statistics
import struct
import subprocess
import tempfile
import time
import urllib.request
import wave

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER_BIN = os.environ.get("TINCAN_SERVER_BIN", os.path.join(ROOT, "target", "debug", "tincan-server"))
UI_DIST = os.environ.get("TINCAN_UI_DIST", os.path.join(ROOT, "ui", "dist"))
SDKAPPID = 1400000001
TONE_A, TONE_B = 440.0, 1000.0
# One FFT bin is 48000 / 4096 = 11.7 Hz; allow a few.
TOLERANCE_HZ = 30.0
TIMINGS = []
SHOTS = os.environ.get("TINCAN_MEDIA_SHOTS", os.path.join(ROOT, "target", "media-e2e"))
# The running server process and a way to restart it on the same port (for the reconnect test).
SERVER = {}


def log(msg):
    print(f"[media-e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_tone(path, freq, secs=10, rate=48000):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(secs * rate)):
            frames += struct.pack("<h", int(0.5 * 32767 * math.sin(2 * math.pi * freq * i / rate)))
        w.writeframes(bytes(frames))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout=15.0, every=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # the page may be re-rendering
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="tincan-media-") as d:
        yield d


@pytest.fixture(scope="session")
def server(workdir):
    assert os.path.exists(os.path.join(UI_DIST, "index.html")), f"no built UI in {UI_DIST}"
    port = free_port()
    env = dict(os.environ, TINCAN_SECRET_KEY="media-e2e-" + os.urandom(8).hex(), TINCAN_LOG="warn")
    logf = open(os.path.join(workdir, "server.log"), "w")
    base = f"http://127.0.0.1:{port}"

    def up():
        with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
            return r.status == 200

    # Per fixture instance (a module that imports this fixture gets its own server).
    mine = {}

    def start():
        mine["proc"] = subprocess.Popen(
            [SERVER_BIN, "serve", "--listen", f"127.0.0.1:{port}", "--sdkappid", str(SDKAPPID),
             "--ui-dir", UI_DIST, "--dev-issue-sigs", "--memory-only",
             # The suite calls the same two users back to back (ring-outs included); the re-invite
             # cooldown and pair cap are the abuse suite's subject (crates/server/tests/abuse.rs).
             "--min-recall-secs", "0", "--max-pair-invites", "1000"],
            env=env, stdout=logf, stderr=subprocess.STDOUT,
        )
        wait_for("tincan-server", up, timeout=20)

    def stop():
        proc = mine.pop("proc", None)
        if proc:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def restart():
        stop()
        start()

    SERVER["restart"] = restart
    try:
        start()
        yield base
    finally:
        stop()
        logf.close()


def chromium(workdir, name, freq, extra=()):
    """Headless Chromium whose fake microphone plays `freq` Hz; `freq=None`: no microphone at all.
    `extra`: more command-line flags."""
    profile = os.path.join(workdir, f"profile-{name}")
    os.makedirs(profile, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    flags = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if freq is not None:
        wav = os.path.join(workdir, f"{name}.wav")
        write_tone(wav, freq)
        flags += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}"]
    for flag in list(flags) + list(extra):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


@pytest.fixture(scope="module")
def browsers(workdir, server):
    a = chromium(workdir, "alice", TONE_A)
    b = chromium(workdir, "bob", TONE_B)
    try:
        for drv, user in ((a, "alice"), (b, "bob")):
            drv.get(server + "/")
            sign_in(drv, user)
        yield a, b
    finally:
        for drv in (a, b):
            try:
                for entry in drv.get_log("browser")[-30:]:
                    if entry.get("level") in ("SEVERE", "WARNING"):
                        log(f"console: {entry.get('message')}")
            except Exception:
                pass
            drv.quit()
    if TIMINGS:
        log("accept -> first remote audio (ms): " + ", ".join(
            f"{label}: callee heard {c:.0f}, caller heard {r:.0f}" for label, c, r in TIMINGS))


def shot(drv, name):
    os.makedirs(SHOTS, exist_ok=True)
    drv.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def el(drv, css):
    return drv.find_element(By.CSS_SELECTOR, css)


def click(drv, css, timeout=10):
    wait_for(f"{css} clickable", lambda: el(drv, css).is_enabled() and el(drv, css), timeout)
    el(drv, css).click()


def screen(drv):
    return el(drv, ".app").get_attribute("data-screen")


def wait_screen(drv, name, timeout=15):
    try:
        wait_for(f"screen {name}", lambda: screen(drv) == name, timeout)
    except AssertionError:
        raise AssertionError(f"expected screen {name}, still on {screen(drv)}: {el(drv, 'main').text!r}")


def media(drv):
    return drv.execute_script("return window.__tincan_media || null;")


def sign_in(drv, user):
    wait_screen(drv, "signin", 20)
    field = el(drv, "#user-id")
    field.clear()
    field.send_keys(user)
    click(drv, "#sign-in")
    wait_for(f"{user} online", lambda: el(drv, "#me").text == user, 15)
    wait_for("connection online", lambda: "Online" in el(drv, "#connection").text, 10)
    eng = wait_for("media snapshot", lambda: media(drv), 5)
    assert eng["engine"], "Chromium must have the WebRTC engine"


def dial(drv, callee):
    field = el(drv, "#callee")
    field.clear()
    field.send_keys(callee)
    click(drv, "#call")


def peak(drv, samples=8):
    vals = []
    for _ in range(samples):
        hz = media(drv)["peer_peak_hz"]
        if hz:
            vals.append(hz)
        time.sleep(0.1)
    return statistics.median(vals) if vals else None


def peer_level(drv, samples=6):
    vals = []
    for _ in range(samples):
        vals.append(media(drv)["peer_level"] or 0.0)
        time.sleep(0.1)
    return statistics.median(vals)


def back_home(*drvs):
    for d in drvs:
        if screen(d) == "callended":
            click(d, "#dismiss")
        wait_screen(d, "home")


def connect_call(a, b, label):
    dial(a, "bob")
    wait_screen(b, "incoming")
    wait_for("ringback on A", lambda: media(a)["tone"] == "ringback", 5)
    wait_for("ringtone on B", lambda: media(b)["tone"] == "ringtone", 5)
    # The caller's offer reaches the ringing callee before anyone answers.
    time.sleep(0.5)
    click(b, "#accept")
    wait_screen(b, "incall")
    wait_screen(a, "incall")
    mb = wait_for("B hears A", lambda: media(b)["first_audio_at"] and media(b), 10)
    ma = wait_for("A hears B", lambda: media(a)["first_audio_at"] and media(a), 10)
    accept_at = mb["accept_at"]
    callee_ms = mb["first_audio_at"] - accept_at
    caller_ms = ma["first_audio_at"] - accept_at
    TIMINGS.append((label, callee_ms, caller_ms))
    log(f"{label}: accept -> first audio: callee {callee_ms:.0f} ms, caller {caller_ms:.0f} ms")
    assert media(a)["tone"] is None and media(b)["tone"] is None, "tones stop on answer"
    return callee_ms, caller_ms


def test_audio_crosses_mute_and_hang_up(browsers):
    a, b = browsers
    callee_ms, caller_ms = connect_call(a, b, "call 1")
    time.sleep(1.0)
    hz_at_b, hz_at_a = peak(b), peak(a)
    log(f"B hears {hz_at_b} Hz (A sends {TONE_A}); A hears {hz_at_a} Hz (B sends {TONE_B})")
    assert hz_at_b and abs(hz_at_b - TONE_A) < TOLERANCE_HZ, f"B should hear {TONE_A} Hz, got {hz_at_b}"
    assert hz_at_a and abs(hz_at_a - TONE_B) < TOLERANCE_HZ, f"A should hear {TONE_B} Hz, got {hz_at_a}"
    sa, sb = media(a), media(b)
    log(f"stats A: {json.dumps({k: sa[k] for k in ('packets_received', 'rtt_ms', 'jitter_ms', 'loss_pct', 'quality')})}")
    log(f"stats B: {json.dumps({k: sb[k] for k in ('packets_received', 'rtt_ms', 'jitter_ms', 'loss_pct', 'quality')})}")
    assert sa["packets_received"] > 10 and sb["packets_received"] > 10, "getStats shows inbound audio"
    assert sa["mic_level"] > 0.01 and sb["mic_level"] > 0.01, "microphone level meters move"
    assert el(a, "#peer-level").get_attribute("data-level") not in (None, "0.0000"), "peer meter shown"
    assert "Connection:" in el(a, "#quality").text
    shot(a, "in-call-alice")
    shot(b, "in-call-bob")

    # Mute on A: B's received level falls, and B is told.
    before = peer_level(b)
    click(a, "#mute")
    wait_for("B shows A muted", lambda: el(b, "#remote-muted").is_displayed(), 5)
    time.sleep(0.8)
    after = peer_level(b)
    log(f"B's received level: {before:.4f} before mute, {after:.4f} after")
    assert before > 0.02 and after < before / 10, "mute silences A's audio at B"
    click(a, "#mute")
    wait_for("B hears A again", lambda: peer_level(b, 3) > before / 3, 5)

    # Hang up: both see the end with the duration; A's microphone is released at once.
    time.sleep(1.2)
    click(a, "#hang-up")
    wait_screen(a, "callended")
    wait_screen(b, "callended")
    # The snapshot is refreshed every 100 ms.
    wait_for("media stopped on hang-up", lambda: not media(a)["active"] and not media(b)["active"], 0.5)
    for d in (a, b):
        assert el(d, "#call-status").text == "Call ended"
        wait_for("duration shown", lambda: "The call lasted 0:0" in el(d, "#call-message").text, 5)
    log(f"ended: A '{el(a, '#call-message').text}' / B '{el(b, '#call-message').text}'")
    back_home(a, b)
    assert callee_ms < 1000 and caller_ms < 1500


def test_second_call_timing(browsers):
    a, b = browsers
    connect_call(a, b, "call 2")
    click(b, "#hang-up")
    wait_screen(a, "callended")
    wait_screen(b, "callended")
    assert "bob hung up" in el(a, "#call-message").text
    back_home(a, b)


def test_decline(browsers):
    a, b = browsers
    dial(a, "bob")
    wait_screen(b, "incoming")
    click(b, "#decline")
    wait_screen(a, "callended")
    assert el(a, "#call-status").text == "Declined"
    wait_for("ringback stopped", lambda: media(a)["tone"] is None and not media(a)["active"], 0.5)
    back_home(a, b)


def ws_client(server, user):
    """A third party (carol) over a raw WebSocket, to make bob busy."""
    import websocket  # websocket-client, installed with selenium

    with urllib.request.urlopen(f"{server}/dev/usersig?user={user}", timeout=5) as r:
        sig = json.load(r)
    ws = websocket.create_connection(server.replace("http://", "ws://") + "/ws", timeout=5)
    ws.send(json.dumps({"type": "login", "version": 1, "sdk_app_id": sig["sdk_app_id"],
                        "user_id": user, "user_sig": sig["user_sig"], "device_id": "e2e"}))
    assert json.loads(ws.recv())["type"] == "login_ok"
    return ws


def test_busy(browsers, server):
    a, b = browsers
    carol = ws_client(server, "carol")
    try:
        carol.send(json.dumps({"type": "invite", "call_id": "busy-test-1", "callee": "bob",
                               "call_type": "audio", "timeout_secs": 30}))
        wait_screen(b, "incoming")
        dial(a, "bob")
        wait_screen(a, "callended")
        assert el(a, "#call-status").text == "Busy"
        carol.send(json.dumps({"type": "cancel", "call_id": "busy-test-1"}))
        wait_screen(b, "callended")
        assert el(b, "#call-status").text == "Cancelled"
        wait_for("ringtone stops on cancel", lambda: media(b)["tone"] is None, 0.5)
    finally:
        carol.close()
    back_home(a, b)


def test_ring_timeout(browsers):
    a, b = browsers
    click(a, "#open-settings")
    wait_screen(a, "settings")
    field = el(a, "#ring-timeout")
    field.clear()
    field.send_keys("3")
    click(a, "#save-settings")
    wait_for("settings saved", lambda: "saved" in el(a, "#notice").text, 5)
    shot(a, "settings-alice")
    if screen(a) == "settings":
        click(a, "#back")
    wait_screen(a, "home")
    dial(a, "bob")
    wait_screen(b, "incoming")
    wait_screen(a, "callended", 10)
    assert el(a, "#call-status").text == "No answer"
    wait_screen(b, "callended", 5)
    wait_for("tones stop on timeout", lambda: media(b)["tone"] is None and media(a)["tone"] is None, 0.5)
    back_home(a, b)


def test_pasted_usersig_and_no_microphone(browsers, server, workdir):
    """A browser signs in with a pasted UserSig (a bad one first), then calls with no microphone."""
    a, b = browsers
    c = chromium(workdir, "carol", None)
    try:
        c.get(server + "/")
        wait_screen(c, "signin", 20)
        with urllib.request.urlopen(f"{server}/dev/usersig?user=carol", timeout=5) as r:
            sig = json.load(r)

        def submit(user_sig):
            el(c, "#user-id").clear()
            el(c, "#user-id").send_keys("carol")
            el(c, "#sdk-app-id").clear()
            el(c, "#sdk-app-id").send_keys(str(sig["sdk_app_id"]))
            el(c, "#user-sig").clear()
            el(c, "#user-sig").send_keys(user_sig)
            click(c, "#sign-in")

        submit(sig["user_sig"][:-8] + "AAAAAAA_")
        wait_for("refused sign-in", lambda: el(c, "#error").get_attribute("data-code") == "UserSigInvalid", 10)
        submit(sig["user_sig"])
        wait_for("carol online", lambda: el(c, "#me").text == "carol", 10)

        dial(c, "bob")
        wait_for("no-microphone error", lambda: el(c, "#media-error").get_attribute("data-code") == "NoMicrophone", 10)
        log(f"no microphone: '{el(c, '#media-error').text}'")
        wait_screen(c, "callended")
        assert el(c, "#call-status").text == "Cancelled"
        wait_for("ringback stopped", lambda: media(c)["tone"] is None and not media(c)["active"], 0.5)
        if screen(b) in ("incoming", "callended"):
            wait_screen(b, "callended")
        back_home(b)
    finally:
        c.quit()


def chromium_pids(profile_marker):
    """The Chromium processes of one test browser: the one started with our profile, and its children."""
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        procs[int(pid)] = (ppid, cmd)
    roots = {p for p, (_, cmd) in procs.items() if profile_marker in cmd and "--type=" not in cmd}
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for p, (ppid, _) in procs.items():
            if ppid in found and p not in found:
                found.add(p)
                changed = True
    return sorted(found)


def freeze(pids, on):
    import signal
    for p in pids:
        try:
            os.kill(p, signal.SIGSTOP if on else signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_ice_restart_then_connection_lost(browsers, workdir):
    """B's browser is frozen (SIGSTOP): A's ICE goes disconnected, A restarts ICE and recovers when B
    comes back; frozen for longer than 30 s, A ends the call with "Connection lost"."""
    a, b = browsers
    connect_call(a, b, "call 3")
    pids = chromium_pids(os.path.join(workdir, "profile-bob"))
    assert pids, "bob's Chromium processes"
    freeze(pids, True)
    try:
        wait_for("A sees the connection drop", lambda: media(a)["ice_state"] in ("disconnected", "failed"), 20)
        wait_for("A restarts ICE", lambda: (media(a)["ice_restarts"] or 0) >= 1, 10)
    finally:
        freeze(pids, False)
    wait_for("A reconnected", lambda: media(a)["ice_state"] in ("connected", "completed"), 15)
    wait_for("A hears B again", lambda: peer_level(a, 3) > 0.01, 10)
    assert screen(a) == "incall" and screen(b) == "incall"
    log(f"ICE restart: recovered after {media(a)['ice_restarts']} restart(s)")

    freeze(pids, True)
    try:
        t0 = time.time()
        wait_screen(a, "callended", 60)
        log(f"A gave up after {time.time() - t0:.0f} s without media")
        assert el(a, "#call-status").text == "Connection lost"
        shot(a, "connection-lost-alice")
        wait_for("connection-lost banner",
                 lambda: el(a, "#media-error").get_attribute("data-code") == "ConnectionLost", 3)
        log(f"A: '{el(a, '#call-message').text}'")
    finally:
        freeze(pids, False)
    wait_screen(b, "callended", 20)
    back_home(a, b)


def test_browser_reconnects_after_server_restart(browsers):
    """The server restarts under signed-in browsers: they notice, sign in again, and can call."""
    a, b = browsers
    SERVER["restart"]()
    seen_offline = False
    deadline = time.time() + 30
    while time.time() < deadline:
        text = el(a, "#connection").text
        seen_offline = seen_offline or "Online" not in text
        if seen_offline and "Online" in text:
            break
        time.sleep(0.02)
    wait_for("A online again", lambda: "Online" in el(a, "#connection").text, 30)
    wait_for("B online again", lambda: "Online" in el(b, "#connection").text, 30)
    log(f"reconnected after a server restart (offline state seen: {seen_offline})")
    # The new server knows nobody: a call that connects proves both signed in again.
    connect_call(a, b, "call 4 (after reconnect)")
    click(a, "#hang-up")
    wait_screen(a, "callended")
    wait_screen(b, "callended")
    back_home(a, b)


def make_tls_files(workdir):
    """A CA and a server certificate it signs for 127.0.0.1 / localhost only (ECDSA P-256), made here
    with the openssl command (test tooling only: the server and the app use rustls). Returns
    (cert, key, base64 SHA-256 of the server key's SPKI, for --ignore-certificate-errors-spki-list)."""
    d = os.path.join(workdir, "tls")
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731

    def run(*args, **kw):
        return subprocess.run(["openssl", *args], check=True, capture_output=True, **kw).stdout

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=tincan media-e2e CA", "-keyout", p("ca.key"), "-out", p("ca.pem"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=127.0.0.1", "-keyout", p("server.key"), "-out", p("server.csr"))
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", p("ext.cnf"), "-out", p("server.pem"))
    spki = run("pkey", "-in", p("server.key"), "-pubout", "-outform", "der")
    digest = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return p("server.pem"), p("server.key"), digest


@pytest.fixture(scope="module")
def tls_server(workdir):
    """tincan-server serving the UI and wss itself (--tls-cert/--tls-key) on another port."""
    cert, key, spki = make_tls_files(workdir)
    port = free_port()
    env = dict(os.environ, TINCAN_SECRET_KEY="media-e2e-" + os.urandom(8).hex(), TINCAN_LOG="warn")
    logf = open(os.path.join(workdir, "server-tls.log"), "w")
    proc = subprocess.Popen(
        [SERVER_BIN, "serve", "--listen", f"127.0.0.1:{port}", "--sdkappid", str(SDKAPPID),
         "--ui-dir", UI_DIST, "--dev-issue-sigs", "--tls-cert", cert, "--tls-key", key,
         "--memory-only"],
        env=env, stdout=logf, stderr=subprocess.STDOUT,
    )
    base = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=os.path.join(os.path.dirname(cert), "ca.pem"))

    def up():
        with urllib.request.urlopen(base + "/healthz", timeout=1, context=ctx) as r:
            return r.status == 200

    try:
        wait_for("tincan-server (TLS)", up, timeout=20)
        # Plain http to the TLS port gets nothing useful: no downgrade.
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
        yield base, spki
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()


def test_browsers_call_over_https_and_wss(workdir, tls_server):
    """The UI from https://, signaling over wss:// (the page is https), and audio both ways."""
    base, spki = tls_server
    trust = [f"--ignore-certificate-errors-spki-list={spki}"]
    a = chromium(workdir, "alice-tls", TONE_A, trust)
    b = chromium(workdir, "bob-tls", TONE_B, trust)
    try:
        for drv, user in ((a, "alice"), (b, "bob")):
            drv.get(base + "/")
            sign_in(drv, user)
            assert drv.execute_script("return window.isSecureContext;") is True
        # Signed in, so the page's WebSocket is wss:// (ui/src/browser.rs page_ws_url): this port
        # speaks nothing but TLS.
        connect_call(a, b, "call over wss")
        time.sleep(0.8)
        hz_at_b, hz_at_a = peak(b), peak(a)
        log(f"over wss: B hears {hz_at_b} Hz, A hears {hz_at_a} Hz")
        assert hz_at_b and abs(hz_at_b - TONE_A) < TOLERANCE_HZ
        assert hz_at_a and abs(hz_at_a - TONE_B) < TOLERANCE_HZ
        click(a, "#hang-up")
        wait_screen(a, "callended")
        wait_screen(b, "callended")
    finally:
        for drv in (a, b):
            drv.quit()
