"""Test networks made of Linux network namespaces, for tests that need more than one host.

Each namespace is a "host" with only `lo` and the veth links the test gives it, addressed from
10.231.0.0/16 (a range that exists only inside these namespaces: nothing here adds a route, a link or
an address to the machine's own network namespace, and the namespaces have no path to it). IPv6 is
off in them unless asked for, so the only addresses a WebRTC stack can offer are the test's own.

    with TestNet() as net:
        a, b = net.host("a"), net.host("b")
        net.link(a, b)                         # a: 10.231.1.1/24, b: 10.231.1.2/24
        proc = b.popen(["some", "command"])    # runs in b
        with a.entered():                      # this thread (and what it starts) is in a
            ...

Everything is removed on exit, on an exception, and at interpreter exit (atexit) for anything a
crash left: the processes still inside the namespaces are killed and the namespaces deleted (their
veth ends go with them). Namespaces are named `tctest-<pid>-<name>`; ones left by a test process
that no longer runs are swept when a new TestNet starts. Every command has a timeout.

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2. `available()` says whether `ip netns add`
works here, with the exact error when it does not.
"""

import atexit
import ctypes
import ipaddress
import os
import re
import signal
import subprocess
import time

PREFIX = "tctest-"
TEST_RANGE = ipaddress.ip_network("10.231.0.0/16")
CLONE_NEWNET = 0x40000000
TIMEOUT = 10  # seconds, any single ip/sysctl command

_libc = ctypes.CDLL(None, use_errno=True)
_LIVE = set()  # TestNets not yet closed, for atexit


def _run(*args, check=True, timeout=TIMEOUT):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def available():
    """(True, "") if this process may make network namespaces, else (False, the exact error)."""
    if os.geteuid() != 0:
        return False, "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        r = _run("ip", "netns", "add", name, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"ip netns add: {e}"
    if r.returncode != 0:
        return False, f"ip netns add {name}: exit {r.returncode}: {r.stderr.strip()}"
    _run("ip", "netns", "del", name, check=False)
    return True, ""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Deletes namespaces of this naming scheme whose test process is gone (a SIGKILLed run)."""
    r = _run("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"{PREFIX}(\d+)-", name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            Host(name, None)._remove()


class Host:
    """One network namespace."""

    def __init__(self, ns, net):
        self.ns = ns
        self.net = net
        self.addrs = []  # (ifname, "10.231.x.y") in the order links were made

    @property
    def ip(self):
        """The first address given to this host."""
        return self.addrs[0][1]

    def cmd(self, args):
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, *args, check=True, timeout=TIMEOUT):
        return _run(*self.cmd(args), check=check, timeout=timeout)

    def popen(self, args, **kw):
        """Starts a process in this namespace (`ip netns exec` execs it: the pid is the process's)."""
        return subprocess.Popen(self.cmd(list(args)), **kw)

    def pids(self):
        r = _run("ip", "netns", "pids", self.ns, check=False)
        return [int(p) for p in r.stdout.split() if p.isdigit()]

    def counters(self, ifname):
        """rx/tx packets and bytes of one of this host's interfaces."""
        out = {}
        for key in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes"):
            out[key] = int(self.run("cat", f"/sys/class/net/{ifname}/statistics/{key}").stdout)
        return out

    def sysctl(self, key, value):
        """Sets a sysctl of this namespace (net.* are per namespace)."""
        self.run("sysctl", "-qw", f"{key}={value}")

    def forwarding(self, on=True):
        """Makes this host a router between its links (IPv4 forwarding)."""
        self.sysctl("net.ipv4.ip_forward", 1 if on else 0)

    def route(self, dest, via):
        """A route in this namespace, e.g. `route("default", "10.231.2.1")` (only ever to a
        10.231.x address of another test host)."""
        assert ipaddress.ip_address(via) in TEST_RANGE, via
        self.run("ip", "route", "add", dest, "via", via)

    def entered(self):
        """A context in which the calling thread is in this namespace: sockets it opens and
        processes it starts (they inherit the thread's namespace) are on this host. The thread's
        previous namespace is restored on exit."""
        return _Entered(self.ns)

    def _remove(self):
        # A process inside keeps the namespace alive after `ip netns del`: end them first.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 3
            while time.time() < deadline and self.pids():
                time.sleep(0.05)
        _run("ip", "netns", "del", self.ns, check=False)


class _Entered:
    def __init__(self, ns):
        self.ns = ns

    def __enter__(self):
        self.back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                os.close(self.back)
                raise OSError(err, f"setns into {self.ns}: {os.strerror(err)}")
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        try:
            if _libc.setns(self.back, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
        finally:
            os.close(self.back)


class TestNet:
    """A set of namespaces and links that exist for one test (see the module docs)."""

    __test__ = False  # not a pytest class

    def __init__(self, ipv6=False):
        self.ipv6 = ipv6
        self.hosts = []
        self.subnets = 0
        self.closed = False

    def __enter__(self):
        sweep_stale()
        _LIVE.add(self)
        return self

    def __exit__(self, *exc):
        self.close()

    def host(self, name):
        """A new namespace with `lo` up (and IPv6 off unless the net was made with ipv6=True)."""
        assert re.fullmatch(r"[a-z0-9]{1,12}", name), name
        ns = f"{PREFIX}{os.getpid()}-{name}"
        _run("ip", "netns", "add", ns)
        h = Host(ns, self)
        self.hosts.append(h)
        if not self.ipv6:
            h.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        h.run("ip", "link", "set", "lo", "up")
        return h

    def link(self, a, b, subnet=None):
        """A veth pair between hosts a and b, made directly inside them (no name ever exists in the
        machine's namespace), on 10.231.<subnet>.0/24: a gets .1, b gets .2. Returns the two
        interface names (a's, b's)."""
        self.subnets += 1
        n = subnet if subnet is not None else self.subnets
        assert 0 < n < 255
        ia, ib = f"v{n}a", f"v{n}b"
        _run("ip", "link", "add", ia, "netns", a.ns, "type", "veth", "peer", "name", ib, "netns", b.ns)
        for h, ifname, last in ((a, ia, 1), (b, ib, 2)):
            addr = f"10.231.{n}.{last}"
            h.run("ip", "addr", "add", f"{addr}/24", "dev", ifname)
            h.run("ip", "link", "set", ifname, "up")
            h.addrs.append((ifname, addr))
        return ia, ib

    def close(self):
        if self.closed:
            return
        self.closed = True
        for h in reversed(self.hosts):
            try:
                h._remove()
            except Exception as e:  # keep removing the others
                print(f"netns: removing {h.ns}: {e}", flush=True)
        _LIVE.discard(self)


@atexit.register
def _close_all():
    for net in list(_LIVE):
        net.close()
