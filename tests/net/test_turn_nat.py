"""Calls through NAT with a real TURN relay (issue 14, item 5): two homes behind their own symmetric
NAT that cannot reach each other, and a "public" network holding Debian's coturn and tincan-server,
all network namespaces this test makes (topology in tests/net/nat.py).

Proved here, without tincan first (coturn and the network themselves):
- the homes cannot reach each other (UDP and TCP probes to the other home's address and to its NAT's
  WAN address get nothing back) while both reach the public address, and their NATs are symmetric
  (one socket's mapping differs per destination), so STUN hole punching cannot connect them;
- real coturn, with `use-auth-secret`, accepts the TURN REST API credentials tincan-server issues
  (username `<expiry>:<user>`, password base64(HMAC-SHA1(secret, username))) over UDP and TCP, and
  refuses an expired one (401, and its log names the expired username) and one made with another secret.

Environment: as tests/media (TINCAN_SERVER_BIN, TINCAN_UI_DIST, TINCAN_NATIVE_PEER_BIN). Root, nft,
turnserver (scripts/setup.sh installs coturn and nftables).
"""

import os
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "media"))

import nat  # noqa: E402
import netns  # noqa: E402
from test_media import log  # noqa: E402

OK, WHY = netns.available()
MISSING = nat.missing_tools()
pytestmark = pytest.mark.skipif(not OK, reason=f"network namespaces not permitted here: {WHY}")
PROBE_PORT = 4000


@pytest.fixture(scope="module")
def world():
    """The NAT topology with coturn running in pub; removed (namespaces, processes, temp dir) after."""
    # Not a skip: scripts/setup.sh installs these, so their absence is a broken setup, not a machine limit.
    assert not MISSING, f"missing {', '.join(MISSING)}: scripts/setup.sh installs coturn and nftables"
    with tempfile.TemporaryDirectory(prefix="tincan-turn-nat-") as d, netns.TestNet() as net:
        n = nat.NatNet(net)
        secret = os.urandom(24).hex()
        turn = nat.Coturn(n.pub, d, secret)
        try:
            yield dict(net=n, turn=turn, secret=secret, dir=d)
        finally:
            turn.stop()


def test_homes_cannot_reach_each_other_but_reach_the_public_network(world):
    n = world["net"]
    echoes = [nat.echo_server(n.home2, "0.0.0.0", PROBE_PORT, 30), nat.echo_server(n.home1, "0.0.0.0", PROBE_PORT, 30),
              nat.echo_server(n.pub, nat.PUBLIC_IP, PROBE_PORT, 30)]
    try:
        # Every probe at once (a refused one waits out its timeout): (what, host, ip, proto).
        asks = []
        for proto in ("udp", "tcp"):
            asks += [("own", n.home2, "127.0.0.1", proto), ("own", n.home1, "127.0.0.1", proto)]
            for src, dst, other_nat in ((n.home1, n.home2, n.nat2), (n.home2, n.home1, n.nat1)):
                asks += [("none", src, dst.ip, proto), ("none", src, other_nat.wan_ip, proto),
                         ("pub", src, nat.PUBLIC_IP, proto)]
        with ThreadPoolExecutor(len(asks)) as pool:
            got = list(pool.map(lambda a: nat.probe(a[1], a[2], PROBE_PORT, a[3]), asks))
        for (what, src, ip, proto), seen in zip(asks, got):
            where = f"{src.ns} -> {ip}:{PROBE_PORT}/{proto}"
            if what == "own":  # each echo works, asked from its own host ...
                assert seen, f"{where}: the echo does not answer"
            elif what == "none":  # ... but no home reaches the other: not at its address, not through its NAT
                assert seen is None, f"{where}: reached directly ({seen})"
            else:  # both reach the public address, seen there as their own NAT's WAN address
                own_nat = n.nat1 if src is n.home1 else n.nat2
                assert seen and seen.split(":")[0] == own_nat.wan_ip, f"{where}: {seen}"
        log("homes: no direct path either way (UDP, TCP; home and NAT WAN addresses); both reach "
            f"{nat.PUBLIC_IP}, seen as {n.nat1.wan_ip} / {n.nat2.wan_ip}")
    finally:
        for e in echoes:
            e.kill()
            e.wait(5)


def test_nat_is_symmetric(world):
    """One UDP socket in home1 is mapped to a different port for each destination (coturn on 3478 and
    an echo on pub): the srflx port coturn reports is useless to a peer, only the relay crosses."""
    n = world["net"]
    echo = nat.echo_server(n.pub, nat.PUBLIC_IP, PROBE_PORT, 30)
    try:
        with n.home1.entered():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            try:
                s.bind(("0.0.0.0", 0))
                local = s.getsockname()[1]
                mapped = nat.binding_from(s, nat.PUBLIC_IP, nat.TURN_PORT)
                s.sendto(b"probe", (nat.PUBLIC_IP, PROBE_PORT))
                seen = s.recvfrom(100)[0].decode()
            finally:
                s.close()
        log(f"home1 socket :{local} -> coturn sees {mapped[0]}:{mapped[1]}, the echo sees {seen}")
        assert mapped[0] == n.nat1.wan_ip and seen.split(":")[0] == n.nat1.wan_ip
        assert int(seen.split(":")[1]) != mapped[1], "the NAT should map per destination (symmetric)"
    finally:
        echo.kill()
        echo.wait(5)


def test_coturn_takes_rest_credentials_and_refuses_expired_ones(world):
    """The scheme tincan-server issues, checked by real coturn (use-auth-secret), from a home."""
    n, secret = world["net"], world["secret"]
    now = int(time.time())
    with n.home1.entered():
        for transport in ("udp", "tcp"):
            user, pw = nat.rest_credentials(secret, "alice", now + 60)
            got = nat.allocate(nat.PUBLIC_IP, nat.TURN_PORT, user, pw, transport)
            log(f"TURN allocate over {transport} as {user}: relayed {got['relayed']}, mapped {got['mapped']}")
            assert got["relayed"][0] == nat.PUBLIC_IP and got["mapped"][0] == n.nat1.wan_ip
            assert nat.RELAY_PORTS[0] <= got["relayed"][1] <= nat.RELAY_PORTS[1]
        expired_user, pw = nat.rest_credentials(secret, "alice", now - 2)
        with pytest.raises(nat.TurnError) as e:
            nat.allocate(nat.PUBLIC_IP, nat.TURN_PORT, expired_user, pw, "udp")
        assert e.value.code == 401, e.value
        forged_user, pw = nat.rest_credentials("not-" + secret, "alice", now + 60)
        with pytest.raises(nat.TurnError) as e2:
            nat.allocate(nat.PUBLIC_IP, nat.TURN_PORT, forged_user, pw, "tcp")
        assert e2.value.code == 401, e2.value
    log(f"coturn refused the expired credential ({e.value}) and another secret's ({e2.value})")
    text = nat.wait_log(world["turn"], f"Cannot find credentials of user <{expired_user}>")
    assert text, "coturn's log should name the expired username it refused"
