//! The test rig shared by the native engine's tests: a caller `a` (440 Hz) and a callee `b`
//! (1000 Hz) in one process, whose signals the test carries.

#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};
use tincan_media::{
    AudioInput, AudioOutput, EngineConfig, EngineEvent, MediaError, MediaSession, Role,
};
use tincan_proto::MediaSignal;

pub fn config(hz: f64, echo_cancellation: bool) -> EngineConfig {
    EngineConfig {
        input: AudioInput::Tone { hz },
        output: AudioOutput::Measure,
        echo_cancellation,
        ..EngineConfig::default()
    }
}

pub type Events = mpsc::Receiver<(char, EngineEvent)>;

/// One call at a time in a test process, as in the app (it carries one call at a time): GStreamer's
/// DTLS elements keep process-wide tables (connections by id, agents by certificate). ICE restarts
/// also get a test binary, so a process, of their own (see `ice_restart.rs`).
pub static ONE_CALL_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A caller `a` (440 Hz) and a callee `b` (1000 Hz) whose signals the test carries.
pub struct Pair {
    pub _one_call: std::sync::MutexGuard<'static, ()>,
    pub a: MediaSession,
    pub b: MediaSession,
    pub rx: Events,
    pub tx: mpsc::Sender<(char, EngineEvent)>,
    /// When the callee accepted and when its answer reached the caller.
    pub accepted_at: Option<Instant>,
    pub answer_applied: Option<Instant>,
    pub first_audio: [Option<Instant>; 2],
    pub offers: Vec<MediaSignal>,
    /// Signals to a stopped (vanished) peer.
    pub undelivered: Vec<MediaSignal>,
}

impl Pair {
    pub fn start(echo: bool) -> Self {
        let one_call = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
            _one_call: one_call,
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

    pub fn session(&self, who: char) -> &MediaSession {
        if who == 'a' {
            &self.a
        } else {
            &self.b
        }
    }

    /// Carries signals and notes events until `until` says stop (given each event) or `secs` pass.
    pub fn pump(
        &mut self,
        secs: u64,
        what: &str,
        mut until: impl FnMut(char, &EngineEvent) -> bool,
    ) {
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
    pub fn hear(&mut self, who: char, want: f64) {
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
    pub fn ring_then_accept(&mut self) {
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
