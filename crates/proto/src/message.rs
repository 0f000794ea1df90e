//! The wire protocol: JSON text frames over a WebSocket, one enum per direction.
//!
//! Every frame is an object whose `type` field names the message (`snake_case`). docs/PROTOCOL.md shows
//! an example of each; a test round-trips every example in that file through these types, so the
//! document cannot drift from the code.

use crate::ice::IceServer;
use crate::ids::{CallId, DeviceId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The protocol version a client states at login. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default ring timeout when an invite does not say (TRTCCalling's 30 s).
pub const DEFAULT_RING_TIMEOUT_SECS: u32 = 30;

/// A UserSig as carried at login. Serializable (it must travel), but never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SigToken(pub String);

impl fmt::Debug for SigToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigToken(<redacted>)")
    }
}

/// The kind of call. tincan carries audio; video is reserved so a TRTCCalling user's `type` maps over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallType {
    #[default]
    Audio,
    Video,
}

/// WebRTC negotiation, relayed untouched between the two parties of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaSignal {
    /// An SDP offer. The caller may send it while the callee is still ringing, so media can start the
    /// moment the call is accepted; `ice_restart` marks a renegotiation after a network change.
    Offer {
        sdp: String,
        #[serde(default, skip_serializing_if = "is_false")]
        ice_restart: bool,
    },
    /// The SDP answer.
    Answer { sdp: String },
    /// A trickled ICE candidate (the fields of `RTCIceCandidateInit`).
    Candidate {
        candidate: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_m_line_index: Option<u16>,
    },
    /// No more candidates for this negotiation.
    EndOfCandidates,
    /// The sender muted or unmuted its microphone (TRTCCalling's `USER_AUDIO_AVAILABLE`).
    Mute { muted: bool },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Sign in. Must be the first message; nothing else but `ping` is accepted before it succeeds.
    Login {
        version: u32,
        sdk_app_id: u64,
        user_id: UserId,
        user_sig: SigToken,
        /// Identifies this install or tab, so the same user can be signed in on several devices.
        device_id: DeviceId,
    },
    /// Sign out; the server answers with `logged_out` and closes the connection.
    Logout,
    /// Call a user (TRTCCalling `call`). `timeout_secs` defaults to 30 and is clamped by the server.
    Invite {
        call_id: CallId,
        callee: UserId,
        #[serde(default)]
        call_type: CallType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u32>,
    },
    /// The caller withdraws a ringing invitation.
    Cancel { call_id: CallId },
    /// The callee answers (TRTCCalling `accept`). The first device to accept wins.
    Accept { call_id: CallId },
    /// The callee declines (TRTCCalling `reject`); `busy` marks a reject because the callee is busy.
    Reject {
        call_id: CallId,
        #[serde(default, skip_serializing_if = "is_false")]
        busy: bool,
    },
    /// Leave a connected call (or withdraw / decline a ringing one). Idempotent on an ended call.
    Hangup { call_id: CallId },
    /// After signing in again (a dropped connection, a server restart), a device that believes it
    /// is in a connected call says so, so the server keeps or re-creates the call instead of
    /// ending it. `connected_at_ms` is when the call connected, on the server's clock (as the client
    /// estimates it from `login_ok.server_time_ms`). Answered with `call_resumed`, a `call_ended`
    /// (the call ended while the device was away: the resync), or an `error`. docs/PROTOCOL.md,
    /// "Resume".
    ResumeCall {
        call_id: CallId,
        peer: UserId,
        connected_at_ms: u64,
    },
    /// WebRTC negotiation for the other party of `call_id`.
    Signal {
        call_id: CallId,
        signal: MediaSignal,
    },
    /// Stop calls from `user_id` to this user (on every device, until `unblock`); answered with
    /// `blocked`. The blocked caller is told the same as for an offline callee.
    Block { user_id: UserId },
    /// Lift a block; answered with `unblocked` (also when there was no block).
    Unblock { user_id: UserId },
    /// Application-level keepalive (browsers cannot send WebSocket pings); answered with `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

