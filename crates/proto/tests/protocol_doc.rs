//! Every example in docs/PROTOCOL.md parses into the wire types and serializes back to the same JSON
//! value, and every message type appears in the document at least once.

use std::collections::BTreeSet;
use tincan_proto::{ClientMessage, ServerMessage};

const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

fn blocks(tag: &str) -> Vec<String> {
    let fence = format!("```json {tag}\n");
    let mut out = Vec::new();
    let mut rest = DOC;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("closed fence");
        out.push(body[..end].trim().to_owned());
        rest = &body[end..];
    }
    out
}

fn kind(v: &serde_json::Value) -> String {
    v["type"].as_str().unwrap().to_owned()
}

#[test]
fn client_examples_round_trip() {
    let mut seen = BTreeSet::new();
    for text in blocks("client") {
        let msg = ClientMessage::decode(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back: serde_json::Value = serde_json::from_str(&msg.encode()).unwrap();
        assert_eq!(doc, back, "example does not round-trip: {text}");
        seen.insert(kind(&doc));
    }
    let all: BTreeSet<String> = [
        "login",
        "logout",
        "invite",
        "cancel",
        "accept",
        "reject",
        "hangup",
        "signal",
        "ping",
        "resume_call",
        "block",
        "unblock",
    ]
    .map(String::from)
    .into();
    assert_eq!(seen, all, "every client message has an example");
}

#[test]
fn server_examples_round_trip() {
    let mut seen = BTreeSet::new();
    for text in blocks("server") {
        let msg = ServerMessage::decode(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back: serde_json::Value = serde_json::from_str(&msg.encode()).unwrap();
        assert_eq!(doc, back, "example does not round-trip: {text}");
        seen.insert(kind(&doc));
    }
    let all: BTreeSet<String> = [
        "login_ok",
        "ice_servers",
        "missed_calls",
        "invited",
        "ringing",
        "accepted",
        "call_ended",
        "signal",
        "kicked_offline",
        "logged_out",
        "error",
        "pong",
        "call_resumed",
        "peer_reconnecting",
        "peer_reconnected",
        "blocked",
        "unblocked",
    ]
    .map(String::from)
    .into();
    assert_eq!(seen, all, "every server message has an example");
}

#[test]
fn every_error_code_and_end_reason_is_documented() {
    use tincan_proto::{EndReason, ErrorCode};
    let codes = [
        ErrorCode::MalformedFrame,
        ErrorCode::UnknownMessage,
        ErrorCode::BinaryFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotLoggedIn,
        ErrorCode::AlreadyLoggedIn,
        ErrorCode::UserSigInvalid,
        ErrorCode::UserSigExpired,
        ErrorCode::UserSigMismatch,
        ErrorCode::UserSigTooLong,
        ErrorCode::TooManyDevices,
        ErrorCode::CallSelf,
        ErrorCode::CallIdInUse,
        ErrorCode::UnknownCall,
        ErrorCode::NotCallParty,
        ErrorCode::InvalidState,
        ErrorCode::AlreadyInCall,
        ErrorCode::NotConnected,
        ErrorCode::TooManyInvites,
        ErrorCode::BlockListFull,
        ErrorCode::PeerAbsent,
        ErrorCode::SdpRejected,
        ErrorCode::RateLimited,
        ErrorCode::PeerBacklogged,
        ErrorCode::Internal,
    ];
    for c in codes {
        let word = serde_json::to_value(c).unwrap();
        assert!(
            DOC.contains(&format!("| `{}` |", word.as_str().unwrap())),
            "{c:?} undocumented"
        );
    }
    // The SDP check's detail words are listed too.
    for code in tincan_proto::sdp::SdpError::CODES {
        assert!(
            DOC.contains(&format!("`{code}`")),
            "SDP check {code} undocumented"
        );
    }
    let reasons = [
        EndReason::Rejected,
        EndReason::LineBusy,
        EndReason::NoResponse,
        EndReason::Timeout,
        EndReason::Offline,
        EndReason::Cancelled,
        EndReason::Hangup,
        EndReason::AnsweredElsewhere,
        EndReason::DeclinedElsewhere,
        EndReason::ConnectionLost,
        EndReason::LoggedOut,
        EndReason::KickedOffline,
        EndReason::Replaced,
    ];
    for r in reasons {
        let word = serde_json::to_value(r).unwrap();
        assert!(
            DOC.contains(&format!("| `{}` |", word.as_str().unwrap())),
            "{r:?} undocumented"
        );
    }
}

/// "Fields" in docs/PROTOCOL.md's conventions: which optional fields take `null`.
#[test]
fn optional_fields_take_null_where_documented() {
    for ok in [
        r#"{"type":"ping","nonce":null}"#,
        r#"{"type":"invite","call_id":"c","callee":"bob","timeout_secs":null}"#,
        r#"{"type":"signal","call_id":"c","signal":{"kind":"candidate","candidate":"candidate:1 1 udp 1 192.0.2.1 1 typ host","sdp_mid":null,"sdp_m_line_index":null}}"#,
        r#"{"type":"invite","call_id":"c","callee":"bob"}"#,
        r#"{"type":"reject","call_id":"c"}"#,
    ] {
        ClientMessage::decode(ok).unwrap_or_else(|e| panic!("{e}: {ok}"));
    }
    for bad in [
        r#"{"type":"reject","call_id":"c","busy":null}"#,
        r#"{"type":"invite","call_id":"c","callee":"bob","call_type":null}"#,
        r#"{"type":"signal","call_id":"c","signal":{"kind":"offer","sdp":"v=0","ice_restart":null}}"#,
    ] {
        assert!(ClientMessage::decode(bad).is_err(), "{bad}");
    }
}
