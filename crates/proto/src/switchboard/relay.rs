//! Media negotiation (`signal`) between the parties of a call: checked, counted, relayed.

use super::{call_error_code, Action, SessionId, Switchboard};
use crate::call::Party;
use crate::ids::CallId;
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
        match call.signal_targets(me) {
            Ok(targets) => {
                // Checked before relaying: a bad offer, answer or candidate never reaches
                // the peer's engine, and the sender is told why.
                let sender = usize::from(call.caller() != me);
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
            Err(e) => Self::error(sid, call_error_code(&e), e.to_string(), Some(&call_id), out),
        }
    }
}
