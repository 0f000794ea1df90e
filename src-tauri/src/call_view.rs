//! This window's view of its one call, as a pure state machine.
//!
//! The authoritative call state lives on the server (the switchboard runs `tincan_proto::Call`); a
//! client only sees its own side of it: what it sent and what the server told it. This reducer turns
//! those into the [`CallView`] the UI shows, with time as an input so tests are exact.

use tincan_ipc::{CallEndInfo, CallPhase, CallView, Direction};
use tincan_proto::{CallId, CallType, EndReason, ErrorCode, ServerMessage, UserId};

/// Is this call still going (not ended)?
pub fn is_live(call: &Option<CallView>) -> bool {
    matches!(call, Some(c) if c.phase != CallPhase::Ended)
}

/// A new outgoing call, just invited.
pub fn outgoing(
    call_id: CallId,
    peer: UserId,
    call_type: CallType,
    timeout_secs: u32,
    now_ms: u64,
) -> CallView {
    CallView {
        call_id,
        peer,
        direction: Direction::Outgoing,
        call_type,
        phase: CallPhase::Dialing,
        started_at_ms: now_ms,
        connected_at_ms: None,
        ended: None,
        timeout_secs,
        muted: false,
        remote_muted: false,
    }
}

/// A new incoming call.
pub fn incoming(
    call_id: CallId,
    caller: UserId,
    call_type: CallType,
    timeout_secs: u32,
    now_ms: u64,
) -> CallView {
    CallView {
        call_id,
        peer: caller,
        direction: Direction::Incoming,
        call_type,
        phase: CallPhase::Incoming,
        started_at_ms: now_ms,
        connected_at_ms: None,
        ended: None,
        timeout_secs,
        muted: false,
        remote_muted: false,
    }
}

/// Ends a call with a server reason or a local failure message.
pub fn end(call: &mut CallView, reason: Option<EndReason>, message: String) {
    if call.phase == CallPhase::Ended {
        return;
    }
    call.phase = CallPhase::Ended;
    call.ended = Some(CallEndInfo { reason, message });
}

/// The words for a refused request.
pub fn describe_error(code: ErrorCode, server_message: &str) -> String {
    match code {
        ErrorCode::CallSelf => "You cannot call yourself.".into(),
        ErrorCode::AlreadyInCall => "You are already in a call.".into(),
        ErrorCode::UnknownCall => "That call is already over.".into(),
        ErrorCode::RateLimited => "Too many requests; wait a moment and try again.".into(),
        ErrorCode::InvalidState => "That is not possible at this point of the call.".into(),
        _ => format!("The server refused: {server_message}"),
    }
}

/// Applies a server message about `call` (a message about another call is ignored). Returns whether
/// the view changed.
pub fn apply(call: &mut CallView, msg: &ServerMessage, now_ms: u64) -> bool {
    if call.phase == CallPhase::Ended {
        return false;
    }
    match msg {
        ServerMessage::Ringing { call_id, .. } if *call_id == call.call_id => {
            if call.phase == CallPhase::Dialing {
                call.phase = CallPhase::Ringing;
                return true;
            }
            false
        }
        ServerMessage::Accepted { call_id, .. } if *call_id == call.call_id => {
            if matches!(
                call.phase,
                CallPhase::Dialing | CallPhase::Ringing | CallPhase::Answering
            ) {
                call.phase = CallPhase::Connected;
                call.connected_at_ms = Some(now_ms);
                return true;
            }
            false
        }
        ServerMessage::CallEnded {
            call_id, reason, ..
        } if *call_id == call.call_id => {
            end(call, Some(*reason), reason.describe().to_owned());
            true
        }
        ServerMessage::Signal {
            call_id,
            signal: tincan_proto::MediaSignal::Mute { muted },
            ..
        } if *call_id == call.call_id => {
            call.remote_muted = *muted;
            true
        }
        ServerMessage::Error {
            code,
            message,
            call_id: Some(call_id),
        } if *call_id == call.call_id => {
            // A refused invite or answer ends the call here; a refused signal does not.
            if matches!(
                call.phase,
                CallPhase::Dialing | CallPhase::Answering | CallPhase::Incoming
            ) && *code != ErrorCode::RateLimited
            {
                end(call, None, describe_error(*code, message));
                return true;
            }
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CallId {
        CallId::new(s).unwrap()
    }
    fn user(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    #[test]
    fn outgoing_call_rings_then_is_declined() {
        let mut c = outgoing(id("c1"), user("bob"), CallType::Audio, 30, 1000);
        assert!(apply(
            &mut c,
            &ServerMessage::Ringing {
                call_id: id("c1"),
                devices: 1
            },
            1100
        ));
        assert_eq!(c.phase, CallPhase::Ringing);
        // A message about another call changes nothing.
        assert!(!apply(
            &mut c,
            &ServerMessage::Accepted {
                call_id: id("other"),
                by: user("bob")
            },
            1200
        ));
        assert!(apply(
            &mut c,
            &ServerMessage::CallEnded {
                call_id: id("c1"),
                reason: EndReason::Rejected,
                by: Some(user("bob")),
                duration_ms: None
            },
            1300
        ));
        assert_eq!(c.phase, CallPhase::Ended);
        assert_eq!(c.ended.as_ref().unwrap().reason, Some(EndReason::Rejected));
        // Ended is terminal.
        assert!(!apply(
            &mut c,
            &ServerMessage::Accepted {
                call_id: id("c1"),
                by: user("bob")
            },
            1400
        ));
    }

    #[test]
    fn accepted_call_connects_and_tracks_remote_mute() {
        let mut c = outgoing(id("c1"), user("bob"), CallType::Audio, 30, 0);
        apply(
            &mut c,
            &ServerMessage::Accepted {
                call_id: id("c1"),
                by: user("bob"),
            },
            500,
        );
        assert_eq!(c.phase, CallPhase::Connected);
        assert_eq!(c.connected_at_ms, Some(500));
        apply(
            &mut c,
            &ServerMessage::Signal {
                call_id: id("c1"),
                from: user("bob"),
                signal: tincan_proto::MediaSignal::Mute { muted: true },
            },
            600,
        );
        assert!(c.remote_muted);
    }

    #[test]
    fn refused_invite_fails_in_plain_words() {
        let mut c = outgoing(id("c1"), user("me"), CallType::Audio, 30, 0);
        apply(
            &mut c,
            &ServerMessage::error(ErrorCode::CallSelf, "no", Some(id("c1"))),
            1,
        );
        assert_eq!(c.phase, CallPhase::Ended);
        assert_eq!(c.ended.unwrap().message, "You cannot call yourself.");
    }
}
