"""The namespace harness itself (tests/net/netns.py): three hosts in a line, a -- r -- b, with r
routing between its two links; the addresses exist only inside them; everything is gone after."""

import os
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

OK, WHY = netns.available()
pytestmark = pytest.mark.skipif(not OK, reason=f"network namespaces not permitted here: {WHY}")

CONNECT = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print('ok')"


def reach(host, ip, port):
    r = host.run(sys.executable, "-c", CONNECT, ip, str(port), check=False)
    return r.returncode == 0 and "ok" in r.stdout


def test_three_hosts_routed_and_removed():
    with netns.TestNet() as net:
        a, r, b = net.host("a"), net.host("r"), net.host("b")
        net.link(a, r)  # a 10.231.1.1, r 10.231.1.2
        net.link(r, b)  # r 10.231.2.1, b 10.231.2.2
        names = [h.ns for h in net.hosts]
        with a.entered():
            srv = socket.socket()
            srv.bind((a.ip, 0))
            srv.listen()
            port = srv.getsockname()[1]
            out = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True, timeout=5).stdout
        assert "10.231.1.1/24" in out and "eth" not in out, out
        # Back in the machine's namespace: the test's address is not here.
        here = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True, timeout=5).stdout
        assert "10.231." not in here
        assert not reach(b, a.ip, port), "no route yet"
        r.forwarding()
        a.route("10.231.2.0/24", r.addrs[0][1])
        b.route("default", r.addrs[1][1])
        assert reach(b, a.ip, port), "b reaches a through r"
        sleeper = b.popen(["sleep", "60"])
        srv.close()
    assert sleeper.wait(5) is not None, "processes inside are ended"
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=5).stdout
    assert not any(n in left for n in names), left
