//! One WebSocket connection: sign-in, frame limits, rate limiting, keepalive, and the writer that
//! drains the connection's byte-bounded [`Outbox`].
//!
//! The reader and the writer run in one task (`select!`), so a connection costs one task, two small
//! buffers and a bounded queue. The reader yields whenever it has queued something for its own
//! client, so the writer sends replies to a buffered burst as they are made, and it waits for room
//! before taking the next frame when its own outbox is over budget: a client that floods without
//! reading is pushed back by TCP, not buffered. Whatever ends the connection, the hub hears about
//! it exactly once, and every close the server starts sends its close frame.

use crate::hub::{ConnectionSlot, Hub, Outbound, Outbox};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tincan_proto::switchboard::SessionId;
use tincan_proto::{
    ClientMessage, CloseReason, ErrorCode, Party, ServerMessage, UserSigError, PROTOCOL_VERSION,
};
use tokio::time::{sleep_until, timeout_at, Instant};
use tracing::{debug, info};

/// How long the closing handshake may take (our close frame out, the client's reply in) before
/// the socket is dropped anyway. A slow consumer gets at least its stall period: it may be about
/// to read again, and then it gets its 4002 rather than a bare TCP close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a socket whose read side failed stays open after our close frame went out, so the
/// client can read it before the connection is reset.
const LINGER: Duration = Duration::from_millis(500);

type Sender = SplitSink<WebSocket, Message>;
type Receiver = SplitStream<WebSocket>;

/// Serves one upgraded WebSocket until it closes.
///
/// `pending` is this connection's "not signed in yet" count (see [`crate::admission`]): released
/// at `login_ok`.
pub fn run(
    socket: WebSocket,
    hub: Arc<Hub>,
    slot: ConnectionSlot,
    pending: crate::admission::Pending,
) -> impl std::future::Future<Output = ()> + Send {
    // Split before the future is made: an async fn keeps its arguments for its whole life, so the
    // socket (368 bytes, moved into the split halves at once) would sit unused in every idle
    // connection's task.
    let (sink, stream) = socket.split();
    serve(sink, stream, hub, slot, pending)
}

async fn serve(
    mut sink: Sender,
    mut stream: Receiver,
    hub: Arc<Hub>,
    slot: ConnectionSlot,
    pending: crate::admission::Pending,
) {
    info!("connection open");
    let outbox = hub.new_outbox();
    let sid = hub.attach(outbox.clone());
    let stall = hub.config.send_stall;

    let ended = {
        let mut reader = Reader {
            hub: &hub,
            sid,
            outbox: &outbox,
            logged_in: false,
            user: None,
            failed_logins: 0,
            pending: &pending,
        };
        tokio::select! {
            biased;
            end = write_loop(&mut sink, &outbox, stall) => match end {
                WriteEnd::Closed => Ended::CloseSent,
                WriteEnd::Failed => Ended::Gone,
                WriteEnd::Stalled => {
                    info!(sid, queued = outbox.queued_bytes(), "client stopped reading: slow consumer");
                    outbox.close_now(CloseReason::SlowConsumer);
                    Ended::Closing
                }
            },
            end = reader.run(&mut stream) => match end {
                ReadEnd::Gone => Ended::Gone,
                ReadEnd::ClientClosed => Ended::CloseSent,
                ReadEnd::Close(reason) => {
                    outbox.close(reason);
                    Ended::Closing
                }
            },
        }
    };
    // The calls end now, not after the closing handshake: the peer hears at once.
    hub.detach(sid);
    if !matches!(ended, Ended::Gone) {
        let patience = match outbox.closing() {
            Some(CloseReason::SlowConsumer) => CLOSE_TIMEOUT.max(stall),
            _ => CLOSE_TIMEOUT,
        };
        let deadline = Instant::now() + patience;
        finish(
            &mut sink,
            &mut stream,
            &outbox,
            matches!(ended, Ended::CloseSent),
            deadline,
        )
        .await;
    }
    let close = outbox.closing();
    drop(slot);
    info!(sid, ?close, "connection closed");
}

/// How the first phase of a connection ended.
enum Ended {
    /// The socket is gone: nothing more can be sent.
    Gone,
    /// A close is queued in the outbox; the writer still has to send it.
    Closing,
    /// The close frame went out (ours, or tungstenite's reply to the client's).
    CloseSent,
}