/// Why a call ended, as told to one party (the caller and the callee may hear different reasons for
/// the same ending: a ring timeout is `no_response` to the caller and `timeout` to the callee).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The callee declined (TRTCCalling `REJECT`).
    Rejected,
    /// The callee is in another call (TRTCCalling `LINE_BUSY`).
    LineBusy,
    /// Nobody answered before the ring timeout (TRTCCalling `NO_RESP`; caller side).
    NoResponse,
    /// The ring timed out (TRTCCalling `CALLING_TIMEOUT`; callee side).
    Timeout,
    /// The callee is not signed in anywhere.
    Offline,
    /// The caller withdrew the invitation (TRTCCalling `CALLING_CANCEL`).
    Cancelled,
    /// A party hung up a connected call (TRTCCalling `CALL_END`).
    Hangup,
    /// Another device of the callee accepted.
    AnsweredElsewhere,
    /// Another device of the callee declined.
    DeclinedElsewhere,
    /// A party's connection vanished (the other party hears this for every way of leaving).
    ConnectionLost,
    /// This device logged out while the call was live (told to the leaver only).
    LoggedOut,
    /// This device was signed out because the user signed in elsewhere with `--single-session`
    /// (told to the leaver only).
    KickedOffline,
    /// This connection was replaced by the same device signing in again (told to the old
    /// connection only).
    Replaced,
}

impl EndReason {
    /// A sentence a user understands, for UIs that have nothing better.
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::Rejected => "The call was declined.",
            EndReason::LineBusy => "The line is busy.",
            EndReason::NoResponse => "No answer.",
            EndReason::Timeout => "Missed call: it stopped ringing.",
            EndReason::Offline => "The person you called is offline.",
            EndReason::Cancelled => "The caller hung up.",
            EndReason::Hangup => "The call ended.",
            EndReason::AnsweredElsewhere => "Answered on another device.",
            EndReason::DeclinedElsewhere => "Declined on another device.",
            EndReason::ConnectionLost => "The connection was lost.",
            EndReason::LoggedOut => "You signed out.",
            EndReason::KickedOffline => "You signed in on another device.",
            EndReason::Replaced => "This device connected again.",
        }
    }
}

/// A call that rang while the callee was away, delivered at the next sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedCall {
    pub call_id: CallId,
    pub caller: UserId,
    pub call_type: CallType,
    /// When the call was placed, unix milliseconds (server clock).
    pub at_ms: u64,
}

/// Why the server closes (or is about to close) a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The same user signed in elsewhere with `--single-session` (TRTCCalling `KICKED_OUT`).
    KickedOffline,
    /// The same user and device ID signed in again (a reconnect replaced this connection).
    Replaced,
    /// The client did not read its messages fast enough; the server will not buffer without bound.
    SlowConsumer,
    /// Nothing was heard from the client within the keepalive window.
    IdleTimeout,
    /// No successful login within the login window.
    LoginTimeout,
    /// Too many failed logins on this connection.
    AuthFailed,
    /// The client logged out.
    LoggedOut,
    /// A frame was larger than the hard limit.
    FrameTooLarge,
    /// The server is shutting down.
    ServerShutdown,
    /// The server has no room for another session.
    ServerFull,
}

impl CloseReason {
    /// The WebSocket close code sent with this reason (4000–4999 are the application's).
    pub fn close_code(self) -> u16 {
        match self {
            CloseReason::KickedOffline => 4000,
            CloseReason::Replaced => 4001,
            CloseReason::SlowConsumer => 4002,
            CloseReason::IdleTimeout => 4003,
            CloseReason::LoginTimeout => 4004,
            CloseReason::AuthFailed => 4005,
            CloseReason::LoggedOut => 1000,
            CloseReason::FrameTooLarge => 1009,
            CloseReason::ServerShutdown => 1001,
            CloseReason::ServerFull => 1013,
        }
    }

