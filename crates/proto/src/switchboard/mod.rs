//! The signaling server's brain, without the server: presence, call routing and the protocol's
//! rules, as a sans-I/O state machine.
//!
//! The server feeds it what happened (a session logged in, a frame arrived, a connection dropped, time
//! passed) and carries out the [`Action`]s it returns (send this frame to that session, close that
//! one). Because it owns no sockets and reads no clock, every rule here is tested exactly, and the
//! property tests can throw random traffic at it.
//!
//! Here: the types, the state and the invariants. `presence` (sign-in, sign-out, who is busy, missed
//! calls), `routing` (frames to rules, placing a call), `ring` (a call's life: timeouts, events,
//! endings), `relay` (media negotiation, checked by `crate::sdp`, then relayed), `ice` (STUN /
//! TURN servers at sign-in and fresh TURN credentials before they expire).

use crate::call::{Call, CallError, Party, Phase};
use crate::ice::IceConfig;
use crate::ids::{CallId, DeviceId, UserId};
use crate::message::{CloseReason, ErrorCode, ServerMessage, DEFAULT_RING_TIMEOUT_SECS};
use crate::sdp::{self, CandidateBudget};
use std::collections::{BTreeSet, HashMap, HashSet};

pub use missed::{MissedChange, MissedEntry};
pub use presence::Leave;

mod abuse;
mod ice;
mod missed;
mod presence;
mod relay;
mod resume;
mod ring;
mod routing;

/// A connection, numbered by the server.
pub type SessionId = u64;

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(SessionId, ServerMessage),
    /// Close the connection with this reason (after sending anything queued before it).
    Close(SessionId, CloseReason),
    /// Mirror this change of the kept missed calls in the server's store (so they survive a
    /// restart); a server without a store ignores it.
    Missed(MissedChange),
}

/// How long a missed call is kept by default: a week, enough for someone back from a few days
/// away to see who called, short enough that the store stays small.
pub const DEFAULT_MISSED_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// How long a connected call survives a party's signaling drop by default (`--resume-secs`).
pub const DEFAULT_RESUME_SECS: u32 = 30;

/// The rules a switchboard enforces.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kick older sessions of a user when it signs in again (the seed's behaviour).
    pub single_session: bool,
    pub max_devices_per_user: usize,
    pub default_ring_secs: u32,
    pub max_ring_secs: u32,
    /// Missed calls kept per offline user (one per caller: a caller's newer call replaces its
    /// older one); past it the oldest goes.
    pub max_missed_per_user: usize,
    /// Missed calls one caller may hold across all callees; past it the caller's own oldest
    /// goes, never another caller's.
    pub max_missed_per_caller: usize,
    /// Missed calls kept in all (the memory bound); past it the heaviest caller's oldest goes.
    pub max_missed_total: usize,
    /// A missed call older than this is dropped, never delivered.
    pub missed_ttl_ms: u64,
    /// Told to clients in `login_ok`.
    pub heartbeat_secs: u32,
    pub max_frame_bytes: u32,
    /// The SDP check's limits for relayed offers, answers and candidates.
    pub sdp: sdp::Limits,
    /// Invites one user may place in any 60 s, to anyone, on all its devices together: a caller
    /// cannot ring-bomb (over it: `too_many_invites`, nothing rings).
    pub max_invites_per_minute: u32,
    /// Invites one caller may send one callee in any `pair_window_secs`.
    pub max_pair_invites: u32,
    pub pair_window_secs: u32,
    /// After a ring from A to B ends unanswered, A may ring B again only once as long as it rang
    /// has passed, and at least this long: A cannot keep B's line busy to everyone else by
    /// re-inviting the moment a ring ends. 0 turns the cooldown off.
    pub min_recall_secs: u32,
    /// Users one user may block.
    pub max_blocked_per_user: usize,
    /// How long a connected call is held when a party's connection drops, and how long a claim
    /// waits for the peer's after a server restart (`resume`); 0 ends such calls at once.
    pub resume_secs: u32,
    /// STUN / TURN servers told to clients in `login_ok`, with TURN credentials refreshed by an
    /// `ice_servers` frame at 3/4 of their TTL (`ice`). Empty by default: nothing is sent.
    pub ice: IceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            single_session: false,
            max_devices_per_user: 8,
            default_ring_secs: DEFAULT_RING_TIMEOUT_SECS,
            max_ring_secs: 120,
            max_missed_per_user: 20,
            max_missed_per_caller: 50,
            max_missed_total: 200_000,
            missed_ttl_ms: DEFAULT_MISSED_TTL_MS,
            heartbeat_secs: 25,
            max_frame_bytes: 64 * 1024,
            sdp: sdp::Limits::default(),
            max_invites_per_minute: 20,
            max_pair_invites: 10,
            pair_window_secs: 300,
            min_recall_secs: 5,
            max_blocked_per_user: 1000,
            resume_secs: DEFAULT_RESUME_SECS,
            ice: IceConfig::default(),
        }
    }
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("this connection is already signed in")]
    AlreadyLoggedIn,
    #[error("signed in on too many devices")]
    TooManyDevices,
}

