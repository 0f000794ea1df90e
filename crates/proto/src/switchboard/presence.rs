//! Who is signed in where: sign-in (with replaced and kicked sessions, the device cap and the
//! calls that start ringing on a new device), sign-out and disconnects, who is busy, and the
//! hand-over of missed calls at sign-in (kept in `missed`).

use super::{Action, LoginError, SessionId, Switchboard};
use crate::call::{CallEvent, Party, Phase};
use crate::ids::{CallId, DeviceId, UserId};
use crate::message::{CloseReason, EndReason, ServerMessage};

/// How a session leaves the switchboard; it decides what the leaver itself is told about its
/// live calls. The other party hears `connection_lost` (by the leaver) in every case: why the
/// peer left is not its business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The connection is gone: nothing can be told to it.
    Dropped,
    /// `logout`: each live call ends for it with `logged_out`.
    LoggedOut,
    /// Signed out by the same user signing in elsewhere (`--single-session`): `kicked_offline`.
    Kicked,
    /// Replaced by the same device signing in again: `replaced`.
    Replaced,
}

impl Leave {
    /// The `call_ended` reason the leaver hears, when it can hear one.
    pub fn end_reason(self) -> Option<EndReason> {
        match self {
            Leave::Dropped => None,
            Leave::LoggedOut => Some(EndReason::LoggedOut),
            Leave::Kicked => Some(EndReason::KickedOffline),
            Leave::Replaced => Some(EndReason::Replaced),
        }
    }

    fn close_reason(self) -> Option<CloseReason> {
        match self {
            Leave::Kicked => Some(CloseReason::KickedOffline),
            Leave::Replaced => Some(CloseReason::Replaced),
            Leave::Dropped | Leave::LoggedOut => None,
        }
    }
}

impl Switchboard {
    /// Is `user` in a connected call, or already being rung by someone?
    pub(super) fn is_busy(&self, user: &UserId) -> bool {
        // A user whose claim waits for its peer (`resume`) believes it is in a call.
        self.has_claim(user)
            || self.calls_of_user.get(user).is_some_and(|ids| {
                ids.iter().filter_map(|id| self.calls.get(id)).any(|c| {
                    c.phase() == Phase::Connected
                        || (c.phase() == Phase::Ringing && c.callee() == user)
                })
            })
    }

    pub(super) fn in_connected_call(&self, user: &UserId) -> bool {
        self.calls_of_user.get(user).is_some_and(|ids| {
            ids.iter()
                .filter_map(|id| self.calls.get(id))
                .any(|c| c.phase() == Phase::Connected)
        })
    }

