//! A real server on a loopback port and real WebSocket clients, for the integration tests.
#![allow(dead_code)]

pub mod binary;
pub mod test_ca;

use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tincan_proto::{
    CallId, ClientMessage, DeviceId, SecretKey, ServerMessage, SigToken, UserId, UserSigKey,
    PROTOCOL_VERSION,
};
use tincan_server::{ServerConfig, ServerHandle};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP: u64 = 1400000001;
pub const SECRET: &str = "test-secret-key";
const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub handle: ServerHandle,
    pub key: UserSigKey,
    pub url: String,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub async fn server_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut cfg = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        APP,
        SecretKey::new(SECRET.into()),
    );
    tweak(&mut cfg);
    let handle = tincan_server::start(cfg).await.expect("server starts");
    let url = format!("ws://{}/ws", handle.local_addr());
    TestServer {
        handle,
        key: UserSigKey::new(APP, SecretKey::new(SECRET.into())),
        url,
    }
}

pub async fn server() -> TestServer {
    server_with(|_| {}).await
}

pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn cid(s: &str) -> CallId {
    CallId::new(s).unwrap()
}

impl TestServer {
    pub fn sig(&self, user: &str) -> String {
        self.key.gen(&uid(user), now_secs(), 3600, None)
    }

    pub async fn connect(&self) -> Client {
        // Nagle off, like every client the project ships: a second frame sent back-to-back would
        // otherwise wait for the server's delayed ACK (~40 ms).
        let (ws, _) = tokio_tungstenite::connect_async_with_config(&self.url, None, true)
            .await
            .expect("connects");
        Client { ws }
    }

    /// Connects and signs in; asserts `login_ok`.
    pub async fn login(&self, user: &str, device: &str) -> Client {
        let mut c = self.connect().await;
        c.send(&login_msg(user, device, self.sig(user))).await;
        match c.recv().await {
            ServerMessage::LoginOk { user_id, .. } => assert_eq!(user_id.as_str(), user),
            other => panic!("expected login_ok, got {other:?}"),
        }
        c
    }
}

pub fn login_msg(user: &str, device: &str, sig: String) -> ClientMessage {
    ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id: APP,
        user_id: uid(user),
        user_sig: SigToken(sig),
        device_id: DeviceId::new(device).unwrap(),
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, m: &ClientMessage) {
        self.send_raw(&m.encode()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next protocol frame (pings are skipped).
    #[track_caller]
    pub fn recv(&mut self) -> impl std::future::Future<Output = ServerMessage> + use<'_> {
        let at = std::panic::Location::caller();
        async move { self.recv_at(at).await }
    }

    async fn recv_at(&mut self, at: &'static std::panic::Location<'static>) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within 5 s")
                .expect("stream open")
                .expect("frame ok");
            match frame {
                Message::Text(t) => {
                    return ServerMessage::decode(t.as_str()).expect("server frame parses")
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?} (called at {at})"),
            }
        }
    }

    /// The next frame must be an error with this code.
    #[track_caller]
    pub fn expect_error(
        &mut self,
        code: tincan_proto::ErrorCode,
    ) -> impl std::future::Future<Output = ServerMessage> + use<'_> {
        let at = std::panic::Location::caller();
        async move {
            let m = self.recv_at(at).await;
            match &m {
                ServerMessage::Error { code: got, .. } if *got == code => m,
                other => panic!("expected error {code:?}, got {other:?} (called at {at})"),
            }
        }
    }

    /// Waits for the server's close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close within 5 s");
            match frame {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => {
                    return (u16::from(CloseCode::Status), String::new())
                }
                Some(Ok(Message::Text(t))) => panic!("expected close, got {t}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("expected a close frame, got error {e}"),
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    /// Nothing arrives within `ms` (pings aside).
    pub async fn expect_silence(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}

/// An invite from the test's caller to `callee` for `call`.
pub fn invite(call: &str, callee: &str, timeout: Option<u32>) -> ClientMessage {
    ClientMessage::Invite {
        call_id: cid(call),
        callee: uid(callee),
        call_type: Default::default(),
        timeout_secs: timeout,
    }
}

/// Alice (device a1) calls Bob (device b1); returns both once Bob's one device rings.
pub async fn ringing(s: &TestServer, call: &str) -> (Client, Client) {
    let mut alice = s.login("alice", "a1").await;
    let mut bob = s.login("bob", "b1").await;
    alice.send(&invite(call, "bob", None)).await;
    assert!(matches!(bob.recv().await, ServerMessage::Invited { .. }));
    assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));
    (alice, bob)
}

/// Alice calls Bob and Bob picks up; returns both clients.
pub async fn connected(s: &TestServer, call: &str) -> (Client, Client) {
    let (mut alice, mut bob) = ringing(s, call).await;
    bob.send(&ClientMessage::Accept { call_id: cid(call) })
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::Accepted { .. }));
    assert!(matches!(bob.recv().await, ServerMessage::Accepted { .. }));
    (alice, bob)
}

/// A `call_ended`'s reason, `by` and duration; panics on any other message.
pub fn ended(m: &ServerMessage) -> (tincan_proto::EndReason, Option<String>, Option<u64>) {
    match m {
        ServerMessage::CallEnded {
            reason,
            by,
            duration_ms,
            ..
        } => (*reason, by.as_ref().map(|u| u.to_string()), *duration_ms),
        other => panic!("expected call_ended, got {other:?}"),
    }
}

/// The next text frame exactly as the server wrote it.
pub async fn raw(c: &mut Client) -> serde_json::Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), c.ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = frame {
            return serde_json::from_str(t.as_str()).expect("json");
        }
    }
}
