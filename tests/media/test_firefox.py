"""A second browser engine: headless Firefox ESR (Gecko) calls and is called by the browser client in
headless Chromium and by the native engine (GStreamer webrtcbin, `native_peer`), through a real
tincan-server on loopback and the trunk-built UI.

Each side sends its own tone and must hear the OTHER side's: Firefox's fake microphone is a
FIREFOX_TONE sine (pref `media.navigator.audio.fake_frequency`), Chromium plays a CHROMIUM_TONE WAV
(`--use-file-for-fake-audio-capture`), the native engine a NATIVE_TONE `tone:HZ` source. Both calling
directions each. Accept -> first remote audio is printed for every call.

Firefox differs from Chromium where it matters to interop: its offer puts Opus at payload type 109
(Chromium: 111), and its DTLS certificates are ECDSA. The test records the SDP each side applied
(read-only hooks on RTCPeerConnection) and checks that, so a failure names the cause.

No Firefox traffic leaves the machine: a fresh profile per run whose prefs switch off updates,
telemetry, captive-portal and connectivity checks, safe browsing, remote settings / Normandy / Nimbus,
push, DNS-over-HTTPS and prefetching; every remaining http(s) request would go to a trap proxy on
loopback that this test runs, and the test fails if that proxy saw anything. WebRTC gets an explicit
empty ICE server list (the UI's default; checked with getConfiguration()).

Machine fact: there is no sound server here (no PulseAudio), and Gecko's Web Audio then never runs:
cubeb logs "couldn't init pulse's context", MediaTrackGraph "Output number of channels is 0", and an
AudioContext stays "suspended" even after resume() and a click. With `media.cubeb.force_mock_context`
Gecko drives its audio graph from its own clock instead of a sound card (the output device is the only
thing replaced: capture, WebRTC, Opus and the analyser are the real ones). See docs/media.md.

Environment (scripts/test-media.sh sets them):
  TINCAN_SERVER_BIN, TINCAN_UI_DIST, TINCAN_NATIVE_PEER_BIN  as in test_media.py / test_native_interop.py
  TINCAN_FIREFOX_BIN      (default: firefox-esr on PATH)
  TINCAN_GECKODRIVER_BIN  (default: geckodriver on PATH, else ~/.cargo/bin/geckodriver)
"""

import os
import re
import shutil
import socket
import threading
import time

import pytest
from selenium import webdriver
from selenium.webdriver.firefox.service import Service

from test_media import (TOLERANCE_HZ, back_home, chromium, click, dial, el, log, media, peak, screen,
                        server, shot, sign_in, wait_for, wait_screen, workdir)  # noqa: F401
from test_native_interop import NativePeer

FIREFOX_BIN = os.environ.get("TINCAN_FIREFOX_BIN") or shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
GECKODRIVER_BIN = (os.environ.get("TINCAN_GECKODRIVER_BIN") or shutil.which("geckodriver")
                   or os.path.expanduser("~/.cargo/bin/geckodriver"))
# Three different tones, none a harmonic of another, so each side can tell whom it hears.
FIREFOX_TONE, CHROMIUM_TONE, NATIVE_TONE = 1500.0, 440.0, 660.0
TIMINGS = []


