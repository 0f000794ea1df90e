//! The signaling client: one tokio task owns the WebSocket to tincan-server.
//!
//! The task signs in, keeps the connection alive with `ping`s, turns commands from the UI into
//! protocol frames, turns frames from the server into [`AppEvent`]s (through [`crate::call_view`]), and
//! after a drop reconnects with exponential backoff and signs in again. Where to connect and with which
//! UserSig comes from a [`Connector`] at every attempt, so a fresh UserSig is made each time and the
//! embedded server can be taken over when its host quits.

use crate::call_view;
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_ipc::{AppEvent, CallPhase, CallView, ConnectionState, ErrorCode, IpcError};
use tincan_proto::{
    CallId, CallType, ClientMessage, CloseReason, MediaSignal, ServerMessage, UserId,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Where and how to sign in, made fresh for every connection attempt.
pub struct LoginPlan {
    /// `ws://` or `wss://` address of the server's WebSocket.
    pub url: String,
    /// The `login` frame (it carries the UserSig; it is never logged).
    pub login: ClientMessage,
    /// How a `wss://` server is authenticated (see [`crate::transport`]).
    pub tls: crate::transport::TlsOptions,
}

/// Why a plan could not be made.
#[derive(Debug, Clone)]
pub struct PlanError {
    pub error: IpcError,
    /// A retry cannot help (no credentials, expired UserSig): stop and tell the user.
    pub fatal: bool,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes the [`LoginPlan`] for each connection attempt.
pub trait Connector: Send + Sync + 'static {
    fn plan(&self) -> BoxFuture<'_, Result<LoginPlan, PlanError>>;
}

/// Where events go (the Tauri shell emits them to the window; tests collect them).
pub type EventSink = Arc<dyn Fn(AppEvent) + Send + Sync>;

/// What the session looks like right now, for `get_state`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub connection: ConnectionState,
    pub user: Option<UserId>,
    pub call: Option<CallView>,
}

/// Tuning, with defaults for real use; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timing {
    pub connect_timeout: Duration,
    pub login_timeout: Duration,
    pub backoff_start: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(10),
            backoff_start: Duration::from_millis(500),
            backoff_max: Duration::from_secs(15),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, IpcError>>;

/// A request from the UI.
#[derive(Debug)]
enum Command {
    Call {
        callee: UserId,
        call_type: CallType,
        timeout_secs: u32,
        reply: Reply<CallView>,
    },
    Accept {
        call_id: CallId,
        reply: Reply<()>,
    },
    Reject {
        call_id: CallId,
        reply: Reply<()>,
    },
    Hangup {
        call_id: CallId,
        reply: Reply<()>,
    },
    SetMuted {
        muted: bool,
        reply: Reply<()>,
    },
    Signal {
        call_id: CallId,
        signal: MediaSignal,
        reply: Reply<()>,
    },
    Logout {
        reply: oneshot::Sender<()>,
    },
}

/// The handle the rest of the app holds. Dropping it stops the task.
pub struct Signaling {
    tx: mpsc::Sender<Command>,
    snapshot: Arc<Mutex<Snapshot>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaling").finish_non_exhaustive()
    }
}

fn gone() -> IpcError {
    IpcError::new(ErrorCode::NotSignedIn, "You are signed out.")
}

