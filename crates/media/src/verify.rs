//! The peer's DTLS certificate checked against the remote description's `a=fingerprint`.
//!
//! GStreamer 1.22's DTLS elements accept every peer certificate (`dtlsdec`'s handler of its
//! connection's `on-peer-certificate` always returns TRUE, and that connection object is not
//! reachable from outside), and webrtcbin never compares the certificate with the SDP. Without this
//! check anyone on the UDP path could put itself in the middle of a call. So the pipe reads the
//! certificate the handshake delivered (`dtlsdec`'s `peer-pem`, notified during the handshake,
//! before the SRTP keys exist), checks it here, and lets no audio in or out until it matched
//! (see `Pipe`'s gates).
//!
//! Which fingerprints count (RFC 8122 §5): the media-level `a=fingerprint` lines of the first
//! m-line (the one whose transport carries the bundle), else the session-level ones; of those, the
//! ones with the strongest hash function we know; the certificate must match one of them. Hashes
//! weaker than SHA-256 (sha-1, md5, md2, sha-224) are not accepted as proof.

use base64::Engine as _;
use sha2::Digest as _;

/// A hash function that may name a fingerprint, strongest last (so `max` picks the strongest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sha-256" => Some(Self::Sha256),
            "sha-384" => Some(Self::Sha384),
            "sha-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn digest(self, der: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(der).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(der).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(der).to_vec(),
        }
    }
}

/// One `a=fingerprint` line we can check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    hash: Hash,
    digest: Vec<u8>,
}

/// What the remote description says the peer's certificate is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    fingerprints: Vec<Fingerprint>,
    /// Lines that named a hash we do not accept, or were malformed (for the error message).
    unusable: Vec<String>,
}

/// Why a certificate did not verify (shown in the error; never includes key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NoFingerprint { unusable: Vec<String> },
    NoCertificate,
    BadCertificate,
    Mismatch { hash: &'static str },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoFingerprint { unusable } if unusable.is_empty() => {
                f.write_str("the peer's session description has no a=fingerprint")
            }
            Self::NoFingerprint { unusable } => write!(
                f,
                "the peer's session description has no usable a=fingerprint (SHA-256 or stronger): {}",
                unusable.join(", ")
            ),
            Self::NoCertificate => f.write_str("the DTLS handshake delivered no peer certificate"),
            Self::BadCertificate => f.write_str("the peer's DTLS certificate could not be read"),
            Self::Mismatch { hash } => write!(
                f,
                "the peer's DTLS certificate does not match the {hash} fingerprint in its session description"
            ),
        }
    }
}

impl Hash {
    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha384 => "sha-384",
            Self::Sha512 => "sha-512",
        }
    }
}

