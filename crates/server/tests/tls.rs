//! The server's own TLS: wss sign-in with a CA made here (rcgen), a certificate from another CA
//! refused, the certificate reloaded when its file changes (in-process) and on SIGHUP (the real
//! binary), a bad new certificate keeping the old one, and X-Forwarded-For believed only from a
//! trusted proxy.

mod common;

use common::*;
use futures_util::SinkExt;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tincan_proto::ServerMessage;
use tincan_server::tls::TlsFiles;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;

const BIN: &str = env!("CARGO_BIN_EXE_tincan-server");

use common::test_ca::Ca;

/// Writes the pair where the server reads it; a rename, as certbot and friends do.
fn install(dir: &Path, (cert, key): &(String, String)) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    for (path, body) in [(&files.cert, cert), (&files.key, key)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    files
}

/// Connects over wss trusting only `ca`; Ok when the handshake and upgrade succeed.
async fn try_wss(url: &str, ca: &Ca) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        Some(Connector::Rustls(ca.client())),
    )
    .await?;
    Ok(Client { ws })
}

fn is_unknown_issuer(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    let tokio_tungstenite::tungstenite::Error::Io(io) = e else {
        return false;
    };
    matches!(
        io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    )
}

async fn wss_server(files: TlsFiles, poll: Duration) -> (TestServer, String) {
    let srv = server_with(|c| {
        c.tls = Some(files);
        c.tls_reload_every = poll;
    })
    .await;
    let url = format!("wss://127.0.0.1:{}/ws", srv.handle.local_addr().port());
    (srv, url)
}

#[tokio::test]
async fn wss_sign_in_and_a_call_with_the_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tincan test CA");
    let files = install(dir.path(), &ca.server_cert());
    let (srv, url) = wss_server(files, Duration::from_secs(60)).await;

    // Both names in the certificate work; a call rings across two wss sessions.
    let mut alice = try_wss(&url, &ca).await.expect("wss with the test CA");
    alice
        .send(&login_msg("alice", "a1", srv.sig("alice")))
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::LoginOk { .. }));
    let local = url.replace("127.0.0.1", "localhost");
    let mut bob = try_wss(&local, &ca).await.expect("wss to localhost");
    bob.send(&login_msg("bob", "b1", srv.sig("bob"))).await;
    assert!(matches!(bob.recv().await, ServerMessage::LoginOk { .. }));
    alice
        .send(&tincan_proto::ClientMessage::Invite {
            call_id: cid("c1"),
            callee: uid("bob"),
            call_type: Default::default(),
            timeout_secs: None,
        })
        .await;
    assert!(matches!(bob.recv().await, ServerMessage::Invited { .. }));
    assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));

    // Plain ws:// to a TLS port does not work (no downgrade).
    let plain = url.replace("wss://", "ws://");
    assert!(tokio_tungstenite::connect_async(&plain).await.is_err());
    srv.handle.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tincan test CA");
    let other = Ca::new("someone else's CA");
    let files = install(dir.path(), &other.server_cert());
    let (srv, url) = wss_server(files, Duration::from_secs(60)).await;
    let e = try_wss(&url, &ca).await.err().expect("refused");
    assert!(is_unknown_issuer(&e), "{e:?}");
    srv.handle.shutdown().await;
}

#[tokio::test]
async fn a_bad_certificate_at_start_is_an_error_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tincan test CA");
    let (cert, _) = ca.server_cert();
    let (_, other_key) = ca.server_cert();
    let files = install(dir.path(), &(cert, other_key));
    let mut cfg = tincan_server::ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        APP,
        tincan_proto::SecretKey::new(SECRET.into()),
    );
    cfg.tls = Some(files.clone());
    let err = tincan_server::start(cfg).await.expect_err("refused");
    assert!(err.to_string().contains("does not belong"), "{err}");
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let err = tincan_server::tls::load(&files)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
}

