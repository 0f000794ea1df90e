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
use serde::Deserialize;
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
///
/// Read by hand ([`StrictVisitor`]) rather than derived: serde's internally tagged enums buffer
/// the whole payload into an intermediate tree (a copy of the SDP and of every key) before they
/// look at the tag, and this runs for every relayed frame. The rules are the derive's: `kind`
/// picks the variant, each variant takes only its own fields (anything else, or a field twice,
/// refuses the payload), `ice_restart`, `sdp_mid` and `sdp_m_line_index` may be left out.
enum Strict {
    Offer {
        sdp: String,
        ice_restart: bool,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        sdp_mid: Option<String>,
        sdp_m_line_index: Option<u16>,
    },
    EndOfCandidates,
    Mute {
        muted: bool,
    },
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum StrictKind {
    Offer,
    Answer,
    Candidate,
    EndOfCandidates,
    Mute,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum StrictField {
    Kind,
    Sdp,
    IceRestart,
    Candidate,
    SdpMid,
    SdpMLineIndex,
    Muted,
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a signal payload")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        use serde::de::Error;
        fn once<T, E: Error>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), E> {
            if slot.replace(v).is_some() {
                return Err(E::duplicate_field(name));
            }
            Ok(())
        }
        let mut kind: Option<StrictKind> = None;
        let mut sdp: Option<String> = None;
        let mut ice_restart: Option<bool> = None;
        let mut candidate: Option<String> = None;
        let mut sdp_mid: Option<Option<String>> = None;
        let mut sdp_m_line_index: Option<Option<u16>> = None;
        let mut muted: Option<bool> = None;
        while let Some(field) = map.next_key::<StrictField>()? {
            match field {
                StrictField::Kind => once(&mut kind, map.next_value()?, "kind")?,
                StrictField::Sdp => once(&mut sdp, map.next_value()?, "sdp")?,
                StrictField::IceRestart => {
                    once(&mut ice_restart, map.next_value()?, "ice_restart")?
                }
                StrictField::Candidate => once(&mut candidate, map.next_value()?, "candidate")?,
                StrictField::SdpMid => once(&mut sdp_mid, map.next_value()?, "sdp_mid")?,
                StrictField::SdpMLineIndex => {
                    once(&mut sdp_m_line_index, map.next_value()?, "sdp_m_line_index")?
                }
                StrictField::Muted => once(&mut muted, map.next_value()?, "muted")?,
            }
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field("kind"))?;
        // The fields each variant takes; any other one present refuses the payload.
        let (description, cand, mute) = (
            sdp.is_some() || ice_restart.is_some(),
            candidate.is_some() || sdp_mid.is_some() || sdp_m_line_index.is_some(),
            muted.is_some(),
        );
        let foreign = match kind {
            StrictKind::Offer => cand || mute,
            StrictKind::Answer => cand || mute || ice_restart.is_some(),
            StrictKind::Candidate => description || mute,
            StrictKind::EndOfCandidates => description || cand || mute,
            StrictKind::Mute => description || cand,
        };
        if foreign {
            return Err(A::Error::custom("a field of another kind of signal"));
        }
        Ok(match kind {
            StrictKind::Offer => Strict::Offer {
                sdp: sdp.ok_or_else(|| A::Error::missing_field("sdp"))?,
                ice_restart: ice_restart.unwrap_or(false),
            },
            StrictKind::Answer => Strict::Answer {
                sdp: sdp.ok_or_else(|| A::Error::missing_field("sdp"))?,
            },
            StrictKind::Candidate => Strict::Candidate {
                candidate: candidate.ok_or_else(|| A::Error::missing_field("candidate"))?,
                sdp_mid: sdp_mid.flatten(),
                sdp_m_line_index: sdp_m_line_index.flatten(),
            },
            StrictKind::EndOfCandidates => Strict::EndOfCandidates,
            StrictKind::Mute => Strict::Mute {
                muted: muted.ok_or_else(|| A::Error::missing_field("muted"))?,
            },
        })
    }
}

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StrictVisitor)
    }
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

/// The `signal` frame for the peer, built once: `{"type":"signal","call_id":…,"from":…,"signal":…}`
/// with the payload copied as it came (no re-escaping of its SDP).
///
/// Written directly into one buffer of the exact size rather than through a serializer (which
/// grows its buffer three or four times for an offer): the IDs are `[A-Za-z0-9_-]` by
/// construction ([`crate::ids`]), so quoting them is all JSON asks, and the payload is JSON
/// already. The bytes are exactly what serializing [`ServerMessage::Signal`] gives (tested).
pub fn signal_frame(call_id: &CallId, from: &UserId, signal: &RawValue) -> String {
    const PARTS: [&str; 4] = [
        r#"{"type":"signal","call_id":""#,
        r#"","from":""#,
        r#"","signal":"#,
        "}",
    ];
    let (call_id, from, signal) = (call_id.as_str(), from.as_str(), signal.get());
    let mut frame = String::with_capacity(
        PARTS.iter().map(|p| p.len()).sum::<usize>() + call_id.len() + from.len() + signal.len(),
    );
    for (part, value) in PARTS.iter().zip([call_id, from, signal, ""]) {
        frame.push_str(part);
        frame.push_str(value);
    }
    debug_assert!(!call_id.contains(['"', '\\']) && !from.contains(['"', '\\']));
    frame
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
        // Another kind's field is unknown to this kind: re-encoded without it, as the derive did.
        for (payload, verbatim) in [
            (r#"{"kind":"mute","muted":true,"sdp":"v=0"}"#, false),
            (
                r#"{"kind":"answer","sdp":"v=0","ice_restart":false}"#,
                false,
            ),
            (r#"{"kind":"end_of_candidates","muted":true}"#, false),
            (
                r#"{"sdp":"v=0\r\n","ice_restart":true,"kind":"offer"}"#,
                true,
            ),
            (
                r#"{"kind":"candidate","candidate":"c","sdp_mid":null}"#,
                true,
            ),
        ] {
            let text = format!(r#"{{"type":"signal","call_id":"c1","signal":{payload}}}"#);
            let inbound = decode_signal(&text).expect(payload);
            assert_eq!(inbound.raw.is_some(), verbatim, "{payload}");
            let typed = ClientMessage::decode(&text).unwrap();
            assert!(
                matches!(&typed, ClientMessage::Signal { signal, .. } if *signal == inbound.signal),
                "{payload}: {typed:?}"
            );
        }
        for text in [
            r#"{"type":"signal","call_id":"c1","signal":{"kind":"mute","muted":true,"muted":false}}"#,
            r#"{"type":"signal","call_id":"c1","signal":{"kind":"mute","kind":"mute","muted":true}}"#,
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