    /// The reason as the `snake_case` word sent in the close frame.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::KickedOffline => "kicked_offline",
            CloseReason::Replaced => "replaced",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::LoginTimeout => "login_timeout",
            CloseReason::AuthFailed => "auth_failed",
            CloseReason::LoggedOut => "logged_out",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::ServerFull => "server_full",
        }
    }

    /// Parses the word from a close frame.
    pub fn from_str_opt(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// Stable error codes. Clients branch on these, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON, or a field has the wrong type or an invalid value.
    MalformedFrame,
    /// Valid JSON with a `type` this server does not know.
    UnknownMessage,
    /// A binary frame; the protocol is text only.
    BinaryFrame,
    /// The frame is larger than the server's limit (`max_frame_bytes` in `login_ok`).
    FrameTooLarge,
    /// The client speaks a protocol version this server does not.
    UnsupportedVersion,
    /// A call message before a successful login.
    NotLoggedIn,
    /// A second login on a signed-in connection.
    AlreadyLoggedIn,
    /// The UserSig is malformed, forged, or signed with another key.
    UserSigInvalid,
    /// The UserSig has expired.
    UserSigExpired,
    /// The UserSig belongs to another user or SDKAppID.
    UserSigMismatch,
    /// The UserSig is valid but lives longer (its `TLS.expire`) than this server accepts
    /// (`--max-sig-lifetime`, 7 days by default): get one with a shorter lifetime.
    UserSigTooLong,
    /// The user is signed in on too many devices.
    TooManyDevices,
    /// A user tried to call themselves.
    CallSelf,
    /// The call ID is already taken.
    CallIdInUse,
    /// No live call has that ID.
    UnknownCall,
    /// The sender is not a party of that call.
    NotCallParty,
    /// The action does not fit the call's state (a double accept, a cancel after connect, …).
    InvalidState,
    /// The sender is already in a call.
    AlreadyInCall,
    /// Media signalling from the callee before it accepted.
    NotConnected,
    /// The other party of the call is reconnecting (between `peer_reconnecting` and
    /// `peer_reconnected`, or a `resume_call` still waiting for the peer's): this `signal` was not
    /// relayed and is not kept. Send it again after `peer_reconnected`.
    PeerAbsent,
    /// An offer, answer or ICE candidate failed the SDP check (`tincan_proto::sdp`: too large, not
    /// exactly one audio m-line, no fingerprint, ICE credentials or Opus, a malformed candidate, too
    /// many candidates); nothing was relayed. The message names the check.
    SdpRejected,
    /// Too many messages; this one was dropped.
    RateLimited,
    /// The peer is not reading fast enough (its outbox is over its byte budget): this `signal`
    /// was not relayed to it. The peer stays connected; send again later or give up the call.
    PeerBacklogged,
    /// The caller placed too many invites in the last minute, or too many to this callee, or
    /// re-invited this callee too soon after an unanswered ring; nothing rang.
    TooManyInvites,
    /// The block list is full (`block` refused).
    BlockListFull,
    /// Something failed inside the server.
    Internal,
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Login succeeded; the limits tell a client how to behave.
    LoginOk {
        user_id: UserId,
        device_id: DeviceId,
        /// Server clock, unix milliseconds.
        server_time_ms: u64,
        /// Send something (a `ping` will do) at least this often.
        heartbeat_secs: u32,
        max_frame_bytes: u32,
        max_ring_secs: u32,
        /// STUN / TURN servers for this user's calls (`RTCIceServer` dictionaries, TURN ones with
        /// a short-lived credential). Omitted (empty) when the server has none configured.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
        /// When the TURN credentials in `ice_servers` expire, unix seconds; omitted when there
        /// are none. Fresh ones come in an `ice_servers` message before then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ice_servers_expire_at: Option<u64>,
    },
    /// Fresh ICE servers (new TURN credentials), sent to each signed-in connection before the
    /// previous credentials expire (at 3/4 of their lifetime). Replaces the whole list.
    IceServers {
        ice_servers: Vec<IceServer>,
        /// When these credentials expire, unix seconds.
        expires_at: u64,
    },
    /// Calls that rang while this user was signed in nowhere.
    MissedCalls { calls: Vec<MissedCall> },
    /// An incoming call (TRTCCalling `INVITED`).
    Invited {
        call_id: CallId,
        caller: UserId,
        call_type: CallType,
        timeout_secs: u32,
    },
    /// The invitation reached the callee, whose devices are ringing. How many is not told: a
    /// caller has no need to know, and a stranger should not learn it.
    Ringing { call_id: CallId },
    /// The callee accepted (TRTCCalling `USER_ACCEPT`); sent to the caller and to the device that
    /// accepted, which learns it won.
    Accepted { call_id: CallId, by: UserId },
    /// The call is over for this recipient (TRTCCalling `REJECT`, `LINE_BUSY`, `NO_RESP`,
    /// `CALLING_TIMEOUT`, `CALLING_CANCEL`, `CALL_END`). `duration_ms` is set when it had connected.
    CallEnded {
        call_id: CallId,
        reason: EndReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<UserId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// The answer to `resume_call`: the server holds this call for this device again (the peer may
    /// still be away: then `peer_reconnecting` came just before). `connected_at_ms` is when the
    /// call connected, server clock.
    CallResumed {
        call_id: CallId,
        peer: UserId,
        connected_at_ms: u64,
    },
    /// The other party's connection dropped during a connected call (or it has not claimed the
    /// call yet after a server restart). The server holds the call for up to `grace_secs` more;
    /// signals to the peer are refused (`peer_absent`) meanwhile. Media between the two may go on.
    PeerReconnecting {
        call_id: CallId,
        peer: UserId,
        grace_secs: u32,
    },
    /// The other party is back in the call: signals flow again (an ICE restart may be due).
    PeerReconnected { call_id: CallId, peer: UserId },
    /// WebRTC negotiation from the other party.
    Signal {
        call_id: CallId,
        from: UserId,
        signal: MediaSignal,
    },
    /// This session is being closed because the user signed in elsewhere (TRTCCalling `KICKED_OUT`)
    /// or the same device reconnected.
    KickedOffline { reason: CloseReason },
    /// The answer to `logout`; the server closes the connection next.
    LoggedOut,
    /// A request failed. `call_id` names the call when the request was about one.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<CallId>,
    },
    /// The answer to `block`: calls from `user_id` no longer ring this user.
    Blocked { user_id: UserId },
    /// The answer to `unblock`.
    Unblocked { user_id: UserId },
    /// The answer to `ping`.
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ServerMessage {
    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>, call_id: Option<CallId>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            call_id,
        }
    }
}

