"""Two homes behind their own NAT and a public network with a real coturn, made of network
namespaces (tests/net/netns.py), for the TURN tests (tests/net/test_turn_nat.py).

    home1 10.231.11.2 -- 10.231.11.1 nat1 10.231.1.2 -- 10.231.1.1 \\
                                                                   pub (10.231.100.1: coturn, tincan-server)
    home2 10.231.12.2 -- 10.231.12.1 nat2 10.231.2.2 -- 10.231.2.1 /

`pub` is "the internet": it routes between the NATs' WAN addresses (10.231.1.2, 10.231.2.2) and holds
the public address 10.231.100.1 (on its `lo`). Each NAT masquerades its home with nftables
(`masquerade fully-random`: every new flow gets a random source port, i.e. a symmetric NAT, the kind
STUN hole punching cannot cross) and forwards nothing in from its WAN that its home did not start
(stateful, no port forwarding). So the homes cannot reach each other directly at all, neither at their
home addresses (no route to them outside their NAT) nor through the NAT's WAN address (dropped), and
a call between them has to go through the TURN relay on `pub`. `block_udp(nat)` makes a home whose NAT
drops all UDP it would forward, so only TURN over TCP leaves it.

Also here: coturn started by the test (`Coturn`: the README's sample turnserver.conf adapted, in the test's temp dir,
listening only on 10.231.100.1 inside `pub`), the TURN REST API credentials it checks with
`use-auth-secret` (`rest_credentials`), and a minimal STUN/TURN client (Binding and Allocate over UDP
or TCP, RFC 8489 / 8656, long-term credentials) to ask coturn directly.

Needs root, iproute2, nftables (`nft`) and coturn (`turnserver`); `missing_tools()` names what lacks.
"""

import base64
import hashlib
import hmac
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import netns  # noqa: E402

PUBLIC_IP = "10.231.100.1"
TURN_PORT = 3478
REALM = "tincan.test"
# The relay ports coturn may use (a small range: the test makes few allocations).
RELAY_PORTS = (50000, 50199)


def missing_tools():
    """The tools this module needs that are not on PATH (empty when all are there)."""
    return [t for t in ("ip", "nft", "turnserver") if shutil.which(t) is None]


class NatNet:
    """The topology of the module docs, inside a netns.TestNet (removed with it)."""

    def __init__(self, net):
        self.net = net
        self.pub = net.host("pub")
        self.nat1, self.nat2 = net.host("nat1"), net.host("nat2")
        self.home1, self.home2 = net.host("home1"), net.host("home2")
        net.link(self.pub, self.nat1, subnet=1)   # pub v1a 10.231.1.1, nat1 v1b 10.231.1.2
        net.link(self.pub, self.nat2, subnet=2)   # pub v2a 10.231.2.1, nat2 v2b 10.231.2.2
        net.link(self.nat1, self.home1, subnet=11)  # nat1 v11a 10.231.11.1, home1 v11b 10.231.11.2
        net.link(self.nat2, self.home2, subnet=12)  # nat2 v12a 10.231.12.1, home2 v12b 10.231.12.2
        # On pub's loopback (no dummy interfaces in a container without the module): a local
        # address of pub's that both NATs route to through their own link.
        self.pub.run("ip", "addr", "add", f"{PUBLIC_IP}/32", "dev", "lo")
        self.pub.forwarding()
        for nat, home, n, lan_n in ((self.nat1, self.home1, 1, 11), (self.nat2, self.home2, 2, 12)):
            nat.forwarding()
            nat.route("default", f"10.231.{n}.1")
            home.route("default", f"10.231.{lan_n}.1")
            nat.wan_if, nat.lan_if = f"v{n}b", f"v{lan_n}a"
            nat.wan_ip = f"10.231.{n}.2"
            self._nat_rules(nat)

    @staticmethod
    def _nat_rules(nat):
        rules = f"""
table ip tcnat {{
  chain tc_post {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{nat.wan_if}" masquerade fully-random
  }}
}}
table inet tcfilter {{
  chain tc_fwd {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "{nat.lan_if}" oifname "{nat.wan_if}" accept
  }}
  chain tc_in {{
    type filter hook input priority filter; policy accept;
    iifname "{nat.wan_if}" ct state new drop
  }}
}}
"""
        _nft(nat, rules)

    def block_udp(self, nat):
        """This NAT drops every UDP packet its home sends out (a firewall that allows only TCP)."""
        _nft(nat, f'insert rule inet tcfilter tc_fwd iifname "{nat.lan_if}" meta l4proto udp counter drop\n')

    def unblock_udp(self, nat):
        """Takes `block_udp`'s rule out again."""
        out = nat.run("nft", "-a", "list", "chain", "inet", "tcfilter", "tc_fwd").stdout
        for line in out.splitlines():
            if "l4proto udp" in line and "drop" in line and "# handle " in line:
                nat.run("nft", "delete", "rule", "inet", "tcfilter", "tc_fwd", "handle", line.split("# handle ")[1].strip())

    def udp_dropped(self, nat):
        """How many UDP packets from the home this NAT dropped (after `block_udp`)."""
        out = nat.run("nft", "list", "chain", "inet", "tcfilter", "tc_fwd").stdout
        for line in out.splitlines():
            if "l4proto udp" in line and "drop" in line:
                parts = line.split()
                return int(parts[parts.index("packets") + 1])
        return 0