/// The closing handshake: the writer sends what is queued up to the close frame, while incoming
/// frames are read and dropped (so the client, which may be blocked writing, can read its close,
/// and the socket is not reset with unread data), until the client's close reply or `deadline`.
async fn finish(
    sink: &mut Sender,
    stream: &mut Receiver,
    outbox: &Outbox,
    mut closed: bool,
    deadline: Instant,
) {
    let _ = timeout_at(deadline, async {
        let mut reading = true;
        loop {
            tokio::select! {
                end = write_loop(sink, outbox, deadline.saturating_duration_since(Instant::now())), if !closed => {
                    match end {
                        WriteEnd::Closed => closed = true,
                        WriteEnd::Failed | WriteEnd::Stalled => return,
                    }
                }
                frame = stream.next(), if reading => match frame {
                    // The client's answer to our close: the handshake is done.
                    None if closed => return,
                    // The read side is broken (say, a frame over the hard limit still arriving;
                    // the stream ends after its first error). The close frame still goes out, and
                    // dropping the socket right after it, with unread data, would reset the
                    // connection and could destroy it before the client reads it: linger a moment.
                    None | Some(Err(_)) => reading = false,
                    Some(Ok(_)) => {}
                },
                () = tokio::time::sleep(LINGER), if !reading && closed => return,
            }
        }
    })
    .await;
}

/// How the writer stopped.
enum WriteEnd {
    /// It sent a close frame.
    Closed,
    /// The socket failed.
    Failed,
    /// A write made no progress for the stall period: the client is not reading.
    Stalled,
}

/// Drains the outbox. Cancel-safe: an item is taken from the outbox only when the sink is ready
/// for it and handed over without an await, so dropping this future (the `select!`s above) loses
/// nothing; a frame half written stays in the WebSocket's buffer and goes out first next time.
async fn write_loop(sink: &mut Sender, outbox: &Outbox, stall: Duration) -> WriteEnd {
    loop {
        // Whatever an earlier, cancelled call left in the sink goes out first.
        match within(stall, |cx| sink.poll_ready_unpin(cx)).await {
            None => return WriteEnd::Stalled,
            Some(Err(_)) => return WriteEnd::Failed,
            Some(Ok(())) => {}
        }
        let item = outbox.next().await;
        let cost = Outbox::cost_of(&item);
        let (msg, last) = match item {
            Outbound::Text(text) => (Message::Text(text), false),
            Outbound::Ping => (Message::Ping(Default::default()), false),
            Outbound::Close(reason) => (close_message(reason), true),
        };
        if std::pin::Pin::new(&mut *sink).start_send(msg).is_err() {
            return WriteEnd::Failed;
        }
        match within(stall, |cx| sink.poll_flush_unpin(cx)).await {
            None if !last => return WriteEnd::Stalled,
            Some(Err(_)) if !last => return WriteEnd::Failed,
            _ => {}
        }
        outbox.sent(cost);
        if last {
            return WriteEnd::Closed;
        }
    }
}