/// `AB:CD:…` (either case) to bytes.
fn hex_digest(text: &str) -> Option<Vec<u8>> {
    text.split(':')
        .map(|b| {
            (b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect()
}

fn parse_line(value: &str, out: &mut Expected) {
    let mut parts = value.split_ascii_whitespace();
    let (Some(hash), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
        out.unusable.push(format!("malformed '{value}'"));
        return;
    };
    match (Hash::parse(hash), hex_digest(hex)) {
        (Some(h), Some(digest)) if digest.len() == h.digest(&[]).len() => {
            out.fingerprints.push(Fingerprint { hash: h, digest })
        }
        (Some(_), _) => out.unusable.push(format!("malformed {hash} digest")),
        (None, _) => out.unusable.push(hash.to_ascii_lowercase()),
    }
}

/// The fingerprints the peer's certificate must match, from its SDP (see the module docs).
pub(crate) fn expected_from_sdp(sdp: &str) -> Expected {
    let mut session = Expected::default();
    let mut media = Expected::default();
    let mut section = 0usize; // 0: session level, 1: first m-line, 2+: later m-lines
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("m=") {
            section += 1;
        } else if let Some(value) = line.strip_prefix("a=fingerprint:") {
            match section {
                0 => parse_line(value, &mut session),
                1 => parse_line(value, &mut media),
                _ => {}
            }
        }
    }
    if media.fingerprints.is_empty() && media.unusable.is_empty() {
        session
    } else {
        media
    }
}

/// The DER of the first certificate in a PEM text.
fn first_certificate_der(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let len = pem[start..].find(END)?;
    let b64: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Checks the peer's certificate (PEM, as `dtlsdec`'s `peer-pem` gives it) against `expected`.
pub(crate) fn check(peer_pem: Option<&str>, expected: &Expected) -> Result<(), Refusal> {
    let strongest = expected
        .fingerprints
        .iter()
        .map(|f| f.hash)
        .max()
        .ok_or_else(|| Refusal::NoFingerprint {
            unusable: expected.unusable.clone(),
        })?;
    let pem = peer_pem
        .filter(|p| !p.is_empty())
        .ok_or(Refusal::NoCertificate)?;
    let der = first_certificate_der(pem).ok_or(Refusal::BadCertificate)?;
    let digest = strongest.digest(&der);
    if expected
        .fingerprints
        .iter()
        .any(|f| f.hash == strongest && f.digest == digest)
    {
        Ok(())
    } else {
        Err(Refusal::Mismatch {
            hash: strongest.name(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> (String, Vec<u8>) {
        let made = rcgen::generate_simple_self_signed(vec!["peer".to_owned()]).unwrap();
        (made.cert.pem(), made.cert.der().to_vec())
    }

    fn colons(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn sdp(session: &[String], media: &[String]) -> String {
        let mut s = String::from("v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
        for f in session {
            s += &format!("a=fingerprint:{f}\r\n");
        }
        s += "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        for f in media {
            s += &format!("a=fingerprint:{f}\r\n");
        }
        s
    }

    #[test]
    fn the_true_certificate_verifies_at_either_level_and_any_case() {
        let (pem, der) = cert();
        let fp = format!("sha-256 {}", colons(&sha2::Sha256::digest(&der)));
        for text in [
            sdp(std::slice::from_ref(&fp), &[]),
            sdp(&[], std::slice::from_ref(&fp)),
            sdp(&[], &[fp.to_lowercase()]),
            sdp(&[], &[fp.replace("sha-256", "SHA-256")]),
        ] {
            assert_eq!(
                check(Some(&pem), &expected_from_sdp(&text)),
                Ok(()),
                "{text}"
            );
        }
        // SHA-512 is checked with SHA-512.
        let fp512 = format!("sha-512 {}", colons(&sha2::Sha512::digest(&der)));
        assert_eq!(
            check(Some(&pem), &expected_from_sdp(&sdp(&[], &[fp512]))),
            Ok(())
        );
    }

    #[test]
    fn another_certificate_is_refused() {
        let (pem, _) = cert();
        let (_, other) = cert();
        let fp = format!("sha-256 {}", colons(&sha2::Sha256::digest(&other)));
        assert_eq!(
            check(Some(&pem), &expected_from_sdp(&sdp(&[], &[fp]))),
            Err(Refusal::Mismatch { hash: "sha-256" })
        );
    }

    #[test]
    fn media_level_overrides_session_level() {
        let (pem, der) = cert();
        let good = format!("sha-256 {}", colons(&sha2::Sha256::digest(&der)));
        let bad = format!("sha-256 {}", colons(&[0u8; 32]));
        let e = expected_from_sdp(&sdp(
            std::slice::from_ref(&good),
            std::slice::from_ref(&bad),
        ));
        assert!(check(Some(&pem), &e).is_err());
        let e = expected_from_sdp(&sdp(&[bad], &[good]));
        assert_eq!(check(Some(&pem), &e), Ok(()));
    }

    #[test]
    fn the_strongest_hash_decides() {
        // A matching SHA-256 line does not save a wrong SHA-512 line (RFC 8122 §5).
        let (pem, der) = cert();
        let good256 = format!("sha-256 {}", colons(&sha2::Sha256::digest(&der)));
        let bad512 = format!("sha-512 {}", colons(&[7u8; 64]));
        assert_eq!(
            check(
                Some(&pem),
                &expected_from_sdp(&sdp(&[], &[good256, bad512]))
            ),
            Err(Refusal::Mismatch { hash: "sha-512" })
        );
    }

    #[test]
    fn weak_missing_or_malformed_fingerprints_are_no_proof() {
        let (pem, der) = cert();
        let sha1 = format!("sha-1 {}", colons(&der[..20]));
        let e = expected_from_sdp(&sdp(&[], &[sha1]));
        assert!(matches!(
            check(Some(&pem), &e),
            Err(Refusal::NoFingerprint { .. })
        ));
        let e = expected_from_sdp(&sdp(&[], &[]));
        assert!(matches!(
            check(Some(&pem), &e),
            Err(Refusal::NoFingerprint { .. })
        ));
        let e = expected_from_sdp(&sdp(&[], &["sha-256 AB:CD".into()]));
        assert!(matches!(
            check(Some(&pem), &e),
            Err(Refusal::NoFingerprint { .. })
        ));
        // No certificate from the handshake, or garbage.
        let fp = format!("sha-256 {}", colons(&sha2::Sha256::digest(&der)));
        let e = expected_from_sdp(&sdp(&[], &[fp]));
        assert_eq!(check(None, &e), Err(Refusal::NoCertificate));
        assert_eq!(
            check(
                Some("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"),
                &e
            ),
            Err(Refusal::BadCertificate)
        );
    }
}
