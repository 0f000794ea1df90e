#!/usr/bin/env python3
"""Server RSS per idle signed-in session, fresh and after one call (BENCHMARKS.md, "Idle memory").

`tincan-bench idle` measures sessions that only signed in. A real session has usually been in a
call, and tungstenite keeps its read and write buffers at the size of the largest frame they
carried, so this measures that too: PAIRS pairs sign in (RSS read), then each pair places one call
with the Chromium offer and answer from crates/proto/tests/data/sdp (invite, accept, offer, answer,
hang-up), and the RSS is read again once everyone is idle.

The server runs as its own process with the shipped defaults, like `tincan-bench idle` (only
--max-connections and the per-address caps lifted, --memory-only); clients are plain sockets with a
minimal WebSocket client (stdlib only), spread over 127.0.0.1-127.0.0.250.

    cargo build --release -p tincan-server
    python3 scripts/idle-after-call.py target/release/tincan-server --pairs 1000

Prints one line; nothing is asserted. Loopback only.
"""

import argparse
import base64
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time

APP = "1400000001"
KEY = "bench-secret-key"
SDP_DIR = os.path.join(os.path.dirname(__file__), "..", "crates", "proto", "tests", "data", "sdp")


class Ws:
    """A blocking WebSocket client: masked text frames out, server frames in (no fragmentation)."""

    def __init__(self, host, port, src):
        self.s = socket.socket()
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.bind((f"127.0.0.{src}", 0))
        self.s.connect((host, port))
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"upgrade refused: {head[:80]!r}")

    def _more(self):
        data = self.s.recv(65536)
        if not data:
            raise RuntimeError("connection closed")
        self.buf += data

    def send(self, obj):
        payload = json.dumps(obj, separators=(",", ":")).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _need(self, n):
        while len(self.buf) < n:
            self._more()

    def _frame(self):
        self._need(2)
        op, n, off = self.buf[0] & 15, self.buf[1] & 127, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off : off + n], self.buf[off + n :]
        return op, payload

    def recv(self, typ):
        """The next frame of type `typ` (others skipped); an `error` frame raises."""
        while True:
            op, payload = self._frame()
            if op == 8:
                raise RuntimeError(f"closed by the server: {payload!r}")
            if op != 1:
                continue
            msg = json.loads(payload)
            if msg["type"] == typ:
                return msg
            if msg["type"] == "error":
                raise RuntimeError(f"server error: {msg}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("server", help="the tincan-server binary")
    ap.add_argument("--pairs", type=int, default=1000)
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = dict(os.environ, TINCAN_SECRET_KEY=KEY, RUST_LOG="warn,tincan_server=info", NO_COLOR="1")
    srv = subprocess.Popen(
        [a.server, "serve", "--listen", "127.0.0.1:0", "--sdkappid", APP, "--max-connections", "1000000",
         "--memory-only", "--max-conns-per-ip", "1000000", "--max-unauth-per-ip", "1000000"],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    try:
        addr = None
        for line in srv.stdout:
            if "addr=" in line:
                addr = line.split("addr=")[1].split()[0]
                break
        if addr is None:
            sys.exit("the server did not say where it listens")
        # Keep draining its log so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in srv.stdout], daemon=True).start()
        host, port = addr.rsplit(":", 1)
        port = int(port)

        def rss_kib():
            with open(f"/proc/{srv.pid}/status") as f:
                return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

        users = [f"u{i}" for i in range(2 * a.pairs)]
        sigs = [
            subprocess.run([a.server, "usersig", "gen", "--sdkappid", APP, "--user", u, "--expire", "3600"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
            for u in users
        ]
        time.sleep(0.3)
        before = rss_kib()
        conns = []
        for i, u in enumerate(users):
            w = Ws(host, port, 1 + i % 250)
            w.send({"type": "login", "version": 1, "sdk_app_id": int(APP), "user_id": u,
                    "user_sig": sigs[i], "device_id": "dev"})
            w.recv("login_ok")
            conns.append(w)
        time.sleep(0.5)
        fresh = rss_kib()
        with open(os.path.join(SDP_DIR, "chromium-156-offer.sdp")) as f:
            offer = f.read()
        with open(os.path.join(SDP_DIR, "chromium-156-answer.sdp")) as f:
            answer = f.read()
        for k in range(a.pairs):
            caller, callee, cid = conns[2 * k], conns[2 * k + 1], f"call-{k}"
            caller.send({"type": "invite", "call_id": cid, "callee": users[2 * k + 1], "call_type": "audio",
                         "timeout_secs": 30})
            callee.recv("invited")
            callee.send({"type": "accept", "call_id": cid})
            caller.recv("accepted")
            callee.recv("accepted")
            caller.send({"type": "signal", "call_id": cid, "signal": {"kind": "offer", "sdp": offer}})
            callee.recv("signal")
            callee.send({"type": "signal", "call_id": cid, "signal": {"kind": "answer", "sdp": answer}})
            caller.recv("signal")
            caller.send({"type": "hangup", "call_id": cid})
            caller.recv("call_ended")
            callee.recv("call_ended")
        time.sleep(1.0)
        after = rss_kib()
        n = len(conns)
        print(
            f"idle sessions: {n} signed in, RSS {before} -> {fresh} KiB fresh, {(fresh - before) * 1024 / n:.0f} "
            f"bytes/session | after one call each (offer {len(offer)} B, answer {len(answer)} B): {after} KiB, "
            f"{(after - before) * 1024 / n:.0f} bytes/session (+{(after - fresh) * 1024 / n:.0f})"
        )
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
