//! Two native engines in one process, on loopback: each sends its own tone and must hear the
//! other's. Real webrtcbin, real ICE over this machine's interfaces, real DTLS-SRTP and Opus.
//!
//! Also: the callee keeps its microphone closed and its answer back until it accepts, the speaker
//! and the microphone switch mid-call, and ICE restarts (asked for, and after the peer vanished)
//! bring the audio back.

use std::sync::mpsc;
use std::time::{Duration, Instant};
use tincan_media::{
    AudioInput, AudioOutput, EngineConfig, EngineEvent, MediaError, MediaSession, Role,
};
use tincan_proto::MediaSignal;

fn config(hz: f64, echo_cancellation: bool) -> EngineConfig {
    EngineConfig {
        input: AudioInput::Tone { hz },
        output: AudioOutput::Measure,
        echo_cancellation,
        ..EngineConfig::default()
    }
}

type Events = mpsc::Receiver<(char, EngineEvent)>;

/// A caller `a` (440 Hz) and a callee `b` (1000 Hz) whose signals the test carries.
struct Pair {
    a: MediaSession,
    b: MediaSession,
    rx: Events,
    tx: mpsc::Sender<(char, EngineEvent)>,
    /// When the callee accepted and when its answer reached the caller.
    accepted_at: Option<Instant>,
    answer_applied: Option<Instant>,
    first_audio: [Option<Instant>; 2],
    offers: Vec<MediaSignal>,
    /// Signals to a stopped (vanished) peer.
    undelivered: Vec<MediaSignal>,
}

impl Pair {
    fn start(echo: bool) -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        tincan_media::check_plugins().expect("GStreamer plugins present");
        let (tx, rx) = mpsc::channel::<(char, EngineEvent)>();
        let ta = tx.clone();
        let a = MediaSession::start(&config(440.0, echo), Role::Offerer, move |e| {
            let _ = ta.send(('a', e));
        })
        .expect("engine A starts");
        let tb = tx.clone();
        let b = MediaSession::start(&config(1000.0, echo), Role::Answerer, move |e| {
            let _ = tb.send(('b', e));
        })
        .expect("engine B starts");
        Self {
            a,
            b,
            rx,
            tx,
            accepted_at: None,
            answer_applied: None,
            first_audio: [None, None],
            offers: Vec::new(),
            undelivered: Vec::new(),
        }
    }

    fn session(&self, who: char) -> &MediaSession {
        if who == 'a' {
            &self.a
        } else {
            &self.b
        }
    }

    /// Carries signals and notes events until `until` says stop (given each event) or `secs` pass.
    fn pump(&mut self, secs: u64, what: &str, mut until: impl FnMut(char, &EngineEvent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for {what}");
            let Ok((who, event)) = self.rx.recv_timeout(deadline - now) else {
                continue;
            };
            let i = usize::from(who == 'b');
            match &event {
                EngineEvent::Signal(s) => {
                    if matches!(s, MediaSignal::Answer { .. }) {
                        self.answer_applied.get_or_insert_with(Instant::now);
                    }
                    if matches!(s, MediaSignal::Offer { .. }) {
                        self.offers.push(s.clone());
                    }
                    let target = self.session(if who == 'a' { 'b' } else { 'a' });
                    // A vanished peer refuses signals; they are kept for its return.
                    match target.apply_remote(s) {
                        Ok(()) => {}
                        Err(MediaError::Stopped) => self.undelivered.push(s.clone()),
                        Err(e) => panic!("signal from {who} does not apply: {e}"),
                    }
                }
                EngineEvent::RemoteAudioStarted => {
                    self.first_audio[i].get_or_insert_with(Instant::now);
                }
                EngineEvent::Error(e) => panic!("engine {who}: {e}"),
                _ => {}
            }
            if until(who, &event) {
                return;
            }
        }
    }

    /// Waits until `who` hears `want` Hz steadily (five spectrum readings in a row).
    fn hear(&mut self, who: char, want: f64) {
        let mut streak = 0;
        self.pump(15, &format!("{who} to hear {want} Hz"), |w, e| {
            if let (true, EngineEvent::RemotePeak { hz, db }) = (w == who, e) {
                streak = if *db > -60.0 && (hz - want).abs() < want * 0.05 {
                    streak + 1
                } else {
                    0
                };
            }
            streak >= 5
        });
    }

    /// The callee rings with the offer applied, then accepts.
    fn ring_then_accept(&mut self) {
        self.pump(10, "the caller's offer", |w, e| {
            w == 'a' && matches!(e, EngineEvent::Signal(MediaSignal::Offer { .. }))
        });
        // Ringing: the offer is set, the microphone closed, no answer leaves.
        let quiet_until = Instant::now() + Duration::from_millis(600);
        while let Ok((who, ev)) = self
            .rx
            .recv_timeout(quiet_until.saturating_duration_since(Instant::now()))
        {
            match ev {
                EngineEvent::Signal(MediaSignal::Answer { .. }) => {
                    panic!("the callee answered before accepting")
                }
                EngineEvent::LocalLevel(db) if who == 'b' => {
                    assert!(db < -80.0, "the ringing callee sends sound ({db} dBFS)")
                }
                EngineEvent::Signal(s) => {
                    let target = self.session(if who == 'a' { 'b' } else { 'a' });
                    target.apply_remote(&s).expect("candidate applies");
                }
                _ => {}
            }
        }
        self.accepted_at = Some(Instant::now());
        self.b.accept().expect("accept");
    }
}

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

/// The caller restarts ICE mid-call (as after a network change): a fresh pipe offers with
/// `ice_restart`, the callee answers from a fresh pipe, and both hear each other again.
#[test]
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

/// The callee vanishes mid-call (its process froze, its network went away): the caller notices
/// the silence by itself, rebuilds its connection and re-offers; when the callee's side is back
/// and answers that offer, audio flows again.
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
    // The callee's side comes back and answers the restart offer (and the candidates that followed).
    let tb = p.tx.clone();
    p.b = MediaSession::start(&config(1000.0, false), Role::Answerer, move |e| {
        let _ = tb.send(('b', e));
    })
    .expect("engine B starts again");
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
    let offer = p.offers.last().cloned().expect("a restart offer");
    p.b.apply_remote(&offer).expect("offer applies");
    for s in std::mem::take(&mut p.undelivered) {
        if !matches!(s, MediaSignal::Offer { .. }) {
            p.b.apply_remote(&s).expect("candidate applies");
        }
    }
    p.b.accept().expect("accept");
    p.first_audio = [None, None];
    p.hear('a', 1000.0);
    p.hear('b', 440.0);
    p.a.stop();
    p.b.stop();
}
