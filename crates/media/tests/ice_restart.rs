//! An ICE restart between two native engines in one process. Ignored by default: with both sides
//! in one process (unlike the app, one call per process) the restarted DTLS handshake fails now
//! and then inside GStreamer 1.22, whose DTLS elements keep process-wide tables; it failed once in
//! a clean CI run even in a binary of its own. `cargo test -p tincan-media -- --ignored` runs it.

mod common;

use common::Pair;
use std::time::Instant;
use tincan_media::{EngineEvent, MediaError};
use tincan_proto::MediaSignal;

/// The caller restarts ICE mid-call (as after a network change): a fresh pipe offers with
/// `ice_restart`, the callee answers from a fresh pipe, and both hear each other again.
#[test]
#[ignore = "flaky: both sides' restarted DTLS handshakes in one process fail now and then inside \
            GStreamer 1.22 (\"Fatal SSL error\"); run with --ignored. Restarts are tested across \
            processes against Chromium (tests/media) and in the desktop e2e"]
fn an_ice_restart_brings_audio_back_on_both_sides() {
    let mut p = Pair::start(false);
    p.ring_then_accept();
    p.hear('a', 1000.0);
    p.hear('b', 440.0);
    assert!(
        matches!(p.b.restart_ice(), Err(MediaError::Negotiation(_))),
        "only the caller restarts"
    );
    p.first_audio = [None, None];
    let asked = Instant::now();
    p.a.restart_ice().expect("restart");
    let mut restarted = [false, false];
    p.pump(10, "both sides to restart", |w, e| {
        if matches!(e, EngineEvent::IceRestart { restarts: 1 }) {
            restarted[usize::from(w == 'b')] = true;
        }
        restarted == [true, true]
    });
    assert!(
        matches!(
            p.offers.last(),
            Some(MediaSignal::Offer {
                ice_restart: true,
                ..
            })
        ),
        "the new offer is marked as an ICE restart"
    );
    p.hear('a', 1000.0);
    p.hear('b', 440.0);
    for (name, first) in [("A", p.first_audio[0]), ("B", p.first_audio[1])] {
        let first = first.expect("audio after the restart");
        println!(
            "native<->native: {name} hears the peer again {} ms after the ICE restart was asked for",
            first.saturating_duration_since(asked).as_millis()
        );
    }
    assert_eq!((p.a.ice_restarts(), p.b.ice_restarts()), (1, 1));
    p.a.stop();
    p.b.stop();
}
