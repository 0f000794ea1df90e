"""tincan's two media engines interoperate: the native engine (GStreamer webrtcbin, crate tincan-media)
against the browser client in headless Chromium, through a real tincan-server on loopback.

The native side is `native_peer` (crates/media/examples), which drives the native engine with a plain
signaling client; it sends a 660 Hz tone and measures what it receives with GStreamer's `spectrum`.
Chromium's fake microphone plays 1000 Hz; the page measures with a Web Audio analyser. Each side must
hear the OTHER side's tone, in both directions of calling. Accept -> first audio is printed.

Environment (scripts/test-media.sh sets them):
  TINCAN_SERVER_BIN       path of the tincan-server binary
  TINCAN_UI_DIST          the trunk `dist` folder
  TINCAN_NATIVE_PEER_BIN  path of the native_peer example binary
Optional: NATIVE_PEER_STDERR=<file> keeps native_peer's stderr (with GST_DEBUG, GStreamer's log).
"""

import json
import os
import queue
import subprocess
import threading
import time

import pytest

from test_media import (ROOT, SDKAPPID, TOLERANCE_HZ, chromium, chromium_pids, click, el, freeze, log,
                        media, peak, screen, server, sign_in, wait_for, wait_screen, workdir, dial,
                        back_home)  # noqa: F401

NATIVE_BIN = os.environ.get("TINCAN_NATIVE_PEER_BIN",
                            os.path.join(ROOT, "target", "debug", "examples", "native_peer"))
NATIVE_TONE, BROWSER_TONE = 660.0, 1000.0


@pytest.fixture(scope="module")
def bob(workdir, server):  # noqa: F811
    drv = chromium(workdir, "bob-interop", BROWSER_TONE)
    try:
        drv.get(server + "/")
        sign_in(drv, "bob")
        yield drv
    finally:
        drv.quit()


