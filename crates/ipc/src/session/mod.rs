//! [`ClientSession`]: the whole signaling client as a sans-I/O state machine, shared by the desktop
//! backend (src-tauri's tokio task) and the browser client (ui's WebSocket glue).
//!
//! Everything a user can observe — what the UI is told, in which order, and when — is decided here,
//! once: signing in and its errors, keepalive, reconnecting with backoff and signing in again, being
//! replaced or kicked, turning server frames into [`AppEvent`]s (through [`crate::call_view`]), call
//! commands and their answers, and relaying media signals. The machine owns no clock, no socket and
//! no task (the str0m style): a driver feeds it inputs and carries out what it asks for.
//!
//! Inputs (`handle_*`), each with the driver's clock `now` (unix milliseconds; it is also the time
//! shown in call views):
//! - [`ClientSession::handle_command`]: a command from the UI, answered by exactly one
//!   [`Output::Reply`] with the same [`CommandId`] (at once, or — for [`Command::SignIn`] — when
//!   the sign-in succeeds or fails);
//! - [`ClientSession::handle_login_plan`]: the credentials the driver made after an
//!   [`Output::PlanLogin`] (on the desktop that needs the keyring and a fresh UserSig, so it is I/O);
//! - [`ClientSession::handle_connected`] / [`ClientSession::handle_disconnected`]: the socket opened
//!   or closed;
//! - [`ClientSession::handle_frame`] (or [`ClientSession::handle_text`]): a frame from the server;
//! - [`ClientSession::handle_timeout`]: the deadline [`ClientSession::poll_timeout`] named has come.
//!
//! Outputs, drained with [`ClientSession::poll_output`] after every input, in order: frames to send,
//! events for the UI, replies, "plan a login", "connect to URL", "close". A driver carries them out
//! in that order and then sleeps until `poll_timeout()` or the next input.
//!
//! The module is split by concern: `link` (signing in, the connection, keepalive, backoff), `call`
//! (the one call: commands and the frames about it), `resume` (a connected call kept through a lost
//! connection, and what is sent once the server relays again), `rules` (words, backoff arithmetic,
//! close codes).
//! A protocol change lands in one of those once, for both clients. The places the coming ones touch:
//! what a dropped connection does to a live call is decided in one spot (`link::on_disconnected`:
//! a connected call is kept and resumed, `resume`; one still ringing ends as "connection lost");
//! what follows a successful login is `link::on_login_answer` (the resume announcement is sent
//! there); a new server message is a new arm of the exhaustive match in
//! `call::on_server`; a new command (block / unblock) is a [`Command`] variant with its [`Reply`].

mod call;
mod link;
mod resume;
mod rules;

pub use rules::{backoff_ms, close_is_final, close_reason, keepalive_every_ms, login_error};

use crate::{AppEvent, CallView, ConnectionState, IpcError};
use std::collections::VecDeque;
use tincan_proto::{
    CallId, CallType, ClientMessage, CloseReason, IceServer, MediaSignal, ServerMessage, UserId,
};

/// The driver's clock: unix milliseconds. Only differences matter for deadlines; the value itself is
/// what call views show (`started_at_ms`, `connected_at_ms`).
pub type Millis = u64;

/// Picked by the driver for each command; the [`Output::Reply`] carries it back.
pub type CommandId = u64;

/// Timings and the words that differ between clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// From [`Output::Connect`] to [`ClientSession::handle_connected`].
    pub connect_timeout_ms: u64,
    /// From sending `login` to `login_ok`.
    pub login_timeout_ms: u64,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max_ms` (plus ≤ 20 % jitter).
    pub backoff_start_ms: u64,
    pub backoff_max_ms: u64,
    /// What a user calls this client in "This window signed in again…" ("window", "tab").
    pub this: String,
    /// Seeds the backoff jitter (not a secret: it only spreads reconnects of many clients apart).
    pub seed: u64,
    /// How long a connected call is kept while the server cannot be reached (see
    /// `session::resume`); past it the call ends here, as the server has ended it too (its grace
    /// period, `--resume-secs`, is 30 s by default).
    pub resume_window_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            login_timeout_ms: 10_000,
            backoff_start_ms: 500,
            backoff_max_ms: 15_000,
            this: "window".into(),
            seed: 0x5eed,
            resume_window_ms: 60_000,
        }
    }
}

/// Where and how to sign in, made fresh by the driver for every connection attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginPlan {
    /// `ws://` or `wss://` address of the server's WebSocket.
    pub url: String,
    /// The `login` frame (it carries the UserSig; `SigToken` never prints it).
    pub login: ClientMessage,
}

