//! TURN and the relay-only mode with two native engines in one process.
//!
//! - Relay-only with no TURN server: the session refuses to start (`NoRelay`), nothing is sent.
//! - Relay-only with a TURN server that does not answer: no candidate at all leaves either engine
//!   (neither trickled nor inside the offer / answer), and ICE never connects.
//! - Relay-only through a real coturn on loopback (`turnserver`, Debian's `coturn`, started here
//!   with a generated secret and REST-API credentials like tincan-server's, over UDP and over
//!   TCP): the tones cross both ways, every candidate that crossed is a relay candidate, and the
//!   engines' stats show the route as relay ↔ relay over the TURN transport used; the candidates
//!   hide their related address (`raddr 0.0.0.0 rport 0`). Skipped (with
//!   the reason printed) where `turnserver` is not installed.

mod common;

use common::{config, sdp_of, Pair};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tincan_media::{
    CandidateType, EngineConfig, EngineEvent, IceConnectionState, IceUrls, MediaError,
    MediaSession, Role, Transport,
};
use tincan_proto::MediaSignal;

fn relay_only(hz: f64, ice: &IceUrls) -> EngineConfig {
    EngineConfig {
        ice: ice.clone(),
        relay_only: true,
        // coturn listens on loopback only; the allocations must come from there.
        local_addresses: vec!["127.0.0.1".into()],
        ..config(hz, false)
    }
}

fn candidates_sent(p: &Pair) -> Vec<String> {
    let mut out = Vec::new();
    for (_, s) in &p.delivered {
        match s {
            MediaSignal::Candidate { candidate, .. } => out.push(candidate.clone()),
            other => {
                if let Some(sdp) = sdp_of(other) {
                    out.extend(
                        sdp.lines()
                            .filter(|l| l.starts_with("a=candidate:"))
                            .map(str::to_owned),
                    );
                }
            }
        }
    }
    out
}

#[test]
fn relay_only_without_a_turn_server_is_refused_at_start() {
    let e = MediaSession::start(
        &relay_only(440.0, &IceUrls::default()),
        Role::Offerer,
        |_| panic!("no event may come from a session that did not start"),
    )
    .unwrap_err();
    assert!(matches!(e, MediaError::NoRelay), "{e}");
}

/// A free loopback UDP port nobody listens on.
fn dead_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a loopback port")
}

#[test]
fn relay_only_with_an_unreachable_relay_sends_no_candidate() {
    let mut ice = IceUrls::default();
    ice.push_server(
        &[format!("turn:127.0.0.1:{}?transport=udp", dead_port())],
        Some("1:nobody"),
        Some("x"),
    );
    let mut p = Pair::start_with(relay_only(440.0, &ice), relay_only(1000.0, &ice));
    p.collect_errors = true;
    p.ring_then_accept();
    let mut connected = false;
    p.pump_for(6.0, |_, e| {
        connected |= matches!(
            e,
            EngineEvent::IceState(IceConnectionState::Connected | IceConnectionState::Completed)
        );
    });
    assert!(
        p.delivered
            .iter()
            .any(|(_, s)| matches!(s, MediaSignal::Answer { .. })),
        "the call was negotiated"
    );
    let sent = candidates_sent(&p);
    assert!(sent.is_empty(), "candidates left an engine: {sent:?}");
    assert!(!connected, "ICE connected with no relay");
}

/// coturn on loopback with `use-auth-secret`, removed on drop.
struct Coturn {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
    secret: String,
}

