//! The app's core against a real tincan-server on loopback, with a plain WebSocket client as the other
//! party: sign-in with each kind of credentials, calls both ways, history, reconnect, taking over the
//! embedded server, and that no command output or event ever carries the secret key or a UserSig.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_app::credentials::{Credentials, MemoryStore};
use tincan_app::embedded::{EmbeddedHost, EMBEDDED_SDK_APP_ID};
use tincan_app::service::{Service, ServiceConfig};
use tincan_app::signaling::{EventSink, Timing};
use tincan_app::storage::{MemoryKv, Store};
use tincan_ipc::{
    AppEvent, CallOutcome, CallPhase, ConnectionState, ErrorCode, ServerInfo, SignInArgs,
    SignInCredentials,
};
use tincan_proto::{
    CallId, ClientMessage, DeviceId, EndReason, SecretKey, ServerMessage, SigToken, UserId,
    UserSigKey, PROTOCOL_VERSION,
};
use tokio_tungstenite::tungstenite::Message;

const SDK: u64 = 1_400_000_042;
const KEY: &str = "tincan-test-secret-key-5f2a9c";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn server(addr: SocketAddr, sdk: u64, key: &str) -> tincan_server::ServerHandle {
    let cfg = tincan_server::ServerConfig::new(addr, sdk, SecretKey::new(key.to_owned()));
    tincan_server::start(cfg).await.expect("server starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Collects every event (and every command output) as JSON, like the IPC audit file.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<AppEvent>>>,
    outputs: Arc<Mutex<Vec<String>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Recorder {
    fn sink(&self) -> EventSink {
        let r = self.clone();
        Arc::new(move |ev| {
            r.outputs
                .lock()
                .unwrap()
                .push(serde_json::to_string(&ev).unwrap());
            r.events.lock().unwrap().push(ev);
            r.notify.notify_waiters();
        })
    }

    fn output<T: serde::Serialize>(&self, v: &T) {
        self.outputs
            .lock()
            .unwrap()
            .push(serde_json::to_string(v).unwrap());
    }

    /// Waits until an event matches.
    async fn wait_for(&self, what: &str, f: impl Fn(&AppEvent) -> bool) -> AppEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.notify.notified();
            if let Some(ev) = self.events.lock().unwrap().iter().find(|e| f(e)).cloned() {
                return ev;
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

struct App {
    service: Service,
    rec: Recorder,
    #[allow(dead_code)]
    creds: Arc<MemoryStore>,
}

fn timing() -> Timing {
    Timing {
        backoff_start: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
        ..Timing::default()
    }
}

fn app(
    profile: &str,
    server_override: Option<String>,
    embedded_port: u16,
    secrets: Arc<MemoryStore>,
) -> App {
    let rec = Recorder::default();
    let service = Service::new(ServiceConfig {
        profile: profile.into(),
        credentials: Credentials::new(secrets.clone(), profile),
        store: Store::new(Arc::new(MemoryKv::default())),
        host: Arc::new(EmbeddedHost::new(embedded_port)),
        server_override,
        sink: rec.sink(),
        timing: timing(),
    });
    App {
        service,
        rec,
        creds: secrets,
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A plain protocol client (the "other phone").
struct Peer {
    ws: Ws,
}

impl Peer {
    async fn login(url: &str, user: &str, sdk: u64, key: &str) -> Peer {
        // Nagle off (as the app's own connector): back-to-back frames do not wait for an ACK.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("connect");
        let uid = UserId::new(user).unwrap();
        let sig =
            UserSigKey::new(sdk, SecretKey::new(key.to_owned())).gen(&uid, now_secs(), 3600, None);
        let login = ClientMessage::Login {
            version: PROTOCOL_VERSION,
            sdk_app_id: sdk,
            user_id: uid,
            user_sig: SigToken(sig),
            device_id: DeviceId::new("peer-device").unwrap(),
        };
        ws.send(Message::text(login.encode())).await.unwrap();
        let mut p = Peer { ws };
        p.expect(|m| matches!(m, ServerMessage::LoginOk { .. }))
            .await;
        p
    }

    async fn send(&mut self, m: ClientMessage) {
        self.ws.send(Message::text(m.encode())).await.unwrap();
    }

    async fn expect(&mut self, f: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
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
}

fn secret_key_sign_in(user: &str, key: Option<&str>) -> SignInArgs {
    SignInArgs {
        user_id: user.into(),
        credentials: SignInCredentials::SecretKey {
            sdk_app_id: SDK,
            secret_key: key.map(str::to_owned),
        },
    }
}

fn assert_no_secrets(rec: &Recorder, secrets: &[&str]) {
    let outputs = rec.outputs.lock().unwrap();
    assert!(!outputs.is_empty());
    for out in outputs.iter() {
        for s in secrets {
            assert!(!out.contains(s), "a secret leaked into IPC output: {out}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_call_rings_and_is_declined_and_no_secret_leaks() {
    let srv = server("127.0.0.1:0".parse().unwrap(), SDK, KEY).await;
    let url = format!("ws://{}/ws", srv.local_addr());
    let a = app(
        "alice",
        Some(url.clone()),
        free_port(),
        Arc::new(MemoryStore::default()),
    );
    let mut bob = Peer::login(&url, "bob", SDK, KEY).await;

    let st = a
        .service
        .sign_in(secret_key_sign_in("alice", Some(KEY)))
        .await
        .expect("sign in");
    a.rec.output(&st);
    assert_eq!(st.user.as_ref().map(|u| u.as_str()), Some("alice"));
    assert_eq!(st.connection, ConnectionState::Online);
    assert!(st.saved.has_secret_key);
    assert!(matches!(st.server, ServerInfo::Remote { .. }));

    let call = a.service.start_call("bob").await.expect("call");
    a.rec.output(&call);
    let invited = bob
        .expect(|m| matches!(m, ServerMessage::Invited { .. }))
        .await;
    let ServerMessage::Invited {
        call_id, caller, ..
    } = invited
    else {
        unreachable!()
    };
    assert_eq!(caller.as_str(), "alice");
    assert_eq!(call_id, call.call_id);
    a.rec
        .wait_for(
            "ringing",
            |e| matches!(e, AppEvent::Call { call: Some(c) } if c.phase == CallPhase::Ringing),
        )
        .await;
    bob.send(ClientMessage::Reject {
        call_id: call_id.clone(),
        busy: false,
    })
    .await;
    let ended = a
        .rec
        .wait_for(
            "declined",
            |e| matches!(e, AppEvent::Call { call: Some(c) } if c.phase == CallPhase::Ended),
        )
        .await;
    let AppEvent::Call { call: Some(c) } = ended else {
        unreachable!()
    };
    assert_eq!(c.ended.unwrap().reason, Some(EndReason::Rejected));
    // History: written at start (in progress) and at the end (declined).
    let h = a.service.history();
    a.rec.output(&h);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].outcome, CallOutcome::Declined);
    assert_eq!(h[0].peer.as_str(), "bob");

    // Signing in again with the saved key (no key typed) works.
    let st = a
        .service
        .sign_in(secret_key_sign_in("alice", None))
        .await
        .expect("sign in with saved key");
    a.rec.output(&st);
    a.rec.output(&a.service.state().await);
    a.rec.output(&a.service.settings());
    a.service.sign_out().await;
    a.rec.output(&a.service.state().await);

    // Nothing the UI saw holds the key or a UserSig made from it.
    let sig_prefix = UserSigKey::new(SDK, SecretKey::new(KEY.into())).gen(
        &UserId::new("alice").unwrap(),
        now_secs(),
        86_400,
        None,
    );
    assert_no_secrets(&a.rec, &[KEY, &sig_prefix[..16]]);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_accepted_then_hung_up() {
    let srv = server("127.0.0.1:0".parse().unwrap(), SDK, KEY).await;
    let url = format!("ws://{}/ws", srv.local_addr());
    let a = app(
        "alice",
        Some(url.clone()),
        free_port(),
        Arc::new(MemoryStore::default()),
    );
    a.service
        .sign_in(secret_key_sign_in("alice", Some(KEY)))
        .await
        .expect("sign in");
    let mut bob = Peer::login(&url, "bob", SDK, KEY).await;
    let call_id = CallId::new("call-from-bob-1").unwrap();
    bob.send(ClientMessage::Invite {
        call_id: call_id.clone(),
        callee: UserId::new("alice").unwrap(),
        call_type: Default::default(),
        timeout_secs: Some(30),
    })
    .await;
    a.rec
        .wait_for(
            "incoming",
            |e| matches!(e, AppEvent::Incoming { caller, .. } if caller.as_str() == "bob"),
        )
        .await;
    // A second call while ringing is refused locally.
    let busy = a.service.start_call("carol").await.unwrap_err();
    assert_eq!(busy.code, ErrorCode::AlreadyInCall);
    a.service.accept(call_id.clone()).await.expect("accept");
    bob.expect(|m| matches!(m, ServerMessage::Accepted { .. }))
        .await;
    a.rec
        .wait_for(
            "connected",
            |e| matches!(e, AppEvent::Call { call: Some(c) } if c.phase == CallPhase::Connected),
        )
        .await;
    a.service.set_muted(true).await.expect("mute");
    bob.expect(|m| {
        matches!(
            m,
            ServerMessage::Signal {
                signal: tincan_proto::MediaSignal::Mute { muted: true },
                ..
            }
        )
    })
    .await;
    bob.send(ClientMessage::Hangup {
        call_id: call_id.clone(),
    })
    .await;
    a.rec
        .wait_for(
            "hung up",
            |e| matches!(e, AppEvent::Call { call: Some(c) } if c.phase == CallPhase::Ended),
        )
        .await;
    let h = a.service.history();
    assert_eq!(h[0].outcome, CallOutcome::Answered);
    assert!(h[0].duration_ms.is_some());
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_errors_are_typed() {
    let srv = server("127.0.0.1:0".parse().unwrap(), SDK, KEY).await;
    let url = format!("ws://{}/ws", srv.local_addr());
    let secrets = Arc::new(MemoryStore::default());
    let a = app("alice", Some(url.clone()), free_port(), secrets.clone());

    // A wrong key: refused, and not kept.
    let e = a
        .service
        .sign_in(secret_key_sign_in("alice", Some("wrong-key")))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UserSigInvalid);
    assert!(!a.service.saved().has_secret_key);

    // No saved key yet.
    let e = a
        .service
        .sign_in(secret_key_sign_in("alice", None))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSavedCredentials);

    // A bad user ID, in plain words.
    let e = a
        .service
        .sign_in(secret_key_sign_in("no spaces", Some(KEY)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidUserId);

    // An expired pasted UserSig.
    let uid = UserId::new("alice").unwrap();
    let old =
        UserSigKey::new(SDK, SecretKey::new(KEY.into())).gen(&uid, now_secs() - 7200, 60, None);
    let e = a
        .service
        .sign_in(SignInArgs {
            user_id: "alice".into(),
            credentials: SignInCredentials::UserSig {
                sdk_app_id: SDK,
                user_sig: Some(old),
            },
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UserSigExpired);
    assert!(e.message.contains("expired"));

    // A valid pasted UserSig works, is kept, and works again from the keyring.
    let good = UserSigKey::new(SDK, SecretKey::new(KEY.into())).gen(&uid, now_secs(), 3600, None);
    let st = a
        .service
        .sign_in(SignInArgs {
            user_id: "alice".into(),
            credentials: SignInCredentials::UserSig {
                sdk_app_id: SDK,
                user_sig: Some(good.clone()),
            },
        })
        .await
        .expect("sign in with UserSig");
    assert!(st.saved.user_sig_expires_at.is_some());
    a.service.sign_out().await;
    a.service
        .sign_in(SignInArgs {
            user_id: "alice".into(),
            credentials: SignInCredentials::UserSig {
                sdk_app_id: SDK,
                user_sig: None,
            },
        })
        .await
        .expect("sign in with the saved UserSig");
    a.service.sign_out().await;
    a.service.forget_credentials().await.expect("forget");
    assert_eq!(a.service.saved().user_sig_expires_at, None);

    // No keyring at all: a clear, typed error.
    let no_keyring = app(
        "carol",
        Some(url),
        free_port(),
        Arc::new(MemoryStore::unavailable()),
    );
    let e = no_keyring
        .service
        .sign_in(secret_key_sign_in("carol", Some(KEY)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyringUnavailable);
    // Unreachable server.
    let dead = app(
        "dave",
        Some(format!("ws://127.0.0.1:{}/ws", free_port())),
        free_port(),
        Arc::new(MemoryStore::default()),
    );
    let e = dead
        .service
        .sign_in(secret_key_sign_in("dave", Some(KEY)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ServerUnreachable);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_signs_in_again_after_a_drop() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let srv = server(addr, SDK, KEY).await;
    let url = format!("ws://{addr}/ws");
    let a = app(
        "alice",
        Some(url),
        free_port(),
        Arc::new(MemoryStore::default()),
    );
    a.service
        .sign_in(secret_key_sign_in("alice", Some(KEY)))
        .await
        .expect("sign in");
    srv.shutdown().await;
    a.rec
        .wait_for("reconnecting", |e| {
            matches!(
                e,
                AppEvent::Connection {
                    state: ConnectionState::Reconnecting { .. }
                }
            )
        })
        .await;
    let online_before = count_online(&a.rec);
    let srv = server(addr, SDK, KEY).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count_online(&a.rec) == online_before {
        assert!(tokio::time::Instant::now() < deadline, "did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.service.state().await.connection, ConnectionState::Online);
    srv.shutdown().await;
}

fn count_online(r: &Recorder) -> usize {
    r.events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                AppEvent::Connection {
                    state: ConnectionState::Online
                }
            )
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_server_is_hosted_shared_and_taken_over() {
    let port = free_port();
    // Both windows share one keyring (the embedded key), as on one desktop.
    let secrets = Arc::new(MemoryStore::default());
    let a = app("alice", None, port, secrets.clone());
    let b = app("bob", None, port, secrets.clone());
    let embedded = |u: &str| SignInArgs {
        user_id: u.into(),
        credentials: SignInCredentials::Embedded,
    };
    let st = a.service.sign_in(embedded("alice")).await.expect("alice");
    assert!(matches!(
        st.server,
        ServerInfo::Embedded { hosting: true, .. }
    ));
    let st = b.service.sign_in(embedded("bob")).await.expect("bob");
    assert!(matches!(
        st.server,
        ServerInfo::Embedded { hosting: false, .. }
    ));

    // The two windows call each other through alice's server.
    let call = b.service.start_call("alice").await.expect("call");
    a.rec
        .wait_for("incoming", |e| matches!(e, AppEvent::Incoming { .. }))
        .await;
    a.service.reject(call.call_id).await.expect("reject");
    b.rec
        .wait_for("declined", |e| {
            matches!(e, AppEvent::Call { call: Some(c) } if c.ended.as_ref().and_then(|x| x.reason) == Some(EndReason::Rejected))
        })
        .await;

    // Alice quits: bob takes over hosting and is online again.
    a.service.shutdown().await;
    b.rec
        .wait_for("took over", |e| {
            matches!(
                e,
                AppEvent::Server {
                    server: ServerInfo::Embedded { hosting: true, .. }
                }
            )
        })
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = b.service.state().await;
        if st.connection == ConnectionState::Online {
            assert!(matches!(
                st.server,
                ServerInfo::Embedded { hosting: true, .. }
            ));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a plain client signed with the embedded key can reach bob there.
    let key = Credentials::new(secrets, "x").embedded_secret().unwrap();
    let mut carol = Peer::login(
        &format!("ws://127.0.0.1:{port}/ws"),
        "carol",
        EMBEDDED_SDK_APP_ID,
        key.expose(),
    )
    .await;
    carol
        .send(ClientMessage::Invite {
            call_id: CallId::new("c-carol").unwrap(),
            callee: UserId::new("bob").unwrap(),
            call_type: Default::default(),
            timeout_secs: None,
        })
        .await;
    carol
        .expect(|m| matches!(m, ServerMessage::Ringing { .. }))
        .await;
    b.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicked_offline_stops_without_reconnecting() {
    let mut cfg = tincan_server::ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        SDK,
        SecretKey::new(KEY.to_owned()),
    );
    cfg.switchboard.single_session = true;
    let srv = tincan_server::start(cfg).await.expect("server starts");
    let url = format!("ws://{}/ws", srv.local_addr());
    let a = app(
        "alice",
        Some(url.clone()),
        free_port(),
        Arc::new(MemoryStore::default()),
    );
    a.service
        .sign_in(secret_key_sign_in("alice", Some(KEY)))
        .await
        .expect("sign in");
    // The same user signs in somewhere else (another device).
    let _elsewhere = Peer::login(&url, "alice", SDK, KEY).await;
    let ev = a
        .rec
        .wait_for("kicked", |e| matches!(e, AppEvent::KickedOffline { .. }))
        .await;
    let AppEvent::KickedOffline { message, .. } = ev else {
        unreachable!()
    };
    assert!(message.contains("signed in somewhere else"), "{message}");
    a.rec
        .wait_for("signed out", |e| {
            matches!(
                e,
                AppEvent::Connection {
                    state: ConnectionState::SignedOut
                }
            )
        })
        .await;
    // And it stays out: no reconnect fights the other device.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!a.rec.events.lock().unwrap().iter().any(|e| matches!(
        e,
        AppEvent::Connection {
            state: ConnectionState::Reconnecting { .. }
        }
    )));
    assert_eq!(a.service.state().await.user, None);
    srv.shutdown().await;
}

/// A connected call survives a server restart (issue 15): the app keeps it (shown "reconnecting",
/// still connected), signs in again with a fresh UserSig, announces it with `resume_call`; with the
/// peer's claim the new server re-creates it, and mute and hang-up work across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_call_survives_a_server_restart_and_is_resumed() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let srv = server(addr, SDK, KEY).await;
    let url = format!("ws://{addr}/ws");
    let a = app(
        "alice",
        Some(url.clone()),
        free_port(),
        Arc::new(MemoryStore::default()),
    );
    a.service
        .sign_in(secret_key_sign_in("alice", Some(KEY)))
        .await
        .expect("sign in");
    let mut bob = Peer::login(&url, "bob", SDK, KEY).await;
    let call_id = CallId::new("call-resumed-1").unwrap();
    bob.send(ClientMessage::Invite {
        call_id: call_id.clone(),
        callee: UserId::new("alice").unwrap(),
        call_type: Default::default(),
        timeout_secs: Some(30),
    })
    .await;
    a.rec
        .wait_for("incoming", |e| matches!(e, AppEvent::Incoming { .. }))
        .await;
    a.service.accept(call_id.clone()).await.expect("accept");
    bob.expect(|m| matches!(m, ServerMessage::Accepted { .. }))
        .await;
    a.rec
        .wait_for(
            "connected",
            |e| matches!(e, AppEvent::Call { call: Some(c) } if c.phase == CallPhase::Connected),
        )
        .await;

    srv.shutdown().await;
    drop(bob);
    a.rec
        .wait_for("kept, reconnecting", |e| {
            matches!(e, AppEvent::Call { call: Some(c) }
                if c.phase == CallPhase::Connected && c.reconnecting)
        })
        .await;
    let seen = a.rec.events.lock().unwrap().len();
    let srv = server(addr, SDK, KEY).await;
    // bob's phone signs in again and claims the call too.
    let mut bob = Peer::login(&url, "bob", SDK, KEY).await;
    bob.send(ClientMessage::ResumeCall {
        call_id: call_id.clone(),
        peer: UserId::new("alice").unwrap(),
        connected_at_ms: now_secs() * 1000 - 5_000,
    })
    .await;
    bob.expect(|m| matches!(m, ServerMessage::CallResumed { .. }))
        .await;
    // (Only events after the restart: the call was connected and not reconnecting before it too.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resumed = a.rec.events.lock().unwrap()[seen..].iter().any(|e| {
            matches!(e, AppEvent::Call { call: Some(c) }
                if c.phase == CallPhase::Connected && !c.reconnecting && !c.peer_reconnecting)
        });
        if resumed {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not resumed: {:#?}",
            a.rec.events.lock().unwrap()[seen..].to_vec()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.service.state().await.connection, ConnectionState::Online);
    // The re-created call relays and ends as any other.
    a.service.set_muted(true).await.expect("mute");
    bob.expect(|m| {
        matches!(
            m,
            ServerMessage::Signal {
                signal: tincan_proto::MediaSignal::Mute { muted: true },
                ..
            }
        )
    })
    .await;
    bob.send(ClientMessage::Hangup {
        call_id: call_id.clone(),
    })
    .await;
    let ended = a
        .rec
        .wait_for(
            "hung up",
            |e| matches!(e, AppEvent::Call { call: Some(c) } if c.phase == CallPhase::Ended),
        )
        .await;
    let AppEvent::Call { call: Some(c) } = ended else {
        unreachable!()
    };
    assert_eq!(c.ended.unwrap().reason, Some(EndReason::Hangup));
    srv.shutdown().await;
}

/// Issue 14: the ICE servers a real server issues reach the window (`AppEvent::IceServers`) and
/// the native engine's accessor (`signaling::issued_ice_servers`), are replaced by the server's
/// refresh before they expire, and are gone after sign-out. The TURN secret itself never
/// crosses IPC (only the credential minted from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_issued_ice_servers_reach_the_window_and_the_native_engine() {
    const TURN_SECRET: &str = "coturn-secret-for-the-desktop-test";
    let mut cfg = tincan_server::ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        SDK,
        SecretKey::new(KEY.to_owned()),
    );
    cfg.switchboard.ice = tincan_proto::IceConfig {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        turn_secret: Some(SecretKey::new(TURN_SECRET.into())),
        turn_ttl_secs: 4,
    };
    let srv = tincan_server::start(cfg).await.expect("server starts");
    let url = format!("ws://{}/ws", srv.local_addr());
    let a = app(
        "alice",
        Some(url),
        free_port(),
        Arc::new(MemoryStore::default()),
    );
    a.service
        .sign_in(secret_key_sign_in("alice", Some(KEY)))
        .await
        .expect("sign in");
    let issued = |e: &AppEvent| match e {
        AppEvent::IceServers {
            ice_servers,
            expires_at: Some(t),
        } if !ice_servers.is_empty() => Some((ice_servers.clone(), *t)),
        _ => None,
    };
    let first = a
        .rec
        .wait_for("the servers from login_ok", |e| issued(e).is_some())
        .await;
    let (servers, first_expiry) = issued(&first).unwrap();
    let username = format!("{first_expiry}:alice");
    assert_eq!(servers[1].username.as_deref(), Some(username.as_str()));
    assert_eq!(
        servers[1].credential.as_deref(),
        Some(tincan_proto::ice::turn_password(TURN_SECRET.as_bytes(), &username).as_str())
    );
    assert_eq!(tincan_app::signaling::issued_ice_servers(), servers);

    // The refresh at 3/4 of 4 s.
    let refreshed = a
        .rec
        .wait_for("an ice_servers refresh", |e| {
            issued(e).is_some_and(|(_, t)| t > first_expiry)
        })
        .await;
    let (servers, _) = issued(&refreshed).unwrap();
    assert_eq!(tincan_app::signaling::issued_ice_servers(), servers);

    a.service.sign_out().await;
    a.rec
        .wait_for(
            "the list cleared at sign-out",
            |e| matches!(e, AppEvent::IceServers { ice_servers, .. } if ice_servers.is_empty()),
        )
        .await;
    assert!(tincan_app::signaling::issued_ice_servers().is_empty());
    assert_no_secrets(&a.rec, &[KEY, TURN_SECRET]);
    srv.shutdown().await;
}
