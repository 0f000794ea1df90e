"""Relay-only mode in the web engine (Chromium), without a TURN relay: no candidate crosses the server.

The privacy setting (Settings, "Relay only", `relay_only` in the settings the page keeps in
localStorage) must keep every local and public address of the machine away from the other side.
A recording hook on `WebSocket.prototype.send` (installed before the page's scripts run) keeps every
frame the page sends to tincan-server, and one on `RTCPeerConnection` keeps each configuration:

1. Relay-only with no TURN server at all (the server issues none, Settings list none): the call is
   not tried. The caller sees the words of `relay_unavailable`, no RTCPeerConnection is made and no
   offer or candidate is sent.
2. Relay-only with a TURN server that does not answer (Settings: a dead loopback port): the engine runs
   with `iceTransportPolicy: "relay"`, the call is negotiated, and not one `candidate` signal and no
   `a=candidate` line leaves the relay-only side (the other side, not relay-only, sends its own). The
   call never connects; it is hung up.

Real TURN relaying (coturn, NAT) is tests/net/test_turn_nat.py's; the native engine's relay-only
mode has its own tests (crates/media/tests/relay.rs, with a real coturn on loopback).
"""

import json
import os
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_media as web  # noqa: E402
from test_media import server, workdir  # noqa: E402,F401  (fixtures)

# Keeps what the page sends and how it configures its peer connections; read back by the test.
TAP = r"""
window.__sent = [];
window.__pc_configs = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  try { window.__sent.push(String(data)); } catch (e) {}
  return send.call(this, data);
};
const PC = window.RTCPeerConnection;
if (PC) {
  window.RTCPeerConnection = function (cfg, ...rest) {
    window.__pc_configs.push(JSON.parse(JSON.stringify(cfg || {})));
    return new PC(cfg, ...rest);
  };
  window.RTCPeerConnection.prototype = PC.prototype;
}
"""


def dead_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def browser(workdir, server, name, freq, settings):
    drv = web.chromium(workdir, name, freq)
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TAP})
    drv.get(server + "/")
    if settings is not None:
        drv.execute_script("localStorage.setItem('tincan.settings', arguments[0]);", json.dumps(settings))
        drv.refresh()
    web.sign_in(drv, name)
    return drv


def sent_signals(drv):
    """The signals the page sent: (kind, signal) for each `signal` frame."""
    out = []
    for frame in drv.execute_script("return window.__sent;") or []:
        try:
            msg = json.loads(frame)
        except ValueError:
            continue
        if msg.get("type") == "signal":
            sig = msg.get("signal") or {}
            out.append((sig.get("kind"), sig))
    return out


def addresses_in(signals):
    """Every candidate the signals carry, trickled or inside an SDP."""
    found = []
    for kind, sig in signals:
        if kind == "candidate":
            found.append(sig.get("candidate", ""))
        for line in (sig.get("sdp") or "").splitlines():
            if line.startswith("a=candidate:"):
                found.append(line)
    return found


@pytest.fixture(scope="module")
def pair(workdir, server):
    drivers = []

    def make(name, freq, settings):
        d = browser(workdir, server, name, freq, settings)
        drivers.append(d)
        return d

    yield make
    for d in drivers:
        try:
            for entry in d.get_log("browser")[-20:]:
                if entry.get("level") in ("SEVERE", "WARNING"):
                    web.log(f"console: {entry.get('message')}")
        except Exception:
            pass
        d.quit()


def test_relay_only_without_any_turn_server_is_not_tried(pair):
    a = pair("alice", web.TONE_A, {"relay_only": True})
    b = pair("bob", web.TONE_B, None)
    web.dial(a, "bob")
    # The caller's engine refuses before anything is made; the call ends with the reason.
    web.wait_for("the relay-only refusal",
                 lambda: web.el(a, "#media-error").get_attribute("data-code") == "RelayUnavailable", 15)
    web.wait_screen(a, "callended")
    ended = web.el(a, "main").text
    assert "No relay server" in ended and "Relay only is on" in ended, ended
    assert a.execute_script("return window.__pc_configs.length;") == 0, "a peer connection was made"
    signals = sent_signals(a)
    assert signals == [], f"signals left the relay-only page: {signals}"
    for d in (a, b):
        web.wait_for("home again", lambda: web.screen(d) in ("home", "callended", "incoming"), 15)
    for d in (a, b):
        if web.screen(d) == "callended":
            web.click(d, "#dismiss")
    web.wait_screen(a, "home")
    web.wait_for("bob no longer rings", lambda: web.screen(b) in ("home", "callended"), 15)
    web.back_home(b)


def test_relay_only_with_an_unreachable_relay_sends_no_candidate(pair):
    turn = f"turn:127.0.0.1:{dead_udp_port()}?transport=udp"
    a = pair("carol", web.TONE_A, {
        "relay_only": True,
        "ice_servers": [{"urls": [turn], "username": "1:nobody", "credential": "x"}],
    })
    b = pair("dave", web.TONE_B, None)
    web.dial(a, "dave")
    web.wait_screen(b, "incoming")
    time.sleep(0.5)
    web.click(b, "#accept")
    web.wait_screen(a, "incall")
    # Gathering from a relay that never answers, and connectivity checks: give it time.
    time.sleep(6)
    configs = a.execute_script("return window.__pc_configs;")
    assert configs and all(c.get("iceTransportPolicy") == "relay" for c in configs), configs
    assert configs[0]["iceServers"][0]["urls"] == [turn], configs
    mine = sent_signals(a)
    assert any(k == "offer" for k, _ in mine), f"the relay-only caller made no offer: {mine}"
    leaked = addresses_in(mine)
    assert leaked == [], f"candidates left the relay-only page: {leaked}"
    # The other side is not relay-only: its host candidates do cross (so the tap works).
    theirs = addresses_in(sent_signals(b))
    assert any(" typ host" in c for c in theirs), f"the other side sent no candidate: {theirs}"
    assert not web.media(a)["connected"], "a relay-only call connected without a relay"
    assert web.el(a, "#connection-kind").get_attribute("data-kind") == ""
    web.log(f"relay-only page sent {len(mine)} signals, 0 candidates; the other side sent "
            f"{len(theirs)} candidates")
    web.click(a, "#hang-up")
    web.back_home(a, b)