def _nft(host, rules):
    r = subprocess.run(host.cmd(["nft", "-f", "-"]), input=rules, capture_output=True, text=True,
                       timeout=netns.TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError(f"nft in {host.ns}: exit {r.returncode}: {r.stderr.strip()}")


# --- TURN REST API credentials (what tincan-server issues and coturn's use-auth-secret checks) ---

def rest_credentials(secret, user, expiry):
    """username `<expiry-unix>:<user>`, password base64(HMAC-SHA1(secret, username))."""
    username = f"{int(expiry)}:{user}"
    password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password


README = os.path.join(HERE, "..", "..", "README.md")
README_SECTION = "### TURN (coturn) next to tincan-server"
# The README sample's lines the test replaces with its own (TLS needs a certificate for a real name;
# the test's ports, realm and secret are its own).
README_REPLACED = ("listening-port", "tls-listening-port", "cert", "pkey", "realm", "static-auth-secret",
                   "min-port", "max-port", "listening-ip", "relay-ip", "external-ip")


def readme_turnserver_conf():
    """The sample turnserver.conf of the README's coturn section (its first ```ini block), as lines."""
    with open(README) as f:
        text = f.read()
    at = text.find(README_SECTION)
    assert at >= 0, f"README.md has no '{README_SECTION}' section (the NAT test runs its sample turnserver.conf)"
    start = text.find("```ini\n", at)
    assert start >= 0, f"README.md's '{README_SECTION}' has no ```ini block"
    end = text.find("```", start + 7)
    return [line.strip() for line in text[start + 7:end].splitlines()]


class Coturn:
    """Debian's turnserver, started inside `host` with its own config in `workdir`: the README's
    sample turnserver.conf (use-auth-secret, the denied private ranges, quotas, no CLI), with the
    test's own secret, realm and relay ports, listening and relaying on PUBLIC_IP over UDP and TCP
    only (no TLS: no certificate for a real name here), and the test's "public" addresses allowed
    again (`allowed-peer-ip` wins over `denied-peer-ip`): the NATs' WAN side (10.231.1.0/24,
    10.231.2.0/24) and coturn's own PUBLIC_IP (relay <-> relay). The homes' own addresses
    (10.231.11.x, 10.231.12.x) stay denied, as private addresses are in production: `pub` has no
    route to them, and coturn 4.6 closes a whole allocation ("reason: general", stderr "udp send:
    Network is unreachable") the first time its relay fails to send to a peer, so allowing them let
    each side's connectivity checks towards the other's host candidates kill the relay the call was
    using within a second.
    Its log is `log_path`."""

    def __init__(self, host, workdir, secret):
        self.host, self.secret = host, secret
        self.dir = os.path.join(workdir, "coturn")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.log_path = os.path.join(self.dir, "turn.log")
        conf = os.path.join(self.dir, "turnserver.conf")
        sample = readme_turnserver_conf()
        kept = [line for line in sample if line and not line.startswith("#")
                and line.split("=", 1)[0].strip() not in README_REPLACED]
        assert "use-auth-secret" in kept and any(k.startswith("denied-peer-ip=") for k in kept), sample
        lines = kept + [
            f"listening-ip={PUBLIC_IP}", f"relay-ip={PUBLIC_IP}", f"listening-port={TURN_PORT}",
            f"min-port={RELAY_PORTS[0]}", f"max-port={RELAY_PORTS[1]}",
            f"realm={REALM}", f"static-auth-secret={secret}",
            "no-tls", "no-dtls", "no-rfc5780", "verbose",
            "allowed-peer-ip=10.231.1.0-10.231.2.255", f"allowed-peer-ip={PUBLIC_IP}",
            f"log-file={self.log_path}", "simple-log", "no-stdout-log",
            f"pidfile={os.path.join(self.dir, 'turnserver.pid')}",
            f"userdb={os.path.join(self.dir, 'turndb')}",
        ]
        self.conf_lines = lines
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = host.popen(["turnserver", "-c", conf], stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(self.dir, "stderr.log"), "w"))
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with host.entered():
                    binding(PUBLIC_IP, TURN_PORT, timeout=0.3)
                return
            except (OSError, TurnError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"turnserver did not answer a STUN Binding in 15 s: {self.log_tail()}")

    def log_tail(self, n=30):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def log_text(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """Ends turnserver (SIGTERM, then SIGKILL); its files go with the test's temp dir."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_log(turn, needle, timeout=5.0):
    """coturn's log once it holds `needle` (it writes asynchronously), else ""."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = turn.log_text()
        if needle in text:
            return text
        time.sleep(0.1)
    return ""


# --- a minimal STUN / TURN client (RFC 8489, RFC 8656) ---

MAGIC = 0x2112A442
BINDING, ALLOCATE, REFRESH, CREATE_PERMISSION = 0x0001, 0x0003, 0x0004, 0x0008
A_USERNAME, A_MI, A_ERROR, A_LIFETIME, A_REALM, A_NONCE = 0x0006, 0x0008, 0x0009, 0x000D, 0x0014, 0x0015
A_XOR_PEER, A_XOR_RELAYED, A_REQ_TRANSPORT, A_XOR_MAPPED, A_FINGERPRINT = 0x0012, 0x0016, 0x0019, 0x0020, 0x8028


class TurnError(Exception):
    """A STUN error response (code, reason), or no answer."""

    def __init__(self, code, reason):
        super().__init__(f"{code} {reason}")
        self.code, self.reason = code, reason


def _attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def _message(method, txid, attrs, key=None):
    body = b"".join(_attr(t, v) for t, v in attrs)
    if key is not None:
        # MESSAGE-INTEGRITY covers the header with a length that already counts the MI attribute.
        head = struct.pack("!HHI", method, len(body) + 24, MAGIC) + txid
        body += _attr(A_MI, hmac.new(key, head + body, hashlib.sha1).digest())
    head = struct.pack("!HHI", method, len(body) + 8, MAGIC) + txid
    crc = (zlib.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
    body += _attr(A_FINGERPRINT, struct.pack("!I", crc))
    return struct.pack("!HHI", method, len(body), MAGIC) + txid + body


def _parse(data, txid):
    if len(data) < 20:
        raise TurnError(0, "short STUN message")
    mtype, length, magic = struct.unpack("!HHI", data[:8])
    if magic != MAGIC or data[8:20] != txid:
        raise TurnError(0, "not the answer to this request")
    attrs, i = {}, 20
    while i + 4 <= 20 + length:
        t, n = struct.unpack("!HH", data[i:i + 4])
        attrs.setdefault(t, data[i + 4:i + 4 + n])
        i += 4 + n + (-n % 4)
    return mtype, attrs


def _xor_address(v):
    port = struct.unpack("!H", v[2:4])[0] ^ (MAGIC >> 16)
    ip = ipaddress.IPv4Address(struct.unpack("!I", v[4:8])[0] ^ MAGIC)
    return str(ip), port


def _error(attrs):
    v = attrs.get(A_ERROR, b"\0\0\0\0")
    return TurnError((v[2] & 7) * 100 + v[3], v[4:].decode(errors="replace"))


class _Conn:
    """One STUN transport: a UDP socket (with retransmits) or a TCP stream, kept for an allocation's life."""

    def __init__(self, ip, port, transport, timeout):
        self.tcp = transport == "tcp"
        self.addr, self.timeout = (ip, port), timeout
        if self.tcp:
            self.sock = socket.create_connection(self.addr, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.settimeout(timeout / 3)

    def ask(self, msg, txid):
        if self.tcp:
            self.sock.sendall(msg)
            head = self._read(20)
            data = head + self._read(struct.unpack("!H", head[2:4])[0])
            return _parse(data, txid)
        for _ in range(3):  # bounded retransmits (a lost datagram)
            self.sock.sendto(msg, self.addr)
            try:
                data, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            return _parse(data, txid)
        raise TurnError(0, f"no answer from {self.addr[0]}:{self.addr[1]} over UDP")

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise TurnError(0, "TURN server closed the TCP connection")
            buf += chunk
        return buf

    def close(self):
        self.sock.close()


def binding(ip, port, transport="udp", timeout=3.0):
    """A STUN Binding: the (ip, port) the server saw this request come from."""
    conn = _Conn(ip, port, transport, timeout)
    try:
        txid = os.urandom(12)
        mtype, attrs = conn.ask(_message(BINDING, txid, []), txid)
        if mtype != 0x0101:
            raise _error(attrs)
        return _xor_address(attrs[A_XOR_MAPPED])
    finally:
        conn.close()


def binding_from(sock, ip, port):
    """A STUN Binding sent from an open UDP socket (to compare its mappings per destination)."""
    txid = os.urandom(12)
    msg = _message(BINDING, txid, [])
    for _ in range(3):
        sock.sendto(msg, (ip, port))
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            continue
        mtype, attrs = _parse(data, txid)
        if mtype != 0x0101:
            raise _error(attrs)
        return _xor_address(attrs[A_XOR_MAPPED])
    raise TurnError(0, f"no Binding answer from {ip}:{port}")


class Allocation:
    """A TURN allocation (UDP relay) held open over its own transport, with long-term credentials.
    `Allocation(...)` allocates (raises TurnError with the server's code, e.g. 401 when it refuses
    the credentials); `refresh` and `permit` ask again with the same credential; `close` releases
    it (Refresh, lifetime 0)."""

    def __init__(self, ip, port, username, password, transport="udp", timeout=3.0):
        self.conn = _Conn(ip, port, transport, timeout)
        try:
            self._allocate(username, password)
        except BaseException:
            self.conn.close()
            raise

    def _allocate(self, username, password):
        transport_attr = (A_REQ_TRANSPORT, bytes([17, 0, 0, 0]))
        txid = os.urandom(12)
        mtype, attrs = self.conn.ask(_message(ALLOCATE, txid, [transport_attr]), txid)
        if mtype != 0x0113:
            raise TurnError(0, f"an unauthenticated Allocate was not refused (type {mtype:#06x})")
        err = _error(attrs)
        if err.code != 401 or A_NONCE not in attrs:
            raise err
        realm, nonce = attrs[A_REALM], attrs[A_NONCE]
        self.key = hashlib.md5(f"{username}:{realm.decode()}:{password}".encode()).digest()
        self.auth = [(A_USERNAME, username.encode()), (A_REALM, realm), (A_NONCE, nonce)]
        mtype, attrs = self._ask(ALLOCATE, [transport_attr])
        self.relayed = _xor_address(attrs[A_XOR_RELAYED])
        self.mapped = _xor_address(attrs[A_XOR_MAPPED])
        self.lifetime = struct.unpack("!I", attrs[A_LIFETIME])[0]

    def _ask(self, method, attrs):
        txid = os.urandom(12)
        mtype, got = self.conn.ask(_message(method, txid, [*attrs, *self.auth], self.key), txid)
        if mtype != method | 0x0100:
            raise _error(got)
        return mtype, got

    def refresh(self, lifetime=600):
        """Refresh (RFC 8656 7.2); returns the lifetime granted."""
        _, got = self._ask(REFRESH, [(A_LIFETIME, struct.pack("!I", lifetime))])
        return struct.unpack("!I", got[A_LIFETIME])[0] if A_LIFETIME in got else 0

    def permit(self, peer_ip):
        """CreatePermission for a peer address (RFC 8656 9)."""
        value = struct.pack("!BBH", 0, 1, 0 ^ (MAGIC >> 16)) + struct.pack(
            "!I", int(ipaddress.IPv4Address(peer_ip)) ^ MAGIC)
        self._ask(CREATE_PERMISSION, [(A_XOR_PEER, value)])

    def close(self):
        try:
            self.refresh(0)
        except (OSError, TurnError):
            pass
        self.conn.close()


def allocate(ip, port, username, password, transport="udp", timeout=3.0):
    """One Allocate, released again: {"relayed": (ip, port), "mapped": (ip, port), "lifetime": s};
    raises TurnError with the server's error code (e.g. 401 when it refuses the credentials)."""
    a = Allocation(ip, port, username, password, transport, timeout)
    try:
        return {"relayed": a.relayed, "mapped": a.mapped, "lifetime": a.lifetime}
    finally:
        a.close()


# --- reachability probes, run inside a namespace as a child process (bounded by its timeout) ---

ECHO = r"""
import socket, sys, threading, time
ip, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, port)); u.settimeout(0.2)
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((ip, port))
t.listen(); t.settimeout(0.2)
print("ready", flush=True)
end = time.time() + secs
while time.time() < end:
    try:
        data, addr = u.recvfrom(2048); u.sendto(f"{addr[0]}:{addr[1]}".encode(), addr)
    except socket.timeout:
        pass
    try:
        c, addr = t.accept(); c.sendall(f"{addr[0]}:{addr[1]}".encode()); c.close()
    except socket.timeout:
        pass
"""

PROBE = r"""
import socket, sys
ip, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "tcp":
        s = socket.create_connection((ip, port), timeout=2); print("reply", s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.7)
        for _ in range(3):
            s.sendto(b"probe", (ip, port))
            try:
                print("reply", s.recvfrom(100)[0].decode()); break
            except socket.timeout:
                pass
        else:
            print("no reply")
except OSError as e:
    print("error", e)
"""


def echo_server(host, ip, port, secs=60):
    """A UDP+TCP echo on ip:port in `host` that answers with the address it saw, for `secs` at most
    (and ended with the namespace). Bound to `ip`, so its UDP answers come from the address asked
    (a NAT passes back only answers from the address its home sent to)."""
    p = host.popen([sys.executable, "-c", ECHO, ip, str(port), str(secs)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", f"echo server in {host.ns}: {line!r}"
    return p


def probe(host, ip, port, proto):
    """What `host` gets back from ip:port over `proto`: the address the echo saw, or None."""
    r = host.run(sys.executable, "-c", PROBE, ip, str(port), proto, check=False, timeout=10)
    out = r.stdout.strip()
    return out.split(" ", 1)[1] if out.startswith("reply ") else None
