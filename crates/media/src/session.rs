//! One call's media, across ICE restarts.
//!
//! A [`MediaSession`] owns the current [`Pipe`] (one `webrtcbin` pipeline) and a supervisor thread
//! that watches it. When the connection breaks (ICE `failed`, `disconnected` for 2 s, or no packet
//! from the peer for 2 s), the caller's session replaces its pipe with a fresh one and re-offers with
//! `ice_restart`; the callee's session answers such an offer with a fresh pipe of its own. If media is
//! not back within 30 s the session reports [`MediaError::ConnectionLost`] (or
//! [`MediaError::PeerUnreachable`] if it never connected), the same rules as the web engine.
//!
//! A callee's session is built while its device rings, with the microphone closed (silence is fed
//! instead): the peer's offer is applied at once, so accepting only opens the microphone and sends
//! the answer. That keeps pipeline start-up (and DTLS key generation) out of accept → first audio.

use crate::config::{AudioInput, AudioOutput, EngineConfig, Role};
use crate::error::MediaError;
use crate::pipe::{lock, Emit, Observation, Pipe, PipeSpec};
use crate::stats::CallStats;
use gst_webrtc::WebRTCICEConnectionState;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tincan_proto::MediaSignal;
use tracing::{info, warn};

/// ICE `disconnected` this long, or no packet from the peer this long, counts as broken.
pub const RESTART_AFTER: Duration = Duration::from_secs(2);
/// Media that is not back within this long ends the call.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// A restart that has not connected yet is not repeated before this long.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(5);
/// How often the supervisor looks.
const TICK: Duration = Duration::from_millis(200);

/// ICE connectivity, as webrtcbin reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceConnectionState {
    New,
    Checking,
    Connected,
    Completed,
    Failed,
    Disconnected,
    Closed,
}

impl From<WebRTCICEConnectionState> for IceConnectionState {
    fn from(s: WebRTCICEConnectionState) -> Self {
        match s {
            WebRTCICEConnectionState::Checking => Self::Checking,
            WebRTCICEConnectionState::Connected => Self::Connected,
            WebRTCICEConnectionState::Completed => Self::Completed,
            WebRTCICEConnectionState::Failed => Self::Failed,
            WebRTCICEConnectionState::Disconnected => Self::Disconnected,
            WebRTCICEConnectionState::Closed => Self::Closed,
            _ => Self::New,
        }
    }
}

/// What the engine reports.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// Send this to the peer through the signaling channel.
    Signal(MediaSignal),
    IceState(IceConnectionState),
    /// The first decoded audio from the peer (again after each ICE restart).
    RemoteAudioStarted,
    /// The connection broke and was rebuilt; `restarts` counts them in this session.
    IceRestart {
        restarts: u32,
    },
    /// The answer to [`MediaSession::request_stats`].
    Stats(CallStats),
    /// Microphone level, dBFS (RMS of the loudest channel).
    LocalLevel(f64),
    /// Received level, dBFS.
    RemoteLevel(f64),
    /// With [`AudioOutput::Measure`]: the loudest frequency received.
    RemotePeak {
        hz: f64,
        db: f32,
    },
    Error(MediaError),
}

/// What the supervisor decides on one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Nothing,
    /// Replace the pipe and re-offer (callers only).
    Restart,
    /// Media did not come back in time; `ever_connected` tells lost from unreachable.
    GiveUp {
        ever_connected: bool,
    },
}

/// The supervisor's memory: a pure state machine over [`Observation`]s, so its rules are tested
/// without a network.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    trouble_since: Option<Instant>,
    ever_connected: bool,
    last_restart: Option<Instant>,
    gave_up: bool,
    /// A pipe of this session completed an offer / answer; from then on a pipe still negotiating
    /// (a restart's) is trouble, not ringing.
    ever_negotiated: bool,
}

impl Watch {
    pub fn step(&mut self, role: Role, obs: &Observation, now: Instant) -> Verdict {
        // Ringing (no answer yet) is not trouble; neither is anything after giving up.
        self.ever_negotiated |= obs.negotiated;
        if self.gave_up || !self.ever_negotiated {
            return Verdict::Nothing;
        }
        use IceConnectionState as I;
        let broken = obs.dtls_failed
            || obs.ice == I::Failed
            || (obs.ice == I::Disconnected && obs.ice_for >= RESTART_AFTER)
            || obs.rx_age.is_some_and(|age| age >= RESTART_AFTER);
        let up = !broken && matches!(obs.ice, I::Connected | I::Completed);
        if up {
            self.trouble_since = None;
            self.ever_connected = true;
            return Verdict::Nothing;
        }
        let since = *self.trouble_since.get_or_insert(now);
        if now.duration_since(since) >= GIVE_UP_AFTER {
            self.gave_up = true;
            return Verdict::GiveUp {
                ever_connected: self.ever_connected,
            };
        }
        let may_restart = self
            .last_restart
            .is_none_or(|t| now.duration_since(t) >= RESTART_BACKOFF);
        if broken && role == Role::Offerer && may_restart {
            self.last_restart = Some(now);
            return Verdict::Restart;
        }
        Verdict::Nothing
    }