class TrapProxy:
    """A loopback TCP listener that Firefox is told to use as its http/https proxy. Anything that
    reaches it is a request that would have left the machine; it is recorded and the socket closed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(1)
                first = conn.recv(512).split(b"\r\n", 1)[0].decode(errors="replace")
            except OSError:
                first = "(no request line)"
            finally:
                conn.close()
            self.seen.append(first)

    def close(self):
        self.sock.close()


def firefox_prefs(freq, proxy_port):
    return {
        # Fake media: the microphone is a `freq` Hz sine, no permission prompt, playback allowed.
        "media.navigator.streams.fake": True,
        "media.navigator.permission.disabled": True,
        "media.navigator.audio.fake_frequency": int(freq),
        "media.autoplay.default": 0,
        "media.autoplay.block-webaudio": False,
        # No sound server on the machine: run the audio graph without a sound card (see above).
        "media.cubeb.force_mock_context": True,
        # Real host candidates instead of .local mDNS names (libnice cannot resolve those; no multicast).
        "media.peerconnection.ice.obfuscate_host_addresses": False,
        # WebRTC never goes through the (trap) proxy: its ICE-TCP candidates connect directly, as they
        # would for a user without a proxy (with it, Gecko sent CONNECT <peer host candidate> there).
        "media.peerconnection.disable_http_proxy": True,
        # No default STUN/TURN if a page gives none (the UI passes an explicit empty list anyway).
        "media.peerconnection.default_iceservers": "[]",
        # Millisecond timestamps for accept -> first audio (Gecko rounds performance.now() by default).
        "privacy.reduceTimerPrecision": False,
        # Console lines on stdout, i.e. in the geckodriver log kept in the work dir.
        "devtools.console.stdout.content": True,
        # Nothing in the background may leave the machine.
        "app.update.auto": False,
        "app.update.disabledForTesting": True,
        "app.update.checkInstallTime": False,
        "app.normandy.enabled": False,
        "app.normandy.api_url": "",
        "app.shield.optoutstudies.enabled": False,
        "messaging-system.rsexperimentloader.enabled": False,
        "services.settings.server": "data:,#remote-settings-dummy/v1",
        "datareporting.policy.dataSubmissionEnabled": False,
        "datareporting.healthreport.uploadEnabled": False,
        "toolkit.telemetry.enabled": False,
        "toolkit.telemetry.unified": False,
        "toolkit.telemetry.archive.enabled": False,
        "toolkit.telemetry.server": "",
        "toolkit.coverage.endpoint.base": "",
        "browser.ping-centre.telemetry": False,
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        "captivedetect.canonicalURL": "",
        "browser.safebrowsing.malware.enabled": False,
        "browser.safebrowsing.phishing.enabled": False,
        "browser.safebrowsing.downloads.enabled": False,
        "browser.safebrowsing.downloads.remote.enabled": False,
        "browser.safebrowsing.blockedURIs.enabled": False,
        "browser.safebrowsing.provider.google4.updateURL": "",
        "browser.safebrowsing.provider.google.updateURL": "",
        "browser.safebrowsing.provider.mozilla.updateURL": "",
        "privacy.trackingprotection.enabled": False,
        "dom.push.enabled": False,
        "dom.push.connection.enabled": False,
        "dom.push.serverURL": "",
        "extensions.update.enabled": False,
        "extensions.getAddons.cache.enabled": False,
        "extensions.blocklist.enabled": False,
        "extensions.systemAddon.update.enabled": False,
        "browser.search.update": False,
        "browser.region.update.enabled": False,
        "browser.region.network.url": "",
        "geo.provider.network.url": "",
        "media.gmp-manager.url": "",
        "media.gmp-provider.enabled": False,
        "media.gmp-gmpopenh264.enabled": False,
        "media.gmp-widevinecdm.enabled": False,
        "browser.newtabpage.enabled": False,
        "browser.newtabpage.activity-stream.feeds.topsites": False,
        "browser.newtabpage.activity-stream.feeds.section.topstories": False,
        "browser.startup.page": 0,
        "browser.startup.homepage": "about:blank",
        "browser.aboutwelcome.enabled": False,
        "browser.backup.enabled": False,
        "browser.backup.scheduled.enabled": False,
        "network.trr.mode": 5,
        "network.dns.disablePrefetch": True,
        "network.prefetch-next": False,
        "network.http.speculative-parallel-limit": 0,
        "network.predictor.enabled": False,
        # Anything still asking for the network goes to the trap (loopback is never proxied).
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": proxy_port,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": proxy_port,
        "network.proxy.share_proxy_settings": True,
        "network.proxy.allow_hijacking_localhost": False,
    }


# Read-only hooks: every description a page's RTCPeerConnection applies, with the ICE servers it was
# configured with, lands in window.__sdp_log (the test reads the payload types and directions).
SDP_HOOK = """
if (!window.__sdp_log) {
  window.__sdp_log = [];
  const P = RTCPeerConnection.prototype;
  for (const [name, side] of [["setLocalDescription", "local"], ["setRemoteDescription", "remote"]]) {
    const orig = P[name];
    P[name] = function (...args) {
      const pc = this;
      return orig.apply(pc, args).then((v) => {
        const d = side === "local" ? pc.localDescription : pc.remoteDescription;
        window.__sdp_log.push({side, type: d && d.type, sdp: d && d.sdp,
                               ice_servers: pc.getConfiguration().iceServers});
        return v;
      });
    };
  }
}
"""


def sdp_log(drv):
    return drv.execute_script("return window.__sdp_log || [];")


def opus_pt(sdp):
    m = re.search(r"a=rtpmap:(\d+) opus/48000", sdp or "", re.I)
    return int(m.group(1)) if m else None


def direction(sdp):
    """The audio section's direction (a media-level attribute overrides the session-level one)."""
    pick = r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$"
    session, _, rest = (sdp or "").partition("\nm=audio")
    audio = rest.split("\nm=", 1)[0]
    m = re.search(pick, audio, re.M) or re.search(pick, session, re.M)
    return m.group(1) if m else "sendrecv"


