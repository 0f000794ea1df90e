"""A live call survives a signaling drop: two headless Chromium clients, a real tincan-server on loopback.

Alice's browser reaches the server through a loopback TCP proxy the test can cut (cutproxy.py: the
page, its WebSocket, everything); bob's connects directly. Each fake microphone plays its own tone and
each page's media snapshot (`window.__tincan_media.peer_gaps`, sampled every 10 ms from the received
audio) lists every silence in the peer's audio, so "the audio never stopped" is measured, not assumed.

(a) alice's connection is cut for 10 s mid-call: she sees "Reconnecting…" with the timer running, bob
    sees "alice is reconnecting…"; the tone keeps arriving on both sides with no gap > 200 ms; the call
    resumes; hang-up afterwards ends it on both sides. (d) A third user claiming the live call gets
    only a claim of its own (no party hears of it, nothing is relayed); the call goes on untouched.
    A hang-up while cut ends the call on alice's side at once (media released) and reaches bob as
    "alice hung up" once she is back. An ICE restart alice makes while cut (bob's browser frozen meanwhile)
    is kept, delivered after the resume and answered; the audio comes back both ways. A silent drop
    (the proxy stops forwarding, nothing closes) is noticed by the unanswered ping and resumed.
(b) tincan-server is killed (SIGKILL) and restarted mid-call: both sign in again and announce the
    call, the new server re-creates it; same audio check; hang-up works.
(c) the cut outlasts the grace period (a second server with --resume-secs 3): bob's side ends with
    "Connection lost" after the grace; alice's when she is back and the server has no such call.

The longest gap each side measured is printed. Run through scripts/test-media.sh.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_media as web  # noqa: E402
from cutproxy import CutProxy  # noqa: E402

CUT_SECS = 10
MAX_GAP_MS = 200
GRACE_SECS = 3
GAPS = []


class Server:
    """tincan-server on a fixed loopback port, restartable (killed with SIGKILL, like a crash)."""

    def __init__(self, workdir, name, extra=()):
        self.port = web.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, TINCAN_SECRET_KEY="resume-e2e-" + os.urandom(8).hex(), TINCAN_LOG="warn")
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [web.SERVER_BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--sdkappid", str(web.SDKAPPID),
             "--ui-dir", web.UI_DIST, "--dev-issue-sigs", "--memory-only", *self.extra],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )

        def up():
            with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                return r.status == 200

        web.wait_for("tincan-server", up, timeout=20)

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
        self.log.close()


@pytest.fixture(scope="module")
def workdir():
    import tempfile
    with tempfile.TemporaryDirectory(prefix="tincan-resume-") as d:
        yield d


@pytest.fixture(scope="module")
def rig(workdir):
    server = Server(workdir, "server")
    proxy = CutProxy(server.port)
    a = web.chromium(workdir, "alice", web.TONE_A)
    b = web.chromium(workdir, "bob", web.TONE_B)
    try:
        a.get(f"http://127.0.0.1:{proxy.port}/")
        sign_in_pasted(a, server.base, "alice")
        b.get(server.base + "/")
        web.sign_in(b, "bob")
        yield server, proxy, a, b
    finally:
        for drv in (a, b):
            try:
                for entry in drv.get_log("browser")[-30:]:
                    if entry.get("level") in ("SEVERE", "WARNING"):
                        web.log(f"console: {entry.get('message')}")
            except Exception:
                pass
            drv.quit()
        proxy.close()
        server.stop()
        if GAPS:
            web.log("longest audio gap measured: " + "; ".join(
                f"{label}: alice heard {ga:.0f} ms, bob heard {gb:.0f} ms" for label, ga, gb in GAPS))


def sign_in_pasted(drv, server_base, user):
    """Signs in with a UserSig fetched here, pasted into the form: the server's demo issuer answers
    only requests addressed to its own port, and this page is served through the proxy's."""
    web.wait_screen(drv, "signin", 20)
    with urllib.request.urlopen(f"{server_base}/dev/usersig?user={user}", timeout=5) as r:
        sig = json.load(r)
    for css, value in (("#user-id", user), ("#sdk-app-id", str(sig["sdk_app_id"])), ("#user-sig", sig["user_sig"])):
        web.el(drv, css).clear()
        web.el(drv, css).send_keys(value)
    web.click(drv, "#sign-in")
    web.wait_for(f"{user} online", lambda: web.el(drv, "#me").text == user, 15)
    web.wait_for("connection online", lambda: "Online" in web.el(drv, "#connection").text, 10)