/// Why a text frame could not be read as a [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("invalid {kind:?} message: {detail}")]
    InvalidFields { kind: String, detail: String },
}

impl DecodeError {
    /// The error code a server reports for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownType(_) => ErrorCode::UnknownMessage,
            _ => ErrorCode::MalformedFrame,
        }
    }
}

const CLIENT_TYPES: &[&str] = &[
    "login",
    "logout",
    "invite",
    "cancel",
    "accept",
    "reject",
    "hangup",
    "resume_call",
    "signal",
    "block",
    "unblock",
    "ping",
];

impl ClientMessage {
    /// Parses a frame, telling malformed JSON, unknown types and bad fields apart.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => Ok(m),
            Err(err) => Err(classify(text, err)),
        }
    }

    /// Serializes to a JSON text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("message types serialize"))
    }
}

impl ServerMessage {
    /// Parses a frame from the server.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))
    }

    /// Serializes to a JSON text frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("message types serialize"))
    }
}

/// Only on the error path: re-read the frame to say what exactly is wrong with it.
fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    let value = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => return DecodeError::Json("a frame must be a JSON object".into()),
        Err(_) => return DecodeError::Json(err.to_string()),
    };
    match value.get("type") {
        Some(serde_json::Value::String(kind)) if !CLIENT_TYPES.contains(&kind.as_str()) => {
            DecodeError::UnknownType(kind.clone())
        }
        kind => DecodeError::InvalidFields {
            kind: kind.and_then(|k| k.as_str()).unwrap_or_default().to_owned(),
            detail: err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_are_classified() {
        assert!(matches!(
            ClientMessage::decode("{"),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            ClientMessage::decode("[1]"),
            Err(DecodeError::Json(_))
        ));
        assert_eq!(
            ClientMessage::decode(r#"{"type":"dance"}"#),
            Err(DecodeError::UnknownType("dance".into()))
        );
        let e = ClientMessage::decode(r#"{"type":"invite","call_id":"c1","callee":"no spaces"}"#)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedFrame);
        assert!(matches!(e, DecodeError::InvalidFields { ref kind, .. } if kind == "invite"));
    }

    #[test]
    fn sig_tokens_are_not_printed() {
        let m = ClientMessage::Login {
            version: 1,
            sdk_app_id: 1,
            user_id: UserId::new("a").unwrap(),
            user_sig: SigToken("eJy-secret".into()),
            device_id: DeviceId::new("d").unwrap(),
        };
        assert!(!format!("{m:?}").contains("eJy-secret"));
        assert!(m.encode().contains("eJy-secret"));
    }

    #[test]
    fn close_reasons_round_trip() {
        for r in [
            CloseReason::KickedOffline,
            CloseReason::SlowConsumer,
            CloseReason::ServerFull,
        ] {
            assert_eq!(CloseReason::from_str_opt(r.as_str()), Some(r));
        }
    }
}