/// Polls `poll` until it is ready (`Some`) or `limit` has passed without that (`None`). The
/// timer is made only when the first poll is not ready: most writes finish at once, and a timer
/// per frame written (a clock read, a runtime handle, and an entry in tokio's timer wheel when
/// it has to wait) is work the frame does not need.
async fn within<T>(
    limit: Duration,
    mut poll: impl FnMut(&mut std::task::Context<'_>) -> std::task::Poll<T>,
) -> Option<T> {
    use std::future::Future;
    use std::task::Poll;
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = poll(cx) {
            return Poll::Ready(Some(v));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

fn close_message(reason: CloseReason) -> Message {
    Message::Close(Some(CloseFrame {
        code: reason.close_code(),
        reason: reason.as_str().into(),
    }))
}

/// How the reader stopped.
enum ReadEnd {
    /// The socket ended or failed without a close frame.
    Gone,
    /// The client sent a close frame (the WebSocket layer replies to it).
    ClientClosed,
    /// The server closes the connection for this reason.
    Close(CloseReason),
}

struct Reader<'a> {
    hub: &'a Hub,
    sid: SessionId,
    outbox: &'a Outbox,
    logged_in: bool,
    /// Who signed in on this connection (the `from` of its relayed signals).
    user: Option<tincan_proto::UserId>,
    failed_logins: u32,
    /// Released at a successful login (per-address "not signed in" counts).
    pending: &'a crate::admission::Pending,
}

impl Reader<'_> {
    /// Reads until the client goes away or the connection must be closed.
    async fn run(&mut self, stream: &mut Receiver) -> ReadEnd {
        let cfg = &self.hub.config;
        let limiter = RateLimiter::direct(
            Quota::per_second(NonZeroU32::new(cfg.rate_per_sec).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(cfg.rate_burst).unwrap_or(NonZeroU32::MIN)),
        );
        let login_deadline = Instant::now() + cfg.login_timeout;
        let mut next_ping = Instant::now() + cfg.heartbeat;
        let mut last_seen = Instant::now();
        // Two timers for the whole connection, not fresh ones per frame (every new timer is an
        // insert into and a removal from tokio's timer wheel, under its lock), and one of them
        // for both the keepalive ping and the idle timeout (each timer is polled whenever the
        // connection wakes, i.e. for every frame in or out). It is moved on lazily: when it
        // fires, it is due for whichever comes first, the next ping or the idle timeout counted
        // from the last frame heard.
        let login_timer = sleep_until(login_deadline);
        let timer = sleep_until(next_ping.min(last_seen + cfg.idle_timeout));
        tokio::pin!(login_timer, timer);
        loop {
            // The client's own replies (pongs, errors) are bounded like everything else: while
            // its outbox is over budget, its next frame waits in the socket (TCP pushes back).
            self.outbox.room().await;
            tokio::select! {
                frame = stream.next() => {
                    let msg = match frame {
                        None => return ReadEnd::Gone,
                        Some(Err(err)) => {
                            debug!(sid = self.sid, %err, "read failed");
                            return if is_capacity_error(&err) {
                                ReadEnd::Close(CloseReason::FrameTooLarge)
                            } else {
                                ReadEnd::Gone
                            };
                        }
                        Some(Ok(msg)) => msg,
                    };
                    last_seen = Instant::now();
                    if let Message::Close(_) = msg {
                        return ReadEnd::ClientClosed;
                    }
                    // Every frame counts against the rate limit before anything else is done with
                    // it: text, binary, oversized, and control frames alike.
                    let limited = limiter.check().is_err();
                    match msg {
                        Message::Text(_) | Message::Binary(_) if limited => self.reply(ServerMessage::error(
                            ErrorCode::RateLimited,
                            "slow down: message dropped",
                            None,
                        )),
                        Message::Text(text) => {
                            if text.len() > cfg.max_frame_bytes {
                                self.reply(ServerMessage::error(
                                    ErrorCode::FrameTooLarge,
                                    format!("frames may be at most {} bytes", cfg.max_frame_bytes),
                                    None,
                                ));
                            } else if let Some(reason) = self.on_text(text.as_str()) {
                                return ReadEnd::Close(reason);
                            }
                        }
                        Message::Binary(_) => self.reply(ServerMessage::error(
                            ErrorCode::BinaryFrame,
                            "the protocol uses JSON text frames only",
                            None,
                        )),
                        // Answered by the WebSocket layer (pings) or nothing to do (pongs).
                        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
                    }
                    // A burst read from one buffer is handled in one go; let the writer send what
                    // it produced before the next frame, so replies go out as they are made.
                    if self.outbox.has_queued() {
                        tokio::task::yield_now().await;
                    }
                }
                () = &mut login_timer, if !self.logged_in => {
                    return ReadEnd::Close(CloseReason::LoginTimeout);
                }
                // The idle timeout counts from the last frame heard, exactly, not at the next
                // heartbeat tick (which made 75 s of silence last up to 100 s).
                () = &mut timer => {
                    let now = Instant::now();
                    let idle_due = last_seen + cfg.idle_timeout;
                    if now >= idle_due {
                        return ReadEnd::Close(CloseReason::IdleTimeout);
                    }
                    if now >= next_ping {
                        self.outbox.deliver(Outbound::Ping);
                        // The next one a full period after this one (a late tick delays the
                        // rest rather than bunching them).
                        next_ping = now + cfg.heartbeat;
                    }
                    timer.as_mut().reset(next_ping.min(idle_due));
                }
            }
        }
    }

    fn reply(&self, msg: ServerMessage) {
        self.outbox.deliver(Outbound::Text(msg.encode().into()));
    }

    fn on_text(&mut self, text: &str) -> Option<CloseReason> {
        // The relay's fast path: the payload stays the sender's JSON, the peer's frame is built
        // here, once, outside the hub's lock (anything unusual takes the typed path below).
        if let Some(from) = &self.user {
            if let Some(inbound) = tincan_proto::wire::decode_signal(text) {
                let frame = tincan_proto::wire::inbound_frame(&inbound.call_id, from, &inbound);
                // The SDP check needs no shared state: it runs here, not under the hub's lock.
                let checked = tincan_proto::sdp::Checked::new(
                    &inbound.signal,
                    &self.hub.config.switchboard.sdp,
                );
                self.hub.forward(
                    self.sid,
                    from,
                    &inbound.call_id,
                    &inbound.signal,
                    checked,
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
