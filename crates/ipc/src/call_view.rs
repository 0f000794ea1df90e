//! This window's view of its one call, as a pure state machine, shared by the desktop backend
//! (src-tauri's signaling task) and the browser client (ui's WebSocket transport).
//!
//! The authoritative call state lives on the server (the switchboard runs `tincan_proto::Call`); a
//! client only sees its own side of it: what it sent and what the server told it. This reducer turns
//! those into the [`CallView`] the UI shows, with time as an input so tests are exact.

use crate::{CallEndInfo, CallPhase, CallView, Direction, IpcError};
use tincan_proto::{
    CallId, CallType, ClientMessage, EndReason, ErrorCode, MediaSignal, ServerMessage, UserId,
};

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
        reconnecting: false,
        peer_reconnecting: false,
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
        reconnecting: false,
        peer_reconnecting: false,
    }
}

/// Ends a call with a server reason or a local failure message.
pub fn end(call: &mut CallView, reason: Option<EndReason>, message: String) {
    if call.phase == CallPhase::Ended {
        return;
    }
    call.phase = CallPhase::Ended;
    call.ended = Some(CallEndInfo { reason, message });
    // Nobody is reconnecting to a call that is over.
    call.reconnecting = false;
    call.peer_reconnecting = false;
}

/// The words for a refused request.
pub fn describe_error(code: ErrorCode, server_message: &str) -> String {
    match code {
        ErrorCode::CallSelf => "You cannot call yourself.".into(),
        ErrorCode::AlreadyInCall => "You are already in a call.".into(),
        ErrorCode::UnknownCall => "That call is already over.".into(),
        ErrorCode::RateLimited => "Too many requests; wait a moment and try again.".into(),
        ErrorCode::PeerBacklogged => {
            "The other side is not keeping up; try again in a moment.".into()
        }
        ErrorCode::InvalidState => "That is not possible at this point of the call.".into(),
        _ => format!("The server refused: {server_message}"),
    }
}

/// Applies a server message about `call` (a message about another call is ignored). Returns whether
/// the view changed.
pub fn apply(call: &mut CallView, msg: &ServerMessage, now_ms: u64) -> bool {
    if call.phase == CallPhase::Ended {
        // The server's own `call_ended` for a call this side already ended locally (a hang-up)
        // still brings the duration the server measured.
        if let ServerMessage::CallEnded {
            call_id,
            reason: EndReason::Hangup,
            by,
            duration_ms: Some(d),
        } = msg
        {
            if *call_id == call.call_id {
                if let Some(info) = call.ended.as_mut() {
                    if info.reason == Some(EndReason::Hangup) {
                        info.message =
                            ended_words(&call.peer, EndReason::Hangup, by.as_ref(), Some(*d));
                        return true;
                    }
                }
            }
        }
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
            call_id,
            reason,
            by,
            duration_ms,
        } if *call_id == call.call_id => {
            end(
                call,
                Some(*reason),
                ended_words(&call.peer, *reason, by.as_ref(), *duration_ms),
            );
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
            // A refused invite or answer ends the call here; a refused signal does not (nor a
            // signal held back because the peer is backlogged: the call goes on).
            if matches!(
                call.phase,
                CallPhase::Dialing | CallPhase::Answering | CallPhase::Incoming
            ) && !matches!(code, ErrorCode::RateLimited | ErrorCode::PeerBacklogged)
            {
                end(call, None, describe_error(*code, message));
                return true;
            }
            false
        }
        _ => false,
    }
}

/// `m:ss` (or `h:mm:ss`).
pub fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// The sentence for a call that ended, with its duration when it had connected.
pub fn ended_words(
    peer: &UserId,
    reason: EndReason,
    by: Option<&UserId>,
    duration_ms: Option<u64>,
) -> String {
    let base = match (reason, by) {
        (EndReason::Hangup, Some(who)) if who == peer => format!("{peer} hung up."),
        (EndReason::Hangup, Some(_)) => "You hung up.".to_owned(),
        _ => reason.describe().to_owned(),
    };
    match duration_ms {
        Some(d) => format!("{base} The call lasted {}.", format_duration(d)),
        None => base,
    }
}

