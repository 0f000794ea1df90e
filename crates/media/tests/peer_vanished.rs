//! A caller whose callee vanished mid-call notices by itself and restarts ICE: in a test binary of
//! its own, so it runs in a process of its own (see `ice_restart.rs`).

mod common;

use common::Pair;
use std::time::Instant;
use tincan_media::EngineEvent;
use tincan_proto::MediaSignal;

/// The callee vanishes mid-call (its process froze, its network went away): the caller notices
/// the silence by itself within the 2 s rule, rebuilds its connection and re-offers with
/// `ice_restart`. (That such an offer brings the audio back is `ice_restart.rs`, and, with a real
/// frozen peer, the Chromium interop tests and the desktop e2e.)
#[test]
fn a_caller_whose_peer_vanished_restarts_by_itself() {
    let mut p = Pair::start(false);
    p.ring_then_accept();
    p.hear('a', 1000.0);
    p.b.stop();
    let vanished = Instant::now();
    p.pump(15, "the caller to notice and restart", |w, e| {
        w == 'a' && matches!(e, EngineEvent::IceRestart { .. })
    });
    let noticed = vanished.elapsed();
    println!(
        "native<->native: the caller restarted ICE {} ms after its peer vanished",
        noticed.as_millis()
    );
    assert!(noticed >= tincan_media::RESTART_AFTER, "{noticed:?}");
    p.pump(10, "the restart offer", |w, e| {
        w == 'a'
            && matches!(
                e,
                EngineEvent::Signal(MediaSignal::Offer {
                    ice_restart: true,
                    ..
                })
            )
    });
    assert_eq!(p.a.ice_restarts(), 1);
    p.a.stop();
}
