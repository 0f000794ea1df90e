"""A call between two hosts: the browser client and the desktop's native engine in two network
namespaces joined by a veth pair, over wss and verified DTLS (issue 9's "Done means").

Host A (10.231.1.1) runs tincan-server serving https/wss only (a test CA and a certificate for A's
address, made here with openssl) and the UI, and a headless Chromium that loads the UI from
https://10.231.1.1 (fake microphone: 1000 Hz). This test process enters A for the module (its
thread's network namespace; chromedriver and Chromium start inside it). Host B (10.231.1.2) runs
native_peer, the native engine driven through the desktop app's own signaling connector
(src-tauri/src/transport.rs compiled into the example) with the test CA as its CA file; it sends
660 Hz. The namespaces have only `lo` and the veth, IPv6 off: nothing can leave them.

Proved here, both calling directions: the signaling is wss (the port speaks only TLS: plain ws gets
no upgrade; the app's connector refuses ws:// to A and a wss server it cannot verify), every ICE
candidate that crosses the server carries a 10.231.1.x address, Chromium's selected candidate pair
is A's address to B's, the veth counted the media packets, each side hears the other's tone, and
DTLS is verified: the same call with the fingerprint Chromium sent altered ends with
media_not_verified and no audio (the native engine passes no audio before its certificate check).

Environment: as tests/media (TINCAN_SERVER_BIN, TINCAN_UI_DIST, TINCAN_NATIVE_PEER_BIN). Root.
"""

import base64
import hashlib
import ipaddress
import json
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "media"))

import netns  # noqa: E402
from test_media import (SDKAPPID, UI_DIST, SERVER_BIN, chromium, click, log, sign_in,  # noqa: E402
                        wait_for, wait_screen, dial, back_home)
from test_native_interop import (NATIVE_BIN, NATIVE_TONE, BROWSER_TONE, NativePeer,  # noqa: E402
                                 check_browser_hears_native, hang_up_from_browser)

OK, WHY = netns.available()
pytestmark = pytest.mark.skipif(not OK, reason=f"network namespaces not permitted here: {WHY}")
SUBNET = ipaddress.ip_network("10.231.1.0/24")
PORT = 7443

# Records every RTCPeerConnection the page makes, so the test can read its getStats.
RECORD_PCS = """
(() => {
  const Orig = window.RTCPeerConnection;
  if (!Orig || window.__pcs) return;
  window.__pcs = [];
  function Recorded(...args) { const pc = new Orig(...args); window.__pcs.push(pc); return pc; }
  Recorded.prototype = Orig.prototype;
  Object.setPrototypeOf(Recorded, Orig);
  window.RTCPeerConnection = Recorded;
})();
"""

SELECTED_PAIR = """
const done = arguments[arguments.length - 1];
const pcs = window.__pcs || [];
const pc = pcs[pcs.length - 1];
if (!pc) { done(null); return; }
pc.getStats().then(r => {
  const byId = {}; r.forEach(s => { byId[s.id] = s; });
  let pair = null;
  r.forEach(s => { if (s.type === 'transport' && s.selectedCandidatePairId) pair = byId[s.selectedCandidatePairId]; });
  if (!pair) r.forEach(s => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (!pair) { done(null); return; }
  const l = byId[pair.localCandidateId] || {}, rm = byId[pair.remoteCandidateId] || {};
  done({local: l.address || l.ip, local_type: l.candidateType, remote: rm.address || rm.ip,
        remote_type: rm.candidateType, protocol: l.protocol, bytes_received: pair.bytesReceived});
}, () => done(null));
"""


