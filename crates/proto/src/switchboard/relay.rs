//! Media negotiation (`signal`) between the parties of a call: checked, counted, relayed.

use super::{call_error_code, Action, SessionId, Switchboard};
use crate::call::Party;
use crate::ids::{CallId, UserId};
use crate::message::{ErrorCode, MediaSignal, ServerMessage};

impl Switchboard {
    /// Media negotiation between the parties of a call, relayed only once it passes the SDP
    /// check (`crate::sdp`) and the sender's candidate budget for the call.
    pub(super) fn relay(
        &mut self,
        sid: SessionId,
        me: &Party,
        call_id: CallId,
        signal: MediaSignal,
        out: &mut Vec<Action>,
    ) {
        let mut targets = Vec::new();
        self.checked_targets(sid, me, &call_id, &signal, out, &mut targets);
        for t in targets {
            out.push(Action::Send(
                t,
                ServerMessage::Signal {
                    call_id: call_id.clone(),
                    from: me.user.clone(),
                    signal: signal.clone(),
                },
            ));
        }
    }

    /// The relay's fast path (`crate::wire`): the same rules and checks as a `signal` given to
    /// [`Switchboard::handle`], but instead of a `signal` frame per target it pushes the target
    /// sessions onto `targets`, for the caller to send the one frame it built before (from
    /// `from`, the sender's user ID as it signed in). Errors go to `out` as usual. If `from` is not
    /// the sender's user (a caller's bug), the typed frames are sent instead, so a frame never
    /// names the wrong sender.
    pub fn forward_signal(
        &mut self,
        sid: SessionId,
        from: &UserId,
        call_id: &CallId,
        signal: &MediaSignal,
        out: &mut Vec<Action>,
        targets: &mut Vec<SessionId>,
    ) {
        let Some(me) = self.sessions.get(&sid).cloned() else {
            Self::error(sid, ErrorCode::NotLoggedIn, "sign in first", None, out);
            return;
        };
        if me.user != *from {
            self.relay(sid, &me, call_id.clone(), signal.clone(), out);
            return;
        }
        self.checked_targets(sid, &me, call_id, signal, out, targets);
    }

    /// The sessions a signal goes to, after the call rules, the SDP check and the budget; or the
    /// error for the sender in `out`.
    fn checked_targets(
        &mut self,
        sid: SessionId,
        me: &Party,
        call_id: &CallId,
        signal: &MediaSignal,
        out: &mut Vec<Action>,
        targets: &mut Vec<SessionId>,
    ) {
        if self.signal_refused(sid, me, call_id, out) {
            return;
        }
        let Some(call) = self.calls.get(call_id) else {
            Self::error(
                sid,
                ErrorCode::UnknownCall,
                "no such call",
                Some(call_id),
                out,
            );
            return;
        };
        match call.signal_targets(me) {
            Ok(parties) => {
                // Checked before relaying: a bad offer, answer or candidate never reaches
                // the peer's engine, and the sender is told why.
                let sender = usize::from(call.caller() != me);
                let budget = &mut self.budgets.entry(call_id.clone()).or_default()[sender];
                if let Err(e) = budget.admit(signal, &self.config.sdp) {
                    Self::error(
                        sid,
                        ErrorCode::SdpRejected,
                        format!("{e} ({}); nothing was relayed", e.code()),
                        Some(call_id),
                        out,
                    );
                    return;
                }
                targets.extend(parties.iter().filter_map(|p| self.session_of(p)));
            }
            Err(e) => Self::error(sid, call_error_code(&e), e.to_string(), Some(call_id), out),
        }
    }
}