/// What a command does to the call: the frame to send and the view to show afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub frame: Option<ClientMessage>,
    pub update: Option<CallView>,
}

fn no_call() -> IpcError {
    IpcError::new(crate::ErrorCode::NoCall, "There is no such call any more.")
}

/// Accepting `call_id`: only a ringing incoming call.
pub fn accept(current: Option<&CallView>, call_id: CallId) -> Result<Step, IpcError> {
    match current {
        Some(c)
            if c.call_id == call_id
                && c.direction == Direction::Incoming
                && c.phase == CallPhase::Incoming =>
        {
            let mut c = c.clone();
            c.phase = CallPhase::Answering;
            Ok(Step {
                frame: Some(ClientMessage::Accept { call_id }),
                update: Some(c),
            })
        }
        Some(c) if c.call_id == call_id && c.phase != CallPhase::Ended => Err(IpcError::new(
            crate::ErrorCode::InvalidState,
            "Only a ringing incoming call can be accepted.",
        )),
        _ => Err(no_call()),
    }
}

/// Declining `call_id`: only a ringing incoming call.
pub fn reject(current: Option<&CallView>, call_id: CallId) -> Result<Step, IpcError> {
    match current {
        Some(c)
            if c.call_id == call_id
                && c.direction == Direction::Incoming
                && c.phase == CallPhase::Incoming =>
        {
            let mut c = c.clone();
            end(
                &mut c,
                Some(EndReason::Rejected),
                "You declined the call.".into(),
            );
            Ok(Step {
                frame: Some(ClientMessage::Reject {
                    call_id,
                    busy: false,
                }),
                update: Some(c),
            })
        }
        _ => Err(no_call()),
    }
}

/// Hanging up: cancels a ringing outgoing call, declines a ringing incoming one, leaves a
/// connected one; a no-op on a call that is already over.
pub fn hang_up(current: Option<&CallView>, call_id: CallId, now_ms: u64) -> Result<Step, IpcError> {
    match current {
        Some(c) if c.call_id == call_id && c.phase != CallPhase::Ended => {
            let mut c = c.clone();
            let (frame, reason, words) = match (c.direction, c.phase) {
                (Direction::Outgoing, CallPhase::Dialing | CallPhase::Ringing) => (
                    ClientMessage::Cancel { call_id },
                    EndReason::Cancelled,
                    "You cancelled the call.".to_owned(),
                ),
                (Direction::Incoming, CallPhase::Incoming) => (
                    ClientMessage::Reject {
                        call_id,
                        busy: false,
                    },
                    EndReason::Rejected,
                    "You declined the call.".to_owned(),
                ),
                _ => {
                    let d = c.connected_at_ms.map(|at| now_ms.saturating_sub(at));
                    let me_words = match d {
                        Some(d) => format!("You hung up. The call lasted {}.", format_duration(d)),
                        None => "You hung up.".to_owned(),
                    };
                    (
                        ClientMessage::Hangup { call_id },
                        EndReason::Hangup,
                        me_words,
                    )
                }
            };
            end(&mut c, Some(reason), words);
            Ok(Step {
                frame: Some(frame),
                update: Some(c),
            })
        }
        Some(c) if c.call_id == call_id => Ok(Step {
            frame: None,
            update: None,
        }),
        _ => Err(no_call()),
    }
}

/// Muting: the view changes at once; the peer is told once the call is connected.
pub fn set_muted(current: Option<&CallView>, muted: bool) -> Result<Step, IpcError> {
    match current {
        Some(c) if c.phase != CallPhase::Ended => {
            let mut c = c.clone();
            c.muted = muted;
            let frame = (c.phase == CallPhase::Connected).then(|| ClientMessage::Signal {
                call_id: c.call_id.clone(),
                signal: MediaSignal::Mute { muted },
            });
            Ok(Step {
                frame,
                update: Some(c),
            })
        }
        _ => Err(no_call()),
    }
}