def make_tls_files(d, ip):
    """A test CA and a server certificate it signs for `ip` only (ECDSA P-256). Returns (cert, key,
    CA file, base64 SHA-256 of the server key's SPKI for Chromium's --ignore-certificate-errors-spki-list)."""
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731

    def run(*args):
        return subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30).stdout

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=tincan two-host test CA", "-keyout", p("ca.key"), "-out", p("ca.pem"),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={ip}", "-keyout", p("server.key"), "-out", p("server.csr"))
    with open(p("ext.cnf"), "w") as f:
        f.write(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", p("ext.cnf"), "-out", p("server.pem"))
    spki = run("pkey", "-in", p("server.key"), "-pubout", "-outform", "der")
    return p("server.pem"), p("server.key"), p("ca.pem"), base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """Hosts A and B; this thread is in A for the whole module. Yields a dict of what the tests use."""
    d = str(tmp_path_factory.mktemp("two-hosts"))
    with netns.TestNet() as net:
        a, b = net.host("a"), net.host("b")
        if_a, if_b = net.link(a, b)
        cert, key, ca, spki = make_tls_files(os.path.join(d, "tls"), a.ip)
        with a.entered():
            env = dict(os.environ, TINCAN_SECRET_KEY="two-hosts-" + os.urandom(8).hex(), TINCAN_LOG="warn")
            logf = open(os.path.join(d, "server.log"), "w")
            server = subprocess.Popen(
                [SERVER_BIN, "serve", "--listen", f"{a.ip}:{PORT}", "--sdkappid", str(SDKAPPID),
                 "--ui-dir", UI_DIST, "--dev-issue-sigs", "--tls-cert", cert, "--tls-key", key,
                 "--memory-only"],
                env=env, stdout=logf, stderr=subprocess.STDOUT)
            base = f"https://{a.ip}:{PORT}"
            ctx = ssl.create_default_context(cafile=ca)

            def up():
                with urllib.request.urlopen(base + "/healthz", timeout=1, context=ctx) as r:
                    return r.status == 200

            drv = None
            try:
                wait_for("tincan-server (TLS) on host A", up, timeout=20)
                drv = chromium(d, "bob-hostA", BROWSER_TONE, [f"--ignore-certificate-errors-spki-list={spki}"])
                drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_PCS})
                drv.set_script_timeout(10)
                drv.get(base + "/")
                sign_in(drv, "bob")
                assert drv.execute_script("return window.isSecureContext;") is True
                yield dict(a=a, b=b, if_a=if_a, if_b=if_b, base=base, ctx=ctx, ca=ca, drv=drv, dir=d)
            finally:
                if drv is not None:
                    drv.quit()
                server.terminate()
                try:
                    server.wait(5)
                except subprocess.TimeoutExpired:
                    server.kill()
                logf.close()


def user_sig(h, user):
    with urllib.request.urlopen(f"{h['base']}/dev/usersig?user={user}", timeout=5, context=h["ctx"]) as r:
        return json.load(r)["user_sig"]


class RemoteNativePeer(NativePeer):
    """native_peer on host B, signed in over wss through the desktop connector."""

    def __init__(self, h, *args, url=None, ca=True, seconds=40):
        assert os.path.exists(NATIVE_BIN), f"build it: cargo build -p tincan-media --example native_peer ({NATIVE_BIN})"
        url = url or h["base"].replace("https://", "wss://") + "/ws"
        cmd = [NATIVE_BIN, "--server", url, "--sdkappid", str(SDKAPPID), "--user", "native",
               "--sig", user_sig(h, "native"), "--tone", str(NATIVE_TONE), "--expect", str(BROWSER_TONE),
               "--seconds", str(seconds), *args]
        if ca:
            cmd += ["--ca-file", h["ca"]]
        env = {k: v for k, v in os.environ.items() if k != "TINCAN_CA_FILE"}
        self.proc = h["b"].popen(cmd, stdout=subprocess.PIPE, env=env, text=True,
                                 stderr=open(os.environ.get("NATIVE_PEER_STDERR", os.devnull), "a"))
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def candidates(self, direction):
        return [c for ev in self.seen if ev.get("event") == "candidates" and ev["dir"] == direction
                for c in ev["candidates"]]


def candidate_ip(line):
    """The connection address of an ICE candidate line (RFC 8839: foundation component transport
    priority address port typ ...)."""
    parts = line.split()
    return parts[4] if len(parts) > 7 else None


def check_crossing(h, native, before):
    """Media went between the hosts over the veth, with the test's addresses only."""
    drv, a, b = h["drv"], h["a"], h["b"]
    sent, received = native.candidates("sent"), native.candidates("received")
    log(f"B sent candidates {sent}; B received {received}")
    assert sent and received, "candidates crossed the server both ways"
    for line in sent + received:
        ip = candidate_ip(line)
        assert ip and ipaddress.ip_address(ip) in SUBNET, f"a candidate off the test network: {line}"
    assert any(candidate_ip(c) == b.ip for c in sent), "B offered its veth address"
    assert any(candidate_ip(c) == a.ip for c in received), "A's browser offered its veth address"
    pair = wait_for("Chromium's selected candidate pair", lambda: drv.execute_async_script(SELECTED_PAIR), 10)
    log(f"Chromium's selected pair: {pair}")
    assert pair["local"] == a.ip and pair["remote"] == b.ip, pair
    assert pair["protocol"] == "udp", pair
    after = b.counters(h["if_b"])
    rx, tx = after["rx_packets"] - before["rx_packets"], after["tx_packets"] - before["tx_packets"]
    log(f"B's veth during the call: {rx} packets in, {tx} out")
    assert rx > 100 and tx > 100, "the audio crossed the veth both ways"