class NativePeer:
    """The native_peer process; its JSON lines arrive on a queue."""

    def __init__(self, server, *args, seconds=40, tone=NATIVE_TONE, expect=BROWSER_TONE):
        assert os.path.exists(NATIVE_BIN), f"build it: cargo build -p tincan-media --example native_peer ({NATIVE_BIN})"
        ws = server.replace("http://", "ws://") + "/ws"
        self.proc = subprocess.Popen(
            [NATIVE_BIN, "--server", ws, "--sdkappid", str(SDKAPPID), "--user", "native",
             "--dev-sig", server, "--tone", str(tone), "--expect", str(expect),
             "--seconds", str(seconds), *args],
            stdout=subprocess.PIPE, stderr=open(os.environ.get("NATIVE_PEER_STDERR", os.devnull), "a"), text=True,
        )
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            # When the line arrived (epoch ms), to set the peer's t_ms against a browser's clock.
            ev["rx_ms"] = time.time() * 1000
            self.events.put(ev)

    def wait(self, name, timeout=20, after=0):
        """The first `name` event, skipping the first `after` events seen (to wait for a later one)."""
        deadline = time.time() + timeout
        for ev in self.seen[after:]:
            if ev.get("event") == name:
                return ev
        while time.time() < deadline:
            try:
                ev = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(ev)
            log(f"native: {ev}")
            if ev.get("event") == "error":
                raise AssertionError(f"native peer failed: {ev}")
            if ev.get("event") == name:
                return ev
        raise AssertionError(f"native peer never reported {name}; saw {self.seen}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def finish(self):
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.returncode


def hang_up_from_browser(drv, native):
    """Chromium hangs up; the native peer hears the call end. Returns the native peer's exit status."""
    click(drv, "#hang-up")
    wait_screen(drv, "callended")
    native.wait("call_ended")
    return native.finish()


def check_browser_hears_native(drv):
    mb = wait_for("Chromium hears the native engine", lambda: media(drv)["first_audio_at"] and media(drv), 10)
    time.sleep(1.0)
    hz = peak(drv)
    log(f"Chromium hears {hz} Hz (native sends {NATIVE_TONE})")
    assert hz and abs(hz - NATIVE_TONE) < TOLERANCE_HZ, f"Chromium should hear {NATIVE_TONE} Hz, got {hz}"
    assert media(drv)["packets_received"] > 10
    return mb


def test_native_calls_chromium(bob, server):  # noqa: F811
    native = NativePeer(server, "--call", "bob")
    try:
        native.wait("ringing")
        wait_screen(bob, "incoming")
        time.sleep(0.3)  # the native offer reaches the ringing browser first
        click(bob, "#accept")
        wait_screen(bob, "incall")
        mb = check_browser_hears_native(bob)
        heard = native.wait("heard", 15)
        first = native.wait("first_audio")
        log(f"native->Chromium: accept -> first audio: Chromium {mb['first_audio_at'] - mb['accept_at']:.0f} ms, "
            f"native {first['after_accept_ms']} ms; native hears {heard['hz']:.0f} Hz")
        assert abs(heard["hz"] - BROWSER_TONE) < BROWSER_TONE * 0.05
        assert hang_up_from_browser(bob, native) == 0, "native peer heard the browser"
    finally:
        native.kill()
    back_home(bob)


def test_chromium_calls_native(bob, server):  # noqa: F811
    native = NativePeer(server, "--answer")
    try:
        wait_for("native signed in", lambda: native.wait("signed_in"), 20)
        dial(bob, "native")
        native.wait("invited")
        wait_screen(bob, "incall", 15)
        mb = check_browser_hears_native(bob)
        heard = native.wait("heard", 15)
        first = native.wait("first_audio")
        log(f"Chromium->native: accept -> first audio: native {first['after_accept_ms']} ms; "
            f"native hears {heard['hz']:.0f} Hz")
        assert abs(heard["hz"] - BROWSER_TONE) < BROWSER_TONE * 0.05
        assert hang_up_from_browser(bob, native) == 0
    finally:
        native.kill()
    back_home(bob)


def check_browser_hears_native_again(drv, before_packets):
    """After an ICE restart: Chromium's packet count moves on and it hears the native tone again."""
    wait_for("Chromium receives packets again",
             lambda: (media(drv)["packets_received"] or 0) > before_packets + 20
             or (media(drv)["packets_received"] or 0) < before_packets, 15)
    hz = wait_for("Chromium hears the native tone again",
                  lambda: (lambda h: h if h and abs(h - NATIVE_TONE) < TOLERANCE_HZ else None)(peak(drv)), 15)
    log(f"Chromium hears {hz} Hz again after the restart")


def test_native_caller_restarts_ice_when_chromium_freezes(bob, server, workdir):  # noqa: F811
    """The native engine calls Chromium; Chromium freezes (SIGSTOP) for 6 s. The native caller notices
    the silence, rebuilds its connection (fresh webrtcbin: new ICE credentials and DTLS certificate) and
    re-offers with ice_restart; when Chromium thaws it answers, and audio crosses both ways again."""
    native = NativePeer(server, "--call", "bob", seconds=60)
    try:
        native.wait("ringing")
        wait_screen(bob, "incoming")
        time.sleep(0.3)
        click(bob, "#accept")
        wait_screen(bob, "incall")
        check_browser_hears_native(bob)
        native.wait("heard", 15)
        packets = media(bob)["packets_received"] or 0
        pids = chromium_pids(os.path.join(workdir, "profile-bob-interop"))
        assert pids, "bob's Chromium processes"
        frozen = time.time()
        freeze(pids, True)
        try:
            restart = native.wait("ice_restart", 15)
            log(f"native caller restarted ICE {time.time() - frozen:.1f} s after Chromium froze: {restart}")
            time.sleep(max(0.0, 6 - (time.time() - frozen)))
        finally:
            freeze(pids, False)
        n = len(native.seen)
        heard = native.wait("heard", 20, after=n)
        first = native.wait("first_audio", 20, after=n)
        log(f"native hears {heard['hz']:.0f} Hz again, {first['after_restart_ms']} ms after its restart")
        assert abs(heard["hz"] - BROWSER_TONE) < BROWSER_TONE * 0.05
        check_browser_hears_native_again(bob, packets)
        assert screen(bob) == "incall" and media(bob)["error"] is None, media(bob)
        hang_up_from_browser(bob, native)
    finally:
        native.kill()
    back_home(bob)


def test_chromium_caller_restarts_ice_with_a_frozen_native_callee(bob, server):  # noqa: F811
    """Chromium calls the native engine; the native process freezes (SIGSTOP) for 6 s. Chromium's ICE
    drops and it re-offers with ice_restart; the thawed native callee answers from a fresh connection
    (new DTLS certificate, which Chromium accepts as a DTLS restart), and audio crosses both ways again."""
    native = NativePeer(server, "--answer", seconds=60)
    try:
        wait_for("native signed in", lambda: native.wait("signed_in"), 20)
        dial(bob, "native")
        native.wait("invited")
        wait_screen(bob, "incall", 15)
        check_browser_hears_native(bob)
        native.wait("heard", 15)
        packets = media(bob)["packets_received"] or 0
        freeze([native.proc.pid], True)
        try:
            wait_for("Chromium sees the connection drop",
                     lambda: media(bob)["ice_state"] in ("disconnected", "failed"), 20)
            wait_for("Chromium restarts ICE", lambda: (media(bob)["ice_restarts"] or 0) >= 1, 10)
        finally:
            freeze([native.proc.pid], False)
        n = len(native.seen)
        restart = native.wait("ice_restart", 15, after=n)
        heard = native.wait("heard", 20, after=n)
        first = native.wait("first_audio", 20, after=n)
        log(f"native callee answered the restart ({restart}); hears {heard['hz']:.0f} Hz again, "
            f"{first['after_restart_ms']} ms after it")
        assert abs(heard["hz"] - BROWSER_TONE) < BROWSER_TONE * 0.05
        wait_for("Chromium reconnected", lambda: media(bob)["ice_state"] in ("connected", "completed"), 15)
        check_browser_hears_native_again(bob, packets)
        hang_up_from_browser(bob, native)
    finally:
        native.kill()
    back_home(bob)


def watch_until_call_ends(drv, timeout=20):
    """Chromium's media snapshots while its call lasts: (most packets received, any first audio)."""
    most, first = 0, None
    deadline = time.time() + timeout
    while time.time() < deadline and screen(drv) in ("incoming", "outgoing", "incall"):
        m = media(drv) or {}
        most = max(most, m.get("packets_received") or 0)
        first = first or m.get("first_audio_at")
        time.sleep(0.1)
    return most, first


@pytest.mark.parametrize("native_calls", [False, True], ids=["chromium-calls", "native-calls"])
def test_a_tampered_fingerprint_is_refused_and_carries_no_audio(bob, server, native_calls):  # noqa: F811
    """The SDP the native side receives from Chromium has another certificate's a=fingerprint (an
    attacker on the signaling path): the native engine refuses Chromium's DTLS certificate, ends the
    call with media_not_verified, and no audio crosses either way (its send gate stays shut; what
    Chromium sends is dropped undecoded)."""
    args = ["--call", "bob"] if native_calls else ["--answer"]
    native = NativePeer(server, *args, "--tamper-remote-fingerprint", seconds=30)
    try:
        if native_calls:
            native.wait("ringing")
            wait_screen(bob, "incoming")
            time.sleep(0.3)
            click(bob, "#accept")
        else:
            wait_for("native signed in", lambda: native.wait("signed_in"), 20)
            dial(bob, "native")
            native.wait("invited")
        err = native.wait("engine_error", 20)
        log(f"native engine refused the peer: {err}")
        assert err["code"] == "media_not_verified", err
        packets, first = watch_until_call_ends(bob)
        log(f"Chromium during the refused call: {packets} packets received, first audio {first}")
        wait_screen(bob, "callended", 15)
        assert packets == 0 and first is None, "audio crossed a call whose DTLS was not verified"
        assert native.finish() != 0
        assert not [e for e in native.seen if e.get("event") in ("first_audio", "heard")], native.seen
    finally:
        native.kill()
    back_home(bob)