def firefox(workdir, name, freq, proxy):  # noqa: F811
    """Headless Firefox ESR with a fresh profile, whose fake microphone plays a `freq` Hz sine."""
    assert os.path.exists(FIREFOX_BIN), f"no Firefox at {FIREFOX_BIN} (apt-get install firefox-esr)"
    assert os.path.exists(GECKODRIVER_BIN), f"no geckodriver at {GECKODRIVER_BIN} (cargo install geckodriver)"
    profile = os.path.join(workdir, f"firefox-{name}")
    home = os.path.join(workdir, f"firefox-{name}-home")
    os.makedirs(profile, exist_ok=True)
    os.makedirs(home, exist_ok=True)
    opts = webdriver.FirefoxOptions()
    opts.binary_location = FIREFOX_BIN
    for arg in ("-headless", "-no-remote", "-profile", profile):
        opts.add_argument(arg)
    for k, v in firefox_prefs(freq, proxy.port).items():
        opts.set_preference(k, v)
    # HOME / XDG dirs of its own: nothing of the machine's user is read or written.
    # MOZ_REMOTE_SETTINGS_DEVTOOLS: release builds ignore `services.settings.server` without it, and
    # fetch firefox.settings.services.mozilla.com at start-up (the trap proxy saw it).
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home, MOZ_HEADLESS="1",
               MOZ_REMOTE_SETTINGS_DEVTOOLS="1")
    service = Service(GECKODRIVER_BIN, log_output=os.path.join(workdir, f"geckodriver-{name}.log"), env=env)
    return webdriver.Firefox(service=service, options=opts)


def gecko_log_tail(workdir, name, n=25):  # noqa: F811
    try:
        with open(os.path.join(workdir, f"geckodriver-{name}.log"), errors="replace") as f:
            lines = [ln.rstrip() for ln in f if "tincan:" in ln or "console.error" in ln or "JavaScript error" in ln]
        return lines[-n:]
    except OSError:
        return []


@pytest.fixture(scope="module")
def trap():
    t = TrapProxy()
    yield t
    t.close()


