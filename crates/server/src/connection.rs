//! One WebSocket connection: sign-in, frame limits, rate limiting, keepalive, and the bounded
//! outbox that the hub writes into.
//!
//! The reader and the writer run in one task (`select!`), so a connection costs one task, two small
//! buffers and a bounded queue. Whatever ends the connection, the hub hears about it exactly once.

use crate::hub::{ConnectionSlot, Hub, Kill, Outbound};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tincan_proto::switchboard::SessionId;
use tincan_proto::{
    ClientMessage, CloseReason, ErrorCode, Party, ServerMessage, UserSigError, PROTOCOL_VERSION,
};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tracing::{debug, info};

/// How long a close frame may take to go out to a client that may be the reason we close.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one upgraded WebSocket until it closes.
///
/// `pending` is this connection's "not signed in yet" count (see [`crate::admission`]): released
/// at `login_ok`.
pub async fn run(
    socket: WebSocket,
    hub: Arc<Hub>,
    slot: ConnectionSlot,
    pending: crate::admission::Pending,
) {
    let (tx, mut rx) = mpsc::channel(hub.config.send_queue);
    let kill = Arc::new(Kill::default());
    let sid = hub.attach(tx.clone(), kill.clone());
    let (mut sink, mut stream) = socket.split();

    let (close, flush) = {
        let mut reader = Reader {
            hub: &hub,
            sid,
            tx,
            kill: &kill,
            logged_in: false,
            user: None,
            failed_logins: 0,
            pending: &pending,
        };
        tokio::select! {
            biased;
            () = kill.notify.notified() => {
                (kill.reason.lock().ok().and_then(|r| *r).or(Some(CloseReason::SlowConsumer)), false)
            }
            () = write_loop(&mut sink, &mut rx) => (None, false),
            reason = reader.run(&mut stream) => (reason, true),
        }
    };
    if let Some(reason) = close {
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, async {
            // The reader's last words (say, the error for the third failed login) go out first.
            while let Some(Outbound::Text(text)) = flush.then(|| rx.try_recv().ok()).flatten() {
                if sink.send(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            send_close(&mut sink, reason).await;
        })
        .await;
    }
    debug!(sid, ?close, "connection closed");
    hub.detach(sid);
    drop(slot);
}

async fn send_close(sink: &mut SplitSink<WebSocket, Message>, reason: CloseReason) {
    let frame = CloseFrame {
        code: reason.close_code(),
        reason: reason.as_str().into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// Drains the outbox. Returns once it has sent a close frame or the socket failed.
async fn write_loop(sink: &mut SplitSink<WebSocket, Message>, rx: &mut mpsc::Receiver<Outbound>) {
    while let Some(item) = rx.recv().await {
        let result = match item {
            Outbound::Text(text) => sink.send(Message::Text(text)).await,
            Outbound::Ping => sink.send(Message::Ping(Default::default())).await,
            Outbound::Close(reason) => {
                send_close(sink, reason).await;
                return;
            }
        };
        if result.is_err() {
            return;
        }
    }
}

struct Reader<'a> {
    hub: &'a Hub,
    sid: SessionId,
    tx: mpsc::Sender<Outbound>,
    kill: &'a Kill,
    logged_in: bool,
    /// Who signed in on this connection (the `from` of its relayed signals).
    user: Option<tincan_proto::UserId>,
    failed_logins: u32,
    /// Released at a successful login (per-address "not signed in" counts).
    pending: &'a crate::admission::Pending,
}

impl Reader<'_> {
    /// Reads until the client goes away (`None`) or the connection must be closed (`Some(reason)`).
    async fn run(&mut self, stream: &mut SplitStream<WebSocket>) -> Option<CloseReason> {
        let cfg = &self.hub.config;
        let limiter = RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(cfg.rate_per_sec).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(cfg.rate_burst).unwrap_or(NonZeroU32::MIN)),
        );
        let login_deadline = Instant::now() + cfg.login_timeout;
        let mut heartbeat = interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                frame = stream.next() => {
                    let msg = match frame {
                        None => return None,
                        Some(Err(err)) => {
                            debug!(sid = self.sid, %err, "read failed");
                            return is_capacity_error(&err).then_some(CloseReason::FrameTooLarge);
                        }
                        Some(Ok(msg)) => msg,
                    };
                    last_seen = Instant::now();
                    match msg {
                        Message::Text(text) => {
                            if text.len() > cfg.max_frame_bytes {
                                self.reply(ServerMessage::error(
                                    ErrorCode::FrameTooLarge,
                                    format!("frames may be at most {} bytes", cfg.max_frame_bytes),
                                    None,
                                ));
                            } else if limiter.check().is_err() {
                                self.reply(ServerMessage::error(ErrorCode::RateLimited, "slow down: message dropped", None));
                            } else if let Some(reason) = self.on_text(text.as_str()) {
                                return Some(reason);
                            }
                        }
                        Message::Binary(_) => self.reply(ServerMessage::error(
                            ErrorCode::BinaryFrame,
                            "the protocol uses JSON text frames only",
                            None,
                        )),
                        Message::Close(_) => return None,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                () = sleep_until(login_deadline), if !self.logged_in => {
                    return Some(CloseReason::LoginTimeout);
                }
                // The idle timeout counts from the last frame heard, exactly, not at the next
                // heartbeat tick (which made 75 s of silence last up to 100 s).
                () = sleep_until(last_seen + cfg.idle_timeout) => {
                    return Some(CloseReason::IdleTimeout);
                }
                _ = heartbeat.tick() => {
                    self.queue(Outbound::Ping);
                }
            }
        }
    }

    fn queue(&self, item: Outbound) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(item) {
            self.kill.fire(CloseReason::SlowConsumer);
        }
    }

    fn reply(&self, msg: ServerMessage) {
        self.queue(Outbound::Text(msg.encode().into()));
    }

    fn on_text(&mut self, text: &str) -> Option<CloseReason> {
        // The relay's fast path: the payload stays the sender's JSON, the peer's frame is built
        // here, once, outside the hub's lock (anything unusual takes the typed path below).
        if let Some(from) = &self.user {
            if let Some(inbound) = tincan_proto::wire::decode_signal(text) {
                let frame = tincan_proto::wire::inbound_frame(&inbound.call_id, from, &inbound);
                self.hub.forward(
                    self.sid,
                    from,
                    &inbound.call_id,
                    &inbound.signal,
                    frame.into(),
                );
                return None;
            }
        }
        let msg = match ClientMessage::decode(text) {
            Ok(m) => m,
            Err(e) => {
                self.reply(ServerMessage::error(e.code(), e.to_string(), None));
                return None;
            }
        };
        match msg {
            ClientMessage::Login {
                version,
                sdk_app_id,
                user_id,
                user_sig,
                device_id,
            } if !self.logged_in => {
                let checked = if version != PROTOCOL_VERSION {
                    Err((
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "this server speaks protocol version {PROTOCOL_VERSION}, not {version}"
                        ),
                    ))
                } else if sdk_app_id != self.hub.key.sdk_app_id() {
                    Err((
                        ErrorCode::UserSigMismatch,
                        format!(
                            "this server serves SDKAppID {}, not {sdk_app_id}",
                            self.hub.key.sdk_app_id()
                        ),
                    ))
                } else {
                    self.hub
                        .key
                        .verify(&user_sig.0, user_id.as_str(), self.hub.clock.unix_secs())
                        .map_err(|e| (sig_error_code(&e), e.to_string()))
                        .and_then(|claims| {
                            sig_lifetime_ok(&claims, self.hub.config.max_sig_lifetime_secs)
                        })
                };
                if let Err((code, message)) = checked {
                    self.failed_logins += 1;
                    info!(sid = self.sid, user = %user_id, ?code, "login refused");
                    self.reply(ServerMessage::error(code, message, None));
                    if self.failed_logins >= self.hub.config.max_failed_logins {
                        return Some(CloseReason::AuthFailed);
                    }
                    return None;
                }
                match self
                    .hub
                    .login(self.sid, Party::new(user_id.clone(), device_id.clone()))
                {
                    Ok(()) => {
                        self.logged_in = true;
                        self.pending.signed_in();
                        self.user = Some(user_id.clone());
                        info!(sid = self.sid, user = %user_id, device = %device_id, "signed in");
                    }
                    Err(e) => self.reply(ServerMessage::error(e.code(), e.to_string(), None)),
                }
            }
            ClientMessage::Ping { nonce } if !self.logged_in => {
                self.reply(ServerMessage::Pong { nonce })
            }
            _ if !self.logged_in => self.reply(ServerMessage::error(
                ErrorCode::NotLoggedIn,
                "sign in first",
                None,
            )),
            other => self.hub.handle(self.sid, other),
        }
        None
    }
}

/// A sig that lives longer than `--max-sig-lifetime` is refused even while valid: a leaked
/// long-lived sig would otherwise be usable for months.
fn sig_lifetime_ok(
    claims: &tincan_proto::usersig::UserSigClaims,
    max_secs: u64,
) -> Result<(), (ErrorCode, String)> {
    if claims.expire > max_secs {
        return Err((
            ErrorCode::UserSigTooLong,
            format!(
                "this UserSig lives {} seconds; this server accepts at most {max_secs} \
                 (--max-sig-lifetime): get one that lives shorter",
                claims.expire
            ),
        ));
    }
    Ok(())
}

fn sig_error_code(e: &UserSigError) -> ErrorCode {
    match e {
        UserSigError::Expired { .. } => ErrorCode::UserSigExpired,
        UserSigError::WrongIdentifier { .. } | UserSigError::WrongSdkAppId { .. } => {
            ErrorCode::UserSigMismatch
        }
        UserSigError::Malformed(_)
        | UserSigError::WrongVersion { .. }
        | UserSigError::BadSignature => ErrorCode::UserSigInvalid,
    }
}

/// axum wraps tungstenite's errors; a frame over the hard limit is a capacity error.
fn is_capacity_error(err: &axum::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}
