//! Two native engines in one process, on loopback: each sends its own tone and must hear the
//! other's. Real webrtcbin, real ICE over this machine's interfaces, real DTLS-SRTP and Opus.

use std::sync::mpsc;
use std::time::{Duration, Instant};
use tincan_media::{AudioInput, AudioOutput, EngineConfig, EngineEvent, MediaSession, Role};

fn config(hz: f64) -> EngineConfig {
    EngineConfig {
        input: AudioInput::Tone { hz },
        output: AudioOutput::Measure,
        echo_cancellation: false,
        ..EngineConfig::default()
    }
}

#[derive(Default)]
struct Heard {
    /// Consecutive spectrum readings near the expected tone.
    streak: u32,
    first_audio: Option<Instant>,
    last_peak: Option<f64>,
}

impl Heard {
    fn note(&mut self, hz: f64, db: f32, want: f64) {
        self.last_peak = Some(hz);
        if db > -60.0 && (hz - want).abs() < want * 0.05 {
            self.streak += 1;
        } else {
            self.streak = 0;
        }
    }
}

#[test]
fn two_native_engines_hear_each_other() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    tincan_media::check_plugins().expect("GStreamer plugins present");
    let (tx, rx) = mpsc::channel::<(char, EngineEvent)>();
    let ta = tx.clone();
    let a = MediaSession::start(&config(440.0), Role::Offerer, move |e| {
        let _ = ta.send(('a', e));
    })
    .expect("engine A starts");
    let b = MediaSession::start(&config(1000.0), Role::Answerer, move |e| {
        let _ = tx.send(('b', e));
    })
    .expect("engine B starts");

    let (mut heard_a, mut heard_b) = (Heard::default(), Heard::default());
    let mut answer_applied: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while heard_a.streak < 5 || heard_b.streak < 5 {
        let now = Instant::now();
        assert!(
            now < deadline,
            "audio did not cross: A last heard {:?} Hz, B last heard {:?} Hz",
            heard_a.last_peak,
            heard_b.last_peak
        );
        let Ok((who, event)) = rx.recv_timeout(deadline - now) else {
            continue;
        };
        match event {
            EngineEvent::Signal(s) => {
                let target = if who == 'a' { &b } else { &a };
                if matches!(s, tincan_proto::MediaSignal::Answer { .. }) {
                    answer_applied = Some(Instant::now());
                }
                target.apply_remote(&s).expect("signal applies");
            }
            EngineEvent::RemoteAudioStarted => {
                let h = if who == 'a' {
                    &mut heard_a
                } else {
                    &mut heard_b
                };
                h.first_audio.get_or_insert_with(Instant::now);
            }
            EngineEvent::RemotePeak { hz, db } => {
                if who == 'a' {
                    heard_a.note(hz, db, 1000.0);
                } else {
                    heard_b.note(hz, db, 440.0);
                }
            }
            EngineEvent::Error(e) => panic!("engine {who}: {e}"),
            _ => {}
        }
    }
    let t0 = answer_applied.expect("an answer was exchanged");
    for (name, h) in [("A", &heard_a), ("B", &heard_b)] {
        let first = h.first_audio.expect("first audio seen");
        println!(
            "native<->native: {name} first remote audio {} ms after the answer; hears {:.1} Hz",
            first.saturating_duration_since(t0).as_millis(),
            h.last_peak.unwrap_or_default()
        );
    }
    // Mute A: B's received tone disappears.
    a.set_muted(true);
    let mute_deadline = Instant::now() + Duration::from_secs(10);
    let mut quiet = 0;
    while quiet < 3 {
        assert!(Instant::now() < mute_deadline, "B still hears A after mute");
        if let Ok(('b', EngineEvent::RemoteLevel(db))) = rx.recv_timeout(Duration::from_secs(1)) {
            quiet = if db < -60.0 { quiet + 1 } else { 0 };
        }
    }
    a.stop();
    b.stop();
}
