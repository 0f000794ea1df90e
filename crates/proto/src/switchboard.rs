//! The signaling server's brain, without the server: presence, call routing and the protocol's
//! rules, as a sans-I/O state machine.
//!
//! The server feeds it what happened (a session logged in, a frame arrived, a connection dropped, time
//! passed) and carries out the [`Action`]s it returns (send this frame to that session, close that
//! one). Because it owns no sockets and reads no clock, every rule here is tested exactly, and the
//! property tests can throw random traffic at it.

use crate::call::{Call, CallError, CallEvent, Outcome, Party, Phase};
use crate::ids::{CallId, DeviceId, UserId};
use crate::message::{
    CallType, ClientMessage, CloseReason, EndReason, ErrorCode, MissedCall, ServerMessage,
    DEFAULT_RING_TIMEOUT_SECS,
};
use crate::sdp::{self, CandidateBudget};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// A connection, numbered by the server.
pub type SessionId = u64;

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(SessionId, ServerMessage),
    /// Close the connection with this reason (after sending anything queued before it).
    Close(SessionId, CloseReason),
}

/// The rules a switchboard enforces.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kick older sessions of a user when it signs in again (the seed's behaviour).
    pub single_session: bool,
    pub max_devices_per_user: usize,
    pub default_ring_secs: u32,
    pub max_ring_secs: u32,
    /// Missed calls kept per offline user.
    pub max_missed_per_user: usize,
    /// Offline users with missed calls kept at once; the oldest entry goes when full.
    pub max_missed_users: usize,
    /// Told to clients in `login_ok`.
    pub heartbeat_secs: u32,
    pub max_frame_bytes: u32,
    /// The SDP check's limits for relayed offers, answers and candidates.
    pub sdp: sdp::Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            single_session: false,
            max_devices_per_user: 8,
            default_ring_secs: DEFAULT_RING_TIMEOUT_SECS,
            max_ring_secs: 120,
            max_missed_per_user: 20,
            max_missed_users: 100_000,
            heartbeat_secs: 25,
            max_frame_bytes: 64 * 1024,
            sdp: sdp::Limits::default(),
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
    missed: HashMap<UserId, VecDeque<MissedCall>>,
    /// Insertion order of `missed`, to drop the oldest user when full.
    missed_order: VecDeque<UserId>,
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

    /// The earliest ring deadline, so the server knows when to call [`Switchboard::tick`].
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(t, _)| *t)
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

    /// Is `user` in a connected call, or already being rung by someone?
    fn is_busy(&self, user: &UserId) -> bool {
        self.calls_of_user.get(user).is_some_and(|ids| {
            ids.iter().filter_map(|id| self.calls.get(id)).any(|c| {
                c.phase() == Phase::Connected || (c.phase() == Phase::Ringing && c.callee() == user)
            })
        })
    }

    fn in_connected_call(&self, user: &UserId) -> bool {
        self.calls_of_user.get(user).is_some_and(|ids| {
            ids.iter()
                .filter_map(|id| self.calls.get(id))
                .any(|c| c.phase() == Phase::Connected)
        })
    }

    /// Is this device placing a call or in one?
    fn device_busy(&self, p: &Party) -> bool {
        self.calls_of_user.get(&p.user).is_some_and(|ids| {
            ids.iter()
                .filter_map(|id| self.calls.get(id))
                .any(|c| *c.caller() == *p || c.answered_by().as_ref() == Some(p))
        })
    }

    /// Registers a signed-in session. The server has already verified the UserSig.
    pub fn login(
        &mut self,
        sid: SessionId,
        party: Party,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), LoginError> {
        if self.sessions.contains_key(&sid) {
            return Err(LoginError::AlreadyLoggedIn);
        }
        let existing: Vec<(DeviceId, SessionId)> =
            self.devices.get(&party.user).cloned().unwrap_or_default();
        let mut kicked = Vec::new();
        for (device, old) in &existing {
            if self.config.single_session {
                kicked.push((*old, CloseReason::KickedOffline));
            } else if *device == party.device {
                kicked.push((*old, CloseReason::Replaced));
            }
        }
        if existing.len() - kicked.len() >= self.config.max_devices_per_user {
            return Err(LoginError::TooManyDevices);
        }
        for (old, reason) in kicked {
            out.push(Action::Send(old, ServerMessage::KickedOffline { reason }));
            out.push(Action::Close(old, reason));
            self.disconnect(old, now_ms, out);
        }
        self.sessions.insert(sid, party.clone());
        self.devices
            .entry(party.user.clone())
            .or_default()
            .push((party.device.clone(), sid));
        out.push(Action::Send(
            sid,
            ServerMessage::LoginOk {
                user_id: party.user.clone(),
                device_id: party.device.clone(),
                server_time_ms: now_ms,
                heartbeat_secs: self.config.heartbeat_secs,
                max_frame_bytes: self.config.max_frame_bytes,
                max_ring_secs: self.config.max_ring_secs,
            },
        ));
        if let Some(calls) = self.missed.remove(&party.user) {
            self.missed_order.retain(|u| *u != party.user);
            out.push(Action::Send(
                sid,
                ServerMessage::MissedCalls {
                    calls: calls.into(),
                },
            ));
        }
        // A device that signs in while its user is being rung starts ringing too.
        let ringing: Vec<CallId> = self
            .calls_of_user
            .get(&party.user)
            .into_iter()
            .flatten()
            .filter(|id| {
                self.calls
                    .get(*id)
                    .is_some_and(|c| c.phase() == Phase::Ringing && *c.callee() == party.user)
            })
            .cloned()
            .collect();
        for id in ringing {
            if let Some(call) = self.calls.get_mut(&id) {
                if call.add_ringing_device(party.device.clone()) {
                    let remaining = call.ring_deadline_ms().saturating_sub(now_ms);
                    out.push(Action::Send(
                        sid,
                        ServerMessage::Invited {
                            call_id: id.clone(),
                            caller: call.caller().user.clone(),
                            call_type: call.call_type(),
                            timeout_secs: remaining.div_ceil(1000) as u32,
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// A connection went away (or logged out): its calls end or stop ringing on it.
    pub fn disconnect(&mut self, sid: SessionId, now_ms: u64, out: &mut Vec<Action>) {
        let Some(party) = self.sessions.remove(&sid) else {
            return;
        };
        if let Some(devs) = self.devices.get_mut(&party.user) {
            devs.retain(|(_, s)| *s != sid);
            if devs.is_empty() {
                self.devices.remove(&party.user);
            }
        }
        let ids: Vec<CallId> = self
            .calls_of_user
            .get(&party.user)
            .cloned()
            .unwrap_or_default();
        for id in ids {
            let involved = self.calls.get(&id).is_some_and(|c| c.has_party(&party));
            if involved {
                let _ = self.apply(
                    &id,
                    CallEvent::Disconnect {
                        party: party.clone(),
                    },
                    now_ms,
                    out,
                );
            }
        }
    }

    /// The client said goodbye.
    pub fn logout(&mut self, sid: SessionId, now_ms: u64, out: &mut Vec<Action>) {
        out.push(Action::Send(sid, ServerMessage::LoggedOut));
        out.push(Action::Close(sid, CloseReason::LoggedOut));
        self.disconnect(sid, now_ms, out);
    }

    /// Ends ringing calls whose time is up.
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while let Some((deadline, id)) = self.deadlines.first().cloned() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop_first();
            let _ = self.apply(&id, CallEvent::Tick, now_ms, out);
        }
    }

    /// A frame from a signed-in session. `Login` is the server's business (it verifies the sig
    /// first) and is answered `already_logged_in` here.
    pub fn handle(
        &mut self,
        sid: SessionId,
        msg: ClientMessage,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(me) = self.sessions.get(&sid).cloned() else {
            Self::error(sid, ErrorCode::NotLoggedIn, "sign in first", None, out);
            return;
        };
        match msg {
            ClientMessage::Login { .. } => Self::error(
                sid,
                ErrorCode::AlreadyLoggedIn,
                "this connection is already signed in",
                None,
                out,
            ),
            ClientMessage::Logout => self.logout(sid, now_ms, out),
            ClientMessage::Ping { nonce } => {
                out.push(Action::Send(sid, ServerMessage::Pong { nonce }))
            }
            ClientMessage::Invite {
                call_id,
                callee,
                call_type,
                timeout_secs,
            } => self.invite(
                sid,
                me,
                call_id,
                callee,
                call_type,
                timeout_secs,
                now_ms,
                out,
            ),
            ClientMessage::Accept { call_id } => {
                let offered = self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.phase() == Phase::Ringing && c.has_party(&me));
                if offered && self.in_connected_call(&me.user) {
                    Self::error(
                        sid,
                        ErrorCode::AlreadyInCall,
                        "you are already in a call",
                        Some(&call_id),
                        out,
                    );
                    return;
                }
                self.event(sid, &call_id, CallEvent::Accept { by: me }, now_ms, out)
            }
            ClientMessage::Reject { call_id, busy } => self.event(
                sid,
                &call_id,
                CallEvent::Reject { by: me, busy },
                now_ms,
                out,
            ),
            ClientMessage::Cancel { call_id } => {
                self.event(sid, &call_id, CallEvent::Cancel { by: me }, now_ms, out)
            }
            ClientMessage::Hangup { call_id } => {
                self.event(sid, &call_id, CallEvent::Hangup { by: me }, now_ms, out)
            }
            ClientMessage::Signal { call_id, signal } => {
                let Some(call) = self.calls.get(&call_id) else {
                    Self::error(
                        sid,
                        ErrorCode::UnknownCall,
                        "no such call",
                        Some(&call_id),
                        out,
                    );
                    return;
                };
                match call.signal_targets(&me) {
                    Ok(targets) => {
                        // Checked before relaying: a bad offer, answer or candidate never reaches
                        // the peer's engine, and the sender is told why.
                        let sender = usize::from(*call.caller() != me);
                        let budget = &mut self.budgets.entry(call_id.clone()).or_default()[sender];
                        if let Err(e) = budget.admit(&signal, &self.config.sdp) {
                            Self::error(
                                sid,
                                ErrorCode::SdpRejected,
                                format!("{e} ({}); nothing was relayed", e.code()),
                                Some(&call_id),
                                out,
                            );
                            return;
                        }
                        for t in targets {
                            self.send_to(
                                &t,
                                ServerMessage::Signal {
                                    call_id: call_id.clone(),
                                    from: me.user.clone(),
                                    signal: signal.clone(),
                                },
                                out,
                            );
                        }
                    }
                    Err(e) => {
                        Self::error(sid, call_error_code(&e), e.to_string(), Some(&call_id), out)
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invite(
        &mut self,
        sid: SessionId,
        me: Party,
        call_id: CallId,
        callee: UserId,
        call_type: CallType,
        timeout_secs: Option<u32>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if callee == me.user {
            Self::error(
                sid,
                ErrorCode::CallSelf,
                "you cannot call yourself",
                Some(&call_id),
                out,
            );
            return;
        }
        if self.calls.contains_key(&call_id) {
            Self::error(
                sid,
                ErrorCode::CallIdInUse,
                "that call ID is in use",
                Some(&call_id),
                out,
            );
            return;
        }
        if self.device_busy(&me) || self.in_connected_call(&me.user) {
            Self::error(
                sid,
                ErrorCode::AlreadyInCall,
                "you are already in a call",
                Some(&call_id),
                out,
            );
            return;
        }
        let ended = |reason, by: Option<UserId>| ServerMessage::CallEnded {
            call_id: call_id.clone(),
            reason,
            by,
            duration_ms: None,
        };
        if self.is_busy(&callee) {
            out.push(Action::Send(sid, ended(EndReason::LineBusy, Some(callee))));
            return;
        }
        let devices: Vec<DeviceId> = self
            .devices
            .get(&callee)
            .map(|d| d.iter().map(|(d, _)| d.clone()).collect())
            .unwrap_or_default();
        let secs = match timeout_secs {
            None => self.config.default_ring_secs,
            // TRTCCalling 0.x reads 0 as "ring forever"; the server's maximum is as long as it gets.
            Some(0) => self.config.max_ring_secs,
            Some(s) => s.min(self.config.max_ring_secs),
        };
        let call = match Call::new(
            call_id.clone(),
            call_type,
            me.clone(),
            callee.clone(),
            devices,
            u64::from(secs) * 1000,
            now_ms,
        ) {
            Ok(c) => c,
            Err(e) => {
                Self::error(sid, call_error_code(&e), e.to_string(), Some(&call_id), out);
                return;
            }
        };
        if call.phase() == Phase::Ended {
            self.remember_missed(&callee, &call);
            out.push(Action::Send(sid, ended(EndReason::Offline, Some(callee))));
            return;
        }
        for d in call.ringing_devices() {
            self.send_to(
                &Party::new(callee.clone(), d.clone()),
                ServerMessage::Invited {
                    call_id: call_id.clone(),
                    caller: me.user.clone(),
                    call_type,
                    timeout_secs: secs,
                },
                out,
            );
        }
        out.push(Action::Send(
            sid,
            ServerMessage::Ringing {
                call_id: call_id.clone(),
                devices: call.ringing_devices().len() as u32,
            },
        ));
        self.deadlines
            .insert((call.ring_deadline_ms(), call_id.clone()));
        self.calls_of_user
            .entry(me.user)
            .or_default()
            .push(call_id.clone());
        self.calls_of_user
            .entry(callee)
            .or_default()
            .push(call_id.clone());
        self.calls.insert(call_id, call);
    }

    fn remember_missed(&mut self, user: &UserId, call: &Call) {
        if !self.missed.contains_key(user) {
            if self.missed_order.len() >= self.config.max_missed_users {
                if let Some(oldest) = self.missed_order.pop_front() {
                    self.missed.remove(&oldest);
                }
            }
            self.missed_order.push_back(user.clone());
        }
        let list = self.missed.entry(user.clone()).or_default();
        if list.len() >= self.config.max_missed_per_user {
            list.pop_front();
        }
        list.push_back(MissedCall {
            call_id: call.id().clone(),
            caller: call.caller().user.clone(),
            call_type: call.call_type(),
            at_ms: call.created_at_ms(),
        });
    }

    fn event(
        &mut self,
        sid: SessionId,
        call_id: &CallId,
        ev: CallEvent,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if let Err(e) = self.apply(call_id, ev, now_ms, out) {
            Self::error(sid, call_error_code(&e), e.to_string(), Some(call_id), out);
        }
    }

    /// Applies an event to a live call and tells everyone concerned what changed.
    fn apply(
        &mut self,
        call_id: &CallId,
        ev: CallEvent,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), CallError> {
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(CallError::Ended);
        };
        let actor = match &ev {
            CallEvent::Reject { by, .. } | CallEvent::Hangup { by } => Some(by.device.clone()),
            _ => None,
        };
        let outcome = call.apply(ev, now_ms)?;
        let call = call.clone();
        match outcome {
            Outcome::Quiet => {}
            Outcome::Connected { others } => {
                let callee = call.callee().clone();
                let accepted = ServerMessage::Accepted {
                    call_id: call_id.clone(),
                    by: callee.clone(),
                };
                self.send_to(call.caller(), accepted.clone(), out);
                if let Some(answerer) = call.answered_by() {
                    self.send_to(&answerer, accepted, out);
                }
                for d in others {
                    self.send_to(
                        &Party::new(callee.clone(), d),
                        ServerMessage::CallEnded {
                            call_id: call_id.clone(),
                            reason: EndReason::AnsweredElsewhere,
                            by: Some(callee.clone()),
                            duration_ms: None,
                        },
                        out,
                    );
                }
                self.deadlines
                    .remove(&(call.ring_deadline_ms(), call_id.clone()));
                self.calls.insert(call_id.clone(), call.clone());
                // A user is in one call at a time: everything else they had ringing ends now.
                for user in [call.caller().user.clone(), callee] {
                    self.end_other_ringing_calls(&user, call_id, now_ms, out);
                }
            }
            Outcome::Ended { callee_devices } => {
                let Some(end) = call.end() else {
                    return Ok(());
                };
                let caller = call.caller().clone();
                let message = |reason| ServerMessage::CallEnded {
                    call_id: call_id.clone(),
                    reason,
                    by: end.by.clone(),
                    duration_ms: end.duration_ms,
                };
                if let Some(r) = call.reason_for(&caller) {
                    self.send_to(&caller, message(r), out);
                }
                for d in callee_devices {
                    let p = Party::new(call.callee().clone(), d);
                    let mut reason = call.reason_for(&p).unwrap_or(end.reason);
                    if matches!(reason, EndReason::Rejected | EndReason::LineBusy)
                        && actor.as_ref().is_some_and(|a| *a != p.device)
                    {
                        reason = EndReason::DeclinedElsewhere;
                    }
                    self.send_to(&p, message(reason), out);
                }
                self.forget(&call);
            }
        }
        Ok(())
    }

    fn end_other_ringing_calls(
        &mut self,
        user: &UserId,
        keep: &CallId,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let others: Vec<CallId> = self
            .calls_of_user
            .get(user)
            .into_iter()
            .flatten()
            .filter(|id| *id != keep)
            .cloned()
            .collect();
        for id in others {
            let Some(call) = self.calls.get(&id) else {
                continue;
            };
            if call.phase() != Phase::Ringing {
                continue;
            }
            let ev = if call.caller().user == *user {
                CallEvent::Cancel {
                    by: call.caller().clone(),
                }
            } else {
                match call.ringing_devices().first() {
                    Some(d) => CallEvent::Reject {
                        by: Party::new(user.clone(), d.clone()),
                        busy: true,
                    },
                    None => continue,
                }
            };
            let _ = self.apply(&id, ev, now_ms, out);
        }
    }

    fn forget(&mut self, call: &Call) {
        let id = call.id();
        self.calls.remove(id);
        self.budgets.remove(id);
        self.deadlines
            .remove(&(call.ring_deadline_ms(), id.clone()));
        for user in [&call.caller().user, call.callee()] {
            if let Some(ids) = self.calls_of_user.get_mut(user) {
                ids.retain(|c| c != id);
                if ids.is_empty() {
                    self.calls_of_user.remove(user);
                }
            }
        }
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
            if self.session_of(call.caller()).is_none() {
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
                if self.session_of(&a).is_none() {
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
        Ok(())
    }
}