/// Current time, unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Signaling {
    /// Starts the task and waits for the first sign-in. A first attempt that fails (server
    /// unreachable, credentials refused) is returned as an error and the task stops; later drops are
    /// retried in the background.
    pub async fn start(
        connector: Arc<dyn Connector>,
        sink: EventSink,
        timing: Timing,
    ) -> Result<(Self, UserId), IpcError> {
        let (tx, rx) = mpsc::channel(32);
        let snapshot = Arc::new(Mutex::new(Snapshot {
            connection: ConnectionState::Connecting,
            user: None,
            call: None,
        }));
        let (first_tx, first_rx) = oneshot::channel();
        let task = Task {
            connector,
            sink,
            timing,
            snapshot: snapshot.clone(),
            rx,
            first: Some(first_tx),
        };
        let handle = tokio::spawn(task.run());
        match first_rx.await {
            Ok(Ok(user)) => Ok((
                Self {
                    tx,
                    snapshot,
                    task: handle,
                },
                user,
            )),
            Ok(Err(e)) => {
                handle.abort();
                Err(e)
            }
            Err(_) => {
                handle.abort();
                Err(IpcError::new(
                    ErrorCode::Internal,
                    "The signaling task stopped.",
                ))
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        lock(&self.snapshot).clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, IpcError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn call(
        &self,
        callee: UserId,
        call_type: CallType,
        timeout_secs: u32,
    ) -> Result<CallView, IpcError> {
        self.ask(|reply| Command::Call {
            callee,
            call_type,
            timeout_secs,
            reply,
        })
        .await
    }
    pub async fn accept(&self, call_id: CallId) -> Result<(), IpcError> {
        self.ask(|reply| Command::Accept { call_id, reply }).await
    }
    pub async fn reject(&self, call_id: CallId) -> Result<(), IpcError> {
        self.ask(|reply| Command::Reject { call_id, reply }).await
    }
    pub async fn hangup(&self, call_id: CallId) -> Result<(), IpcError> {
        self.ask(|reply| Command::Hangup { call_id, reply }).await
    }
    pub async fn set_muted(&self, muted: bool) -> Result<(), IpcError> {
        self.ask(|reply| Command::SetMuted { muted, reply }).await
    }
    pub async fn signal(&self, call_id: CallId, signal: MediaSignal) -> Result<(), IpcError> {
        self.ask(|reply| Command::Signal {
            call_id,
            signal,
            reply,
        })
        .await
    }

    /// Signs out (tells the server, closes the socket) and stops the task.
    pub async fn logout(self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Logout { reply }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
        self.task.abort();
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type Ws = crate::transport::Ws;

/// How a connected session ended.
enum SessionEnd {
    /// Signed out on purpose; stop.
    LoggedOut,
    /// Closed by the server for a reason a reconnect must not undo (kicked, replaced); stop.
    Stopped,
    /// The connection dropped; reconnect.
    Dropped(String),
}

struct Task {
    connector: Arc<dyn Connector>,
    sink: EventSink,
    timing: Timing,
    snapshot: Arc<Mutex<Snapshot>>,
    rx: mpsc::Receiver<Command>,
    first: Option<oneshot::Sender<Result<UserId, IpcError>>>,
}

/// Why one attempt to connect and sign in failed.
enum AttemptError {
    Fatal(IpcError),
    Retry(IpcError),
}

impl Task {
    fn emit(&self, ev: AppEvent) {
        (self.sink)(ev);
    }

    fn set_connection(&self, state: ConnectionState) {
        lock(&self.snapshot).connection = state.clone();
        self.emit(AppEvent::Connection { state });
    }

    fn set_call(&self, call: Option<CallView>) {
        lock(&self.snapshot).call = call.clone();
        self.emit(AppEvent::Call { call });
    }

    fn call(&self) -> Option<CallView> {
        lock(&self.snapshot).call.clone()
    }

    async fn run(mut self) {
        let mut attempt: u32 = 0;
        loop {
            match self.attempt().await {
                Ok((ws, user, heartbeat)) => {
                    attempt = 0;
                    lock(&self.snapshot).user = Some(user.clone());
                    // State first, then the reply: whoever awaits the sign-in reads "online".
                    self.set_connection(ConnectionState::Online);
                    self.emit(AppEvent::User {
                        user: Some(user.clone()),
                    });
                    if let Some(first) = self.first.take() {
                        let _ = first.send(Ok(user));
                    }
                    match self.session(ws, heartbeat).await {
                        SessionEnd::LoggedOut | SessionEnd::Stopped => {
                            self.signed_out();
                            return;
                        }
                        SessionEnd::Dropped(why) => {
                            tracing::warn!(%why, "signaling connection dropped");
                            self.drop_call("The connection to the server was lost.");
                        }
                    }
                }
                Err(AttemptError::Fatal(e)) => {
                    self.fail(e);
                    return;
                }
                Err(AttemptError::Retry(e)) => {
                    if self.first.is_some() {
                        // The very first sign-in: say so now rather than retry silently.
                        self.fail(e);
                        return;
                    }
                    tracing::info!(error = %e, "reconnect attempt failed");
                }
            }
            attempt = attempt.saturating_add(1);
            let delay = backoff(&self.timing, attempt);
            self.set_connection(ConnectionState::Reconnecting {
                attempt,
                retry_in_ms: delay.as_millis() as u64,
            });
            // Commands that arrive while offline are refused, not queued.
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.rx.recv() => match cmd {
                        None => return,
                        Some(Command::Logout { reply }) => {
                            self.signed_out();
                            let _ = reply.send(());
                            return;
                        }
                        Some(cmd) => refuse(cmd, IpcError::new(
                            ErrorCode::ServerUnreachable,
                            "Not connected to the server right now; reconnecting.",
                        )),
                    }
                }
            }
            self.set_connection(ConnectionState::Connecting);
        }
    }

    fn fail(&mut self, e: IpcError) {
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(e));
        } else {
            self.emit(AppEvent::Error { error: e });
        }
        self.signed_out();
    }

    fn signed_out(&self) {
        self.drop_call("You signed out.");
        lock(&self.snapshot).user = None;
        self.set_connection(ConnectionState::SignedOut);
        self.emit(AppEvent::User { user: None });
    }

    /// Ends a live call locally when the connection goes (the server ends it too).
    fn drop_call(&self, message: &str) {
        if let Some(mut c) = self.call() {
            if c.phase != CallPhase::Ended {
                call_view::end(&mut c, None, message.to_owned());
                self.set_call(Some(c));
            }
        }
    }

    /// Connects and signs in; returns the socket, who we are, and how often to send a keepalive.
    async fn attempt(&self) -> Result<(Ws, UserId, Duration), AttemptError> {
        let plan = self.connector.plan().await.map_err(|e| {
            if e.fatal {
                AttemptError::Fatal(e.error)
            } else {
                AttemptError::Retry(e.error)
            }
        })?;
        let unreachable = |detail: String| {
            AttemptError::Retry(IpcError::new(
                ErrorCode::ServerUnreachable,
                format!("Cannot reach the server at {}: {detail}", plan.url),
            ))
        };
        let mut ws = tokio::time::timeout(
            self.timing.connect_timeout,
            crate::transport::connect(&plan.url, &plan.tls),
        )
        .await
        .map_err(|_| unreachable("no answer".into()))?
        .map_err(|e| match e.is_fatal() {
            true => AttemptError::Fatal(e.to_ipc(&plan.url)),
            false => AttemptError::Retry(e.to_ipc(&plan.url)),
        })?;
        ws.send(Message::text(plan.login.encode()))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.timing.login_timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| unreachable("the server did not answer the sign-in".into()))?;
            let text = match frame {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(c))) => {
                    return Err(unreachable(format!(
                        "the server closed the connection ({})",
                        c.map(|c| c.reason.to_string()).unwrap_or_default()
                    )))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(unreachable(e.to_string())),
                None => return Err(unreachable("connection closed".into())),
            };
            match ServerMessage::decode(text.as_str()) {
                Ok(ServerMessage::LoginOk {
                    user_id,
                    heartbeat_secs,
                    ..
                }) => return Ok((ws, user_id, keepalive_every(heartbeat_secs))),
                Ok(ServerMessage::Error { code, message, .. }) => {
                    let _ = ws.close(None).await;
                    return Err(AttemptError::Fatal(login_error(code, &message)));
                }
                Ok(other) => {
                    tracing::debug!(?other, "ignored before login_ok");
                }
                Err(e) => tracing::warn!(%e, "undecodable frame before login_ok"),
            }
        }
    }

    async fn session(&mut self, mut ws: Ws, every: Duration) -> SessionEnd {
        let mut heartbeat = tokio::time::interval(every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                frame = ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(c))) => {
                            let reason = c.as_ref().and_then(|c| CloseReason::from_str_opt(c.reason.as_str()));
                            return match reason {
                                Some(CloseReason::KickedOffline | CloseReason::Replaced | CloseReason::LoggedOut) => SessionEnd::Stopped,
                                _ => SessionEnd::Dropped(format!("closed: {c:?}")),
                            };
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return SessionEnd::Dropped(e.to_string()),
                        None => return SessionEnd::Dropped("connection closed".into()),
                    };
                    match ServerMessage::decode(text.as_str()) {
                        Ok(msg) => {
                            if let Some(end) = self.on_server(&mut ws, msg).await {
                                return end;
                            }
                        }
                        Err(e) => tracing::warn!(%e, "undecodable frame from server"),
                    }
                }
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else {
                        let _ = ws.close(None).await;
                        return SessionEnd::LoggedOut;
                    };
                    if let Some(end) = self.on_command(&mut ws, cmd).await {
                        return end;
                    }
                }
                _ = heartbeat.tick() => {
                    if let Err(e) = ws.send(Message::text(ClientMessage::Ping { nonce: None }.encode())).await {
                        return SessionEnd::Dropped(e.to_string());
                    }
                }
            }
        }
    }

    async fn on_server(&mut self, ws: &mut Ws, msg: ServerMessage) -> Option<SessionEnd> {
        let now = now_ms();
        match &msg {
            ServerMessage::Invited {
                call_id,
                caller,
                call_type,
                timeout_secs,
            } => {
                if call_view::is_live(&self.call()) {
                    // Busy: say so, and keep the current call.
                    let reject = ClientMessage::Reject {
                        call_id: call_id.clone(),
                        busy: true,
                    };
                    if let Err(e) = ws.send(Message::text(reject.encode())).await {
                        return Some(SessionEnd::Dropped(e.to_string()));
                    }
                    return None;
                }
                let view = call_view::incoming(
                    call_id.clone(),
                    caller.clone(),
                    *call_type,
                    *timeout_secs,
                    now,
                );
                self.set_call(Some(view));
                self.emit(AppEvent::Incoming {
                    call_id: call_id.clone(),
                    caller: caller.clone(),
                    call_type: *call_type,
                });
            }
            ServerMessage::MissedCalls { calls } => {
                self.emit(AppEvent::MissedCalls {
                    calls: calls.clone(),
                });
            }
            ServerMessage::Signal {
                call_id,
                from,
                signal,
            } => {
                if let Some(mut c) = self.call() {
                    if call_view::apply(&mut c, &msg, now) {
                        self.set_call(Some(c));
                    }
                }
                self.emit(AppEvent::RemoteSignal {
                    call_id: call_id.clone(),
                    from: from.clone(),
                    signal: signal.clone(),
                });
            }
            ServerMessage::KickedOffline { reason } => {
                self.emit(AppEvent::KickedOffline {
                    reason: *reason,
                    message: tincan_ipc::call_view::kicked_offline_message(*reason, "window"),
                });
                return Some(SessionEnd::Stopped);
            }
            ServerMessage::LoggedOut => return Some(SessionEnd::LoggedOut),
            ServerMessage::Error {
                code,
                message,
                call_id,
            } => {
                let about_our_call =
                    matches!((call_id, self.call()), (Some(id), Some(c)) if *id == c.call_id);
                if !about_our_call {
                    self.emit(AppEvent::Error {
                        error: IpcError::new(
                            ErrorCode::ServerRefused,
                            call_view::describe_error(*code, message),
                        ),
                    });
                }
                if let Some(mut c) = self.call() {
                    if call_view::apply(&mut c, &msg, now) {
                        self.set_call(Some(c));
                    }
                }
            }
            _ => {
                if let Some(mut c) = self.call() {
                    if call_view::apply(&mut c, &msg, now) {
                        self.set_call(Some(c));
                    }
                }
            }
        }
        None
    }

    async fn on_command(&mut self, ws: &mut Ws, cmd: Command) -> Option<SessionEnd> {
        let current = self.call();
        let live = call_view::is_live(&current);
        let (step, reply): (Result<call_view::Step, IpcError>, ReplyAny) = match cmd {
            Command::Logout { reply } => {
                let _ = ws.send(Message::text(ClientMessage::Logout.encode())).await;
                let _ = ws.close(None).await;
                let _ = reply.send(());
                return Some(SessionEnd::LoggedOut);
            }
            Command::Call {
                callee,
                call_type,
                timeout_secs,
                reply,
            } => {
                if live {
                    let _ = reply.send(Err(IpcError::new(
                        ErrorCode::AlreadyInCall,
                        "You are already in a call.",
                    )));
                    return None;
                }
                if lock(&self.snapshot).user.as_ref() == Some(&callee) {
                    let _ = reply.send(Err(IpcError::new(
                        ErrorCode::CallSelf,
                        "You cannot call yourself.",
                    )));
                    return None;
                }
                let call_id = match CallId::new(crate::credentials::random_hex(16)) {
                    Ok(id) => id,
                    Err(e) => {
                        let _ = reply.send(Err(IpcError::new(ErrorCode::Internal, e.to_string())));
                        return None;
                    }
                };
                let view = call_view::outgoing(
                    call_id.clone(),
                    callee.clone(),
                    call_type,
                    timeout_secs,
                    now_ms(),
                );
                let frame = ClientMessage::Invite {
                    call_id,
                    callee,
                    call_type,
                    timeout_secs: Some(timeout_secs),
                };
                if let Err(e) = ws.send(Message::text(frame.encode())).await {
                    let _ = reply.send(Err(IpcError::new(
                        ErrorCode::ServerUnreachable,
                        "The connection to the server was lost.",
                    )));
                    return Some(SessionEnd::Dropped(e.to_string()));
                }
                self.set_call(Some(view.clone()));
                let _ = reply.send(Ok(view));
                return None;
            }
            // The rules for what each command may do and sends are shared with the browser client.
            Command::Accept { call_id, reply } => {
                (call_view::accept(current.as_ref(), call_id), reply)
            }
            Command::Reject { call_id, reply } => {
                (call_view::reject(current.as_ref(), call_id), reply)
            }
            Command::Hangup { call_id, reply } => (
                call_view::hang_up(current.as_ref(), call_id, now_ms()),
                reply,
            ),
            Command::SetMuted { muted, reply } => {
                (call_view::set_muted(current.as_ref(), muted), reply)
            }
            Command::Signal {
                call_id,
                signal,
                reply,
            } => (call_view::signal(current.as_ref(), call_id, signal), reply),
        };
        let call_view::Step { frame, update } = match step {
            Ok(step) => step,
            Err(e) => {
                let _ = reply.send(Err(e));
                return None;
            }
        };
        if let Some(frame) = frame {
            if let Err(e) = ws.send(Message::text(frame.encode())).await {
                let _ = reply.send(Err(IpcError::new(
                    ErrorCode::ServerUnreachable,
                    "The connection to the server was lost.",
                )));
                return Some(SessionEnd::Dropped(e.to_string()));
            }
        }
        if let Some(c) = update {
            self.set_call(Some(c));
        }
        let _ = reply.send(Ok(()));
        None
    }
}