#[tokio::test]
async fn the_certificate_is_reloaded_when_its_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let files = install(dir.path(), &first.server_cert());
    let (srv, url) = wss_server(files, Duration::from_millis(100)).await;
    let mut open = try_wss(&url, &first).await.expect("first certificate");

    install(dir.path(), &second.server_cert());
    let deadline = Instant::now() + Duration::from_secs(10);
    while try_wss(&url, &second).await.is_err() {
        assert!(Instant::now() < deadline, "new certificate not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = try_wss(&url, &first)
        .await
        .err()
        .expect("old CA no longer fits");
    assert!(is_unknown_issuer(&e), "{e:?}");
    // The connection made before the renewal is still up.
    open.ws.send(Message::Ping(vec![1].into())).await.unwrap();

    // A broken renewal (key of another certificate) is logged and the served one stays.
    let (cert, _) = first.server_cert();
    let (_, wrong_key) = first.server_cert();
    install(dir.path(), &(cert, wrong_key));
    tokio::time::sleep(Duration::from_millis(500)).await;
    try_wss(&url, &second)
        .await
        .expect("still the second certificate");
    srv.handle.shutdown().await;
}

/// Runs the real binary; returns it and a channel of its stderr lines.
fn spawn_server(
    port: u16,
    extra: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sdkappid",
            &APP.to_string(),
            "--memory-only",
        ])
        .args(extra)
        .env("TINCAN_SECRET_KEY", SECRET)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, what: &str, f: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if f(&line) => return,
            Ok(_) => {}
            Err(_) => panic!("no log line {what}"),
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sighup_reloads_the_certificate_in_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let files = install(dir.path(), &first.server_cert());
    let port = free_port();
    let cert = files.cert.display().to_string();
    let key = files.key.display().to_string();
    // Polling so slow that only the signal can explain a reload.
    let (child, rx) = spawn_server(
        port,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-reload-secs",
            "3600",
        ],
    );
    let child = Kill(child);
    wait_line(&rx, "listening", |l| l.contains("listening"));
    let url = format!("wss://localhost:{port}/ws");
    try_wss(&url, &first).await.expect("first certificate");

    install(dir.path(), &second.server_cert());
    tokio::time::sleep(Duration::from_millis(300)).await;
    try_wss(&url, &first)
        .await
        .expect("no reload without a signal");
    let status = Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_line(&rx, "reloaded", |l| l.contains("TLS certificate reloaded"));
    try_wss(&url, &second)
        .await
        .expect("second certificate after SIGHUP");
    assert!(try_wss(&url, &first).await.is_err());
}

/// A raw WebSocket upgrade with an X-Forwarded-For header; returns when the server answered.
fn upgrade_with_forwarded_for(port: u16, xff: &str) {
    use std::io::Read;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        tcp,
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         X-Forwarded-For: {xff}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 12];
    tcp.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    // The proxy is 127.0.0.1 (this test); the client it reports is 203.0.113.7.
    let port = free_port();
    let (child, rx) = spawn_server(port, &["--trusted-proxy", "127.0.0.1"]);
    let _child = Kill(child);
    wait_line(&rx, "listening", |l| l.contains("listening"));
    upgrade_with_forwarded_for(port, "6.6.6.6, 203.0.113.7");
    wait_line(&rx, "a line naming the forwarded client", |l| {
        l.contains("client=203.0.113.7")
    });

    // Without --trusted-proxy the header is ignored and the peer is logged.
    let port = free_port();
    let (child, rx) = spawn_server(port, &[]);
    let _child = Kill(child);
    wait_line(&rx, "listening", |l| l.contains("listening"));
    upgrade_with_forwarded_for(port, "203.0.113.7");
    wait_line(&rx, "a line naming the peer", |l| {
        assert!(!l.contains("203.0.113.7"), "{l}");
        l.contains("client=127.0.0.1")
    });
}

#[test]
fn tls_cert_without_a_key_is_a_usage_error() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--sdkappid",
            "1",
            "--tls-cert",
            "/nonexistent/cert.pem",
        ])
        .env("TINCAN_SECRET_KEY", SECRET)
        .env_remove("TINCAN_TLS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
}

#[test]
fn a_missing_certificate_file_stops_the_start_with_its_name() {
    let port = free_port();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sdkappid",
            "1",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ])
        .env("TINCAN_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/cert.pem"), "{err}");
}
