//! A live call's life: ring timeouts, events applied to the call state machine, what each party
//! and device is told when a call connects or ends, and forgetting ended calls.

use super::{call_error_code, Action, SessionId, Switchboard};
use crate::call::{Call, CallError, CallEvent, Outcome, Party, Phase};
use crate::ids::{CallId, UserId};
use crate::message::{EndReason, ServerMessage};

impl Switchboard {
    /// Ends ringing calls whose time is up (and runs the other deadlines: resume, ICE refresh).
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while let Some((deadline, id)) = self.deadlines.first().cloned() {
            if deadline > now_ms {
                break;
            }
            self.deadlines.pop_first();
            let _ = self.apply(&id, CallEvent::Tick, now_ms, out);
        }
        self.tick_resume(now_ms, out);
        self.tick_ice(now_ms, out);
    }

    pub(super) fn event(
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
    pub(super) fn apply(
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
                self.note_answered(&call);
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
                if call.connected_at_ms().is_none() {
                    self.note_unanswered(&call, end.at_ms);
                }
                self.forget(&call);
            }
        }
        Ok(())
    }

    pub(super) fn end_other_ringing_calls(
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
        self.resume_forget(call);
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
}