    /// Is this device placing a call or in one?
    pub(super) fn device_busy(&self, p: &Party) -> bool {
        self.has_claim(&p.user)
            || self.calls_of_user.get(&p.user).is_some_and(|ids| {
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
            // The same device signing in again is a replacement, also with `--single-session`.
            if *device == party.device {
                kicked.push((*old, Leave::Replaced));
            } else if self.config.single_session {
                kicked.push((*old, Leave::Kicked));
            }
        }
        if existing.len() - kicked.len() >= self.config.max_devices_per_user {
            return Err(LoginError::TooManyDevices);
        }
        for (old, why) in kicked {
            // Its calls end for it first (`call_ended`, its own reason), then it is told why it
            // goes, then closed: everything it hears arrives before the close frame.
            self.leave(old, why, now_ms, out);
            if let Some(reason) = why.close_reason() {
                out.push(Action::Send(old, ServerMessage::KickedOffline { reason }));
                out.push(Action::Close(old, reason));
            }
        }
        // With `--single-session`, a call held for another device of the user (`resume`) ends
        // too: that device was signed out as surely as a kicked one.
        self.end_held_elsewhere(&party, now_ms, out);
        self.sessions.insert(sid, party.clone());
        // Room for one device: most users have one, and a default `Vec` would take four (128
        // bytes per idle user where 32 are used).
        self.devices
            .entry(party.user.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((party.device.clone(), sid));
        let ice = self.issue_ice(sid, &party.user, now_ms);
        out.push(Action::Send(
            sid,
            ServerMessage::LoginOk {
                user_id: party.user.clone(),
                device_id: party.device.clone(),
                server_time_ms: now_ms,
                heartbeat_secs: self.config.heartbeat_secs,
                max_frame_bytes: self.config.max_frame_bytes,
                max_ring_secs: self.config.max_ring_secs,
                ice_servers: ice.ice_servers,
                ice_servers_expire_at: ice.expires_at,
            },
        ));
        let calls = self.take_missed(&party.user, now_ms, out);
        if !calls.is_empty() {
            out.push(Action::Send(sid, ServerMessage::MissedCalls { calls }));
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

    /// A connection went away: its calls end or stop ringing on it ([`Switchboard::leave`] with
    /// [`Leave::Dropped`]).
    pub fn disconnect(&mut self, sid: SessionId, now_ms: u64, out: &mut Vec<Action>) {
        self.leave(sid, Leave::Dropped, now_ms, out);
    }

    /// The one way a session leaves (dropped, logged out, kicked, replaced): every path out goes
    /// through here, so every call ends exactly once for each party, leavers included.
    ///
    /// For each live call of the leaver:
    /// - a ring on the leaver's device is *handed over* when the user is signing in again right
    ///   now (`Kicked`, `Replaced`): it stops ringing here without ending, and `login` rings the
    ///   new session next; otherwise the device stops ringing, and the call ends
    ///   (`connection_lost` to the caller) when it was the last one;
    /// - a call the leaver placed or answered ends; the other party hears `connection_lost`
    ///   with `by` the leaver;
    /// - the leaver itself, unless its connection is gone, hears `call_ended` with its own
    ///   reason ([`Leave::end_reason`]), `by` itself, once per call.
    ///
    /// (Call resume hooks in here: a connected call whose party drops or is replaced can be held
    /// instead of ended.)
    pub fn leave(&mut self, sid: SessionId, why: Leave, now_ms: u64, out: &mut Vec<Action>) {
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
        let handover = matches!(why, Leave::Kicked | Leave::Replaced);
        for id in ids {
            // A connected call whose party dropped (or was replaced by the same device) is held
            // for the grace period instead (`resume`).
            if self.hold_on_leave(&id, &party, why, now_ms, out) {
                continue;
            }
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            if !call.has_party(&party) {
                continue;
            }
            let connected_at = call.connected_at_ms();
            let rings_here = call.phase() == Phase::Ringing && *call.callee() == party.user;
            if rings_here && handover && now_ms < call.ring_deadline_ms() {
                call.stop_ringing_on(&party.device);
            } else {
                let _ = self.apply(
                    &id,
                    CallEvent::Disconnect {
                        party: party.clone(),
                    },
                    now_ms,
                    out,
                );
            }
            if let Some(reason) = why.end_reason() {
                out.push(Action::Send(
                    sid,
                    ServerMessage::CallEnded {
                        call_id: id,
                        reason,
                        by: Some(party.user.clone()),
                        duration_ms: connected_at.map(|c| now_ms.saturating_sub(c)),
                    },
                ));
            }
        }
        // A claim waiting for its peer (`resume`) goes with its session.
        self.leave_claim(sid, &party, why, now_ms, out);
    }

    /// The client said goodbye: its calls end (for it with `logged_out`), then `logged_out`
    /// and the close.
    pub fn logout(&mut self, sid: SessionId, now_ms: u64, out: &mut Vec<Action>) {
        self.leave(sid, Leave::LoggedOut, now_ms, out);
        out.push(Action::Send(sid, ServerMessage::LoggedOut));
        out.push(Action::Close(sid, CloseReason::LoggedOut));
    }
}
