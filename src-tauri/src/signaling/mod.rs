//! The desktop's signaling driver: one tokio task carries out what [`ClientSession`] asks for.
//!
//! Every decision — when to sign in, what the UI is told and in which order, when to ping, when and
//! how to reconnect, what a command answers — is the machine's (`tincan_ipc::session`, shared with
//! the browser client). This task only does the I/O around it: it runs the [`Connector`] (keyring,
//! a fresh UserSig, the embedded server) when the machine asks for a login plan, opens the WebSocket
//! through [`crate::transport::connect`] (wss:// with rustls, ws:// only on loopback), sends and
//! receives frames, sleeps until the machine's next deadline, and hands events to the [`EventSink`]
//! and replies to whoever awaits a command.

mod driver;

use crate::transport::TlsOptions;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_ipc::session::{self as machine, ClientSession, Command, Reply};
use tincan_ipc::{AppEvent, CallView, ErrorCode, IpcError};
use tincan_proto::{CallId, CallType, ClientMessage, MediaSignal, UserId};
use tokio::sync::{mpsc, oneshot};

pub use machine::{PlanError, Snapshot};

/// Where and how to sign in, made fresh for every connection attempt.
pub struct LoginPlan {
    /// `ws://` or `wss://` address of the server's WebSocket.
    pub url: String,
    /// The `login` frame (it carries the UserSig; it is never logged).
    pub login: ClientMessage,
    /// How a `wss://` server is authenticated (see [`crate::transport`]).
    pub tls: TlsOptions,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes the [`LoginPlan`] for each connection attempt.
pub trait Connector: Send + Sync + 'static {
    fn plan(&self) -> BoxFuture<'_, Result<LoginPlan, PlanError>>;
}

/// Where events go (the Tauri shell emits them to the window; tests collect them).
pub type EventSink = Arc<dyn Fn(AppEvent) + Send + Sync>;

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
        let c = machine::Config::default();
        Self {
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            login_timeout: Duration::from_millis(c.login_timeout_ms),
            backoff_start: Duration::from_millis(c.backoff_start_ms),
            backoff_max: Duration::from_millis(c.backoff_max_ms),
        }
    }
}

pub(crate) type ReplyTx = oneshot::Sender<Result<Reply, IpcError>>;

/// The handle the rest of the app holds. Dropping it stops the task.
pub struct Signaling {
    tx: mpsc::Sender<(Command, ReplyTx)>,
    snapshot: Arc<Mutex<Snapshot>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaling").finish_non_exhaustive()
    }
}

/// Current time, unix milliseconds (the machine's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn lock_snapshot<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unexpected() -> IpcError {
    IpcError::new(
        ErrorCode::Internal,
        "The signaling task answered out of turn.",
    )
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
        let ms = |d: Duration| d.as_millis() as u64;
        let session = ClientSession::new(machine::Config {
            connect_timeout_ms: ms(timing.connect_timeout),
            login_timeout_ms: ms(timing.login_timeout),
            backoff_start_ms: ms(timing.backoff_start),
            backoff_max_ms: ms(timing.backoff_max),
            this: "window".into(),
            seed: rand::random(),
            ..machine::Config::default()
        });
        let snapshot = Arc::new(Mutex::new(session.snapshot()));
        let (tx, rx) = mpsc::channel(32);
        let driver = driver::Driver {
            session,
            connector,
            sink,
            snapshot: snapshot.clone(),
            replies: HashMap::new(),
            next_id: 0,
            conn: driver::Conn::Idle,
            tls: TlsOptions::default(),
        };
        let task = tokio::spawn(driver.run(rx));
        let me = Self { tx, snapshot, task };
        match me.ask(Command::SignIn).await? {
            Reply::SignedIn(user) => Ok((me, user)),
            _ => Err(unexpected()),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        lock_snapshot(&self.snapshot).clone()
    }

    async fn ask(&self, cmd: Command) -> Result<Reply, IpcError> {
        let gone = || IpcError::new(ErrorCode::NotSignedIn, "You are signed out.");
        let (reply, rx) = oneshot::channel();
        self.tx.send((cmd, reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    async fn done(&self, cmd: Command) -> Result<(), IpcError> {
        self.ask(cmd).await.map(|_| ())
    }

    pub async fn call(
        &self,
        callee: UserId,
        call_type: CallType,
        timeout_secs: u32,
    ) -> Result<CallView, IpcError> {
        let call_id = CallId::new(crate::credentials::random_hex(16))
            .map_err(|e| IpcError::new(ErrorCode::Internal, e.to_string()))?;
        let cmd = Command::StartCall {
            call_id,
            callee,
            call_type,
            timeout_secs,
        };
        match self.ask(cmd).await? {
            Reply::Call(view) => Ok(view),
            _ => Err(unexpected()),
        }
    }
    pub async fn accept(&self, call_id: CallId) -> Result<(), IpcError> {
        self.done(Command::Accept { call_id }).await
    }
    pub async fn reject(&self, call_id: CallId) -> Result<(), IpcError> {
        self.done(Command::Reject { call_id }).await
    }
    pub async fn hangup(&self, call_id: CallId) -> Result<(), IpcError> {
        self.done(Command::Hangup { call_id }).await
    }
    pub async fn set_muted(&self, muted: bool) -> Result<(), IpcError> {
        self.done(Command::SetMuted { muted }).await
    }
    pub async fn signal(&self, call_id: CallId, signal: MediaSignal) -> Result<(), IpcError> {
        self.done(Command::Signal { call_id, signal }).await
    }

    /// Signs out (tells the server, closes the socket) and stops the task.
    pub async fn logout(self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.ask(Command::SignOut)).await;
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        self.task.abort();
    }
}
