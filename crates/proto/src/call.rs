//! The lifecycle of one call, as a pure state machine.
//!
//! No I/O and no clock: the time comes in with every event (`now_ms`), so the server can police the
//! protocol with it and tests can drive it exactly. A call starts `Ringing` on every device the callee
//! is signed in on, becomes `Connected` when one of them accepts, and ends in exactly one terminal
//! [`CallEnd`], which never changes afterwards.

use crate::ids::{CallId, DeviceId, UserId};
use crate::message::{CallType, EndReason};
use thiserror::Error;

/// One end of a call: a user on one device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Party {
    pub user: UserId,
    pub device: DeviceId,
}

impl Party {
    pub fn new(user: UserId, device: DeviceId) -> Self {
        Self { user, device }
    }
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ringing,
    Connected,
    Ended,
}

/// How a call ended. `reason` is the caller's view; see [`Call::reason_for`] for each party's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub reason: EndReason,
    /// The user whose action ended it, when one did.
    pub by: Option<UserId>,
    pub at_ms: u64,
    /// How long the call was connected, when it was.
    pub duration_ms: Option<u64>,
}

/// Something that happens to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    Accept {
        by: Party,
    },
    Reject {
        by: Party,
        busy: bool,
    },
    Cancel {
        by: Party,
    },
    Hangup {
        by: Party,
    },
    /// A party's connection went away.
    Disconnect {
        party: Party,
    },
    /// Time passed (ends a ringing call at its deadline).
    Tick,
}

impl CallEvent {
    fn party(&self) -> Option<&Party> {
        match self {
            CallEvent::Accept { by }
            | CallEvent::Reject { by, .. }
            | CallEvent::Cancel { by }
            | CallEvent::Hangup { by } => Some(by),
            CallEvent::Disconnect { party } => Some(party),
            CallEvent::Tick => None,
        }
    }
}

/// What an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing anyone needs to hear about (e.g. one of several ringing devices went away).
    Quiet,
    /// The call connected. `others` are the callee's devices that were ringing and must stop.
    Connected { others: Vec<DeviceId> },
    /// The call ended. `callee_devices` are the callee's devices that must be told.
    Ended { callee_devices: Vec<DeviceId> },
}

/// Why an event was refused. A refused event never changes the call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("a user cannot call themselves")]
    CallSelf,
    #[error("not a party of this call")]
    NotAParty,
    #[error("the call has already ended")]
    Ended,
    #[error("cannot {action} a call that is {phase:?}")]
    InvalidState { action: &'static str, phase: Phase },
    #[error("only the callee's accepting device may do that once the call is connected")]
    NotConnected,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    id: CallId,
    call_type: CallType,
    caller: Party,
    callee: UserId,
    /// The callee's devices still ringing.
    ringing: Vec<DeviceId>,
    answered_by: Option<DeviceId>,
    created_at_ms: u64,
    ring_deadline_ms: u64,
    connected_at_ms: Option<u64>,
    end: Option<CallEnd>,
}

impl Call {
    /// A call from `caller` to `callee`, ringing on `callee_devices` until `now_ms + ring_ms`.
    ///
    /// With no device to ring the call ends at once as [`EndReason::Offline`].
    pub fn new(
        id: CallId,
        call_type: CallType,
        caller: Party,
        callee: UserId,
        callee_devices: Vec<DeviceId>,
        ring_ms: u64,
        now_ms: u64,
    ) -> Result<Self, CallError> {
        if caller.user == callee {
            return Err(CallError::CallSelf);
        }
        let mut call = Call {
            id,
            call_type,
            caller,
            callee,
            ringing: callee_devices,
            answered_by: None,
            created_at_ms: now_ms,
            ring_deadline_ms: now_ms.saturating_add(ring_ms),
            connected_at_ms: None,
            end: None,
        };
        if call.ringing.is_empty() {
            call.finish(EndReason::Offline, None, now_ms);
        }
        Ok(call)
    }

