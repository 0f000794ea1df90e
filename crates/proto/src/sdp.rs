//! The one SDP and ICE-candidate check, run before any engine (GStreamer's webrtcbin, a browser's
//! `RTCPeerConnection`) sees a peer's negotiation, and by the server before it relays one.
//!
//! Why: a session description is the largest, most structured thing a peer controls, and the media
//! engines it reaches are big C++/C code bases. A ringing callee used to apply any offer it was sent
//! (a 60 KB offer reached GStreamer; 100 m-lines cost 822 file descriptors after accept). tincan's calls
//! are 1:1 audio, so everything a legitimate peer sends fits a small, checkable shape, and anything
//! else is refused with a typed error before it is applied or relayed.
//!
//! What a description must be (offers and answers alike):
//! - at most [`MAX_SDP_BYTES`] bytes, lines of the form `<letter>=<value>` starting with `v=0`, no
//!   control characters other than the line ends (LF or CRLF; blank lines are skipped);
//! - **exactly one `m=audio` line and no other m-line**: no video, no data channel (`m=application`),
//!   no second audio. A `a=group:BUNDLE` line is allowed (browsers always send one);
//! - that m-line uses DTLS-SRTP (`UDP/TLS/RTP/SAVPF`, or `UDP/TLS/RTP/SAVP` / `TCP/DTLS/RTP/SAVP(F)`);
//! - at least one `a=fingerprint`, and every one of them sha-256, sha-384 or sha-512 with the right
//!   number of colon-separated hex bytes (a weaker hash next to a strong one is refused too: the DTLS
//!   check compares against the hash the SDP names, so none may be weak);
//! - ICE credentials, `a=ice-ufrag` (4–256 ice-chars) and `a=ice-pwd` (22–256), at session or media
//!   level (RFC 8839);
//! - an Opus codec: `a=rtpmap:<pt> opus/48000[/2]` (any case) for a payload type listed on the m-line,
//!   at whatever dynamic payload type the peer chose (Chromium 111, Firefox 109, others 96);
//! - at most [`MAX_CANDIDATES`] `a=candidate` lines, each well-formed (see below).
//!
//! A trickled candidate (`RTCIceCandidateInit.candidate`) is at most [`MAX_CANDIDATE_BYTES`], has the
//! RFC 8839 grammar (`candidate:<foundation> <component> udp|tcp <priority> <address> <port> typ
//! host|srflx|prflx|relay [<name> <value>]...`), an address that is an IP or a host name (Chromium's and
//! Firefox's `<uuid>.local` mDNS names), and, if given, `sdp_m_line_index` 0 (there is one m-line) and
//! a short token as `sdp_mid`.
//!
//! And per sender, per negotiation, at most [`MAX_CANDIDATES`] candidates in all (in its descriptions
//! plus trickled): [`CandidateBudget`]. The count starts again when the sender's ICE credentials
//! change, which is what an ICE restart is (RFC 8839 §4.4.1.1.1), so a long call on a flaky network
//! that restarts ICE now and then is not cut off, while one negotiation never feeds an engine more
//! than [`MAX_CANDIDATES`] candidates to check.
//!
//! The parser is a few dozen lines for just these lines, no dependency: this crate builds for wasm32
//! too, and every client runs the same code as the server.

use crate::message::MediaSignal;
use std::net::IpAddr;

/// The largest offer or answer accepted, in bytes. A real 1:1 audio offer is 0.7–2 KB (Chromium
/// 156's with four host candidates: 1.7 KB; Firefox 153's with eight: 2.0 KB; GStreamer 1.22's with
/// nine: 1.3 KB); 16 KiB leaves room for many interfaces and relay candidates while keeping a
/// hostile one small.
pub const MAX_SDP_BYTES: usize = 16 * 1024;

/// The largest trickled candidate, in bytes. Real ones are 60–200.
pub const MAX_CANDIDATE_BYTES: usize = 1024;

/// Candidates a sender may give in one negotiation (in its descriptions plus trickled), and in one
/// description. libnice on a machine with three addresses gathers nine host candidates; 64 covers a
/// machine with many interfaces plus server-reflexive and relay candidates.
pub const MAX_CANDIDATES: u32 = 64;

