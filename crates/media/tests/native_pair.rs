//! Two native engines in one process, on loopback: each sends its own tone and must hear the
//! other's. Real webrtcbin, real ICE over this machine's interfaces, real DTLS-SRTP and Opus.
//!
//! Also: the callee keeps its microphone closed and its answer back until it accepts; the speaker
//! and the microphone switch mid-call; mute.

mod common;

use common::Pair;
use tincan_media::{AudioInput, AudioOutput, EngineEvent, MediaError};

fn call(echo: bool) {
    let mut p = Pair::start(echo);
    p.ring_then_accept();
    p.hear('a', 1000.0);
    p.hear('b', 440.0);
    let t0 = p.answer_applied.expect("an answer was exchanged");
    let accepted = p.accepted_at.expect("accepted");
    for (name, first) in [("A", p.first_audio[0]), ("B", p.first_audio[1])] {
        let first = first.expect("first audio seen");
        println!(
            "native<->native (echo cancellation {}): {name} first remote audio {} ms after accept ({} ms after the answer)",
            if echo { "on" } else { "off" },
            first.saturating_duration_since(accepted).as_millis(),
            first.saturating_duration_since(t0).as_millis(),
        );
    }
}

#[test]
fn two_native_engines_hear_each_other() {
    call(false);
}

/// The default configuration for a real microphone: echo cancellation, noise suppression and gain
/// control on both sides.
#[test]
fn audio_crosses_with_echo_cancellation_on() {
    call(true);
}

#[test]
fn stats_device_switches_and_mute_mid_call() {
    let mut p = Pair::start(false);
    p.ring_then_accept();
    p.hear('b', 440.0);
    p.hear('a', 1000.0);
    // Statistics show packets flowing in.
    p.b.request_stats();
    p.pump(5, "stats", |w, e| {
        if let (true, EngineEvent::Stats(s)) = (w == 'b', e) {
            assert!(s.packets_received > 0, "{s:?}");
            println!("native<->native: B stats {s:?}, loss {:.1} %", s.loss_pct());
            return true;
        }
        false
    });
    // A switches microphones mid-call, without renegotiation: B hears the new one.
    p.a.switch_input(&AudioInput::Tone { hz: 660.0 })
        .expect("switch input");
    p.hear('b', 660.0);
    // A switches its speaker mid-call: the new output (a fresh measuring sink) hears B.
    p.a.switch_output(&AudioOutput::Measure)
        .expect("switch output");
    p.hear('a', 1000.0);
    // An output that cannot open is refused with a typed error, and the current one keeps playing.
    match p
        .a
        .switch_output(&AudioOutput::Pulse("tincan-no-such-speaker".into()))
    {
        Err(MediaError::NoOutput(_)) => {}
        other => panic!("expected NoOutput, got {other:?}"),
    }
    p.hear('a', 1000.0);
    // Mute A: B's received tone disappears.
    p.a.set_muted(true);
    let mut quiet = 0;
    p.pump(10, "B to stop hearing A after mute", |w, e| {
        if let (true, EngineEvent::RemoteLevel(db)) = (w == 'b', e) {
            quiet = if *db < -60.0 { quiet + 1 } else { 0 };
        }
        quiet >= 3
    });
    assert_eq!(p.a.ice_restarts(), 0, "nothing restarted in a healthy call");
    p.a.stop();
    p.b.stop();
}
