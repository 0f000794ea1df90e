//! The desktop signaling client over wss against a real tincan-server serving TLS on loopback, with
//! a CA made in the test (rcgen) given as the Settings' CA file: sign-in and a whole call; a
//! certificate from another CA refused with `tls_certificate`; plain ws:// to a name that is not
//! loopback refused with `insecure_server_url` before any connection is tried.

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_app::credentials::{Credentials, MemoryStore};
use tincan_app::embedded::EmbeddedHost;
use tincan_app::service::{Service, ServiceConfig};
use tincan_app::signaling::{EventSink, Timing};
use tincan_app::storage::{MemoryKv, Store};
use tincan_ipc::{AppEvent, CallPhase, ErrorCode, Settings, SignInArgs, SignInCredentials};
use tincan_proto::{
    ClientMessage, DeviceId, SecretKey, ServerMessage, SigToken, UserId, UserSigKey,
    PROTOCOL_VERSION,
};
use tokio_tungstenite::tungstenite::Message;

const SDK: u64 = 1_400_000_043;
const KEY: &str = "tincan-tls-test-secret-key-9d1e";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[path = "../../crates/server/tests/common/test_ca.rs"]
#[allow(dead_code)]
mod test_ca;
use test_ca::Ca;

/// Writes a server certificate for the loopback names and its key into `dir`; returns where.
fn server_files(ca: &Ca, dir: &std::path::Path) -> tincan_server::tls::TlsFiles {
    let (cert, key) = ca.server_cert();
    let files = tincan_server::tls::TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

async fn tls_server(files: tincan_server::tls::TlsFiles) -> tincan_server::ServerHandle {
    let mut cfg = tincan_server::ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        SDK,
        SecretKey::new(KEY.to_owned()),
    );
    cfg.tls = Some(files);
    tincan_server::start(cfg).await.expect("server starts")
}

#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<AppEvent>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Recorder {
    fn sink(&self) -> EventSink {
        let r = self.clone();
        Arc::new(move |ev| {
            r.events.lock().unwrap().push(ev);
            r.notify.notify_waiters();
        })
    }

    async fn wait_for(&self, what: &str, f: impl Fn(&AppEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.notify.notified();
            if self.events.lock().unwrap().iter().any(&f) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {what}; events: {:#?}",
                    self.events.lock().unwrap()
                );
            }
        }
    }
}

fn app(server: &str) -> (Service, Recorder) {
    let rec = Recorder::default();
    let service = Service::new(ServiceConfig {
        profile: "alice".into(),
        credentials: Credentials::new(Arc::new(MemoryStore::default()), "alice"),
        store: Store::new(Arc::new(MemoryKv::default())),
        host: Arc::new(EmbeddedHost::new(free_port())),
        server_override: Some(server.to_owned()),
        sink: rec.sink(),
        timing: Timing {
            backoff_start: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            ..Timing::default()
        },
    });
    (service, rec)
}

fn sign_in_args() -> SignInArgs {
    SignInArgs {
        user_id: "alice".into(),
        credentials: SignInCredentials::SecretKey {
            sdk_app_id: SDK,
            secret_key: Some(KEY.to_owned()),
        },
    }
}

async fn set_ca_file(service: &Service, path: Option<String>) {
    service
        .save_settings(Settings {
            ca_file: path,
            ..service.settings()
        })
        .await
        .expect("settings saved");
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The other party: a plain protocol client over wss trusting the test CA.
async fn peer(url: &str, ca: &Ca, user: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        Some(tokio_tungstenite::Connector::Rustls(ca.client())),
    )
    .await
    .expect("peer connects over wss");
    let uid = UserId::new(user).unwrap();
    let sig =
        UserSigKey::new(SDK, SecretKey::new(KEY.to_owned())).gen(&uid, now_secs(), 3600, None);
    let login = ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id: SDK,
        user_id: uid,
        user_sig: SigToken(sig),
        device_id: DeviceId::new("peer-device").unwrap(),
    };
    ws.send(Message::text(login.encode())).await.unwrap();
    expect(&mut ws, |m| matches!(m, ServerMessage::LoginOk { .. })).await;
    ws
}

async fn expect(ws: &mut Ws, f: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("peer timed out")
            .expect("peer stream ended")
            .expect("peer frame");
        if let Message::Text(t) = frame {
            let m = ServerMessage::decode(t.as_str()).unwrap();
            if f(&m) {
                return m;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_and_calls_over_wss_with_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tincan test CA");
    let srv = tls_server(server_files(&ca, dir.path())).await;
    let url = format!("wss://localhost:{}/ws", srv.local_addr().port());
    let (a, rec) = app(&url);

    // Without the CA file the platform store does not know the test CA: refused, typed.
    let e = a.sign_in(sign_in_args()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TlsCertificate, "{e:?}");

    set_ca_file(&a, Some(ca.write_ca(dir.path()))).await;
    let st = a.sign_in(sign_in_args()).await.expect("sign in over wss");
    assert_eq!(st.user.as_ref().map(|u| u.as_str()), Some("alice"));
    let mut bob = peer(&url, &ca, "bob").await;

    let call = a.start_call("bob").await.expect("call");
    let ServerMessage::Invited { call_id, .. } =
        expect(&mut bob, |m| matches!(m, ServerMessage::Invited { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(call_id, call.call_id);
    bob.send(Message::text(
        ClientMessage::Accept {
            call_id: call_id.clone(),
        }
        .encode(),
    ))
    .await
    .unwrap();
    rec.wait_for(
        "connected",
        |e| matches!(e, AppEvent::Call { call: Some(c) } if c.phase == CallPhase::Connected),
    )
    .await;
    a.set_muted(true).await.expect("mute");
    expect(&mut bob, |m| {
        matches!(
            m,
            ServerMessage::Signal {
                signal: tincan_proto::MediaSignal::Mute { muted: true },
                ..
            }
        )
    })
    .await;
    a.hang_up(call_id).await.expect("hang up");
    expect(&mut bob, |m| matches!(m, ServerMessage::CallEnded { .. })).await;
    a.sign_out().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Ca::new("tincan test CA");
    let theirs = Ca::new("someone else's CA");
    let srv = tls_server(server_files(&theirs, dir.path())).await;
    let url = format!("wss://127.0.0.1:{}/ws", srv.local_addr().port());
    let (a, _rec) = app(&url);
    set_ca_file(&a, Some(ours.write_ca(dir.path()))).await;
    let e = a.sign_in(sign_in_args()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TlsCertificate, "{e:?}");
    assert!(
        e.message.contains("not trusted") && e.message.contains("unknown certificate authority"),
        "{}",
        e.message
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ws_off_loopback_is_refused_before_connecting() {
    // "127.1" resolves to 127.0.0.1, but it is a name, not a loopback literal: if the check were
    // missing, the connection would land on this counting listener (and never leave the machine).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let accept = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (a, _rec) = app(&format!("ws://127.1:{port}/ws"));
    let e = a.sign_in(sign_in_args()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InsecureServerUrl, "{e:?}");
    assert!(
        e.message.contains("wss://") && e.message.contains("in clear"),
        "{}",
        e.message
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "a connection was tried");
    // The same listener over a loopback literal is allowed (and reached).
    let local = format!("ws://127.0.0.1:{port}/ws");
    let tls = tincan_app::transport::TlsOptions::default();
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        tincan_app::transport::connect(&local, &tls),
    )
    .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    accept.abort();
}