def now_ms():
    return time.time() * 1000.0


def longest_gap(drv, since_ms):
    """The longest silence in the peer's audio that touches the time since `since_ms` (unix ms),
    including one still going on."""
    m = web.media(drv)
    gaps = [g[1] for g in (m.get("peer_gaps") or []) if g[0] + g[1] >= since_ms]
    return max(gaps + [m.get("peer_silent_ms") or 0.0])


def shown(drv, css):
    return bool(drv.find_elements("css selector", css))


def hears(drv, tone):
    hz = web.peak(drv, 5)
    return hz is not None and abs(hz - tone) < web.TOLERANCE_HZ


def check_audio(label, a, b, since):
    ga, gb = longest_gap(a, since), longest_gap(b, since)
    for who, d in (("alice", a), ("bob", b)):
        m = web.media(d)
        web.log(f"{label}: {who}'s gaps (start s after the cut, ms): " + ", ".join(
            f"{(g[0] - since) / 1000:+.2f}/{g[1]:.0f}" for g in (m.get("peer_gaps") or [])))
    GAPS.append((label, ga, gb))
    web.log(f"{label}: longest gap alice {ga:.0f} ms, bob {gb:.0f} ms")
    assert hears(a, web.TONE_B), "alice still hears bob's tone"
    assert hears(b, web.TONE_A), "bob still hears alice's tone"
    assert ga <= MAX_GAP_MS and gb <= MAX_GAP_MS, f"{label}: audio gap alice {ga:.0f} ms / bob {gb:.0f} ms"


def timer_runs(drv):
    t1 = web.el(drv, "#timer").text
    time.sleep(1.2)
    t2 = web.el(drv, "#timer").text
    return t1 != t2 and ":" in t2


def hang_up_both(a, b):
    web.click(a, "#hang-up")
    web.wait_screen(a, "callended")
    web.wait_screen(b, "callended")
    assert web.el(a, "#call-status").text == "Call ended"
    assert web.el(b, "#call-status").text == "Call ended"
    web.wait_for("bob hears alice hung up", lambda: "alice hung up" in web.el(b, "#call-message").text, 5)
    web.back_home(a, b)


def test_cut_for_10s_the_call_goes_on_and_resumes(rig):
    server, proxy, a, b = rig
    web.connect_call(a, b, "resume: cut")
    time.sleep(1.5)
    since = now_ms()
    proxy.cut()
    web.wait_for("alice shows reconnecting", lambda: shown(a, "#call-reconnecting"), 5)
    web.wait_for("bob shows alice reconnecting", lambda: shown(b, "#peer-reconnecting"), 5)
    assert "alice is reconnecting" in web.el(b, "#peer-reconnecting").text
    assert web.screen(a) == "incall" and web.screen(b) == "incall"
    assert timer_runs(a), "alice's call timer keeps running while reconnecting"
    web.shot(a, "resume-reconnecting-alice")
    web.shot(b, "resume-peer-reconnecting-bob")
    time.sleep(max(0.0, CUT_SECS - (now_ms() - since) / 1000))
    assert web.screen(a) == "incall" and web.screen(b) == "incall", "the call survives the cut"
    proxy.restore()
    restored = now_ms()
    web.wait_for("alice resumed", lambda: not shown(a, "#call-reconnecting"), 15)
    web.wait_for("bob sees alice back", lambda: not shown(b, "#peer-reconnecting"), 5)
    web.log(f"resumed {(now_ms() - restored) / 1000:.1f} s after the proxy came back")
    assert "Online" in web.el(a, "#connection").text
    time.sleep(1.0)
    check_audio("cut 10 s", a, b, since)

    # A third user who knows the call ID claims it (naming bob): the server answers carol like a
    # claim whose peer has not come back (docs/PROTOCOL.md, "Resume"), reaches neither party and
    # relays nothing; the call goes on untouched.
    call_id = web.media(a)["call_id"]
    carol = web.ws_client(server.base, "carol")
    try:
        carol.send(json.dumps({"type": "resume_call", "call_id": call_id, "peer": "bob",
                               "connected_at_ms": int(now_ms()) - 5000}))
        frames = [json.loads(carol.recv()) for _ in range(2)]
        web.log(f"carol's claim of the call: {frames}")
        assert [f["type"] for f in frames] == ["peer_reconnecting", "call_resumed"], frames
        carol.send(json.dumps({"type": "signal", "call_id": call_id,
                               "signal": {"kind": "mute", "muted": True}}))
        refused = json.loads(carol.recv())
        assert refused["type"] == "error" and refused["code"] == "peer_absent", refused
        time.sleep(1.0)
        for d in (a, b):
            assert web.screen(d) == "incall"
            assert not shown(d, "#peer-reconnecting") and not shown(d, "#remote-muted")
        assert hears(b, web.TONE_A) and hears(a, web.TONE_B)
    finally:
        carol.close()
    hang_up_both(a, b)


