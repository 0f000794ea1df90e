//! Connection-level limits through a real server on loopback (issue 11): per-address caps on
//! connections that have not signed in and on all connections (clients bound to several
//! 127.0.0.x source addresses), the header-read and upgrade timeouts, the Origin allow-list on
//! `/ws`, `/dev/usersig` only from this machine to a loopback name, and `--max-sig-lifetime`.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tincan_proto::{ErrorCode, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x).
async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = sock.connect(to).await.expect("tcp connect");
    tcp.set_nodelay(true).unwrap();
    tcp
}

/// A WebSocket from `from`, with extra request headers; the HTTP status when refused.
async fn ws_from(s: &TestServer, from: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    ws_to(s.handle.local_addr(), from, headers).await
}

/// [`ws_from`] to a server at `addr`.
async fn ws_to(addr: SocketAddr, from: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let tcp = tcp_from(from, addr).await;
    let url = format!("ws://{addr}/ws");
    let mut req = url.as_str().into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        // Refused at accept: the status line is written before the request is read.
        Err(e) => panic!("unexpected WebSocket error: {e}"),
    }
}

async fn login_on(ws: Ws, user: &str, device: &str, sig: String) -> Client {
    let mut c = Client { ws };
    c.send(&login_msg(user, device, sig)).await;
    match c.recv().await {
        ServerMessage::LoginOk { .. } => c,
        other => panic!("expected login_ok, got {other:?}"),
    }
}

/// Sends a raw HTTP request and reads the whole response (the server closes or answers once).
async fn http(addr: SocketAddr, from: &str, request: &str) -> String {
    let mut tcp = tcp_from(from, addr).await;
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                // One response with a body of content-length bytes is enough.
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    });
                    if len.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Waits until the server closes `tcp` (EOF or reset); returns how long that took. Panics after