/// The longest `sdp_mid` accepted (browsers use "0", GStreamer "audio0").
pub const MAX_MID_BYTES: usize = 64;

/// Limits of the check. [`Limits::default`] holds the documented constants; a server may tune them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_sdp_bytes: usize,
    pub max_candidate_bytes: usize,
    pub max_candidates: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sdp_bytes: MAX_SDP_BYTES,
            max_candidate_bytes: MAX_CANDIDATE_BYTES,
            max_candidates: MAX_CANDIDATES,
        }
    }
}

/// Why a description or a candidate was refused. Each variant has a stable [`SdpError::code`];
/// the text is for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is {len} bytes; at most {max} are accepted")]
    TooLarge { len: usize, max: usize },
    #[error("line {line} of the SDP is malformed: {why}")]
    Malformed { line: usize, why: &'static str },
    #[error(
        "a call carries exactly one audio m-line and nothing else; this SDP has {audio} audio and \
         {other} other m-lines"
    )]
    MediaLines { audio: usize, other: usize },
    #[error("the audio is not DTLS-SRTP (transport {proto:?}; UDP/TLS/RTP/SAVPF expected)")]
    NotDtlsSrtp { proto: String },
    #[error("the SDP has no a=fingerprint, so the DTLS connection could not be verified")]
    NoFingerprint,
    #[error("an a=fingerprint is not usable: {why}")]
    BadFingerprint { why: &'static str },
    #[error("the SDP has no ICE credentials (a=ice-ufrag and a=ice-pwd)")]
    NoIceCredentials,
    #[error("the ICE credentials are not usable: {why}")]
    BadIceCredentials { why: &'static str },
    #[error("the audio m-line offers no Opus (a=rtpmap:<pt> opus/48000/2)")]
    NoOpus,
    #[error("more than {max} ICE candidates in one negotiation")]
    TooManyCandidates { max: u32 },
    #[error("the ICE candidate is {len} bytes; at most {max} are accepted")]
    CandidateTooLarge { len: usize, max: usize },
    #[error("the ICE candidate is malformed: {why}")]
    BadCandidate { why: &'static str },
}

impl SdpError {
    /// A stable `snake_case` word for this failure, for logs, tests and UIs (never match the text).
    pub fn code(&self) -> &'static str {
        match self {
            SdpError::TooLarge { .. } => "sdp_too_large",
            SdpError::Malformed { .. } => "sdp_malformed",
            SdpError::MediaLines { .. } => "sdp_media_lines",
            SdpError::NotDtlsSrtp { .. } => "sdp_not_dtls_srtp",
            SdpError::NoFingerprint => "sdp_no_fingerprint",
            SdpError::BadFingerprint { .. } => "sdp_bad_fingerprint",
            SdpError::NoIceCredentials => "sdp_no_ice_credentials",
            SdpError::BadIceCredentials { .. } => "sdp_bad_ice_credentials",
            SdpError::NoOpus => "sdp_no_opus",
            SdpError::TooManyCandidates { .. } => "too_many_candidates",
            SdpError::CandidateTooLarge { .. } => "candidate_too_large",
            SdpError::BadCandidate { .. } => "candidate_malformed",
        }
    }

    /// Every code, for documentation tests.
    pub const CODES: &'static [&'static str] = &[
        "sdp_too_large",
        "sdp_malformed",
        "sdp_media_lines",
        "sdp_not_dtls_srtp",
        "sdp_no_fingerprint",
        "sdp_bad_fingerprint",
        "sdp_no_ice_credentials",
        "sdp_bad_ice_credentials",
        "sdp_no_opus",
        "too_many_candidates",
        "candidate_too_large",
        "candidate_malformed",
    ];
}

/// What a description that passed the check holds, as far as the callers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The ICE username fragment in force for the audio (media level, else session level).
    pub ice_ufrag: String,
    /// The payload type the peer gave Opus.
    pub opus_payload_type: u8,
    /// `a=candidate` lines in the description.
    pub candidates: u32,
}

/// The DTLS-SRTP transports of RFC 5764 and RFC 7850.
const DTLS_SRTP: [&str; 4] = [
    "UDP/TLS/RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "TCP/DTLS/RTP/SAVPF",
    "TCP/DTLS/RTP/SAVP",
];

