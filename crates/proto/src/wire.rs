//! The relay's fast path: a `signal` frame read once and forwarded as the sender's own JSON.
//!
//! A relayed `signal` is most of a call's traffic, and most of its bytes are SDP text. Decoding it
//! into [`MediaSignal`] and encoding a [`ServerMessage::Signal`] again for every target escaped that
//! text twice per hop. Here the envelope is parsed, the payload is kept as raw JSON
//! ([`RawValue`]) next to its typed form (which the SDP check in [`crate::sdp`] and the
//! switchboard's rules still read), and the outgoing frame is built once ([`signal_frame`]) and then
//! shared across targets. The wire shape is exactly [`ServerMessage::Signal`]'s (tested).
//!
//! Anything unusual falls back to the typed path, so the answers never change: a frame this module
//! does not take ([`decode_signal`] returns `None`) goes through [`ClientMessage::decode`] (with
//! its precise errors), and a payload with fields the protocol does not know is relayed
//! re-encoded, without them, as before.

use crate::ids::{CallId, UserId};
use crate::message::{MediaSignal, ServerMessage};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A client's `signal` frame, read on the fast path.
#[derive(Debug)]
pub struct InboundSignal<'a> {
    pub call_id: CallId,
    /// The typed payload, for the checks.
    pub signal: MediaSignal,
    /// The payload as the client wrote it; `None` if it carried unknown fields (then the typed
    /// payload is relayed, re-encoded).
    pub raw: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    call_id: Option<CallId>,
    #[serde(borrow)]
    signal: Option<&'a RawValue>,
}

/// [`MediaSignal`] with unknown fields refused: a payload that reads as this is relayed verbatim.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Strict {
    Offer {
        sdp: String,
        #[serde(default)]
        ice_restart: bool,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(default)]
        sdp_mid: Option<String>,
        #[serde(default)]
        sdp_m_line_index: Option<u16>,
    },
    EndOfCandidates,
    Mute {
        muted: bool,
    },
}

impl From<Strict> for MediaSignal {
    fn from(s: Strict) -> Self {
        match s {
            Strict::Offer { sdp, ice_restart } => MediaSignal::Offer { sdp, ice_restart },
            Strict::Answer { sdp } => MediaSignal::Answer { sdp },
            Strict::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => MediaSignal::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            },
            Strict::EndOfCandidates => MediaSignal::EndOfCandidates,
            Strict::Mute { muted } => MediaSignal::Mute { muted },
        }
    }
}

/// Fails to compile when [`MediaSignal`] gains a variant, so [`Strict`] is kept in step.
#[allow(dead_code)]
fn strict_covers(m: &MediaSignal) {
    match m {
        MediaSignal::Offer { .. }
        | MediaSignal::Answer { .. }
        | MediaSignal::Candidate { .. }
        | MediaSignal::EndOfCandidates
        | MediaSignal::Mute { .. } => {}
    }
}

/// Reads `text` as a `signal` frame. `None` for any other frame and for a `signal` that does not
/// parse: [`ClientMessage::decode`](crate::ClientMessage::decode) then gives the exact answer.
pub fn decode_signal(text: &str) -> Option<InboundSignal<'_>> {
    let head: Head<'_> = serde_json::from_str(text).ok()?;
    if head.kind != "signal" {
        return None;
    }
    let call_id = head.call_id?;
    let raw = head.signal?;
    match serde_json::from_str::<Strict>(raw.get()) {
        Ok(s) => Some(InboundSignal {
            call_id,
            signal: s.into(),
            raw: Some(raw),
        }),
        Err(_) => serde_json::from_str::<MediaSignal>(raw.get())
            .ok()
            .map(|signal| InboundSignal {
                call_id,
                signal,
                raw: None,
            }),
    }
}

#[derive(Serialize)]
struct SignalOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    call_id: &'a CallId,
    from: &'a UserId,
    signal: &'a RawValue,
}