def test_a_silent_drop_is_noticed_and_the_call_resumed(rig):
    """The path goes silent (nothing gets through, no connection closes, as after a Wi-Fi hand-over):
    alice's client notices the unanswered ping (pings every 5 s during a call), keeps the call and
    resumes it once the path is back; the audio never stops."""
    _, proxy, a, b = rig
    web.connect_call(a, b, "resume: silent drop")
    time.sleep(1.5)
    since = now_ms()
    proxy.blackhole()
    web.wait_for("alice notices the dead connection", lambda: shown(a, "#call-reconnecting"), 15)
    noticed = (now_ms() - since) / 1000
    web.log(f"alice noticed the silent drop after {noticed:.1f} s")
    assert noticed <= 12, noticed
    time.sleep(max(0.0, 15 - (now_ms() - since) / 1000))
    assert web.screen(a) == "incall" and web.screen(b) == "incall"
    proxy.restore()
    web.wait_for("alice resumed", lambda: not shown(a, "#call-reconnecting"), 20)
    web.wait_for("bob sees alice back", lambda: not shown(b, "#peer-reconnecting"), 10)
    time.sleep(1.0)
    check_audio("silent drop 15 s", a, b, since)
    hang_up_both(a, b)


def test_hang_up_while_cut_ends_at_once_and_reaches_the_peer_after_the_resume(rig):
    _, proxy, a, b = rig
    web.connect_call(a, b, "resume: hang up while cut")
    time.sleep(1.0)
    proxy.cut()
    try:
        web.wait_for("alice shows reconnecting", lambda: shown(a, "#call-reconnecting"), 5)
        web.click(a, "#hang-up")
        # Ended here at once, the microphone released, though the server has not heard it yet.
        web.wait_screen(a, "callended", 2)
        web.wait_for("alice's media stopped at once", lambda: not web.media(a)["active"], 0.5)
        assert web.el(a, "#call-status").text == "Call ended"
        time.sleep(2.0)
        assert web.screen(b) == "incall" and shown(b, "#peer-reconnecting")
    finally:
        proxy.restore()
    # Back online: resume, then the kept hang-up; bob hears it as alice hanging up.
    web.wait_screen(b, "callended", 15)
    web.wait_for("bob: alice hung up", lambda: "alice hung up" in web.el(b, "#call-message").text, 5)
    web.log(f"bob after alice's hang-up while cut: '{web.el(b, '#call-message').text}'")
    web.wait_for("online again", lambda: "Online" in web.el(a, "#connection").text, 10)
    web.back_home(a, b)