    pub fn id(&self) -> &CallId {
        &self.id
    }
    pub fn call_type(&self) -> CallType {
        self.call_type
    }
    pub fn caller(&self) -> &Party {
        &self.caller
    }
    pub fn callee(&self) -> &UserId {
        &self.callee
    }
    /// The callee's devices still ringing.
    pub fn ringing_devices(&self) -> &[DeviceId] {
        &self.ringing
    }
    /// The callee's device that accepted, once connected.
    pub fn answered_by(&self) -> Option<Party> {
        self.answered_by
            .clone()
            .map(|d| Party::new(self.callee.clone(), d))
    }
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }
    pub fn ring_deadline_ms(&self) -> u64 {
        self.ring_deadline_ms
    }
    pub fn connected_at_ms(&self) -> Option<u64> {
        self.connected_at_ms
    }
    pub fn end(&self) -> Option<&CallEnd> {
        self.end.as_ref()
    }

    pub fn phase(&self) -> Phase {
        if self.end.is_some() {
            Phase::Ended
        } else if self.answered_by.is_some() {
            Phase::Connected
        } else {
            Phase::Ringing
        }
    }

    /// Is `user` the caller or the callee (on any device)?
    pub fn involves(&self, user: &UserId) -> bool {
        self.caller.user == *user || self.callee == *user
    }

    /// Is this device currently part of the call (the caller, a ringing device, or the answering one)?
    pub fn has_party(&self, p: &Party) -> bool {
        if *p == self.caller {
            return true;
        }
        p.user == self.callee
            && (self.answered_by.as_ref() == Some(&p.device) || self.ringing.contains(&p.device))
    }

    /// A connected call re-created after a server restart from its two parties' matching claims
    /// (`switchboard::resume`): it never rang on this server, and it has been connected since
    /// `connected_at_ms`, so durations stay those the users saw.
    pub fn resumed(
        id: CallId,
        call_type: CallType,
        caller: Party,
        callee: Party,
        connected_at_ms: u64,
    ) -> Result<Self, CallError> {
        if caller.user == callee.user {
            return Err(CallError::CallSelf);
        }
        Ok(Call {
            id,
            call_type,
            caller,
            callee: callee.user,
            ringing: Vec::new(),
            answered_by: Some(callee.device),
            created_at_ms: connected_at_ms,
            ring_deadline_ms: connected_at_ms,
            connected_at_ms: Some(connected_at_ms),
            end: None,
        })
    }

    /// Starts ringing on a device that signed in while the call rings. Returns false when the call
    /// is not ringing or the device already rings.
    pub fn add_ringing_device(&mut self, device: DeviceId) -> bool {
        if self.phase() != Phase::Ringing || self.ringing.contains(&device) {
            return false;
        }
        self.ringing.push(device);
        true
    }

    /// Stops ringing on a device without ending the call, even when it was the last one: for a ring
    /// handed over to the same user's new session (a replaced or kicked device), which
    /// [`Call::add_ringing_device`] starts ringing right after. Returns false when it was not ringing.
    pub fn stop_ringing_on(&mut self, device: &DeviceId) -> bool {
        let before = self.ringing.len();
        self.ringing.retain(|d| d != device);
        self.ringing.len() != before
    }

    /// The reason a given party is told (the caller hears `no_response` where the callee hears
    /// `timeout`).
    pub fn reason_for(&self, p: &Party) -> Option<EndReason> {
        let end = self.end.as_ref()?;
        Some(match end.reason {
            EndReason::Timeout if *p == self.caller => EndReason::NoResponse,
            r => r,
        })
    }

    /// Who may receive media signalling from `from` right now.
    ///
    /// While ringing, the caller's offer and candidates go to every ringing device (so the connection
    /// can be set up before the answer); the callee may signal only after it accepted.
    pub fn signal_targets(&self, from: &Party) -> Result<Vec<Party>, CallError> {
        let mut targets = Vec::new();
        self.each_signal_target(from, |user, device| {
            targets.push(Party::new(user.clone(), device.clone()))
        })?;
        Ok(targets)
    }

    /// [`Call::signal_targets`] without building a list: `f` gets each target's user and device
    /// (the relay's hot path, which only needs their sessions).
    pub fn each_signal_target(
        &self,
        from: &Party,
        mut f: impl FnMut(&UserId, &DeviceId),
    ) -> Result<(), CallError> {
        if !self.has_party(from) {
            return Err(CallError::NotAParty);
        }
        match self.phase() {
            Phase::Ended => return Err(CallError::Ended),
            Phase::Ringing if *from == self.caller => {
                self.ringing.iter().for_each(|d| f(&self.callee, d))
            }
            Phase::Ringing => return Err(CallError::NotConnected),
            Phase::Connected if *from == self.caller => {
                if let Some(d) = &self.answered_by {
                    f(&self.callee, d)
                }
            }
            Phase::Connected => f(&self.caller.user, &self.caller.device),
        }
        Ok(())
    }

    fn finish(&mut self, reason: EndReason, by: Option<UserId>, now_ms: u64) {
        let duration_ms = self.connected_at_ms.map(|c| now_ms.saturating_sub(c));
        self.end = Some(CallEnd {
            reason,
            by,
            at_ms: now_ms,
            duration_ms,
        });
    }

    fn end_with(&mut self, reason: EndReason, by: Option<UserId>, now_ms: u64) -> Outcome {
        let mut callee_devices = std::mem::take(&mut self.ringing);
        if let Some(d) = &self.answered_by {
            callee_devices.push(d.clone());
        }
        self.finish(reason, by, now_ms);
        Outcome::Ended { callee_devices }
    }

    /// Applies `event` at time `now_ms`. A refused event leaves the call exactly as it was.
    pub fn apply(&mut self, event: CallEvent, now_ms: u64) -> Result<Outcome, CallError> {
        if self.end.is_some() {
            return Err(CallError::Ended);
        }
        if let Some(p) = event.party() {
            if !self.has_party(p) {
                return Err(CallError::NotAParty);
            }
        }
        // The ring deadline is checked before anything else, so an accept that arrives after the
        // timeout (but before the server's timer fired) cannot connect the call.
        if self.phase() == Phase::Ringing && now_ms >= self.ring_deadline_ms {
            return Ok(self.end_with(EndReason::Timeout, None, now_ms));
        }
        let phase = self.phase();
        let is_caller = |p: &Party| *p == self.caller;
        match event {
            CallEvent::Tick => Ok(Outcome::Quiet),
            CallEvent::Accept { by } => {
                if is_caller(&by) || phase != Phase::Ringing {
                    return Err(CallError::InvalidState {
                        action: "accept",
                        phase,
                    });
                }
                let others = std::mem::take(&mut self.ringing)
                    .into_iter()
                    .filter(|d| *d != by.device)
                    .collect();
                self.answered_by = Some(by.device);
                self.connected_at_ms = Some(now_ms);
                Ok(Outcome::Connected { others })
            }
            CallEvent::Reject { by, busy } => {
                if is_caller(&by) || phase != Phase::Ringing {
                    return Err(CallError::InvalidState {
                        action: "reject",
                        phase,
                    });
                }
                let reason = if busy {
                    EndReason::LineBusy
                } else {
                    EndReason::Rejected
                };
                Ok(self.end_with(reason, Some(by.user), now_ms))
            }
            CallEvent::Cancel { by } => {
                if !is_caller(&by) || phase != Phase::Ringing {
                    return Err(CallError::InvalidState {
                        action: "cancel",
                        phase,
                    });
                }
                Ok(self.end_with(EndReason::Cancelled, Some(by.user), now_ms))
            }
            CallEvent::Hangup { by } => {
                // TRTCCalling's `hangup` cancels a ringing call (caller) or declines it (callee).
                let reason = match (phase, is_caller(&by)) {
                    (Phase::Ringing, true) => EndReason::Cancelled,
                    (Phase::Ringing, false) => EndReason::Rejected,
                    _ => EndReason::Hangup,
                };
                Ok(self.end_with(reason, Some(by.user), now_ms))
            }
            CallEvent::Disconnect { party } => {
                if phase == Phase::Ringing && !is_caller(&party) {
                    self.ringing.retain(|d| *d != party.device);
                    if self.ringing.is_empty() {
                        return Ok(self.end_with(EndReason::ConnectionLost, None, now_ms));
                    }
                    return Ok(Outcome::Quiet);
                }
                Ok(self.end_with(EndReason::ConnectionLost, Some(party.user), now_ms))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(u: &str, d: &str) -> Party {
        Party::new(UserId::new(u).unwrap(), DeviceId::new(d).unwrap())
    }
    fn dev(d: &str) -> DeviceId {
        DeviceId::new(d).unwrap()
    }
    fn call(devices: &[&str]) -> Call {
        Call::new(
            CallId::new("c1").unwrap(),
            CallType::Audio,
            p("alice", "a1"),
            UserId::new("bob").unwrap(),
            devices.iter().map(|d| dev(d)).collect(),
            30_000,
            1_000,
        )
        .unwrap()
    }

    #[test]
    fn accept_then_hangup_reports_duration() {
        let mut c = call(&["b1", "b2"]);
        let o = c
            .apply(CallEvent::Accept { by: p("bob", "b2") }, 2_000)
            .unwrap();
        assert_eq!(
            o,
            Outcome::Connected {
                others: vec![dev("b1")]
            }
        );
        assert_eq!(c.phase(), Phase::Connected);
        let o = c
            .apply(
                CallEvent::Hangup {
                    by: p("alice", "a1"),
                },
                7_500,
            )
            .unwrap();
        assert_eq!(
            o,
            Outcome::Ended {
                callee_devices: vec![dev("b2")]
            }
        );
        let end = c.end().unwrap();
        assert_eq!(end.reason, EndReason::Hangup);
        assert_eq!(end.duration_ms, Some(5_500));
    }

    #[test]
    fn double_accept_is_refused() {
        let mut c = call(&["b1", "b2"]);
        c.apply(CallEvent::Accept { by: p("bob", "b1") }, 2_000)
            .unwrap();
        // b2 stopped ringing, so it is no longer a party.
        assert_eq!(
            c.apply(CallEvent::Accept { by: p("bob", "b2") }, 2_001),
            Err(CallError::NotAParty)
        );
        assert!(matches!(
            c.apply(CallEvent::Accept { by: p("bob", "b1") }, 2_001),
            Err(CallError::InvalidState { .. })
        ));
    }

    #[test]
    fn ring_timeout_beats_a_late_accept() {
        let mut c = call(&["b1"]);
        let o = c
            .apply(CallEvent::Accept { by: p("bob", "b1") }, 31_000)
            .unwrap();
        assert!(matches!(o, Outcome::Ended { .. }));
        assert_eq!(c.reason_for(&p("alice", "a1")), Some(EndReason::NoResponse));
        assert_eq!(c.reason_for(&p("bob", "b1")), Some(EndReason::Timeout));
    }

    #[test]
    fn no_devices_means_offline() {
        let c = call(&[]);
        assert_eq!(c.end().unwrap().reason, EndReason::Offline);
    }

    #[test]
    fn strangers_change_nothing() {
        let mut c = call(&["b1"]);
        let before = c.clone();
        assert_eq!(
            c.apply(
                CallEvent::Hangup {
                    by: p("mallory", "m")
                },
                2_000
            ),
            Err(CallError::NotAParty)
        );
        assert_eq!(c, before);
    }

    #[test]
    fn callee_cannot_signal_before_accepting() {
        let c = call(&["b1", "b2"]);
        assert_eq!(
            c.signal_targets(&p("bob", "b1")),
            Err(CallError::NotConnected)
        );
        assert_eq!(c.signal_targets(&p("alice", "a1")).unwrap().len(), 2);
    }
}
