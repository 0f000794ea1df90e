//! Verified DTLS between two native engines in one process: an `a=fingerprint` changed on the
//! signaling path (as an attacker in the middle would) ends the call with `NotVerified` on the side
//! that received it, and no audio crosses either way; an answer that breaks RFC 8842's DTLS roles
//! (`actpass`) is refused. (Untampered calls: `native_pair.rs`, `negotiation.rs`.)

mod common;

use common::{tamper_fingerprint, with_sdp, Pair};
use tincan_media::{EngineEvent, MediaError};

/// The side whose peer's fingerprint was tampered refuses it; nobody hears anything.
fn tampered(side_tampered: char) {
    let mut p = Pair::start(false);
    p.collect_errors = true;
    // The fingerprint `side_tampered` sends reaches the other side changed.
    p.tamper = Some(Box::new(move |who, s| {
        Some(if who == side_tampered {
            with_sdp(s, tamper_fingerprint)
        } else {
            s
        })
    }));
    let refuser = if side_tampered == 'a' { 'b' } else { 'a' };
    p.ring_then_accept();
    let mut heard = Vec::new();
    let mut track = |w: char, e: &EngineEvent| match e {
        EngineEvent::RemoteAudioStarted => heard.push((w, "first audio".to_owned())),
        EngineEvent::RemotePeak { hz, db } if *db > -60.0 => heard.push((w, format!("{hz:.0} Hz"))),
        _ => {}
    };
    let mut errors_seen = 0;
    p.pump(10, "the refusal", |w, e| {
        track(w, e);
        if matches!(e, EngineEvent::Error(_)) {
            errors_seen += 1;
        }
        errors_seen > 0
    });
    // Keep the call up a while longer: still nothing crosses either way.
    p.pump_for(3.0, &mut track);
    println!(
        "tampered {side_tampered}'s fingerprint: errors {:?}",
        p.errors
    );
    assert!(
        matches!(p.errors.as_slice(), [(w, MediaError::NotVerified(_))] if *w == refuser),
        "{refuser} should refuse the certificate: {:?}",
        p.errors
    );
    assert!(
        heard.is_empty(),
        "audio crossed an unverified call: {heard:?}"
    );
    p.b.request_stats();
    p.a.request_stats();
    let mut stats = Vec::new();
    p.pump(5, "stats", |w, e| {
        if let EngineEvent::Stats(s) = e {
            stats.push((w, *s));
        }
        stats.len() == 2
    });
    // The side that refused sent nothing (the other one verified its peer, so it may send: the
    // refuser drops what arrives).
    for (w, s) in stats {
        println!("{w}: {s:?}");
        if w == refuser {
            assert_eq!(s.packets_sent, 0, "{w} sent audio unverified: {s:?}");
        }
    }
}

#[test]
fn a_tampered_offer_fingerprint_is_refused_by_the_callee() {
    tampered('a');
}

#[test]
fn a_tampered_answer_fingerprint_is_refused_by_the_caller() {
    tampered('b');
}

/// An answerer must not answer `actpass` (RFC 8842 §5.3): the caller refuses the answer.
#[test]
fn an_answer_with_actpass_is_refused() {
    let mut p = Pair::start(false);
    p.collect_errors = true;
    p.tamper = Some(Box::new(|who, s| {
        Some(if who == 'b' {
            with_sdp(s, |sdp| sdp.replace("a=setup:active", "a=setup:actpass"))
        } else {
            s
        })
    }));
    p.ring_then_accept();
    p.pump(10, "the caller to refuse the answer", |_, e| {
        matches!(e, EngineEvent::Error(_))
    });
    assert!(
        matches!(
            p.errors.as_slice(),
            [('a', MediaError::BadRemoteDescription(_))]
        ),
        "{:?}",
        p.errors
    );
}