impl LoginError {
    pub fn code(self) -> ErrorCode {
        match self {
            LoginError::AlreadyLoggedIn => ErrorCode::AlreadyLoggedIn,
            LoginError::TooManyDevices => ErrorCode::TooManyDevices,
        }
    }
}

fn call_error_code(e: &CallError) -> ErrorCode {
    match e {
        CallError::CallSelf => ErrorCode::CallSelf,
        CallError::NotAParty => ErrorCode::NotCallParty,
        CallError::Ended => ErrorCode::UnknownCall,
        CallError::InvalidState { .. } => ErrorCode::InvalidState,
        CallError::NotConnected => ErrorCode::NotConnected,
    }
}

/// Presence and calls.
#[derive(Debug, Default)]
pub struct Switchboard {
    config: Config,
    sessions: HashMap<SessionId, Party>,
    /// Each user's signed-in devices.
    devices: HashMap<UserId, Vec<(DeviceId, SessionId)>>,
    calls: HashMap<CallId, Call>,
    /// Each live call's candidate budgets, the caller's and the callee's (the per-call cap).
    budgets: HashMap<CallId, [CandidateBudget; 2]>,
    /// The live calls each user is in (as caller or callee, ringing or connected).
    calls_of_user: HashMap<UserId, Vec<CallId>>,
    deadlines: BTreeSet<(u64, CallId)>,
    /// Missed calls for users signed in nowhere, with their quotas (see `missed`).
    missed: missed::MissedBook,
    /// Each caller's recent invites, for the abuse limits (`abuse`).
    invite_log: HashMap<UserId, abuse::CallerLog>,
    /// When `invite_log` was last swept of callers with nothing recent.
    last_sweep_ms: u64,
    /// Each user's block list: the callers whose invites do not ring them.
    blocks: HashMap<UserId, HashSet<UserId>>,
    /// Held calls, claims after a restart and remembered endings (`resume`).
    resume: resume::Resume,
    /// When each signed-in session is due fresh TURN credentials (`ice`); empty unless TURN is
    /// configured.
    ice_refresh: BTreeSet<(u64, SessionId)>,
}

impl Switchboard {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Signed-in sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Live (ringing or connected) calls.
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.values()
    }

    /// Who a session is signed in as.
    pub fn party(&self, sid: SessionId) -> Option<&Party> {
        self.sessions.get(&sid)
    }

    /// The earliest deadline (a ring timeout, a resume timer, an ICE refresh), so the server
    /// knows when to call [`Switchboard::tick`].
    pub fn next_deadline(&self) -> Option<u64> {
        let ring = self.deadlines.first().map(|(t, _)| *t);
        let ice = self.ice_refresh.first().map(|(t, _)| *t);
        [ring, self.next_resume_deadline(), ice]
            .into_iter()
            .flatten()
            .min()
    }

    fn session_of(&self, p: &Party) -> Option<SessionId> {
        self.devices
            .get(&p.user)?
            .iter()
            .find(|(d, _)| *d == p.device)
            .map(|(_, s)| *s)
    }

    fn send_to(&self, p: &Party, msg: ServerMessage, out: &mut Vec<Action>) {
        if let Some(sid) = self.session_of(p) {
            out.push(Action::Send(sid, msg));
        }
    }

    fn error(
        sid: SessionId,
        code: ErrorCode,
        msg: impl Into<String>,
        call: Option<&CallId>,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Send(
            sid,
            ServerMessage::error(code, msg, call.cloned()),
        ));
    }

    /// Checks the switchboard's invariants; used by tests (cheap enough for debug assertions).
    pub fn check_invariants(&self) -> Result<(), String> {
        if let Some(id) = self.budgets.keys().find(|id| !self.calls.contains_key(*id)) {
            return Err(format!("ended call {id} keeps its candidate budgets"));
        }
        for call in self.calls.values() {
            if call.phase() == Phase::Ended {
                return Err(format!("ended call {} is still live", call.id()));
            }
            if self.session_of(call.caller()).is_none() && !self.is_absent(call.id(), call.caller())
            {
                return Err(format!(
                    "call {} survives its caller's disconnect",
                    call.id()
                ));
            }
            for d in call.ringing_devices() {
                if self
                    .session_of(&Party::new(call.callee().clone(), d.clone()))
                    .is_none()
                {
                    return Err(format!("call {} rings on a device that is gone", call.id()));
                }
            }
            if let Some(a) = call.answered_by() {
                if self.session_of(&a).is_none() && !self.is_absent(call.id(), &a) {
                    return Err(format!(
                        "call {} survives its callee's disconnect",
                        call.id()
                    ));
                }
            }
        }
        let mut connected: HashMap<&UserId, usize> = HashMap::new();
        for call in self
            .calls
            .values()
            .filter(|c| c.phase() == Phase::Connected)
        {
            *connected.entry(&call.caller().user).or_default() += 1;
            *connected.entry(call.callee()).or_default() += 1;
        }
        if let Some((u, n)) = connected.iter().find(|(_, n)| **n > 1) {
            return Err(format!("user {u} is in {n} connected calls"));
        }
        self.check_missed()?;
        self.check_resume()?;
        Ok(())
    }
}