/// `limit`.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), tcp.read(&mut buf)).await
        {
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_filling_its_unauthenticated_quota_does_not_lock_out_another() {
    // Before: unauthenticated sockets shared the one global cap; 25 from one address took all 20
    // slots and a real user elsewhere got 503.
    let s = server_with(|c| {
        c.max_connections = 20;
        c.max_unauth_per_ip = 5;
    })
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..25 {
        match ws_from(&s, "127.0.0.2", &[]).await {
            Ok(ws) => held.push(ws),
            Err(status) => {
                assert_eq!(status, 429);
                refused += 1;
            }
        }
    }
    assert_eq!(
        held.len(),
        5,
        "the attacker's address holds its quota and no more"
    );
    assert_eq!(refused, 20);
    // A real user from another address signs in at once.
    let ws = ws_from(&s, "127.0.0.3", &[])
        .await
        .expect("a user elsewhere gets in");
    let _user = login_on(ws, "alice", "a1", s.sig("alice")).await;
    // The quota counts sockets that have not signed in: a signed-in one frees its place.
    let mut signed_in = Vec::new();
    for i in 0..5 {
        let ws = ws_from(&s, "127.0.0.4", &[]).await.expect("within quota");
        signed_in.push(login_on(ws, "bob", &format!("b{i}"), s.sig("bob")).await);
    }
    let _sixth = ws_from(&s, "127.0.0.4", &[])
        .await
        .expect("signed-in sessions do not count as unauthenticated");
    // Closing the attacker's sockets gives its address its quota back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ws_from(&s, "127.0.0.2", &[]).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(status) => panic!("quota never released: {status}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_may_hold_at_most_max_conns_per_ip() {
    let s = server_with(|c| {
        c.max_conns_per_ip = 3;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let ws = ws_from(&s, "127.0.0.5", &[]).await.expect("within the cap");
        clients.push(login_on(ws, "carol", &format!("c{i}"), s.sig("carol")).await);
    }
    assert_eq!(ws_from(&s, "127.0.0.5", &[]).await.err(), Some(429));
    // A plain HTTP request from that address is a connection too.
    let resp = http(
        s.handle.local_addr(),
        "127.0.0.5",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    assert!(resp.ends_with("too_many_connections"), "{resp}");
    assert!(ws_from(&s, "127.0.0.6", &[]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_timed_out_and_counted_meanwhile() {
    let s = server_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.upgrade_timeout = Duration::from_secs(30);
        c.max_unauth_per_ip = 2;
    })
    .await;
    let addr = s.handle.local_addr();
    // Two connections trickling header lines forever (one every 200 ms, so never idle).
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut tcp = tcp_from("127.0.0.7", addr).await;
        tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(tcp);
    }
    let trickle = async {
        let start = Instant::now();
        let mut closed = [None, None];
        while closed.iter().any(Option::is_none) && start.elapsed() < Duration::from_secs(6) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (i, tcp) in slow.iter_mut().enumerate() {
                if closed[i].is_some() {
                    continue;
                }
                let mut probe = [0u8; 64];
                let gone = match tcp.try_read(&mut probe) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                    Err(_) => true,
                };
                if gone || tcp.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    closed[i] = Some(start.elapsed());
                }
            }
        }
        closed
    };
    // Meanwhile they count: a third connection from that address is refused at once.
    let third = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws_from(&s, "127.0.0.7", &[]).await.err()
    };
    let (closed, third) = tokio::join!(trickle, third);
    assert_eq!(third, Some(429), "slow connections count against the quota");
    for c in closed {
        let t = c.expect("a slowloris connection was kept open for 6 s");
        assert!(
            t >= Duration::from_millis(700) && t < Duration::from_secs(3),
            "closed after {t:?}"
        );
    }
    // Their places are free again.
    assert!(ws_from(&s, "127.0.0.7", &[]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_upgrade_or_never_sign_in_are_closed() {
    let s = server_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.upgrade_timeout = Duration::from_millis(1500);
        c.login_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = s.handle.local_addr();
    // Silent TCP: no request at all.
    let mut silent = tcp_from("127.0.0.8", addr).await;
    let t = closed_within(&mut silent, Duration::from_secs(4)).await;
    assert!(t >= Duration::from_millis(700), "closed too early: {t:?}");
    // An idle keep-alive after a complete request.
    let mut idle = tcp_from("127.0.0.8", addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(t >= Duration::from_millis(1200), "closed too early: {t:?}");
    // Upgraded but never signs in: the login timeout's close frame.
    let ws = ws_from(&s, "127.0.0.8", &[]).await.unwrap();
    let mut c = Client { ws };
    let (code, reason) = c.expect_close().await;
    assert_eq!((code, reason.as_str()), (4004, "login_timeout"));
    // A WebSocket that signed in is not subject to the HTTP timeouts.
    let ws = ws_from(&s, "127.0.0.8", &[]).await.unwrap();
    let mut alice = login_on(ws, "alice", "a1", s.sig("alice")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice
        .send(&tincan_proto::ClientMessage::Ping { nonce: Some(7) })
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::Pong { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_from_other_origins_are_refused_before_upgrade() {
    let s = server_with(|c| {
        c.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let own = format!("http://{}", s.handle.local_addr());
    for ok in [
        None,
        Some("tauri://localhost"),
        Some("http://tauri.localhost"),
        Some("https://app.example.com"),
        Some(own.as_str()),
    ] {
        let headers: Vec<(&str, &str)> = ok.iter().map(|o| ("origin", *o)).collect();
        let ws = ws_from(&s, "127.0.0.9", &headers)
            .await
            .unwrap_or_else(|st| panic!("origin {ok:?} refused with {st}"));
        drop(ws);
    }
    for bad in [
        "https://evil.example",
        "http://127.0.0.1:1",
        "null",
        "https://app.example.com.evil.example",
    ] {
        assert_eq!(
            ws_from(&s, "127.0.0.9", &[("origin", bad)]).await.err(),
            Some(403),
            "{bad}"
        );
    }
    // `*` allows any.
    let any = server_with(|c| c.allowed_origins = vec!["*".into()]).await;
    assert!(
        ws_from(&any, "127.0.0.9", &[("origin", "https://evil.example")])
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_usersig_answers_only_loopback_requests_to_a_loopback_name() {
    let s = server_with(|c| {
        c.dev_issue_sigs = true;
        c.max_sig_lifetime_secs = 3600;
    })
    .await;
    let addr = s.handle.local_addr();
    let port = addr.port();
    let get = |host: String, extra: &'static str| {
        format!("GET /dev/usersig?user=dora HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
    };
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let resp = http(addr, "127.0.0.10", &get(host.clone(), "")).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{host}: {resp}");
        let body = resp.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        // Never longer than the server accepts.
        assert_eq!(v["expire_secs"], 3600);
        let sig = v["user_sig"].as_str().unwrap().to_owned();
        let ws = ws_from(&s, "127.0.0.10", &[]).await.unwrap();
        login_on(ws, "dora", "d1", sig).await;
    }
    // DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its own name.
    for (host, extra) in [
        (format!("evil.example:{port}"), ""),
        (format!("localhost.evil.example:{port}"), ""),
        (format!("127.0.0.1:{}", port.wrapping_add(1)), ""),
        ("127.0.0.1".to_owned(), ""),
        (
            format!("127.0.0.1:{port}"),
            "Origin: http://evil.example\r\n",
        ),
        (
            format!("127.0.0.1:{port}"),
            "X-Forwarded-For: 203.0.113.5\r\n",
        ),
    ] {
        let resp = http(addr, "127.0.0.10", &get(host.clone(), extra)).await;
        assert!(
            resp.starts_with("HTTP/1.1 403") && resp.ends_with("dev_usersig_local_only"),
            "{host} {extra}: {resp}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_with_sigs_longer_than_max_sig_lifetime_are_refused() {
    let s = server_with(|c| c.max_sig_lifetime_secs = 3600).await;
    let mut c = s.connect().await;
    let long = s.key.gen(&uid("erin"), now_secs(), 7200, None);
    c.send(&login_msg("erin", "e1", long)).await;
    let m = c.expect_error(ErrorCode::UserSigTooLong).await;
    let ServerMessage::Error { message, .. } = m else {
        unreachable!()
    };
    assert!(message.contains("3600"), "{message}");
    // At the limit: accepted.
    let ok = s.key.gen(&uid("erin"), now_secs(), 3600, None);
    c.send(&login_msg("erin", "e1", ok)).await;
    assert!(matches!(c.recv().await, ServerMessage::LoginOk { .. }));
    // The default (7 days) still takes the usual day-long sigs of operators' issuers.
    let d = server().await;
    let mut c = d.connect().await;
    let day = d.key.gen(&uid("erin"), now_secs(), 86_400, None);
    c.send(&login_msg("erin", "e1", day)).await;
    assert!(matches!(c.recv().await, ServerMessage::LoginOk { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_counted() {
    let s = server_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.max_unauth_per_ip = 2;
    })
    .await;
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];
    let _a = ws_from(&s, "127.0.0.1", &xff("203.0.113.9")).await.unwrap();
    let _b = ws_from(&s, "127.0.0.1", &xff("203.0.113.9")).await.unwrap();
    assert_eq!(
        ws_from(&s, "127.0.0.1", &xff("203.0.113.9")).await.err(),
        Some(429)
    );
    // Another client behind the same proxy is not affected, nor is the proxy itself limited.
    let ws = ws_from(&s, "127.0.0.1", &xff("203.0.113.10"))
        .await
        .unwrap();
    let mut c = login_on(ws, "fay", "f1", s.sig("fay")).await;
    c.ws.close(None).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_path_counts_and_times_connections_too() {
    use tokio_rustls::rustls::pki_types::ServerName;
    let dir = tempfile::tempdir().unwrap();
    let ca = common::test_ca::Ca::new("tincan test CA");
    let (cert, key) = ca.server_cert();
    let files = tincan_server::tls::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    let s = server_with(|c| {
        c.tls = Some(files);
        c.header_timeout = Duration::from_secs(1);
        c.max_unauth_per_ip = 1;
    })
    .await;
    let addr = s.handle.local_addr();
    // A TLS client that finishes its handshake, then trickles header lines.
    let tcp = tcp_from("127.0.0.11", addr).await;
    let connector = tokio_rustls::TlsConnector::from(ca.client());
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // It holds the address's one unauthenticated place: another connection from there is closed
    // at once, before any TLS work (no ServerHello, just the close).
    let mut second = tcp_from("127.0.0.11", addr).await;
    let t = closed_within(&mut second, Duration::from_secs(1)).await;
    assert!(t < Duration::from_millis(900), "{t:?}");
    // A user elsewhere signs in over wss meanwhile.
    let tcp = tcp_from("127.0.0.12", addr).await;
    let url = format!("wss://127.0.0.1:{}/ws", addr.port());
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
        url,
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(ca.client())),
    )
    .await
    .expect("wss from another address");
    let _user = login_on(ws, "gus", "g1", s.sig("gus")).await;
    // The trickler is cut off at the header timeout, however steadily it trickles.
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let closed = loop {
        if start.elapsed() > Duration::from_secs(5) {
            break None;
        }
        match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => {
                if tls.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break Some(start.elapsed());
                }
            }
        }
    };
    let t = closed.expect("the TLS slowloris connection was kept open for 5 s");
    assert!(t < Duration::from_secs(3), "closed after {t:?}");
}

/// The `serve` flags reach the server: --max-unauth-per-ip, --header-timeout-secs, --allow-origin,
/// --max-sig-lifetime, through the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_the_connection_flags() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    /// The server goes when the test ends, passed or not.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_tincan-server"))
            .args(["serve", "--listen", &addr.to_string(), "--memory-only"])
            .args(["--sdkappid", &APP.to_string()])
            .args(["--max-unauth-per-ip", "1", "--header-timeout-secs", "1"])
            .args(["--allow-origin", "https://app.example.com"])
            .args(["--max-sig-lifetime", "600"])
            .env("TINCAN_SECRET_KEY", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = tincan_proto::UserSigKey::new(APP, tincan_proto::SecretKey::new(SECRET.into()));
    // Let the probe's connection go (it counted against the one unauthenticated place).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ws = ws_to(addr, "127.0.0.13", &[("origin", "https://app.example.com")])
        .await
        .expect("an allowed origin");
    let mut c = Client { ws };
    c.send(&login_msg(
        "hal",
        "h1",
        key.gen(&uid("hal"), now_secs(), 601, None),
    ))
    .await;
    c.expect_error(ErrorCode::UserSigTooLong).await;
    c.send(&login_msg(
        "hal",
        "h1",
        key.gen(&uid("hal"), now_secs(), 600, None),
    ))
    .await;
    assert!(matches!(c.recv().await, ServerMessage::LoginOk { .. }));
    assert_eq!(
        ws_to(addr, "127.0.0.13", &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    // One silent connection fills the address's quota of one, and is cut off after 1 s.
    let mut silent = tcp_from("127.0.0.14", addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ws_to(addr, "127.0.0.14", &[]).await.err(), Some(429));
    let t = closed_within(&mut silent, Duration::from_secs(4)).await;
    assert!(t < Duration::from_secs(3), "{t:?}");
}
