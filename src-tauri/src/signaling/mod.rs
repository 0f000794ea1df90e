//! The desktop's signaling driver: one tokio task carries out what [`ClientSession`] asks for.
//!
//! Every decision — when to sign in, what the UI is told and in which order, when to ping, when and
//! how to reconnect, what a command answers — is the machine's (`tincan_ipc::session`, shared with
//! the browser client). This task only does the I/O around it: it runs the [`Connector`] (keyring,
//! a fresh UserSig, the embedded server) when the machine asks for a login plan, opens the WebSocket
//! through [`crate::transport::connect`] (wss:// with rustls, ws:// only on loopback), sends and
//! receives frames, sleeps until the machine's next deadline, and hands events to the [`EventSink`]
//! and replies to whoever awaits a command.
//!
//! It also keeps the ICE servers the signaling server issued (`login_ok`, `ice_servers`) where the
//! native media engine reads them at call start: [`issued_ice_servers`] (see [`IssuedIce`]).

mod driver;

use crate::transport::TlsOptions;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_ipc::session::{self as machine, ClientSession, Command, Reply};
use tincan_ipc::{AppEvent, CallView, ErrorCode, IceServer, IpcError};
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

/// The ICE servers (STUN, TURN with short-lived credentials) the signaling server issued to the
/// signed-in session, kept for the native media engine (`crate::native_media`), which reads them
/// at call start and ICE restart with [`issued_ice_servers`]. The webview's engine gets the same
/// list as [`AppEvent::IceServers`].
///
/// One per process: the app runs one profile, so one signed-in session, per process (the profile
/// lock). Each signaling task writes it under its own generation, so a task stopping (a server
/// change, a sign-out) clears only what it wrote, never the list of the task that replaced it.
#[derive(Debug, Default)]
pub struct IssuedIce {
    inner: std::sync::RwLock<IssuedInner>,
}

#[derive(Debug, Default)]
struct IssuedInner {
    generation: u64,
    servers: Vec<IceServer>,
    expires_at: Option<u64>,
}

static ISSUED: std::sync::OnceLock<IssuedIce> = std::sync::OnceLock::new();
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl IssuedIce {
    /// The process's one list.
    pub fn global() -> &'static IssuedIce {
        ISSUED.get_or_init(IssuedIce::default)
    }

    /// The latest servers and when their TURN credentials expire (unix seconds).
    pub fn get(&self) -> (Vec<IceServer>, Option<u64>) {
        let i = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (i.servers.clone(), i.expires_at)
    }

    /// A new signaling task's generation.
    pub(crate) fn next_generation() -> u64 {
        GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// Task `generation` got a new list (the latest task wins).
    pub(crate) fn set(&self, generation: u64, servers: Vec<IceServer>, expires_at: Option<u64>) {
        let mut i = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if generation >= i.generation {
            *i = IssuedInner {
                generation,
                servers,
                expires_at,
            };
        }
    }

    /// Task `generation` stopped: what it wrote goes (a later task's list stays).
    pub(crate) fn clear(&self, generation: u64) {
        let mut i = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if i.generation == generation {
            i.servers.clear();
            i.expires_at = None;
        }
    }
}

/// The ICE servers the signaling server issued to this app's session (empty when signed out or
/// when the server has none): for the native engine at call start, merged with the user's own.
pub fn issued_ice_servers() -> Vec<IceServer> {
    IssuedIce::global().get().0
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
            ice_generation: IssuedIce::next_generation(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: &str) -> Vec<IceServer> {
        vec![IceServer {
            urls: vec![format!("turn:{n}:3478")],
            username: Some(format!("1:{n}")),
            credential: Some("c".into()),
        }]
    }

    #[test]
    fn a_stopping_task_clears_only_its_own_list() {
        let issued = IssuedIce::default();
        let (old, new) = (IssuedIce::next_generation(), IssuedIce::next_generation());
        issued.set(old, list("a"), Some(10));
        assert_eq!(issued.get(), (list("a"), Some(10)));
        issued.set(new, list("b"), Some(20));
        // The old task's late news and its end leave the new task's list alone.
        issued.set(old, list("a"), Some(30));
        issued.clear(old);
        assert_eq!(issued.get(), (list("b"), Some(20)));
        issued.clear(new);
        assert_eq!(issued.get(), (vec![], None));
    }
}