    /// A restart the peer asked for (the callee's side) counts against the same backoff.
    fn restarted(&mut self, now: Instant) {
        self.last_restart = Some(now);
    }
}

/// What a pipe is built with besides the session's fixed recipe: it changes during the call and
/// carries over to a replacement pipe.
struct Setup {
    input: AudioInput,
    output: AudioOutput,
    muted: bool,
    /// An answerer's user accepted (an offerer is accepted from the start).
    accepted: bool,
}

struct State {
    pipe: Arc<Pipe>,
    next_generation: u64,
    setup: Setup,
    restarts: u32,
    watch: Watch,
}

/// How to build a pipe: fixed for the session's life.
struct Recipe {
    cfg: EngineConfig,
    role: Role,
    emit: Emit,
    /// The generation whose events are passed on; a replaced pipe's late events are dropped.
    gate: Arc<AtomicU64>,
}

impl Recipe {
    /// Builds and starts a pipe of `generation`, opening the gate for it first (an offerer's pipe
    /// emits its offer as soon as it plays). Generation 0 is the call's first pipe; any later one
    /// replaces a broken connection: an offerer's offer is then marked `ice_restart`. Every pipe
    /// gets an ECDSA P-256 certificate of its own, so a peer that restarts sees a new fingerprint
    /// and restarts DTLS too.
    fn launch(&self, generation: u64, setup: &Setup) -> Result<Arc<Pipe>, MediaError> {
        let replacement = generation > 0;
        let certificate = crate::dtls::fresh_certificate()?;
        let cfg = EngineConfig {
            ice: self.cfg.current_ice(),
            ..self.cfg.clone()
        };
        let spec = PipeSpec {
            cfg: &cfg,
            role: self.role,
            input: setup.accepted.then_some(&setup.input),
            output: &setup.output,
            muted: setup.muted,
            ice_restart: replacement && self.role == Role::Offerer,
            certificate,
        };
        let emit = gated(&self.emit, &self.gate, generation);
        let pipe = Pipe::build(&spec, emit)?;
        self.gate.store(generation, Ordering::Release);
        let real_mic = setup.accepted && !matches!(setup.input, AudioInput::Tone { .. });
        pipe.play(real_mic)?;
        Ok(pipe)
    }

    /// Replaces the current pipe with a fresh one (new ICE agent, credentials, DTLS certificate).
    /// Returns the restart count, for the event sent once the lock is released.
    fn replace_pipe(&self, st: &mut State) -> Result<u32, MediaError> {
        let generation = st.next_generation;
        st.next_generation += 1;
        // The old pipe's last events (its ICE closing) are not this call's news.
        self.gate.store(generation, Ordering::Release);
        st.pipe.stop();
        st.pipe = self.launch(generation, &st.setup)?;
        st.restarts += 1;
        st.watch.restarted(Instant::now());
        Ok(st.restarts)
    }
}

struct Shared {
    recipe: Recipe,
    state: Mutex<State>,
    stopped: AtomicBool,
}

/// A running media session. Dropping it stops it and releases the microphone.
pub struct MediaSession {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("role", &self.shared.recipe.role)
            .finish_non_exhaustive()
    }
}

/// An emitter that passes events on only while `generation` is the session's current one.
fn gated(emit: &Emit, gate: &Arc<AtomicU64>, generation: u64) -> Emit {
    let (emit, gate) = (emit.clone(), gate.clone());
    Arc::new(move |ev| {
        if gate.load(Ordering::Acquire) == generation {
            emit(ev);
        }
    })
}

