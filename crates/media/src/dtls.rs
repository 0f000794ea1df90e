//! A pipe's DTLS: its own certificate, the true fingerprint in our SDP, and the watch on the
//! peer's certificate that feeds the check in [`crate::verify`].

use crate::pipe::lock;
use crate::MediaError;
use gst::glib;
use gst::prelude::*;
use std::sync::{Arc, Mutex};

/// A pipe's own DTLS certificate.
#[derive(Clone)]
pub(crate) struct Certificate {
    /// Certificate and private key, PEM, as GStreamer's DTLS elements take them.
    pub pem: String,
    /// SHA-256 of the certificate's DER, as SDP writes it ("AB:CD:…").
    pub fingerprint: String,
}

/// A new self-signed DTLS certificate (ECDSA P-256, as browsers make them) and its private key,
/// for every pipe, the first one included. Without it GStreamer 1.22 uses one RSA 2048
/// certificate per process, and a peer that offers only ECDHE-ECDSA cipher suites fails the
/// handshake ("no shared cipher"); a pipe that replaces another needs a new one anyway (a peer
/// that sees the same fingerprint after an ICE restart, like Chromium, keeps its old DTLS
/// association). GStreamer's own `GstDtlsCertificate` would not do: its `pem` property gives the
/// certificate without the key.
pub(crate) fn fresh_certificate() -> Result<Certificate, MediaError> {
    use sha2::Digest;
    let made = rcgen::generate_simple_self_signed(vec!["tincan".to_owned()])
        .map_err(|e| MediaError::Pipeline(format!("no DTLS certificate: {e}")))?;
    let digest = sha2::Sha256::digest(made.cert.der());
    let fingerprint = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(Certificate {
        pem: format!("{}{}", made.cert.pem(), made.signing_key.serialize_pem()),
        fingerprint,
    })
}

/// Writes the certificate's true fingerprint into our SDP. GStreamer 1.22's webrtcbin makes the
/// fingerprint by decoding every base64 line of the transport's PEM, so with a PEM that carries its
/// key (as one we supply must) it hashes certificate and key together, and a browser that checks
/// the fingerprint (all of them) refuses the handshake ("certificate unknown").
pub(crate) fn with_fingerprint(sdp: &str, fingerprint: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=fingerprint:") {
            out.push_str("a=fingerprint:sha-256 ");
            out.push_str(fingerprint);
            out.push_str("\r\n");
        } else {
            out.push_str(line);
        }
    }
    out
}

/// What the watch reports: the peer's certificate (PEM) as the handshake delivered it, and whether
/// the DTLS connection is up. Called on GStreamer's threads.
pub(crate) type OnPeer = Arc<dyn Fn(Option<String>, bool) + Send + Sync>;

/// Prepares every DTLS decoder in `element` (itself, or inside it if it is a bin) that is not in
/// `done`, and adds it to `done`: gives it this certificate, and watches the certificate its
/// handshake receives. webrtcbin binds its DTLS transport's `certificate` (from which the SDP
/// fingerprint is made) to the decoder's `pem`.
///
/// Once only per decoder, and before its transport's encoder goes to READY: setting `pem` makes
/// the decoder a new DTLS connection, and an encoder that already took the old one would answer
/// the handshake with the other certificate.
pub(crate) fn prepare_decoders(
    element: &gst::Element,
    pem: &str,
    on_peer: &OnPeer,
    done: &Mutex<Vec<String>>,
) {
    let mut done = lock(done);
    let mut apply = |e: &gst::Element| {
        let name = e.name().to_string();
        if e.factory().is_some_and(|f| f.name() == "dtlssrtpdec") && !done.contains(&name) {
            tracing::debug!(%name, state = ?e.current_state(), "our certificate for a DTLS decoder");
            e.set_property("pem", pem);
            watch_peer(e, on_peer.clone());
            done.push(name);
        }
    };
    apply(element);
    if let Some(bin) = element.downcast_ref::<gst::Bin>() {
        for child in bin.iterate_recurse().into_iter().flatten() {
            apply(&child);
        }
    }
}

/// `dtlsdec`'s connection state as its enum nick says it.
fn connected(dec: &gst::Element) -> bool {
    let value = dec.property_value("connection-state");
    glib::EnumValue::from_value(&value).is_some_and(|(_, v)| v.nick() == "connected")
}

/// Watches the `dtlsdec` inside a `dtlssrtpdec`: its `peer-pem` is set (and notified) while the
/// handshake verifies the peer, before the SRTP keys are derived; its `connection-state` says
/// when the handshake is over (a connection with no peer certificate by then is refused).
/// `dtlssrtpdec` itself has a `peer-pem` but does not notify it.
fn watch_peer(srtp_dec: &gst::Element, on_peer: OnPeer) {
    let Some(bin) = srtp_dec.downcast_ref::<gst::Bin>() else {
        on_peer(None, true);
        return;
    };
    let dec = bin
        .iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "dtlsdec"));
    let Some(dec) = dec else {
        // Never pass audio over a connection we cannot check.
        tracing::error!("dtlssrtpdec has no dtlsdec inside: the peer cannot be verified");
        on_peer(None, true);
        return;
    };
    let report = on_peer.clone();
    // Called inside OpenSSL's verify callback, with the DTLS connection's lock held: reading the
    // connection's state here would deadlock the handshake, so only the certificate is read.
    dec.connect_notify(Some("peer-pem"), move |dec, _| {
        report(dec.property::<Option<String>>("peer-pem"), false);
    });
    // Notified after the connection's lock is released.
    dec.connect_notify(Some("connection-state"), move |dec, _| {
        if connected(dec) {
            on_peer(dec.property::<Option<String>>("peer-pem"), true);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_sdp_carries_the_certificates_own_fingerprint() {
        let c = fresh_certificate().unwrap();
        assert!(c.pem.contains("BEGIN CERTIFICATE") && c.pem.contains("PRIVATE KEY"));
        assert_eq!(c.fingerprint.len(), 32 * 3 - 1);
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\n";
        let out = with_fingerprint(sdp, &c.fingerprint);
        assert_eq!(
            out,
            format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 {}\r\na=setup:actpass\r\n", c.fingerprint)
        );
    }
}