impl Coturn {
    fn start() -> Option<Self> {
        let bin = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(bin) = bin else {
            eprintln!("SKIPPED: coturn's turnserver is not installed (apt-get install coturn)");
            return None;
        };
        // A port free for both UDP and TCP.
        let port = loop {
            let t = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
            let port = t.local_addr().expect("its address").port();
            if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        // One per server: the tests of this file run at once, and each removes its own.
        let dir =
            std::env::temp_dir().join(format!("tincan-media-coturn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("coturn's temp dir");
        let secret = format!("{:x}{:x}", std::process::id(), now().as_nanos());
        // Bounded by `timeout`: a test process killed before its drop cannot leave coturn running.
        let child = Command::new("timeout")
            .args(["--kill-after=5", "120", bin])
            .args([
                "-n",
                "--no-cli",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--realm=tincan.test",
                // Both engines are on this machine: the relayed peer is loopback. Never in a
                // deployment (the README's turnserver.conf denies private and loopback peers).
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--fingerprint",
                "--no-multicast-peers",
                "--log-file=stdout",
                "--simple-log",
                &format!("--pidfile={}", dir.join("pid").display()),
                &format!("--userdb={}", dir.join("turndb").display()),
                "--min-port=49152",
                "--max-port=65535",
            ])
            .stdout(
                std::fs::File::create(dir.join("log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        let c = Self {
            child,
            dir,
            port,
            secret,
        };
        // Ready when its TCP listener answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "coturn did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(c)
    }

    /// REST-API credentials (draft-uberti-behave-turn-rest, as tincan-server mints them):
    /// `<expiry>:<user>` and base64(HMAC-SHA1(secret, username)) — with `:` in the username and
    /// base64's `/`, `+`, `=` in the password, which the engine must escape for webrtcbin.
    fn credentials(&self, user: &str) -> (String, String) {
        let username = format!("{}:{user}", now().as_secs() + 3600);
        let out = Command::new("openssl")
            .args(["dgst", "-sha1", "-binary", "-hmac", &self.secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(username.as_bytes())?;
                c.wait_with_output()
            })
            .expect("openssl computes the HMAC");
        use base64::Engine as _;
        let password = base64::engine::general_purpose::STANDARD.encode(out.stdout);
        (username, password)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Its log tells why a relay was refused.
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            for l in tail.iter().rev() {
                eprintln!("coturn: {l}");
            }
        }
        // SIGTERM to `timeout`, which passes it on to coturn (a SIGKILL would orphan coturn).
        let stopped = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn call_through_coturn(transport: &str, want: Transport) {
    let Some(turn) = Coturn::start() else { return };
    let ice_for = |user: &str| {
        let (u, p) = turn.credentials(user);
        let mut ice = IceUrls::default();
        ice.push_server(
            &[format!(
                "turn:127.0.0.1:{}?transport={transport}",
                turn.port
            )],
            Some(&u),
            Some(&p),
        );
        ice
    };
    let mut p = Pair::start_with(
        relay_only(440.0, &ice_for("alice")),
        relay_only(1000.0, &ice_for("bob")),
    );
    p.ring_then_accept();
    p.hear('a', 1000.0);
    p.hear('b', 440.0);
    let sent = candidates_sent(&p);
    assert!(!sent.is_empty(), "no candidate crossed");
    for c in &sent {
        assert_eq!(
            tincan_proto::sdp::candidate_type(c),
            Some("relay"),
            "a non-relay candidate crossed: {c}"
        );
        // Not even the address coturn saw us at (the related address).
        assert!(c.contains(" raddr 0.0.0.0 rport 0"), "{c}");
    }
    // The stats show the route: relay on both sides, reached over `want`.
    let mut routes = [None, None];
    let deadline = Instant::now() + Duration::from_secs(10);
    while routes.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "no route in the stats: {routes:?}"
        );
        p.a.request_stats();
        p.b.request_stats();
        p.pump_for(0.5, |w, e| {
            if let EngineEvent::Stats(s) = e {
                if let Some(r) = s.route {
                    routes[usize::from(w == 'b')] = Some(r);
                }
            }
        });
    }
    for r in routes.into_iter().flatten() {
        assert!(r.relayed(), "{r:?}");
        assert_eq!(
            (r.local, r.remote),
            (CandidateType::Relay, CandidateType::Relay)
        );
        assert_eq!(r.relay_protocol, Some(want), "{r:?}");
    }
    eprintln!("relayed through coturn over {transport}: {routes:?}; candidates: {sent:?}");
}

#[test]
fn relay_only_through_coturn_over_udp() {
    call_through_coturn("udp", Transport::Udp);
}

#[test]
fn relay_only_through_coturn_over_tcp() {
    call_through_coturn("tcp", Transport::Tcp);
}
