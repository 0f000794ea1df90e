//! The desktop app and its embedded local server (issue 11 item 6), against real servers and real
//! sockets on loopback: the sigs the app mints live minutes (a real tincan-server with
//! `max_sig_lifetime_secs` just above and just below them), the server on the local port must
//! prove it holds the keyring's key before the app sends it anything (impostors that answer with
//! no proof, a wrong one, or one relayed from a real embedded server elsewhere get no frame at
//! all), and a sig for a shared server is never sent to the local port.

// tungstenite's handshake callback type returns its (large) ErrorResponse by value.
#![allow(clippy::result_large_err)]

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_app::credentials::{Credentials, MemoryStore};
use tincan_app::embedded::{EmbeddedHost, EMBEDDED_SDK_APP_ID};
use tincan_app::service::{Service, ServiceConfig};
use tincan_app::signaling::Timing;
use tincan_app::storage::{MemoryKv, Store};
use tincan_ipc::{ConnectionState, ErrorCode, IpcError, SignInArgs, SignInCredentials};
use tincan_proto::{SecretKey, UserSigKey};
use tincan_server::challenge;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

fn app(port: u16, secrets: Arc<MemoryStore>, server_override: Option<String>) -> Service {
    Service::new(ServiceConfig {
        profile: "p".into(),
        credentials: Credentials::new(secrets, "p"),
        store: Store::new(Arc::new(MemoryKv::default())),
        host: Arc::new(EmbeddedHost::new(port)),
        server_override,
        sink: Arc::new(|_| {}),
        timing: Timing {
            backoff_start: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            connect_timeout: Duration::from_secs(3),
            ..Timing::default()
        },
    })
}

fn embedded(user: &str) -> SignInArgs {
    SignInArgs {
        user_id: user.into(),
        credentials: SignInCredentials::Embedded,
    }
}

async fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// A real tincan-server as the embedded one, on `port`, with the keyring's key.
async fn real_embedded(
    port: u16,
    key: &SecretKey,
    tweak: impl FnOnce(&mut tincan_server::ServerConfig),
) -> tincan_server::ServerHandle {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cfg = tincan_server::ServerConfig::new(addr, EMBEDDED_SDK_APP_ID, key.clone());
    cfg.answer_app_challenge = true;
    tweak(&mut cfg);
    tincan_server::start(cfg).await.expect("server starts")
}

/// Sign-in with a deadline: the first attempt's outcome.
async fn sign_in(s: &Service, args: SignInArgs) -> Result<ConnectionState, IpcError> {
    tokio::time::timeout(Duration::from_secs(10), s.sign_in(args))
        .await
        .expect("sign-in answers within 10 s")
        .map(|st| st.connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_mints_sigs_of_ten_minutes_for_the_local_server() {
    let secrets = Arc::new(MemoryStore::default());
    let key = Credentials::new(secrets.clone(), "x")
        .embedded_secret()
        .unwrap();
    // A server that takes sigs of up to 10 minutes: the app signs in (and the challenge passes).
    let l = free_listener().await;
    let port = l.local_addr().unwrap().port();
    drop(l);
    let srv = real_embedded(port, &key, |c| c.max_sig_lifetime_secs = 600).await;
    let a = app(port, secrets.clone(), None);
    assert_eq!(
        sign_in(&a, embedded("alice")).await.expect("signed in"),
        ConnectionState::Online
    );
    a.sign_out().await;
    srv.shutdown().await;
    // One second less: refused, so the app's sig lives exactly 600 s (before: a day).
    let l = free_listener().await;
    let port = l.local_addr().unwrap().port();
    drop(l);
    let srv = real_embedded(port, &key, |c| c.max_sig_lifetime_secs = 599).await;
    let b = app(port, secrets, None);
    let e = sign_in(&b, embedded("bob")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UserSigInvalid, "{e:?}");
    assert!(e.message.contains("600"), "{}", e.message);
    srv.shutdown().await;
}

/// What an impostor on the local port answers to the challenge.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Nothing,
    WrongKey,
    /// Relayed from a real embedded server (right key) listening on another port.
    Relayed(u16),
}

#[derive(Default)]
struct Seen {
    nonces: Vec<String>,
    frames: Vec<String>,
    upgrades: usize,
}

/// A WebSocket server on `listener` that answers the challenge as told and records the nonces it
/// got and every frame the app sends after the upgrade.
fn impostor(listener: TcpListener, answer: Answer, seen: Arc<Mutex<Seen>>) {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let nonce = Arc::new(Mutex::new(None::<String>));
                let n2 = nonce.clone();
                // The relay needs the nonce before answering: read it in the callback, ask the
                // real server synchronously is not possible there, so relay first, then answer.
                let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
                let relay_port = match answer {
                    Answer::Relayed(p) => Some(p),
                    _ => None,
                };
                let cb = move |req: &Request, mut resp: Response| {
                    let got = req
                        .headers()
                        .get(challenge::CHALLENGE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    *n2.lock().unwrap() = got.clone();
                    let proof = match (answer, &got) {
                        (Answer::Nothing, _) | (_, None) => None,
                        (Answer::WrongKey, Some(n)) => Some(challenge::proof(
                            &SecretKey::new("not-the-key".into()),
                            n,
                            ([127, 0, 0, 1], 1).into(),
                        )),
                        (Answer::Relayed(_), Some(_)) => {
                            rx.recv_timeout(Duration::from_secs(3)).ok().flatten()
                        }
                    };
                    if let Some(p) = proof {
                        resp.headers_mut()
                            .insert(challenge::PROOF_HEADER, HeaderValue::from_str(&p).unwrap());
                    }
                    Ok(resp)
                };
                // For the relay: peek the request, forward its nonce to the real server, hand the
                // proof to the callback through the channel.
                if let Some(p) = relay_port {
                    let mut buf = [0u8; 4096];
                    let n = tcp.peek(&mut buf).await.unwrap_or(0);
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    let nonce = text.lines().find_map(|l| {
                        l.strip_prefix(&format!("{}:", challenge::CHALLENGE_HEADER))
                            .map(|v| v.trim().to_owned())
                    });
                    let proof = match nonce {
                        Some(n) => relay(p, &n).await,
                        None => None,
                    };
                    let _ = tx.send(proof);
                }
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
                    return;
                };
                {
                    let mut s = seen.lock().unwrap();
                    s.upgrades += 1;
                    if let Some(n) = nonce.lock().unwrap().clone() {
                        s.nonces.push(n);
                    }
                }
                while let Ok(Some(Ok(m))) =
                    tokio::time::timeout(Duration::from_secs(2), ws.next()).await
                {
                    if let Message::Text(t) = m {
                        seen.lock().unwrap().frames.push(t.to_string());
                    }
                }
            });
        }
    });
}

