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

/// See [`Pair::tamper`].
pub type Tamper = Box<dyn FnMut(char, MediaSignal) -> Option<MediaSignal>>;

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
    /// Changes (or, with `None`, swallows) a signal on its way from `who` to the other side: a
    /// network attacker, or another stack's habits, in tests of negotiation and verification.
    pub tamper: Option<Tamper>,
    /// Engine errors are collected here instead of failing the test.
    pub collect_errors: bool,
    pub errors: Vec<(char, MediaError)>,
    /// The signals as delivered (after `tamper`).
    pub delivered: Vec<(char, MediaSignal)>,
}

impl Pair {
    pub fn start(echo: bool) -> Self {
        Self::start_with(config(440.0, echo), config(1000.0, echo))
    }

    /// With the engines' configurations given (`a` the caller, `b` the callee).
    pub fn start_with(cfg_a: EngineConfig, cfg_b: EngineConfig) -> Self {
        let one_call = ONE_CALL_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        tincan_media::check_plugins().expect("GStreamer plugins present");
        let (tx, rx) = mpsc::channel::<(char, EngineEvent)>();
        let ta = tx.clone();
        let a = MediaSession::start(&cfg_a, Role::Offerer, move |e| {
            let _ = ta.send(('a', e));
        })
        .expect("engine A starts");
        let tb = tx.clone();
        let b = MediaSession::start(&cfg_b, Role::Answerer, move |e| {
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
            tamper: None,
            collect_errors: false,
            errors: Vec::new(),
            delivered: Vec::new(),
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
                    let s = match self.tamper.as_mut() {
                        Some(f) => f(who, s.clone()),
                        None => Some(s.clone()),
                    };
                    let Some(s) = &s else {
                        if until(who, &event) {
                            return;
                        }
                        continue;
                    };
                    self.delivered.push((who, s.clone()));
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
                        Err(e) if self.collect_errors => {
                            self.errors.push((if who == 'a' { 'b' } else { 'a' }, e))
                        }
                        Err(e) => panic!("signal from {who} does not apply: {e}"),
                    }
                }
                EngineEvent::RemoteAudioStarted => {
                    self.first_audio[i].get_or_insert_with(Instant::now);
                }
                EngineEvent::Error(e) if self.collect_errors => self.errors.push((who, e.clone())),
                EngineEvent::Error(e) => panic!("engine {who}: {e}"),
                _ => {}
            }
            if until(who, &event) {
                return;
            }
        }
    }

    /// Carries signals and watches events for `secs` seconds.
    pub fn pump_for(&mut self, secs: f64, mut watch: impl FnMut(char, &EngineEvent)) {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        self.pump(secs as u64 + 5, "events to keep coming", |w, e| {
            watch(w, e);
            Instant::now() >= end
        });
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
        self.ring_then_accept_offered();
    }

    /// [`Pair::ring_then_accept`] once the offer was delivered.
    pub fn ring_then_accept_offered(&mut self) {
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
                    let s = match self.tamper.as_mut() {
                        Some(f) => f(who, s),
                        None => Some(s),
                    };
                    let Some(s) = s else { continue };
                    self.delivered.push((who, s.clone()));
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

// SDP helpers for the tests that change signals on the way.

pub fn sdp_of(s: &MediaSignal) -> Option<&str> {
    match s {
        MediaSignal::Offer { sdp, .. } | MediaSignal::Answer { sdp } => Some(sdp),
        _ => None,
    }
}

pub fn with_sdp(s: MediaSignal, f: impl Fn(&str) -> String) -> MediaSignal {
    match s {
        MediaSignal::Offer { sdp, ice_restart } => MediaSignal::Offer {
            sdp: f(&sdp),
            ice_restart,
        },
        MediaSignal::Answer { sdp } => MediaSignal::Answer { sdp: f(&sdp) },
        other => other,
    }
}

/// Each line through `f` (CRLF kept).
pub fn map_lines(sdp: &str, f: impl Fn(&str) -> String) -> String {
    sdp.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| f(l) + "\r\n")
        .collect()
}

/// Another certificate's fingerprint in place of the true one (the first byte changed).
pub fn tamper_fingerprint(sdp: &str) -> String {
    map_lines(sdp, |l| match l.strip_prefix("a=fingerprint:sha-256 ") {
        Some(fp) => {
            let first = u8::from_str_radix(&fp[..2], 16).unwrap() ^ 0x5a;
            format!("a=fingerprint:sha-256 {first:02X}{}", &fp[2..])
        }
        None => l.to_owned(),
    })
}

pub fn the_answer(p: &Pair) -> String {
    p.delivered
        .iter()
        .find_map(|(_, s)| match s {
            MediaSignal::Answer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .expect("an answer was delivered")
}

/// The values of an attribute (`a=name` or `a=name:value`).
pub fn attr(sdp: &str, name: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix(&format!("a={name}")))
        .filter(|v| v.is_empty() || v.starts_with(':'))
        .map(|v| v.trim_start_matches(':').trim().to_owned())
        .collect()
}