#[derive(Default)]
struct Level<'a> {
    ufrag: Option<&'a str>,
    pwd: Option<&'a str>,
    fingerprints: u32,
}

impl<'a> Level<'a> {
    fn ice(&mut self, name: &str, value: &'a str) -> Result<(), SdpError> {
        let (slot, min, what) = if name == "ice-ufrag" {
            (
                &mut self.ufrag,
                4,
                "a=ice-ufrag must be 4 to 256 ice-chars (A-Z a-z 0-9 + /)",
            )
        } else {
            (
                &mut self.pwd,
                22,
                "a=ice-pwd must be 22 to 256 ice-chars (A-Z a-z 0-9 + /)",
            )
        };
        if slot.is_some() {
            return Err(SdpError::BadIceCredentials {
                why: "an ICE credential is given twice at one level",
            });
        }
        if !(min..=256).contains(&value.len()) || !value.bytes().all(is_ice_char) {
            return Err(SdpError::BadIceCredentials { why: what });
        }
        *slot = Some(value);
        Ok(())
    }
}

/// `ALPHA / DIGIT / "+" / "/"` (RFC 8839).
fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// A decimal number of at most `max_len` digits and at most `max`.
fn number(s: &str, max_len: usize, max: u64) -> Option<u64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n <= max)
}