impl MediaSession {
    /// Builds and starts the session. An [`Role::Offerer`] opens the microphone and emits its offer
    /// at once; an [`Role::Answerer`] applies the offer as it comes but keeps the microphone closed
    /// and the answer back until [`MediaSession::accept`].
    pub fn start(
        cfg: &EngineConfig,
        role: Role,
        emit: impl Fn(EngineEvent) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        crate::check_plugins()?;
        if cfg.relay_only && cfg.current_ice().turn.is_empty() {
            return Err(MediaError::NoRelay);
        }
        crate::warm_up();
        let recipe = Recipe {
            cfg: cfg.clone(),
            role,
            emit: Arc::new(emit),
            gate: Arc::new(AtomicU64::new(0)),
        };
        let setup = Setup {
            input: cfg.input.clone(),
            output: cfg.output.clone(),
            muted: false,
            accepted: role == Role::Offerer,
        };
        let pipe = recipe.launch(0, &setup)?;
        let shared = Arc::new(Shared {
            recipe,
            state: Mutex::new(State {
                pipe,
                next_generation: 1,
                setup,
                restarts: 0,
                watch: Watch::default(),
            }),
            stopped: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        let supervisor = std::thread::Builder::new()
            .name("tincan-media-watch".into())
            .spawn(move || supervise(&weak))
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        Ok(Self {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    fn check_running(&self) -> Result<(), MediaError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            Err(MediaError::Stopped)
        } else {
            Ok(())
        }
    }

    /// The callee accepted: the answer goes out at once (or as soon as the offer is set) and the
    /// configured microphone replaces the silence. An offerer is accepted from the start.
    pub fn accept(&self) -> Result<(), MediaError> {
        self.check_running()?;
        let mut st = lock(&self.shared.state);
        if st.setup.accepted {
            return Ok(());
        }
        st.setup.accepted = true;
        // Answer first: opening a microphone can take a while and the answer need not wait for it.
        st.pipe.accept();
        st.pipe.switch_source(&st.setup.input)
    }

    /// Applies a signal from the peer: its offer or answer, or one of its ICE candidates. A new
    /// offer to a callee that already has one is the caller's ICE restart: it is answered from a
    /// fresh pipe.
    pub fn apply_remote(&self, signal: &MediaSignal) -> Result<(), MediaError> {
        self.check_running()?;
        let recipe = &self.shared.recipe;
        let mut st = lock(&self.shared.state);
        let renegotiation = recipe.role == Role::Answerer
            && matches!(signal, MediaSignal::Offer { .. })
            && st.pipe.offer_received();
        if !renegotiation {
            return st.pipe.apply_remote(signal);
        }
        info!("the peer restarts ICE: answering from a fresh pipe");
        let restarts = recipe.replace_pipe(&mut st)?;
        st.pipe.apply_remote(signal)?;
        if st.setup.accepted {
            st.pipe.accept();
        }
        drop(st);
        (recipe.emit)(EngineEvent::IceRestart { restarts });
        Ok(())
    }

    /// Restarts ICE now (after a network change, say): the caller's session builds a fresh pipe
    /// and re-offers with `ice_restart`. A callee's session cannot: its caller restarts.
    pub fn restart_ice(&self) -> Result<(), MediaError> {
        self.check_running()?;
        if self.shared.recipe.role != Role::Offerer {
            return Err(MediaError::Negotiation(
                "only the caller's side restarts ICE".into(),
            ));
        }
        restart(&self.shared)
    }

    /// ICE restarts so far.
    pub fn ice_restarts(&self) -> u32 {
        lock(&self.shared.state).restarts
    }

    /// Mutes or unmutes the microphone (silence is sent, so the connection stays warm).
    pub fn set_muted(&self, muted: bool) {
        let mut st = lock(&self.shared.state);
        st.setup.muted = muted;
        st.pipe.set_muted(muted);
    }

    /// Asks webrtcbin for its statistics; the answer comes as [`EngineEvent::Stats`].
    pub fn request_stats(&self) {
        lock(&self.shared.state).pipe.request_stats();
    }

    /// Switches the microphone mid-call, without renegotiation: the capture bin is replaced in
    /// front of the encoder while the connection keeps running. Before a callee accepts, only the
    /// choice is kept (the microphone stays closed while ringing).
    pub fn switch_input(&self, input: &AudioInput) -> Result<(), MediaError> {
        self.check_running()?;
        let mut st = lock(&self.shared.state);
        st.setup.input = input.clone();
        if st.setup.accepted {
            st.pipe.switch_source(input)
        } else {
            Ok(())
        }
    }

    /// Switches the speaker mid-call. The new output is opened before the old one is closed; if it
    /// cannot be opened, the old one keeps playing and the error says so.
    pub fn switch_output(&self, output: &AudioOutput) -> Result<(), MediaError> {
        self.check_running()?;
        let mut st = lock(&self.shared.state);
        st.pipe
            .switch_sink(output, self.shared.recipe.cfg.meter_interval_ms)?;
        st.setup.output = output.clone();
        Ok(())
    }

    /// Stops the pipeline and releases the microphone at once.
    pub fn stop(&self) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.shared.state).pipe.stop();
        crate::pipe::join(lock(&self.supervisor).take());
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The caller's ICE restart: a fresh pipe whose offer carries `ice_restart`.
fn restart(shared: &Shared) -> Result<(), MediaError> {
    let restarts = {
        let mut st = lock(&shared.state);
        shared.recipe.replace_pipe(&mut st)?
    };
    info!(restarts, "ICE restarted with a fresh pipe");
    (shared.recipe.emit)(EngineEvent::IceRestart { restarts });
    Ok(())
}

/// Watches the current pipe until the session stops: restarts (caller) and gives up (both sides)
/// by [`Watch`]'s rules.
fn supervise(shared: &std::sync::Weak<Shared>) {
    loop {
        std::thread::sleep(TICK);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let verdict = {
            let mut st = lock(&shared.state);
            let obs = st.pipe.observe();
            st.watch.step(shared.recipe.role, &obs, Instant::now())
        };
        match verdict {
            Verdict::Nothing => {}
            Verdict::Restart => {
                if let Err(e) = restart(&shared) {
                    warn!(%e, "ICE restart failed");
                    (shared.recipe.emit)(EngineEvent::Error(e));
                }
            }
            Verdict::GiveUp { ever_connected } => {
                let e = if ever_connected {
                    MediaError::ConnectionLost
                } else {
                    MediaError::PeerUnreachable
                };
                (shared.recipe.emit)(EngineEvent::Error(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(ice: IceConnectionState, ice_for: u64, rx_age: Option<u64>) -> Observation {
        Observation {
            ice,
            ice_for: Duration::from_millis(ice_for),
            negotiated: true,
            rx_age: rx_age.map(Duration::from_millis),
            dtls_failed: false,
        }
    }

    use IceConnectionState as I;

    #[test]
    fn ringing_is_never_trouble() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        let ringing = Observation {
            negotiated: false,
            ..obs(I::New, 0, None)
        };
        assert_eq!(
            w.step(Role::Offerer, &ringing, t0 + Duration::from_secs(100)),
            Verdict::Nothing
        );
    }

    #[test]
    fn the_caller_restarts_a_broken_connection_with_backoff() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        assert_eq!(
            w.step(Role::Offerer, &obs(I::Connected, 0, Some(20)), t0),
            Verdict::Nothing
        );
        // Disconnected, but not for long yet.
        assert_eq!(
            w.step(Role::Offerer, &obs(I::Disconnected, 500, None), t0),
            Verdict::Nothing
        );
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            w.step(Role::Offerer, &obs(I::Disconnected, 2000, None), t1),
            Verdict::Restart
        );
        // The fresh pipe fails too: not again before the backoff.
        assert_eq!(
            w.step(
                Role::Offerer,
                &obs(I::Failed, 0, None),
                t1 + Duration::from_secs(1)
            ),
            Verdict::Nothing
        );
        assert_eq!(
            w.step(
                Role::Offerer,
                &obs(I::Failed, 0, None),
                t1 + RESTART_BACKOFF
            ),
            Verdict::Restart
        );
        // Back up: trouble forgotten.
        assert_eq!(
            w.step(
                Role::Offerer,
                &obs(I::Connected, 0, Some(10)),
                t1 + Duration::from_secs(7)
            ),
            Verdict::Nothing
        );
        assert!(w.trouble_since.is_none());
    }

    #[test]
    fn silence_from_a_connected_peer_counts_as_broken() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        assert_eq!(
            w.step(Role::Offerer, &obs(I::Connected, 9000, Some(2500)), t0),
            Verdict::Restart
        );
        // The callee waits for its caller's restart, then gives up as "connection lost".
        let mut callee = Watch::default();
        assert_eq!(
            callee.step(Role::Answerer, &obs(I::Connected, 0, Some(10)), t0),
            Verdict::Nothing
        );
        assert_eq!(
            callee.step(Role::Answerer, &obs(I::Connected, 0, Some(2500)), t0),
            Verdict::Nothing
        );
        assert_eq!(
            callee.step(
                Role::Answerer,
                &obs(I::Connected, 0, Some(32_500)),
                t0 + GIVE_UP_AFTER
            ),
            Verdict::GiveUp {
                ever_connected: true
            }
        );
        // Once.
        assert_eq!(
            callee.step(
                Role::Answerer,
                &obs(I::Failed, 0, None),
                t0 + GIVE_UP_AFTER * 2
            ),
            Verdict::Nothing
        );
    }

    #[test]
    fn a_failed_dtls_handshake_is_a_broken_connection() {
        let mut w = Watch::default();
        let failed = Observation {
            dtls_failed: true,
            ..obs(I::Connected, 0, None)
        };
        assert_eq!(
            w.step(Role::Offerer, &failed, Instant::now()),
            Verdict::Restart
        );
    }

    #[test]
    fn never_connecting_is_unreachable() {
        let mut w = Watch::default();
        let t0 = Instant::now();
        assert_eq!(
            w.step(Role::Answerer, &obs(I::Checking, 0, None), t0),
            Verdict::Nothing
        );
        assert_eq!(
            w.step(
                Role::Answerer,
                &obs(I::Checking, 0, None),
                t0 + GIVE_UP_AFTER
            ),
            Verdict::GiveUp {
                ever_connected: false
            }
        );
    }
}