/// The `signal` frame for the peer, built once: `{"type":"signal","call_id":…,"from":…,"signal":…}`
/// with the payload copied as it came (no re-escaping of its SDP).
pub fn signal_frame(call_id: &CallId, from: &UserId, signal: &RawValue) -> String {
    serde_json::to_string(&SignalOut {
        kind: "signal",
        call_id,
        from,
        signal,
    })
    .unwrap_or_else(|_| unreachable!("IDs and raw JSON serialize"))
}

/// The frame for an [`InboundSignal`]: the raw payload if it has one, else the typed one encoded.
pub fn inbound_frame(call_id: &CallId, from: &UserId, inbound: &InboundSignal<'_>) -> String {
    match inbound.raw {
        Some(raw) => signal_frame(call_id, from, raw),
        None => ServerMessage::Signal {
            call_id: call_id.clone(),
            from: from.clone(),
            signal: inbound.signal.clone(),
        }
        .encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientMessage;

    fn signals() -> Vec<MediaSignal> {
        vec![
            MediaSignal::Offer {
                sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\"quoted\" \\ é".into(),
                ice_restart: true,
            },
            MediaSignal::Offer {
                sdp: "v=0\r\n".into(),
                ice_restart: false,
            },
            MediaSignal::Answer {
                sdp: "v=0\r\n".into(),
            },
            MediaSignal::Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
            MediaSignal::Candidate {
                candidate: "c".into(),
                sdp_mid: None,
                sdp_m_line_index: None,
            },
            MediaSignal::EndOfCandidates,
            MediaSignal::Mute { muted: true },
        ]
    }

    #[test]
    fn the_fast_path_agrees_with_the_typed_one_byte_for_byte() {
        let call_id = CallId::new("c1").unwrap();
        let from = UserId::new("alice").unwrap();
        for signal in signals() {
            let text = ClientMessage::Signal {
                call_id: call_id.clone(),
                signal: signal.clone(),
            }
            .encode();
            let inbound = decode_signal(&text).expect("fast path");
            assert_eq!(inbound.signal, signal);
            assert!(inbound.raw.is_some());
            let frame = inbound_frame(&inbound.call_id, &from, &inbound);
            let typed = ServerMessage::Signal {
                call_id: call_id.clone(),
                from: from.clone(),
                signal,
            };
            assert_eq!(frame, typed.encode());
            assert_eq!(ServerMessage::decode(&frame).unwrap(), typed);
        }
    }

    #[test]
    fn unknown_fields_are_stripped_and_other_frames_fall_back() {
        let text =
            r#"{"type":"signal","call_id":"c1","signal":{"kind":"mute","muted":true,"x":1}}"#;
        let inbound = decode_signal(text).unwrap();
        assert!(inbound.raw.is_none());
        let frame = inbound_frame(&inbound.call_id, &UserId::new("a").unwrap(), &inbound);
        assert!(!frame.contains("\"x\""), "{frame}");
        // Whitespace and key order of the payload are the sender's; the frame still decodes.
        let text = "{\"signal\": { \"muted\" : false , \"kind\":\"mute\"}, \"call_id\":\"c1\",\"type\":\"signal\"}";
        let inbound = decode_signal(text).unwrap();
        let frame = inbound_frame(&inbound.call_id, &UserId::new("a").unwrap(), &inbound);
        assert!(matches!(
            ServerMessage::decode(&frame).unwrap(),
            ServerMessage::Signal {
                signal: MediaSignal::Mute { muted: false },
                ..
            }
        ));
        for text in [
            r#"{"type":"ping"}"#,
            r#"{"type":"signal","call_id":"c1"}"#,
            r#"{"type":"signal","call_id":"no spaces","signal":{"kind":"mute","muted":true}}"#,
            r#"{"type":"signal","call_id":"c1","signal":{"kind":"dance"}}"#,
            r#"{"type":"signal","call_id":"c1","signal":{"kind":"mute","muted":1}}"#,
            r#"{"type":"signal","type":"signal","call_id":"c1","signal":{"kind":"mute","muted":true}}"#,
            "{",
        ] {
            assert!(decode_signal(text).is_none(), "{text}");
        }
    }
}