/// Asks the real embedded server on `port` for its proof of `nonce` (what an impostor in the
/// middle would do).
async fn relay(port: u16, nonce: &str) -> Option<String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .ok()?;
    req.headers_mut().insert(
        challenge::CHALLENGE_HEADER,
        HeaderValue::from_str(nonce).ok()?,
    );
    let (_, resp) = tokio_tungstenite::connect_async(req).await.ok()?;
    resp.headers()
        .get(challenge::PROOF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_on_the_local_port_is_sent_nothing() {
    let secrets = Arc::new(MemoryStore::default());
    let key = Credentials::new(secrets.clone(), "x")
        .embedded_secret()
        .unwrap();
    // A real embedded server (the right key) elsewhere, for the relaying impostor.
    let l = free_listener().await;
    let real_port = l.local_addr().unwrap().port();
    drop(l);
    let real = real_embedded(real_port, &key, |_| {}).await;
    // The relay does get a valid proof, for the real server's address.
    let n = "ab".repeat(32);
    let p = relay(real_port, &n).await.expect("the real server answers");
    assert!(challenge::verify(
        &key,
        &n,
        ([127, 0, 0, 1], real_port).into(),
        &p
    ));

    for answer in [
        Answer::Nothing,
        Answer::WrongKey,
        Answer::Relayed(real_port),
    ] {
        let l = free_listener().await;
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        impostor(l, answer, seen.clone());
        let a = app(port, secrets.clone(), None);
        let e = sign_in(&a, embedded("alice")).await.unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::LocalServerNotVerified,
            "{answer:?}: {e:?}"
        );
        // Let any frame that would follow arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.sign_out().await;
        let s = seen.lock().unwrap();
        assert!(s.upgrades >= 1, "{answer:?}: the app never connected");
        assert!(
            s.nonces.iter().all(|n| challenge::valid_nonce(n)) && !s.nonces.is_empty(),
            "{answer:?}: {:?}",
            s.nonces
        );
        // A fresh nonce for every attempt.
        let mut uniq = s.nonces.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), s.nonces.len(), "{answer:?}: a nonce was reused");
        assert!(
            s.frames.is_empty(),
            "{answer:?}: the app sent the impostor {:?}",
            s.frames
        );
    }
    real.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_servers_sig_never_goes_to_the_local_port() {
    // Whatever listens on the local port counts its connections.
    let l = free_listener().await;
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(0usize));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            *count.lock().unwrap() += 1;
            drop(tcp);
        }
    });
    let a = app(port, Arc::new(MemoryStore::default()), None);
    let sdk = 1_400_000_042;
    let e = sign_in(
        &a,
        SignInArgs {
            user_id: "alice".into(),
            credentials: SignInCredentials::SecretKey {
                sdk_app_id: sdk,
                secret_key: Some("a-shared-servers-key".into()),
            },
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    assert!(e.message.contains("Settings"), "{}", e.message);
    let sig = UserSigKey::new(sdk, SecretKey::new("k".into())).gen(
        &tincan_proto::UserId::new("alice").unwrap(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        3600,
        None,
    );
    let e = sign_in(
        &a,
        SignInArgs {
            user_id: "alice".into(),
            credentials: SignInCredentials::UserSig {
                sdk_app_id: sdk,
                user_sig: Some(sig),
            },
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *accepted.lock().unwrap(),
        0,
        "something reached the local port"
    );
    // Nothing was kept either: the refused key is not in the keyring.
    assert!(!a.saved().has_secret_key);
}
