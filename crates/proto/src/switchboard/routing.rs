//! Frames from signed-in sessions, routed to the rule they concern; placing a call.

use super::{call_error_code, Action, SessionId, Switchboard};
use crate::call::{Call, CallEvent, Party, Phase};
use crate::ids::{CallId, DeviceId, UserId};
use crate::message::{CallType, ClientMessage, EndReason, ErrorCode, ServerMessage};

impl Switchboard {
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
                if offered && (self.in_connected_call(&me.user) || self.has_claim(&me.user)) {
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
                if !self.hangup_claim(sid, &me, &call_id, now_ms, out) {
                    self.event(sid, &call_id, CallEvent::Hangup { by: me }, now_ms, out)
                }
            }
            ClientMessage::Signal { call_id, signal } => self.relay(sid, &me, call_id, signal, out),
            ClientMessage::ResumeCall {
                call_id,
                peer,
                connected_at_ms,
            } => self.resume_call(sid, &me, call_id, peer, connected_at_ms, now_ms, out),
            ClientMessage::Block { user_id } => self.block(sid, &me.user, user_id, out),
            ClientMessage::Unblock { user_id } => self.unblock(sid, &me.user, user_id, out),
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
        // A call ID held by a claim after a restart is taken too (`resume`).
        if self.calls.contains_key(&call_id) || self.id_claimed(&call_id) {
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
        // The limits come before anything about the callee is looked at, so their answer says
        // nothing about the callee (see `abuse`).
        if !self.admit_invite(sid, &me.user, &callee, &call_id, now_ms, out) {
            return;
        }
        let ended = |reason, by: Option<UserId>| ServerMessage::CallEnded {
            call_id: call_id.clone(),
            reason,
            by,
            duration_ms: None,
        };
        // A blocked caller is told exactly what it would be told if the callee were signed in
        // nowhere; the callee is not rung and keeps no missed call.
        if self.is_blocked(&callee, &me.user) {
            out.push(Action::Send(sid, ended(EndReason::Offline, Some(callee))));
            return;
        }
        // Glare: the callee's own call to this user is ringing. The later invite (this one) is
        // declined as `line_busy`, and the earlier call keeps ringing on this user's devices,
        // where it can be accepted: one call between the two, never two crossed ones.
        if self.calls_of_user.get(&me.user).is_some_and(|ids| {
            ids.iter().filter_map(|id| self.calls.get(id)).any(|c| {
                c.phase() == Phase::Ringing && c.caller().user == callee && *c.callee() == me.user
            })
        }) {
            out.push(Action::Send(sid, ended(EndReason::LineBusy, Some(callee))));
            return;
        }
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
            // TRTCCalling 0.x reads 0 as "ring forever". It rang for the server's maximum once,
            // which let a caller hold a callee's line; now it is the default ring.
            None | Some(0) => self.config.default_ring_secs,
            Some(s) => s,
        }
        .min(self.config.max_ring_secs);
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
            self.remember_missed(&callee, &call, out);
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
}