/// Why the driver could not make a [`LoginPlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    pub error: IpcError,
    /// A retry cannot help (no credentials, an expired pasted UserSig): stop and tell the user.
    pub fatal: bool,
}

/// A request from the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Sign in (signing out first when signed in); the credentials come through
    /// [`Output::PlanLogin`]. Answered with [`Reply::SignedIn`] once `login_ok` arrives.
    SignIn,
    /// Sign out: tell the server, close, end a live call.
    SignOut,
    /// Call `callee`; `call_id` is the driver's (a random one, from its own source of randomness).
    StartCall {
        call_id: CallId,
        callee: UserId,
        call_type: CallType,
        timeout_secs: u32,
    },
    Accept {
        call_id: CallId,
    },
    Reject {
        call_id: CallId,
    },
    Hangup {
        call_id: CallId,
    },
    SetMuted {
        muted: bool,
    },
    Signal {
        call_id: CallId,
        signal: MediaSignal,
    },
}

/// A successful answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// [`Command::SignIn`]: signed in as this user.
    SignedIn(UserId),
    /// [`Command::StartCall`]: the new call.
    Call(CallView),
    /// Everything else.
    Done,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Make the credentials for a connection attempt and pass them to
    /// [`ClientSession::handle_login_plan`].
    PlanLogin,
    /// Open a WebSocket to `url`; report [`ClientSession::handle_connected`] or
    /// [`ClientSession::handle_disconnected`].
    Connect { url: String },
    /// Send this frame on the open connection.
    Send(ClientMessage),
    /// Drop the connection and anything in flight toward one (a login plan being made, a connect in
    /// progress); their results must not be fed back.
    Close,
    /// Tell the UI.
    Event(AppEvent),
    /// The answer to command `id`.
    Reply {
        id: CommandId,
        result: Result<Reply, IpcError>,
    },
}

/// The session as `get_state` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub connection: ConnectionState,
    pub user: Option<UserId>,
    /// The current call, including one that ended and has not been replaced.
    pub call: Option<CallView>,
}

/// The signaling client. See the module documentation.
#[derive(Debug)]
pub struct ClientSession {
    cfg: Config,
    link: link::Link,
    /// Failed attempts since the last successful login.
    attempt: u32,
    /// The `sign_in` waiting for its first `login_ok`: while it waits, failures are final.
    pending_sign_in: Option<CommandId>,
    user: Option<UserId>,
    connection: ConnectionState,
    call: Option<CallView>,
    /// The connected call kept through a lost connection, until it is resumed or over.
    held: Option<resume::Held>,
    /// Signals for the peer kept while the server cannot relay them (this side or the peer away).
    kept: resume::Kept,
    /// The server's clock minus ours at the last `login_ok` (what `resume_call` is stated in).
    server_offset_ms: i64,
    /// The last calls that ended here: an invitation or a new call with one of these IDs is refused,
    /// so a call the UI saw end never comes back.
    finished: VecDeque<CallId>,
    /// The latest ICE servers from the server (`login_ok`, `ice_servers`), with their expiry.
    /// Kept through a lost connection (a held call's ICE restart needs them); cleared at sign-out.
    ice: (Vec<IceServer>, Option<u64>),
    out: VecDeque<Output>,
    rng: u64,
}

/// How many ended call IDs [`ClientSession`] remembers.
const FINISHED_KEPT: usize = 32;

impl ClientSession {
    pub fn new(cfg: Config) -> Self {
        let rng = cfg.seed | 1;
        Self {
            cfg,
            link: link::Link::SignedOut,
            attempt: 0,
            pending_sign_in: None,
            user: None,
            connection: ConnectionState::SignedOut,
            call: None,
            held: None,
            kept: resume::Kept::default(),
            server_offset_ms: 0,
            finished: VecDeque::new(),
            ice: (Vec::new(), None),
            out: VecDeque::new(),
            rng,
        }
    }