def test_signaling_is_tls_only(two_hosts):
    """Host A's port speaks only TLS; the desktop connector on B refuses ws:// to A and a wss server
    whose certificate it cannot verify, with the app's error codes."""
    h = two_hosts
    a = h["a"]
    with socket.create_connection((a.ip, PORT), timeout=5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        s.settimeout(5)
        try:
            reply = s.recv(200)
        except (ConnectionResetError, socket.timeout):
            reply = b""
    assert b"101" not in reply, f"plain ws was upgraded: {reply!r}"

    plain = RemoteNativePeer(h, "--answer", url=f"ws://{a.ip}:{PORT}/ws", seconds=10)
    ev = plain.wait("connect_failed", 20)
    assert ev["code"] == "insecure_server_url", ev
    plain.finish()
    untrusted = RemoteNativePeer(h, "--answer", ca=False, seconds=10)
    ev = untrusted.wait("connect_failed", 20)
    assert ev["code"] == "tls_certificate", ev
    log(f"refused: ws:// ({plain.seen[-1]['message'] if plain.seen else ''}); untrusted wss: {ev['message']}")
    untrusted.finish()


def test_chromium_on_a_calls_native_on_b(two_hosts):
    h = two_hosts
    drv = h["drv"]
    native = RemoteNativePeer(h, "--answer")
    try:
        ev = native.wait("connected", 20)
        assert ev["tls"] is True
        native.wait("signed_in", 20)
        before = h["b"].counters(h["if_b"])
        dial(drv, "native")
        native.wait("invited")
        wait_screen(drv, "incall", 15)
        check_browser_hears_native(drv)
        heard = native.wait("heard", 15)
        first = native.wait("first_audio")
        log(f"A->B: native on B hears {heard['hz']:.0f} Hz; accept -> first audio on B: {first['after_accept_ms']} ms")
        assert abs(heard["hz"] - BROWSER_TONE) < BROWSER_TONE * 0.05
        check_crossing(h, native, before)
        assert hang_up_from_browser(drv, native) == 0
    finally:
        native.kill()
    back_home(drv)


def test_native_on_b_calls_chromium_on_a(two_hosts):
    h = two_hosts
    drv = h["drv"]
    native = RemoteNativePeer(h, "--call", "bob")
    try:
        before = h["b"].counters(h["if_b"])
        native.wait("ringing", 20)
        wait_screen(drv, "incoming")
        time.sleep(0.3)
        click(drv, "#accept")
        wait_screen(drv, "incall")
        check_browser_hears_native(drv)
        heard = native.wait("heard", 15)
        first = native.wait("first_audio")
        log(f"B->A: native on B hears {heard['hz']:.0f} Hz; accept -> first audio on B: {first['after_accept_ms']} ms")
        assert abs(heard["hz"] - BROWSER_TONE) < BROWSER_TONE * 0.05
        check_crossing(h, native, before)
        assert hang_up_from_browser(drv, native) == 0
    finally:
        native.kill()
    back_home(drv)


def test_tampered_fingerprint_across_hosts_carries_no_audio(two_hosts):
    """The check that makes the DTLS verified: B is given another certificate's fingerprint for A's
    browser; the handshake's certificate does not match, the call ends with media_not_verified and B
    hears nothing."""
    h = two_hosts
    drv = h["drv"]
    native = RemoteNativePeer(h, "--answer", "--tamper-remote-fingerprint", seconds=25)
    try:
        native.wait("signed_in", 20)
        dial(drv, "native")
        native.wait("invited")
        err = native.wait("engine_error", 20)  # reported before the run ends with its error
        log(f"tampered: {err}")
        assert err and err["code"] == "media_not_verified", native.seen
        assert not any(e.get("event") in ("heard", "first_audio") for e in native.seen), native.seen
        wait_screen(drv, "callended", 15)
        native.finish()
    finally:
        native.kill()
    back_home(drv)