def test_ice_restart_made_during_the_cut_is_sent_after_the_resume(rig, workdir):
    """Alice's signaling is cut and bob's browser frozen (SIGSTOP), so alice's ICE fails while she
    cannot reach the server: her restart offer is kept, not lost, and once she is back it reaches bob,
    is answered, and the audio returns both ways."""
    _, proxy, a, b = rig
    web.connect_call(a, b, "resume: ICE restart in the gap")
    time.sleep(1.0)
    pids = web.chromium_pids(os.path.join(workdir, "profile-bob"))
    assert pids, "bob's Chromium processes"
    cut_at = time.time()
    proxy.cut()
    web.freeze(pids, True)
    try:
        web.wait_for("alice restarts ICE while offline", lambda: (web.media(a)["ice_restarts"] or 0) >= 1, 20)
        m = web.media(a)
        web.log(f"alice restarted ICE {time.time() - cut_at:.1f} s into the cut; ICE {m['ice_state']}, "
                f"negotiation {m['signaling_state']}")
        assert m["signaling_state"] == "have-local-offer", "the restart offer waits for its answer"
        assert shown(a, "#call-reconnecting")
        time.sleep(max(0.0, CUT_SECS - (time.time() - cut_at)))
    finally:
        web.freeze(pids, False)
    time.sleep(1.0)
    proxy.restore()
    restored = time.time()
    web.wait_for("alice resumed", lambda: not shown(a, "#call-reconnecting"), 15)
    web.wait_for("the kept offer was answered", lambda: web.media(a)["signaling_state"] == "stable", 10)
    web.wait_for("ICE connected again", lambda: web.media(a)["ice_state"] in ("connected", "completed"), 15)
    web.wait_for("alice hears bob again", lambda: hears(a, web.TONE_B), 10)
    web.wait_for("bob hears alice again", lambda: hears(b, web.TONE_A), 10)
    web.log(f"restart answered and audio back both ways {time.time() - restored:.1f} s after the proxy came back")
    assert web.screen(a) == "incall" and web.screen(b) == "incall"
    hang_up_both(a, b)


def test_server_killed_and_restarted_the_call_goes_on(rig):
    server, proxy, a, b = rig
    web.connect_call(a, b, "resume: server restart")
    time.sleep(1.5)
    since = now_ms()
    server.kill()
    web.wait_for("alice shows reconnecting", lambda: shown(a, "#call-reconnecting"), 5)
    web.wait_for("bob shows reconnecting", lambda: shown(b, "#call-reconnecting"), 5)
    time.sleep(2.0)
    server.start()
    restarted = now_ms()
    web.wait_for("alice resumed", lambda: not shown(a, "#call-reconnecting") and not shown(a, "#peer-reconnecting"), 20)
    web.wait_for("bob resumed", lambda: not shown(b, "#call-reconnecting") and not shown(b, "#peer-reconnecting"), 20)
    web.log(f"both resumed {(now_ms() - restarted) / 1000:.1f} s after the server came back")
    assert web.screen(a) == "incall" and web.screen(b) == "incall"
    time.sleep(1.0)
    check_audio("server restart", a, b, since)
    # The re-created call works: mute reaches the peer, hang-up ends it on both sides.
    web.click(a, "#mute")
    web.wait_for("bob sees alice muted", lambda: shown(b, "#remote-muted"), 5)
    web.click(a, "#mute")
    hang_up_both(a, b)


def test_cut_longer_than_the_grace_ends_with_connection_lost(workdir, rig):
    _, _, a, b = rig
    server = Server(workdir, "server-grace", ["--resume-secs", str(GRACE_SECS)])
    proxy = CutProxy(server.port)
    try:
        a.get(f"http://127.0.0.1:{proxy.port}/")
        sign_in_pasted(a, server.base, "alice")
        b.get(server.base + "/")
        web.sign_in(b, "bob")
        web.connect_call(a, b, "resume: grace runs out")
        time.sleep(1.0)
        cut_at = time.time()
        proxy.cut()
        web.wait_for("bob shows alice reconnecting", lambda: shown(b, "#peer-reconnecting"), 5)
        web.wait_screen(b, "callended", GRACE_SECS + 10)
        web.log(f"bob's side ended {time.time() - cut_at:.1f} s after the cut (grace {GRACE_SECS} s)")
        assert web.el(b, "#call-status").text == "Connection lost", web.el(b, "main").text
        assert web.screen(a) == "incall", "alice's side keeps the call until she hears otherwise"
        time.sleep(max(0.0, CUT_SECS - (time.time() - cut_at)))
        proxy.restore()
        web.wait_screen(a, "callended", 20)
        web.log(f"alice: '{web.el(a, '#call-message').text}'")
        assert web.el(a, "#call-status").text == "Connection lost", web.el(a, "main").text
        web.wait_for("media stopped", lambda: not web.media(a)["active"] and not web.media(b)["active"], 2)
        web.back_home(a, b)
    finally:
        proxy.close()
        server.stop()