@pytest.fixture(scope="module")
def fox(workdir, server, trap):  # noqa: F811
    drv = firefox(workdir, "alice", FIREFOX_TONE, trap)
    try:
        log(f"Firefox: {drv.capabilities.get('browserName')} {drv.capabilities.get('browserVersion')}")
        drv.get(server + "/")
        drv.execute_script(SDP_HOOK)
        sign_in(drv, "alice")
        yield drv
    finally:
        for line in gecko_log_tail(workdir, "alice"):
            log(f"firefox: {line}")
        drv.quit()
    if TIMINGS:
        log("accept -> first remote audio (ms): " + "; ".join(
            f"{label}: {', '.join(f'{who} {ms:.0f}' for who, ms in heard)}" for label, heard in TIMINGS))


@pytest.fixture(scope="module")
def chrome(workdir, server):  # noqa: F811
    drv = chromium(workdir, "bob-firefox", CHROMIUM_TONE)
    try:
        drv.get(server + "/")
        drv.execute_script(SDP_HOOK)
        sign_in(drv, "bob")
        yield drv
    finally:
        drv.quit()


def test_firefox_setup(fox, trap):
    """Gecko has WebRTC in this page, and the UI is configured with no ICE server at all."""
    assert media(fox)["engine"], "Firefox must have the WebRTC engine"
    # The UI's default ICE server list is empty (Settings); calls below check getConfiguration().
    click(fox, "#open-settings")
    wait_screen(fox, "settings")
    assert el(fox, "#ice-servers").get_attribute("value").strip() == "", "no ICE servers configured"
    click(fox, "#back")
    wait_screen(fox, "home")


def heard_by(drv, who, tone, label):
    """`drv`'s analyser finds `tone` (the other side's) in what it receives."""
    hz = wait_for(f"{who} hears {tone:.0f} Hz",
                  lambda: (lambda h: h if h and abs(h - tone) < TOLERANCE_HZ else None)(peak(drv)), 8)
    log(f"{label}: {who} hears {hz:.1f} Hz (sent: {tone:.0f})")
    # getStats is polled once a second.
    wait_for(f"{who}'s getStats counts inbound audio packets", lambda: (media(drv)["packets_received"] or 0) > 10, 3)
    return hz


def check_sdp(drv, who, want_local_type):
    """The last offer/answer `drv` applied: no ICE servers, Opus present, and both directions."""
    entries = sdp_log(drv)
    assert entries, f"{who}: no description recorded"
    for e in entries:
        assert e["ice_servers"] == [], f"{who}: ICE servers {e['ice_servers']!r} (must be an explicit empty list)"
    local = [e for e in entries if e["side"] == "local"][-1]
    remote = [e for e in entries if e["side"] == "remote"][-1]
    assert local["type"] == want_local_type, (local["type"], want_local_type)
    return local, remote


def direct_route(drv, who):
    """The call's route as the page shows it (`#connection-kind`, `window.__tincan_media.route`):
    on loopback with no TURN server, direct between host candidates over UDP (Firefox reads its
    selected pair from the candidate pair marked `selected`, Chromium from its transport stats)."""
    route = wait_for(f"{who}'s route", lambda: media(drv)["route"], 5)
    kind = el(drv, "#connection-kind")
    assert route["kind"] == "direct" and route["protocol"] == "udp", f"{who}: {route}"
    assert route["local_type"] in ("host", "prflx") and route["relay_protocol"] is None, f"{who}: {route}"
    wait_for(f"{who}'s panel shows the route", lambda: kind.get_attribute("data-kind") == "direct", 3)
    assert kind.text == "Direct (UDP)", f"{who}: {kind.text!r}"
    return route