/// Checks an offer or an answer (they have the same shape in a 1:1 audio call).
pub fn check_description(sdp: &str, limits: &Limits) -> Result<Description, SdpError> {
    if sdp.len() > limits.max_sdp_bytes {
        return Err(SdpError::TooLarge {
            len: sdp.len(),
            max: limits.max_sdp_bytes,
        });
    }
    let mut session = Level::default();
    let mut media = Level::default();
    let (mut audio, mut other) = (0usize, 0usize);
    let mut in_audio = false;
    let mut seen_version = false;
    let mut payload_types: Vec<u8> = Vec::new();
    let mut opus: Option<u8> = None;
    let mut candidates: u32 = 0;

    for (i, raw) in sdp.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let malformed = |why| SdpError::Malformed { line: line_no, why };
        if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(malformed("a control character"));
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || bytes[1] != b'=' {
            return Err(malformed("not a <letter>=<value> line"));
        }
        let (kind, value) = (bytes[0], &line[2..]);
        if !seen_version {
            if line != "v=0" {
                return Err(malformed("an SDP starts with v=0"));
            }
            seen_version = true;
            continue;
        }
        match kind {
            b'm' => {
                let mut f = value.split(' ');
                let (Some(media_kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next())
                else {
                    return Err(malformed("an m-line is <media> <port> <proto> <formats>"));
                };
                let port = port.split_once('/').map_or(port, |(p, _)| p);
                if number(port, 5, 65535).is_none() {
                    return Err(malformed("an m-line's port is not a number up to 65535"));
                }
                in_audio = media_kind == "audio";
                if !in_audio {
                    other += 1;
                    continue;
                }
                audio += 1;
                if audio > 1 {
                    continue;
                }
                if !DTLS_SRTP.iter().any(|p| p.eq_ignore_ascii_case(proto)) {
                    return Err(SdpError::NotDtlsSrtp {
                        proto: proto.chars().take(32).collect(),
                    });
                }
                for fmt in f {
                    match number(fmt, 3, 127) {
                        Some(pt) => payload_types.push(pt as u8),
                        _ => return Err(malformed("an RTP payload type is not 0-127")),
                    }
                }
                if payload_types.is_empty() {
                    return Err(malformed("an m-line is <media> <port> <proto> <formats>"));
                }
            }
            b'a' => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                let level = if audio > 0 || other > 0 {
                    &mut media
                } else {
                    &mut session
                };
                // Attributes of m-lines other than the one audio line are never used: the
                // description is refused for having them.
                if (audio > 0 || other > 0) && !(in_audio && audio == 1) {
                    continue;
                }
                match name {
                    "fingerprint" => {
                        check_fingerprint(arg)?;
                        level.fingerprints += 1;
                    }
                    "ice-ufrag" | "ice-pwd" => level.ice(name, arg)?,
                    "candidate" => {
                        check_candidate_value(arg)?;
                        candidates += 1;
                        if candidates > limits.max_candidates {
                            return Err(SdpError::TooManyCandidates {
                                max: limits.max_candidates,
                            });
                        }
                    }
                    "rtpmap" if in_audio => {
                        let Some((pt, codec)) = arg.split_once(' ') else {
                            return Err(malformed("a=rtpmap is <pt> <name>/<clock>[/<channels>]"));
                        };
                        let mut c = codec.split('/');
                        let (name, clock) = (c.next().unwrap_or(""), c.next().unwrap_or(""));
                        let Some(pt) = number(pt, 3, 127) else {
                            return Err(malformed("a=rtpmap's payload type is not 0-127"));
                        };
                        if name.eq_ignore_ascii_case("opus")
                            && clock == "48000"
                            && payload_types.contains(&(pt as u8))
                        {
                            opus.get_or_insert(pt as u8);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !seen_version {
        return Err(SdpError::Malformed {
            line: 1,
            why: "an SDP starts with v=0",
        });
    }
    if audio != 1 || other != 0 {
        return Err(SdpError::MediaLines { audio, other });
    }
    if session.fingerprints + media.fingerprints == 0 {
        return Err(SdpError::NoFingerprint);
    }
    let (Some(ufrag), Some(_)) = (media.ufrag.or(session.ufrag), media.pwd.or(session.pwd)) else {
        return Err(SdpError::NoIceCredentials);
    };
    let Some(opus_payload_type) = opus else {
        return Err(SdpError::NoOpus);
    };
    Ok(Description {
        ice_ufrag: ufrag.to_owned(),
        opus_payload_type,
        candidates,
    })
}

/// `<hash-func> <XX:XX:...>` with a strong hash and the matching number of bytes (RFC 8122).
fn check_fingerprint(arg: &str) -> Result<(), SdpError> {
    let Some((hash, hex)) = arg.split_once(' ') else {
        return Err(SdpError::BadFingerprint {
            why: "a=fingerprint is <hash> <hex bytes>",
        });
    };
    let bytes = match hash.to_ascii_lowercase().as_str() {
        "sha-256" => 32,
        "sha-384" => 48,
        "sha-512" => 64,
        _ => {
            return Err(SdpError::BadFingerprint {
                why: "the hash is not sha-256, sha-384 or sha-512",
            })
        }
    };
    let hex = hex.trim_end();
    let well_formed = hex.len() == bytes * 3 - 1
        && hex
            .split(':')
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    if !well_formed {
        return Err(SdpError::BadFingerprint {
            why: "the fingerprint is not colon-separated hex bytes of the hash's length",
        });
    }
    Ok(())
}

fn bad(why: &'static str) -> SdpError {
    SdpError::BadCandidate { why }
}

/// A host name as ICE carries it (an mDNS `<uuid>.local`, or any DNS name).
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn is_address(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok() || is_host_name(s)
}

/// The part after `candidate:`.
fn check_candidate_value(value: &str) -> Result<(), SdpError> {
    let mut t = value.split_ascii_whitespace();
    let mut next = |why| t.next().ok_or(bad(why));
    let foundation = next("no foundation")?;
    if foundation.len() > 32 || !foundation.bytes().all(is_ice_char) {
        return Err(bad("the foundation is not 1-32 ice-chars"));
    }
    if number(next("no component")?, 3, 256).is_none_or(|c| c == 0) {
        return Err(bad("the component is not 1-256"));
    }
    let transport = next("no transport")?;
    if !transport.eq_ignore_ascii_case("udp") && !transport.eq_ignore_ascii_case("tcp") {
        return Err(bad("the transport is not UDP or TCP"));
    }
    if number(next("no priority")?, 10, u64::from(u32::MAX)).is_none() {
        return Err(bad("the priority is not a 32-bit number"));
    }
    if !is_address(next("no address")?) {
        return Err(bad("the address is not an IP address or a host name"));
    }
    if number(next("no port")?, 5, 65535).is_none() {
        return Err(bad("the port is not 0-65535"));
    }
    if next("no typ")? != "typ" {
        return Err(bad("`typ` is missing after the port"));
    }
    if !matches!(
        next("no candidate type")?,
        "host" | "srflx" | "prflx" | "relay"
    ) {
        return Err(bad("the type is not host, srflx, prflx or relay"));
    }
    while let Some(name) = t.next() {
        let Some(value) = t.next() else {
            return Err(bad("an extension attribute has no value"));
        };
        let ok = match name {
            "raddr" => is_address(value),
            "rport" => number(value, 5, 65535).is_some(),
            _ => name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic()),
        };
        if !ok {
            return Err(bad("an extension attribute is malformed"));
        }
    }
    Ok(())
}

/// Checks a trickled candidate (the fields of `RTCIceCandidateInit`).
pub fn check_candidate(
    candidate: &str,
    sdp_mid: Option<&str>,
    sdp_m_line_index: Option<u16>,
    limits: &Limits,
) -> Result<(), SdpError> {
    if candidate.len() > limits.max_candidate_bytes {
        return Err(SdpError::CandidateTooLarge {
            len: candidate.len(),
            max: limits.max_candidate_bytes,
        });
    }
    if candidate.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(bad("a control character"));
    }
    let line = candidate.strip_prefix("a=").unwrap_or(candidate);
    let Some(value) = line.strip_prefix("candidate:") else {
        return Err(bad(
            "it does not start with `candidate:` (the end of candidates is its own signal)",
        ));
    };
    if let Some(mid) = sdp_mid {
        if mid.is_empty() || mid.len() > MAX_MID_BYTES || !mid.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad("sdp_mid is not a short token"));
        }
    }
    if sdp_m_line_index.is_some_and(|i| i != 0) {
        return Err(bad(
            "sdp_m_line_index names an m-line other than the one audio line",
        ));
    }
    check_candidate_value(value)
}

/// Checks one signal on its own (no counting): offers and answers with [`check_description`],
/// candidates with [`check_candidate`]. `end_of_candidates` and `mute` carry nothing to check.
pub fn check_signal(signal: &MediaSignal, limits: &Limits) -> Result<(), SdpError> {
    match signal {
        MediaSignal::Offer { sdp, .. } | MediaSignal::Answer { sdp } => {
            check_description(sdp, limits).map(|_| ())
        }
        MediaSignal::Candidate {
            candidate,
            sdp_mid,
            sdp_m_line_index,
        } => check_candidate(candidate, sdp_mid.as_deref(), *sdp_m_line_index, limits),
        MediaSignal::EndOfCandidates | MediaSignal::Mute { .. } => Ok(()),
    }
}

/// One sender's candidates in the current negotiation: the per-call cap.
///
/// Kept by the server per call and sender, and by each client for its peer. [`CandidateBudget::admit`]
/// checks a signal and counts its candidates; the count starts again when the sender's ICE
/// credentials change (an ICE restart). A refused signal leaves the budget as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidateBudget {
    ufrag: Option<String>,
    used: u32,
}

