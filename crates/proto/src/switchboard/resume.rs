//! Calls that survive a signaling drop (docs/PROTOCOL.md, "Resume").

use super::{Action, SessionId, Switchboard};
use crate::call::Party;
use crate::ids::{CallId, UserId};
use crate::message::ErrorCode;

impl Switchboard {
    /// `resume_call` from a signed-in device.
    pub(super) fn resume_call(
        &mut self,
        sid: SessionId,
        _me: &Party,
        call_id: CallId,
        _peer: UserId,
        _connected_at_ms: u64,
        _now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        Self::error(sid, ErrorCode::UnknownCall, "no such call", Some(&call_id), out);
    }
}