type ReplyAny = Reply<()>;

fn refuse(cmd: Command, e: IpcError) {
    match cmd {
        Command::Call { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Command::Accept { reply, .. }
        | Command::Reject { reply, .. }
        | Command::Hangup { reply, .. }
        | Command::SetMuted { reply, .. }
        | Command::Signal { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Command::Logout { reply } => {
            let _ = reply.send(());
        }
    }
}

/// How often to send a `ping`: a little more often than the server's `heartbeat_secs` asks, and never
/// more than once a second.
pub fn keepalive_every(heartbeat_secs: u32) -> Duration {
    Duration::from_millis(u64::from(heartbeat_secs.max(2)) * 800)
}

/// Delay before reconnect attempt `attempt` (1-based): doubling from `backoff_start`, capped, with
/// up to 20 % jitter so many clients do not return at once.
pub fn backoff(t: &Timing, attempt: u32) -> Duration {
    use rand::Rng;
    let exp = attempt.saturating_sub(1).min(16);
    let base = t
        .backoff_start
        .saturating_mul(1u32 << exp)
        .min(t.backoff_max);
    let jitter = rand::thread_rng().gen_range(0.0..0.2);
    base.mul_f64(1.0 + jitter).min(t.backoff_max)
}

/// The user-facing error for a refused login (shared with the browser client).
pub use tincan_ipc::session::login_error;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_is_a_bit_faster_than_the_server_asks() {
        assert_eq!(keepalive_every(25), Duration::from_secs(20));
        assert_eq!(keepalive_every(0), Duration::from_millis(1600));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let t = Timing {
            backoff_start: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..Timing::default()
        };
        let d1 = backoff(&t, 1);
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(120));
        let d3 = backoff(&t, 3);
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(480));
        assert_eq!(backoff(&t, 30), Duration::from_secs(1));
    }

    #[test]
    fn login_errors_are_plain() {
        let e = login_error(tincan_proto::ErrorCode::UserSigExpired, "x");
        assert_eq!(e.code, ErrorCode::UserSigExpired);
        assert!(e.message.contains("expired"));
    }
}