impl CandidateBudget {
    /// Candidates counted in the current negotiation.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// Checks `signal` and, if it passes, counts its candidates against the cap.
    pub fn admit(&mut self, signal: &MediaSignal, limits: &Limits) -> Result<(), SdpError> {
        self.admit_checked(Checked::new(signal, limits))
    }

    /// [`CandidateBudget::admit`] for a signal already checked with [`Checked::new`] (the same
    /// limits): only the counting is left, so a server can run the check itself before it takes
    /// the lock that guards the budgets.
    pub fn admit_checked(&mut self, checked: Checked) -> Result<(), SdpError> {
        let limits = checked.limits;
        match checked.outcome? {
            Outcome::Description(d) => {
                let restart = self.ufrag.as_deref() != Some(d.ice_ufrag.as_str());
                let base = if restart { 0 } else { self.used };
                let used = base.saturating_add(d.candidates);
                if used > limits.max_candidates {
                    return Err(SdpError::TooManyCandidates {
                        max: limits.max_candidates,
                    });
                }
                if restart {
                    self.ufrag = Some(d.ice_ufrag);
                }
                self.used = used;
            }
            Outcome::Candidate => {
                if self.used >= limits.max_candidates {
                    return Err(SdpError::TooManyCandidates {
                        max: limits.max_candidates,
                    });
                }
                self.used += 1;
            }
            Outcome::Nothing => {}
        }
        Ok(())
    }
}