/// Relaying a media signal of the current call.
pub fn signal(
    current: Option<&CallView>,
    call_id: CallId,
    signal: MediaSignal,
) -> Result<Step, IpcError> {
    match current {
        Some(c) if c.call_id == call_id && c.phase != CallPhase::Ended => Ok(Step {
            frame: Some(ClientMessage::Signal { call_id, signal }),
            update: None,
        }),
        _ => Err(no_call()),
    }
}

/// What a user is told when the server closes a session because the account signed in again:
/// `this` names the thing that was signed out ("window", "tab").
pub fn kicked_offline_message(reason: tincan_proto::CloseReason, this: &str) -> String {
    match reason {
        tincan_proto::CloseReason::Replaced => {
            format!("This {this} signed in again and replaced its old connection.")
        }
        _ => "You were signed out because your account signed in somewhere else.".into(),
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
            &ServerMessage::Ringing { call_id: id("c1") },
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

    #[test]
    fn hang_up_shows_the_duration_from_either_side() {
        let mut c = outgoing(id("c1"), user("bob"), CallType::Audio, 30, 0);
        apply(
            &mut c,
            &ServerMessage::Accepted {
                call_id: id("c1"),
                by: user("bob"),
            },
            1_000,
        );
        let step = hang_up(Some(&c), id("c1"), 66_000).unwrap();
        assert_eq!(
            step.frame,
            Some(ClientMessage::Hangup { call_id: id("c1") })
        );
        let mut ended = step.update.unwrap();
        assert_eq!(
            ended.ended.as_ref().unwrap().message,
            "You hung up. The call lasted 1:05."
        );
        // The server's duration wins when it arrives.
        assert!(apply(
            &mut ended,
            &ServerMessage::CallEnded {
                call_id: id("c1"),
                reason: EndReason::Hangup,
                by: Some(user("alice")),
                duration_ms: Some(64_900),
            },
            67_000
        ));
        assert_eq!(
            ended.ended.unwrap().message,
            "You hung up. The call lasted 1:04."
        );
        // The peer hanging up.
        let mut c2 = incoming(id("c2"), user("bob"), CallType::Audio, 30, 0);
        c2.phase = CallPhase::Connected;
        apply(
            &mut c2,
            &ServerMessage::CallEnded {
                call_id: id("c2"),
                reason: EndReason::Hangup,
                by: Some(user("bob")),
                duration_ms: Some(3_000),
            },
            1,
        );
        assert_eq!(
            c2.ended.unwrap().message,
            "bob hung up. The call lasted 0:03."
        );
    }

    #[test]
    fn commands_fit_the_phase() {
        let c = outgoing(id("c1"), user("bob"), CallType::Audio, 30, 0);
        assert_eq!(
            accept(Some(&c), id("c1")).unwrap_err().code,
            crate::ErrorCode::InvalidState
        );
        assert_eq!(
            hang_up(Some(&c), id("c1"), 5).unwrap().frame,
            Some(ClientMessage::Cancel { call_id: id("c1") })
        );
        let inc = incoming(id("c2"), user("bob"), CallType::Audio, 30, 0);
        let step = accept(Some(&inc), id("c2")).unwrap();
        assert_eq!(step.update.unwrap().phase, CallPhase::Answering);
        assert_eq!(
            reject(Some(&inc), id("c2")).unwrap().frame,
            Some(ClientMessage::Reject {
                call_id: id("c2"),
                busy: false
            })
        );
        assert!(signal(None, id("c2"), MediaSignal::EndOfCandidates).is_err());
        // Muting before connect tells nobody yet.
        assert_eq!(set_muted(Some(&inc), true).unwrap().frame, None);
    }
}
