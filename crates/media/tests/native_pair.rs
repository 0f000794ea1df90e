//! Two native engines in one process, on loopback: each sends its own tone and must hear the
//! other's. Real webrtcbin, real ICE over this machine's interfaces, real DTLS-SRTP and Opus.

use std::sync::mpsc;
use std::time::{Duration, Instant};
use tincan_media::{AudioInput, AudioOutput, EngineConfig, EngineEvent, MediaSession, Role};

fn config(hz: f64, echo_cancellation: bool) -> EngineConfig {
    EngineConfig {
        input: AudioInput::Tone { hz },
        output: AudioOutput::Measure,
        echo_cancellation,
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
    call(false);
}

/// The default configuration for a real microphone: echo cancellation, noise suppression and gain
/// control on both sides.
#[test]
fn audio_crosses_with_echo_cancellation_on() {
    call(true);
}

/// Waits until `who`'s engine hears `want` Hz steadily, forwarding any signals meanwhile.
fn hear(rx: &mpsc::Receiver<(char, EngineEvent)>, who: char, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut heard = Heard::default();
    while heard.streak < 5 {
        assert!(
            Instant::now() < deadline,
            "{who} never heard {want} Hz (last {:?})",
            heard.last_peak
        );
        if let Ok((w, EngineEvent::RemotePeak { hz, db })) = rx.recv_timeout(Duration::from_secs(1))
        {
            if w == who {
                heard.note(hz, db, want);
            }
        }
    }
}

fn call(echo: bool) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    tincan_media::check_plugins().expect("GStreamer plugins present");
    let (tx, rx) = mpsc::channel::<(char, EngineEvent)>();
    let ta = tx.clone();
    let a = MediaSession::start(&config(440.0, echo), Role::Offerer, move |e| {
        let _ = ta.send(('a', e));
    })
    .expect("engine A starts");
    let b = MediaSession::start(&config(1000.0, echo), Role::Answerer, move |e| {
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
            "native<->native (echo cancellation {}): {name} first remote audio {} ms after the answer; hears {:.1} Hz",
            if echo { "on" } else { "off" },
            first.saturating_duration_since(t0).as_millis(),
            h.last_peak.unwrap_or_default()
        );
    }
    // Statistics show packets flowing in.
    b.request_stats();
    let stats_deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < stats_deadline, "no stats");
        if let Ok(('b', EngineEvent::Stats(s))) = rx.recv_timeout(Duration::from_secs(1)) {
            assert!(s.packets_received > 0, "{s:?}");
            println!("native<->native: B stats {s:?}, loss {:.1} %", s.loss_pct());
            break;
        }
    }
    // A switches microphones mid-call, without renegotiation: B hears the new one.
    a.switch_input(&AudioInput::Tone { hz: 660.0 })
        .expect("switch input");
    hear(&rx, 'b', 660.0);
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