/// The stateless half of [`CandidateBudget::admit`]: the signal checked on its own, with the
/// limits it was checked against. The counting half ([`CandidateBudget::admit_checked`]) needs
/// the budget; this half needs nothing, so it can run anywhere (the server runs it before taking
/// its lock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    limits: Limits,
    outcome: Result<Outcome, SdpError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Description(Description),
    Candidate,
    Nothing,
}

impl Checked {
    /// Checks `signal` against `limits` (what [`check_signal`] checks).
    pub fn new(signal: &MediaSignal, limits: &Limits) -> Self {
        let outcome = match signal {
            MediaSignal::Offer { sdp, .. } | MediaSignal::Answer { sdp } => {
                check_description(sdp, limits).map(Outcome::Description)
            }
            MediaSignal::Candidate { .. } => {
                check_signal(signal, limits).map(|()| Outcome::Candidate)
            }
            MediaSignal::EndOfCandidates | MediaSignal::Mute { .. } => Ok(Outcome::Nothing),
        };
        Self {
            limits: *limits,
            outcome,
        }
    }

    /// The limits this check ran with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// The type of an ICE candidate (`host`, `srflx`, `prflx`, `relay`): the word after `typ`, in a
/// trickled candidate (`candidate:…`) or an SDP line (`a=candidate:…`). `None` when there is none.
pub fn candidate_type(candidate: &str) -> Option<&str> {
    let mut words = candidate.split_ascii_whitespace();
    words.by_ref().find(|w| *w == "typ")?;
    words.next()
}

/// Relay-only mode (the privacy setting: the peer learns no address of ours but the TURN
/// server's): may this candidate leave the machine? Only a relay candidate may.
pub fn relay_only_admits(candidate: &str) -> bool {
    candidate_type(candidate) == Some("relay")
}

/// A candidate as relay-only mode sends it: `None` unless it is a relay candidate, and its
/// related address (`raddr` / `rport`: the address the TURN server saw us at, our public
/// address) replaced by `0.0.0.0` / `::` and `0`, as browsers hide it (RFC 8839 §5.1 makes it
/// informational; ICE never uses it).
pub fn relay_only_candidate(candidate: &str) -> Option<String> {
    if !relay_only_admits(candidate) {
        return None;
    }
    let mut words: Vec<&str> = candidate.split(' ').collect();
    for i in 0..words.len().saturating_sub(1) {
        match words[i] {
            "raddr" => {
                words[i + 1] = if words[i + 1].contains(':') {
                    "::"
                } else {
                    "0.0.0.0"
                }
            }
            "rport" => words[i + 1] = "0",
            _ => {}
        }
    }
    Some(words.join(" "))
}

/// An offer or answer for relay-only mode: every `a=candidate` line that is not a relay candidate
/// is left out, and the relay ones hide their related address ([`relay_only_candidate`]). The
/// engines gather no others in that mode; this is the second guard, on the sending side, so a
/// candidate an engine gathered anyway (or put into its description) never crosses the server.
pub fn relay_only_description(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.starts_with("a=candidate:") {
            if let Some(kept) = relay_only_candidate(bare) {
                out.push_str(&kept);
                out.push_str(&line[bare.len()..]);
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\n\
        a=fingerprint:sha-256 6F:93:7D:C0:00:65:D6:3D:39:DB:64:7A:6A:24:8D:AC:2C:0C:19:7E:47:97:C8:F2:D5:98:88:89:0D:0E:9E:33\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=mid:0\r\n\
        a=rtpmap:96 opus/48000/2\r\n";

    fn check(sdp: &str) -> Result<Description, SdpError> {
        check_description(sdp, &Limits::default())
    }

    #[test]
    fn a_minimal_description_passes() {
        let d = check(MINIMAL).unwrap();
        assert_eq!(d.opus_payload_type, 96);
        assert_eq!(d.ice_ufrag, "abcd");
        assert_eq!(d.candidates, 0);
        // LF line ends too.
        assert!(check(&MINIMAL.replace("\r\n", "\n")).is_ok());
    }

    #[test]
    fn each_rule_has_its_error() {
        let cases: &[(&str, &str, &str)] = &[
            ("v=0\r\n", "v=1\r\n", "sdp_malformed"),
            ("s=-\r\n", "s=-\r\nbogus\r\n", "sdp_malformed"),
            ("s=-\r\n", "s=\u{0}\r\n", "sdp_malformed"),
            (
                "a=rtpmap:96",
                "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:96",
                "sdp_media_lines",
            ),
            ("UDP/TLS/RTP/SAVPF", "RTP/AVP", "sdp_not_dtls_srtp"),
            ("sha-256", "sha-1", "sdp_bad_fingerprint"),
            (":33\r\n", ":3\r\n", "sdp_bad_fingerprint"),
            (
                "a=ice-pwd:abcdefghijklmnopqrstuv\r\n",
                "",
                "sdp_no_ice_credentials",
            ),
            ("ice-ufrag:abcd", "ice-ufrag:ab", "sdp_bad_ice_credentials"),
            ("opus/48000/2", "PCMU/8000", "sdp_no_opus"),
            // Opus at a payload type the m-line does not list is no Opus.
            ("a=rtpmap:96 opus", "a=rtpmap:97 opus", "sdp_no_opus"),
        ];
        for (from, to, code) in cases {
            assert!(MINIMAL.contains(from), "{from}");
            let sdp = MINIMAL.replacen(from, to, 1);
            let e = check(&sdp).expect_err(&sdp);
            assert_eq!(e.code(), *code, "{sdp}: {e}");
        }
        let no_fp: String = MINIMAL
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert_eq!(check(&no_fp).unwrap_err(), SdpError::NoFingerprint);
        assert_eq!(check("").unwrap_err().code(), "sdp_malformed");
        let two =
            format!("{MINIMAL}m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\n");
        assert_eq!(
            check(&two).unwrap_err(),
            SdpError::MediaLines { audio: 2, other: 0 }
        );
        let big = format!("{MINIMAL}a=x-pad:{}\r\n", "x".repeat(MAX_SDP_BYTES));
        assert_eq!(check(&big).unwrap_err().code(), "sdp_too_large");
    }

    #[test]
    fn relay_only_keeps_relay_candidates_only() {
        assert_eq!(
            candidate_type("candidate:1 1 udp 5 192.0.2.1 5000 typ host"),
            Some("host")
        );
        assert_eq!(candidate_type("candidate:1 1 udp 5 192.0.2.1 5000"), None);
        assert!(!relay_only_admits(
            "candidate:1 1 udp 5 192.0.2.1 5000 typ srflx raddr 0.0.0.0 rport 0"
        ));
        // "typ" in another field is not the type.
        assert!(!relay_only_admits(
            "candidate:typ 1 udp 5 relay.example 5000 typ host"
        ));
        assert_eq!(
            relay_only_candidate("candidate:2 1 UDP 5 198.51.100.7 49152 typ relay raddr 203.0.113.4 rport 58133 generation 0")
                .as_deref(),
            Some("candidate:2 1 UDP 5 198.51.100.7 49152 typ relay raddr 0.0.0.0 rport 0 generation 0")
        );
        assert_eq!(
            relay_only_candidate(
                "candidate:2 1 UDP 5 2001:db8::7 49152 typ relay raddr 2001:db8::4 rport 1"
            )
            .as_deref(),
            Some("candidate:2 1 UDP 5 2001:db8::7 49152 typ relay raddr :: rport 0")
        );
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:1 1 UDP 2015363327 192.0.2.2 58133 typ host\r\n\
                   a=candidate:2 1 UDP 5 198.51.100.7 49152 typ relay raddr 192.0.2.2 rport 58133\r\n\
                   a=candidate:3 1 TCP 1015 192.0.2.2 9 typ host tcptype active\r\n\
                   a=end-of-candidates\r\n";
        let kept = relay_only_description(sdp);
        assert_eq!(
            kept,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             a=candidate:2 1 UDP 5 198.51.100.7 49152 typ relay raddr 0.0.0.0 rport 0\r\n\
             a=end-of-candidates\r\n"
        );
        assert_eq!(relay_only_description(&kept), kept);
    }

    #[test]
    fn codes_are_unique_and_listed() {
        let mut codes = SdpError::CODES.to_vec();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), SdpError::CODES.len());
    }

    #[test]
    fn candidates_are_checked() {
        let l = Limits::default();
        let ok = [
            "candidate:4123146583 1 udp 2122194687 192.0.2.2 38074 typ host generation 0 ufrag F90J network-id 1",
            "candidate:3 1 TCP 2105524479 d6d9d5ae-a604-424e-8356-fe743b1820a9.local 9 typ host tcptype active",
            "candidate:842163049 1 udp 1677729535 192.0.2.10 49203 typ srflx raddr 0.0.0.0 rport 0",
            "candidate:7 1 UDP 2015363839 fe80::fc:ff:fe00:1 46619 typ host",
            "a=candidate:1 1 UDP 2015363327 192.0.2.2 58133 typ host",
        ];
        for c in ok {
            check_candidate(c, Some("0"), Some(0), &l).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        let refused = [
            ("", "candidate_malformed"),
            (
                "candidate:1 1 udp 1 192.0.2.1 70000 typ host",
                "candidate_malformed",
            ),
            (
                "candidate:1 1 sctp 1 192.0.2.1 5000 typ host",
                "candidate_malformed",
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 5000 typ host raddr",
                "candidate_malformed",
            ),
            (
                "candidate:1 1 udp 1 bad_host! 5000 typ host",
                "candidate_malformed",
            ),
            (
                "candidate:1 1 udp 99999999999 192.0.2.1 5000 typ host",
                "candidate_malformed",
            ),
            (
                "candidate:1 1 udp 1 192.0.2.1 5000 typ alien",
                "candidate_malformed",
            ),
        ];
        for (c, code) in refused {
            assert_eq!(
                check_candidate(c, None, None, &l).unwrap_err().code(),
                code,
                "{c}"
            );
        }
        let long = format!(
            "candidate:1 1 udp 1 192.0.2.1 5000 typ host x {}",
            "y".repeat(1100)
        );
        assert_eq!(
            check_candidate(&long, None, None, &l).unwrap_err().code(),
            "candidate_too_large"
        );
        let c = ok[0];
        assert!(check_candidate(c, Some("0"), Some(1), &l).is_err());
        assert!(check_candidate(c, Some(""), None, &l).is_err());
        assert!(check_candidate(c, Some(&"m".repeat(65)), None, &l).is_err());
    }

    #[test]
    fn the_budget_counts_per_negotiation() {
        let l = Limits {
            max_candidates: 3,
            ..Limits::default()
        };
        let cand = |n: u16| MediaSignal::Candidate {
            candidate: format!("candidate:{n} 1 udp 1 192.0.2.1 {} typ host", 5000 + n),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        };
        let offer = |ufrag: &str| MediaSignal::Offer {
            sdp: MINIMAL.replace("abcd", ufrag)
                + "a=candidate:9 1 udp 1 192.0.2.1 5009 typ host\r\n",
            ice_restart: false,
        };
        let mut b = CandidateBudget::default();
        b.admit(&offer("abcd"), &l).unwrap();
        b.admit(&cand(1), &l).unwrap();
        b.admit(&cand(2), &l).unwrap();
        assert_eq!(b.used(), 3);
        assert_eq!(
            b.admit(&cand(3), &l).unwrap_err().code(),
            "too_many_candidates"
        );
        // A re-offer with the same credentials does not reset the count...
        assert_eq!(
            b.admit(&offer("abcd"), &l).unwrap_err().code(),
            "too_many_candidates"
        );
        assert_eq!(b.used(), 3, "a refused signal changes nothing");
        // ... an ICE restart (new credentials) does.
        b.admit(&offer("wxyz"), &l).unwrap();
        assert_eq!(b.used(), 1);
        b.admit(&MediaSignal::EndOfCandidates, &l).unwrap();
        b.admit(&MediaSignal::Mute { muted: true }, &l).unwrap();
        assert_eq!(b.used(), 1);
    }
}
