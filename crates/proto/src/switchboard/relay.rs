//! Media negotiation (`signal`) between the parties of a call: checked, counted, relayed.

use super::{call_error_code, Action, SessionId, Switchboard};
use crate::call::Party;
use crate::ids::{CallId, UserId};
use crate::message::{ErrorCode, MediaSignal, ServerMessage};
use crate::sdp::Checked;

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
        let checked = Checked::new(&signal, &self.config.sdp);
        self.checked_targets(sid, &call_id, checked, out, &mut targets);
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
    ///
    /// `checked` is the stateless half of the SDP check ([`Checked::new`]), which the caller ran
    /// before taking whatever lock guards this switchboard, so the lock is not held for it; it
    /// is consulted exactly where the typed path checks, so the answers are the same. A check
    /// made with other limits than this switchboard's is made again.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_signal(
        &mut self,
        sid: SessionId,
        from: &UserId,
        call_id: &CallId,
        signal: &MediaSignal,
        checked: Checked,
        out: &mut Vec<Action>,
        targets: &mut Vec<SessionId>,
    ) {
        let Some(me) = self.sessions.get(&sid) else {
            Self::error(sid, ErrorCode::NotLoggedIn, "sign in first", None, out);
            return;
        };
        if me.user != *from {
            let me = me.clone();
            self.relay(sid, &me, call_id.clone(), signal.clone(), out);
            return;
        }
        let checked = if *checked.limits() == self.config.sdp {
            checked
        } else {
            Checked::new(signal, &self.config.sdp)
        };
        self.checked_targets(sid, call_id, checked, out, targets);
    }

    /// The sessions a signal from session `sid` (signed in) goes to, after the call rules, the
    /// SDP check and the budget; or the error for the sender in `out`. Nothing is cloned or
    /// allocated on the way (this runs under the server's lock for every relayed frame).
    fn checked_targets(
        &mut self,
        sid: SessionId,
        call_id: &CallId,
        checked: Checked,
        out: &mut Vec<Action>,
        targets: &mut Vec<SessionId>,
    ) {
        let Some(me) = self.sessions.get(&sid) else {
            Self::error(sid, ErrorCode::NotLoggedIn, "sign in first", None, out);
            return;
        };
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
        let devices = &self.devices;
        let first = targets.len();
        let found = call.each_signal_target(me, |user, device| {
            let session = devices
                .get(user)
                .and_then(|ds| ds.iter().find(|(d, _)| d == device))
                .map(|(_, s)| *s);
            targets.extend(session);
        });
        if let Err(e) = found {
            Self::error(sid, call_error_code(&e), e.to_string(), Some(call_id), out);
            return;
        }
        // Checked before relaying: a bad offer, answer or candidate never reaches the peer's
        // engine, and the sender is told why.
        let sender = usize::from(call.caller() != me);
        let budget = match self.budgets.get_mut(call_id) {
            Some(b) => b,
            None => self.budgets.entry(call_id.clone()).or_default(),
        };
        if let Err(e) = budget[sender].admit_checked(checked) {
            targets.truncate(first);
            Self::error(
                sid,
                ErrorCode::SdpRejected,
                format!("{e} ({}); nothing was relayed", e.code()),
                Some(call_id),
                out,
            );
        }
    }
}