    /// The next thing to do, or `None` until the next input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`ClientSession::handle_timeout`] must run next (keepalive, connect or login timeout,
    /// backoff), or `None` when nothing is timed.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match (self.link.deadline(self.in_call()), self.resume_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connection: self.connection.clone(),
            user: self.user.clone(),
            call: self.call.clone(),
        }
    }

    /// The signed-in user (kept while reconnecting).
    pub fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// The latest ICE servers the signaling server issued (empty when it has none or when
    /// signed out), for a media engine starting a call.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice.0
    }

    /// When the TURN credentials in [`ClientSession::ice_servers`] expire, unix seconds.
    pub fn ice_servers_expire_at(&self) -> Option<u64> {
        self.ice.1
    }

    /// Is a login accepted on the current connection (may call commands be sent)?
    pub fn is_online(&self) -> bool {
        matches!(self.link, link::Link::Online { .. })
    }

    /// A command from the UI; exactly one [`Output::Reply`] with `id` follows, now or later.
    pub fn handle_command(&mut self, now: Millis, id: CommandId, cmd: Command) {
        match cmd {
            Command::SignIn => self.sign_in(now, id),
            Command::SignOut => {
                self.sign_out(now);
                self.reply(id, Ok(Reply::Done));
            }
            other => self.call_command(now, id, other),
        }
    }

    /// A text frame from the server. An undecodable one is returned (for the driver's log) and
    /// otherwise ignored: a newer server may send what this client does not know yet.
    pub fn handle_text(
        &mut self,
        now: Millis,
        text: &str,
    ) -> Result<(), tincan_proto::DecodeError> {
        let msg = ServerMessage::decode(text)?;
        self.handle_frame(now, msg);
        Ok(())
    }

    /// A decoded frame from the server.
    pub fn handle_frame(&mut self, now: Millis, msg: ServerMessage) {
        match &self.link {
            link::Link::LoggingIn { .. } => self.on_login_answer(now, msg),
            link::Link::Online { .. } => {
                self.link.heard(now);
                self.on_server(now, msg)
            }
            // A frame from a connection this machine already gave up: stale.
            _ => {}
        }
    }

    /// The connection closed (or could not be opened). `close` is the server's reason when its close
    /// frame said one (see [`close_reason`]); `detail` is for the user-facing message.
    pub fn handle_disconnected(&mut self, now: Millis, close: Option<CloseReason>, detail: &str) {
        self.on_disconnected(now, close, detail);
    }

    // ---- plumbing shared by `link` and `call` ----

    fn emit(&mut self, ev: AppEvent) {
        self.out.push_back(Output::Event(ev));
    }

    fn send(&mut self, frame: ClientMessage) {
        self.out.push_back(Output::Send(frame));
    }

    fn reply(&mut self, id: CommandId, result: Result<Reply, IpcError>) {
        self.out.push_back(Output::Reply { id, result });
    }

    /// Keeps a new ICE server list and tells the UI, when it differs from the kept one.
    fn set_ice_servers(&mut self, ice_servers: Vec<IceServer>, expires_at: Option<u64>) {
        if self.ice.0 == ice_servers && self.ice.1 == expires_at {
            return;
        }
        self.ice = (ice_servers.clone(), expires_at);
        self.emit(AppEvent::IceServers {
            ice_servers,
            expires_at,
        });
    }

    fn set_connection(&mut self, state: ConnectionState) {
        self.connection = state.clone();
        self.emit(AppEvent::Connection { state });
    }

    fn set_call(&mut self, call: CallView) {
        if call.phase == crate::CallPhase::Ended && !self.finished.contains(&call.call_id) {
            if self.finished.len() == FINISHED_KEPT {
                self.finished.pop_front();
            }
            self.finished.push_back(call.call_id.clone());
        }
        self.call = Some(call.clone());
        self.emit(AppEvent::Call { call: Some(call) });
    }

    /// Is a call live here (ringing or connected)? Keepalive is faster then.
    fn in_call(&self) -> bool {
        crate::call_view::is_live(&self.call)
    }

    /// Did a call with this ID end here (recently)?
    fn finished(&self, call_id: &CallId) -> bool {
        self.finished.contains(call_id)
    }

    /// `0.0..1.0`, for jitter (xorshift64*).
    fn random_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}