def browser_call(caller, callee, callee_user, label):
    drop = {d: len(sdp_log(d)) for d in (caller, callee)}
    dial(caller, callee_user)
    wait_screen(callee, "incoming")
    # The caller's offer reaches the ringing callee before anyone answers.
    time.sleep(0.5)
    click(callee, "#accept")
    wait_screen(callee, "incall")
    wait_screen(caller, "incall")
    mb = wait_for("callee hears the caller", lambda: media(callee)["first_audio_at"] and media(callee), 10)
    ma = wait_for("caller hears the callee", lambda: media(caller)["first_audio_at"] and media(caller), 10)
    callee_ms = mb["first_audio_at"] - mb["accept_at"]
    caller_ms = ma["first_audio_at"] - mb["accept_at"]
    log(f"{label}: accept -> first audio: callee {callee_ms:.0f} ms, caller {caller_ms:.0f} ms")
    TIMINGS.append((label, [("callee", callee_ms), ("caller", caller_ms)]))
    log(f"{label}: routes: caller {direct_route(caller, 'caller')}, callee {direct_route(callee, 'callee')}")
    return drop


def hang_up_browsers(a, b):
    click(a, "#hang-up")
    wait_screen(a, "callended")
    wait_screen(b, "callended")
    back_home(a, b)


def test_firefox_calls_chromium(fox, chrome):
    browser_call(fox, chrome, "bob", "Firefox->Chromium")
    heard_by(chrome, "Chromium", FIREFOX_TONE, "Firefox->Chromium")
    heard_by(fox, "Firefox", CHROMIUM_TONE, "Firefox->Chromium")
    offer, answer = check_sdp(fox, "Firefox", "offer")
    log(f"Firefox offers Opus at PT {opus_pt(offer['sdp'])}; Chromium answers PT {opus_pt(answer['sdp'])}, "
        f"{direction(answer['sdp'])}")
    assert opus_pt(offer["sdp"]) == 109, "Gecko's offer puts Opus at 109"
    check_sdp(chrome, "Chromium", "answer")
    shot(fox, "firefox-in-call-with-chromium")
    hang_up_browsers(chrome, fox)


def test_chromium_calls_firefox(fox, chrome):
    browser_call(chrome, fox, "alice", "Chromium->Firefox")
    heard_by(fox, "Firefox", CHROMIUM_TONE, "Chromium->Firefox")
    heard_by(chrome, "Chromium", FIREFOX_TONE, "Chromium->Firefox")
    answer, offer = check_sdp(fox, "Firefox", "answer")
    log(f"Chromium offers Opus at PT {opus_pt(offer['sdp'])}; Firefox answers PT {opus_pt(answer['sdp'])}, "
        f"{direction(answer['sdp'])}")
    check_sdp(chrome, "Chromium", "offer")
    hang_up_browsers(fox, chrome)


def native(server, *args):  # noqa: F811
    return NativePeer(server, *args, tone=NATIVE_TONE, expect=FIREFOX_TONE, seconds=25)


def native_hears_firefox(peer, label):
    heard = peer.wait("heard", 12)
    first = peer.wait("first_audio", 5)
    log(f"{label}: native hears {heard['hz']:.0f} Hz (Firefox sends {FIREFOX_TONE:.0f}), "
        f"{first['after_accept_ms']} ms after accept")
    assert abs(heard["hz"] - FIREFOX_TONE) < FIREFOX_TONE * 0.05
    return first["after_accept_ms"]


def end_native_call(fox, peer):
    click(fox, "#hang-up")
    wait_screen(fox, "callended")
    peer.wait("call_ended", 10)
    status = peer.finish()
    back_home(fox)
    return status


def native_epoch_ms(peer, ev):
    """A native_peer event's time on the epoch clock the browser uses: its `t_ms` (since the process
    started) plus the offset seen when its lines arrived (lines are flushed per line, so the smallest
    arrival - t_ms is within a millisecond or so of the true offset)."""
    offset = min(e["rx_ms"] - e["t_ms"] for e in peer.seen if "t_ms" in e and "rx_ms" in e)
    return ev["t_ms"] + offset


