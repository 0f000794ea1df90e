"""A loopback TCP proxy a test can cut and restore: the simplest real way to take one client's
signaling connection away (a Wi-Fi hand-over, a proxy's idle cut) while everything else keeps running.

`cut()` closes every connection through it (both sides see the TCP connection end, as after a network
drop) and stops listening, so reconnects are refused; `restore()` listens again on the same port.
`blackhole()` is the silent kind of drop (a Wi-Fi hand-over, a NAT that forgot the mapping): every
connection stays open but nothing gets through either way, and new connections are accepted and go
nowhere; `restore()` then closes what was held (the path came back too late for it) and forwards again.
Only 127.0.0.1 is ever used.
"""

import socket
import threading


class CutProxy:
    def __init__(self, target_port, listen_port=0):
        self.target = ("127.0.0.1", target_port)
        self.port = listen_port
        self.lock = threading.Lock()
        self.conns = set()
        self.listener = None
        self.cuts = 0
        self.black = False
        self.held = set()
        self.restore()

    def blackhole(self):
        """Nothing gets through any more, and nothing says so."""
        with self.lock:
            self.black = True
            self.cuts += 1

    def restore(self):
        with self.lock:
            held, self.held = self.held, set()
            if self.black:
                self.black = False
                held |= self.conns
                self.conns = set()
        for c in held:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        with self.lock:
            if self.listener is not None:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            self.port = s.getsockname()[1]
            s.listen(64)
            self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self):
        """Drops every connection and refuses new ones until `restore()`."""
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, set()
            self.cuts += 1
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self):
        self.cut()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                if self.black:
                    # Accepted, then nothing: the handshake on top never completes.
                    self.held.add(client)
                    threading.Thread(target=self._sink, args=(client,), daemon=True).start()
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                if self.listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self.conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _sink(self, s):
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.black:
                    continue
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            self.conns.discard(src)
            self.conns.discard(dst)
