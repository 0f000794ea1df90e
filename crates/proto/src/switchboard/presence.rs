//! Who is signed in where: sign-in (with replaced and kicked sessions, the device cap and the
//! calls that start ringing on a new device), sign-out and disconnects, who is busy, and the
//! missed calls kept for users who are signed in nowhere.

use super::{Action, LoginError, SessionId, Switchboard};
use crate::call::{Call, CallEvent, Party, Phase};
use crate::ids::{CallId, DeviceId, UserId};
use crate::message::{CloseReason, MissedCall, ServerMessage};

impl Switchboard {
    /// Is `user` in a connected call, or already being rung by someone?
    pub(super) fn is_busy(&self, user: &UserId) -> bool {
        self.calls_of_user.get(user).is_some_and(|ids| {
            ids.iter().filter_map(|id| self.calls.get(id)).any(|c| {
                c.phase() == Phase::Connected || (c.phase() == Phase::Ringing && c.callee() == user)
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

    pub(super) fn remember_missed(&mut self, user: &UserId, call: &Call) {
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
}
