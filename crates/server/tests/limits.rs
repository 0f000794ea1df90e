//! The shipped binary's limits: the rate limit set by flags and environment, and overload when
//! file descriptors run short (the process started under `prlimit --nofile=64:64`).

use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tincan_proto::{
    ClientMessage, DeviceId, ErrorCode, SecretKey, ServerMessage, SigToken, UserId, UserSigKey,
    PROTOCOL_VERSION,
};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::binary::{self, BIN};
const APP: u64 = 1400000001;
const KEY: &str = "limits-test-key";

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tincan-server serve` on a free loopback port (read back from its log), optionally
/// under `prlimit`.
fn spawn(prefix: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--sdkappid",
        &APP.to_string(),
        // Missed calls in memory: no state file shared between tests (tests/missed_store.rs
        // covers the file).
        "--memory-only",
    ])
    .args(args)
    .env("TINCAN_SECRET_KEY", KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (child, addr) = binary::spawn_listening(&mut cmd, "LIMITS_TEST_LOG", |_| {});
    Server { child, addr }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn login(addr: &str, user: &str) -> Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/ws"), None, true)
            .await
            .expect("connects");
    let uid = UserId::new(user).unwrap();
    let sig = UserSigKey::new(APP, SecretKey::new(KEY.into())).gen(&uid, now(), 600, None);
    let msg = ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id: APP,
        user_id: uid,
        user_sig: SigToken(sig),
        device_id: DeviceId::new("d1").unwrap(),
    };
    ws.send(Message::text(msg.encode())).await.unwrap();
    match next(&mut ws).await {
        ServerMessage::LoginOk { .. } => ws,
        other => panic!("expected login_ok, got {other:?}"),
    }
}

async fn next(ws: &mut Ws) -> ServerMessage {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("still open")
            .expect("no error");
        if let Message::Text(t) = m {
            return ServerMessage::decode(&t).unwrap();
        }
    }
}

/// Sends `n` pings in one write and counts (pongs, rate_limited errors).
async fn burst(ws: &mut Ws, n: u64) -> (u64, u64) {
    for i in 0..n {
        let ping = ClientMessage::Ping { nonce: Some(i) }.encode();
        ws.feed(Message::text(ping)).await.unwrap();
    }
    ws.flush().await.unwrap();
    let (mut pongs, mut limited) = (0, 0);
    while pongs + limited < n {
        match next(ws).await {
            ServerMessage::Pong { .. } => pongs += 1,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    (pongs, limited)
}

#[tokio::test]
async fn the_rate_limit_comes_from_flags_and_the_environment() {
    // A tight limit from the flags: a burst of 3, then 1 frame/s.
    let s = spawn(&[], &["--rate-per-sec", "1", "--rate-burst", "3"], &[]);
    let mut ws = login(&s.addr, "alice").await;
    // The login itself took one token.
    let (pongs, limited) = burst(&mut ws, 10).await;
    assert!(
        pongs <= 3 && limited >= 7,
        "pongs {pongs}, limited {limited}"
    );
    drop(s);

    // The same from the environment.
    let s = spawn(
        &[],
        &[],
        &[("TINCAN_RATE_PER_SEC", "1"), ("TINCAN_RATE_BURST", "5")],
    );
    let mut ws = login(&s.addr, "alice").await;
    let (pongs, limited) = burst(&mut ws, 12).await;
    assert!(
        pongs <= 5 && limited >= 7,
        "pongs {pongs}, limited {limited}"
    );
    drop(s);

    // The defaults let a call's worth of frames through untouched.
    let s = spawn(&[], &[], &[]);
    let mut ws = login(&s.addr, "alice").await;
    assert_eq!(burst(&mut ws, 60).await, (60, 0));
}

#[test]
fn serve_help_names_the_rate_flags() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [
        "--rate-per-sec",
        "--rate-burst",
        "TINCAN_RATE_PER_SEC",
        "TINCAN_RATE_BURST",
    ] {
        assert!(help.contains(s), "{s} missing from:\n{help}");
    }
}

fn healthz(addr: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut s = String::new();
    let _ = tcp.read_to_string(&mut s);
    s
}

#[tokio::test]
async fn out_of_descriptors_extra_clients_are_refused_at_once() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let s = spawn(&["prlimit", "--nofile=64:64", "--"], &[], &[]);
    // The first session, signed in before the crowd.
    let mut alice = login(&s.addr, "alice").await;

    // Many more clients than the descriptors allow: each is either served or refused quickly,
    // none hangs.
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..80 {
        let started = Instant::now();
        let url = format!("ws://{}/ws", s.addr);
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await
        .unwrap_or_else(|_| panic!("client {i} hung instead of being refused"));
        match r {
            Ok((ws, _)) => held.push(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 503, "client {i}");
                refused += 1;
            }
            Err(e) => panic!("client {i}: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "client {i} slow"
        );
    }
    assert!(refused >= 40, "only {refused} of 80 refused");
    assert!(!held.is_empty(), "nobody was let in");

    // /healthz still answers, and the first session still works.
    let h = healthz(&s.addr);
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    alice
        .send(Message::text(
            ClientMessage::Ping { nonce: Some(7) }.encode(),
        ))
        .await
        .unwrap();
    assert_eq!(
        next(&mut alice).await,
        ServerMessage::Pong { nonce: Some(7) }
    );

    // Freed slots are usable again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _bob = login(&s.addr, "bob").await;
}