def reset(drv):
    """After a failed test: end any call and go home, so the next test starts clean."""
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            now = screen(drv)
            if now == "home":
                return
            button = {"incall": "#hang-up", "outgoing": "#hang-up", "incoming": "#decline",
                      "callended": "#dismiss"}.get(now)
            if button:
                el(drv, button).click()
        except Exception:  # the view changed under us (the peer hung up): look again
            pass
        time.sleep(0.2)
    log(f"reset: still on {screen(drv)}")


def test_native_calls_firefox(fox, server):  # noqa: F811
    peer = native(server, "--call", "alice")
    try:
        peer.wait("ringing")
        wait_screen(fox, "incoming")
        time.sleep(0.3)  # the native offer reaches the ringing browser first
        click(fox, "#accept")
        wait_screen(fox, "incall")
        answer, offer = check_sdp(fox, "Firefox", "answer")
        log(f"native offers Opus at PT {opus_pt(offer['sdp'])}; Firefox answers PT {opus_pt(answer['sdp'])}, "
            f"{direction(answer['sdp'])}")
        mf = wait_for("Firefox hears the native engine", lambda: media(fox)["first_audio_at"] and media(fox), 10)
        heard_by(fox, "Firefox", NATIVE_TONE, "native->Firefox")
        direct_route(fox, "Firefox")
        native_ms = native_hears_firefox(peer, "native->Firefox")
        nroute = peer.wait("route", 10)
        assert nroute["kind"] == "direct" and nroute["relay_protocol"] is None, nroute
        fox_ms = mf["first_audio_at"] - mf["accept_at"]
        log(f"native->Firefox: accept -> first audio: Firefox {fox_ms:.0f} ms, native {native_ms} ms")
        TIMINGS.append(("native->Firefox", [("Firefox (callee)", fox_ms), ("native (caller)", native_ms)]))
        assert end_native_call(fox, peer) == 0, "the native peer heard Firefox steadily"
    finally:
        peer.kill()
        reset(fox)


def test_firefox_calls_native(fox, server):  # noqa: F811
    peer = native(server, "--answer")
    try:
        peer.wait("signed_in", 20)
        dial(fox, "native")
        peer.wait("invited")
        wait_screen(fox, "incall", 15)
        wait_for("Firefox applied the native answer", lambda: [e for e in sdp_log(fox)
                                                              if e["side"] == "remote" and e["type"] == "answer"], 10)
        offer, answer = check_sdp(fox, "Firefox", "offer")
        log(f"Firefox offers Opus at PT {opus_pt(offer['sdp'])}; native answers PT {opus_pt(answer['sdp'])}, "
            f"{direction(answer['sdp'])}")
        assert direction(answer["sdp"]) == "sendrecv", \
            f"the native engine must send to an offer with Opus at PT {opus_pt(offer['sdp'])}"
        native_ms = native_hears_firefox(peer, "Firefox->native")
        mf = wait_for("Firefox hears the native engine", lambda: media(fox)["first_audio_at"] and media(fox), 10)
        heard_by(fox, "Firefox", NATIVE_TONE, "Firefox->native")
        # The accept happened in the native process: its event, on the browser's clock.
        accepted = next(e for e in peer.seen if e.get("event") == "accepted")
        fox_ms = mf["first_audio_at"] - native_epoch_ms(peer, accepted)
        log(f"Firefox->native: accept -> first audio: native {native_ms} ms, Firefox {fox_ms:.0f} ms")
        TIMINGS.append(("Firefox->native", [("native (callee)", native_ms), ("Firefox (caller)", fox_ms)]))
        assert end_native_call(fox, peer) == 0, "the native peer heard Firefox steadily"
    finally:
        peer.kill()
        reset(fox)


def test_no_firefox_traffic_left_the_machine(fox, trap):
    """Last: in all of the above, nothing in Firefox asked for anything beyond loopback."""
    time.sleep(0.5)
    log(f"trap proxy saw {len(trap.seen)} request(s): {trap.seen}")
    assert trap.seen == [], f"Firefox tried to reach the network: {trap.seen}"
