//! One generation of a call's media: a GStreamer pipeline around one `webrtcbin`.
//!
//! Send chain: source bin → leaky queue → resample to 48 kHz mono → [echo cancellation] → mute (volume) → level →
//! Opus (payload type 111 in our offers, else the peer's) → [send gate] → webrtcbin. Receive chain, linked when the peer's
//! stream appears: RTP depay → Opus decode → a mixer that always runs (fed by silence too, so the
//! echo probe exists before the pipeline plays) → [echo probe] → level → sink bin.
//!
//! The source and sink are bins of their own so either can be swapped while the call runs. An ICE
//! restart replaces the whole pipe (see [`crate::MediaSession`]): GStreamer 1.22's `webrtcbin` has no
//! `ice-restart` option in `create-offer`, and libnice keeps a failed stream failed when only the
//! credentials change, so a fresh `webrtcbin` (new ICE agent, credentials and DTLS certificate) is the
//! restart that works against every peer.
//!
//! Split by what it holds: `chains` (launch descriptions, source / sink bins, the receive chain),
//! `gates` (the send gate), `liveness` (what callbacks share with the supervisor, and the peer's
//! verification), `negotiation` (offers and answers), `bus` (errors and meters as events).

use crate::config::{AudioInput, AudioOutput, EngineConfig, Role};
use crate::dtls::{prepare_decoders, with_fingerprint, Certificate, OnPeer};
use crate::error::MediaError;
use crate::sdp;
use crate::stats::CallStats;
use crate::verify::{self, Expected};
use crate::{EngineEvent, IceConnectionState};
use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCICEConnectionState, WebRTCSDPType, WebRTCSessionDescription};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tincan_proto::MediaSignal;
use tracing::{debug, warn};

mod bus;
mod chains;
mod gates;
mod liveness;
mod negotiation;

use bus::watch_bus;
use chains::{link_remote, playback_chain, probe_name, send_chain, sink_bin, source_bin};
use gates::gate_sending;
use liveness::Liveness;
pub(crate) use liveness::Observation;
use negotiation::{create_sdp, parse_sdp, Done};

/// Sample rate of everything inside the pipeline.
pub(crate) const RATE: u32 = 48_000;
/// The payload type our offers give Opus (as Chromium's do). What we send follows the peer's
/// description (see [`crate::sdp::opus_payload_type`]).
const OUR_OPUS_PT: u8 = 111;
/// How many times a `create-offer` / `create-answer` that returned no SDP is retried.
const SDP_RETRIES: u32 = 3;
/// How long a sink swap waits for the playback chain to reach an idle point.
const SWAP_WAIT: Duration = Duration::from_secs(2);

pub(crate) type Emit = Arc<dyn Fn(EngineEvent) + Send + Sync>;

/// What one pipe is built with.
pub(crate) struct PipeSpec<'a> {
    pub cfg: &'a EngineConfig,
    pub role: Role,
    /// The capture source; `None` sends silence without opening any microphone (a callee whose
    /// device rings: the pipe is ready, the microphone stays closed until the user accepts).
    pub input: Option<&'a AudioInput>,
    pub output: &'a AudioOutput,
    pub muted: bool,
    /// An offerer's offer is marked as an ICE restart (a pipe that replaces a failed one).
    pub ice_restart: bool,
    /// This pipe's own DTLS certificate and key (see [`crate::dtls::fresh_certificate`]).
    pub certificate: Certificate,
}

/// A callee's progress towards its answer: the answer is created once the offer is set AND the user
/// accepted, whichever comes last.
#[derive(Default)]
struct Answering {
    offer_received: bool,
    offer_set: bool,
    accepted: bool,
    answered: bool,
}

pub(crate) struct Pipe {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    /// The RTP payloader, whose payload type follows the peer's description.
    pay: gst::Element,
    volume: gst::Element,
    source: Mutex<gst::Bin>,
    sink: Mutex<gst::Bin>,
    emit: Emit,
    role: Role,
    live: Arc<Liveness>,
    answering: Arc<Mutex<Answering>>,
    stopped: Arc<AtomicBool>,
    bus_thread: Mutex<Option<JoinHandle<()>>>,
}

/// A lock that survives a panicked holder (the data here stays consistent across one).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pipeline_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Pipeline(e.to_string())
}

impl Pipe {
    /// Builds the pipe (not yet playing: see [`Pipe::play`]). `emit` is the session's gated sink.
    pub fn build(spec: &PipeSpec<'_>, emit: Emit) -> Result<Arc<Self>, MediaError> {
        let cfg = spec.cfg;
        let probe = probe_name();
        let desc = format!(
            "{} {}",
            send_chain(cfg, &probe),
            playback_chain(cfg, &probe)
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(pipeline_err)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| MediaError::Pipeline("not a pipeline".into()))?;
        let by_name = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| MediaError::Pipeline(format!("element {name} missing")))
        };
        let webrtc = by_name("webrtc")?;
        let pay = by_name("pay")?;
        let volume = by_name("mute")?;
        let mixer = by_name("mix")?;
        volume.set_property("mute", spec.muted);

        let source = source_bin(spec.input)?;
        pipeline.add(&source).map_err(pipeline_err)?;
        source.link(&by_name("src_queue")?).map_err(pipeline_err)?;
        let sink = sink_bin(spec.output, cfg.meter_interval_ms)?;
        pipeline.add(&sink).map_err(pipeline_err)?;
        by_name("remote_level")?.link(&sink).map_err(pipeline_err)?;

        configure_ice(&webrtc, cfg);
        let emit = if cfg.relay_only {
            relay_only_guard(emit)
        } else {
            emit
        };
        let live = Arc::new(Liveness::new(spec.certificate.fingerprint.as_str().into()));
        {
            // Before anything plays: an offerer's transport exists already (made with its sink
            // pad), and its DTLS encoder takes the decoder's connection when it goes to READY, so
            // the certificate must be in place by then. Transports made later (an answerer's, at
            // the remote offer) get it as they are added, before their state is synced.
            let pem = spec.certificate.pem.clone();
            let (l, e) = (live.clone(), emit.clone());
            let on_peer: OnPeer = Arc::new(move |peer_pem, done| l.judge(peer_pem, done, &e));
            let done = Arc::new(Mutex::new(Vec::new()));
            prepare_decoders(&webrtc, &pem, &on_peer, &done);
            webrtc.connect("deep-element-added", false, move |values| {
                if let Some(element) = values.get(2).and_then(|v| v.get::<gst::Element>().ok()) {
                    prepare_decoders(&element, &pem, &on_peer, &done);
                }
                None
            });
        }
        gate_sending(&by_name("rtp_caps")?, spec.role, live.clone())?;
        let answering = Arc::new(Mutex::new(Answering::default()));

        // Trickle our candidates to the peer.
        let e = emit.clone();
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values.get(1).and_then(|v| v.get::<u32>().ok());
            let candidate = values.get(2).and_then(|v| v.get::<String>().ok());
            if let (Some(mline), Some(candidate)) = (mline, candidate) {
                e(EngineEvent::Signal(MediaSignal::Candidate {
                    candidate,
                    sdp_mid: None,
                    sdp_m_line_index: u16::try_from(mline).ok(),
                }));
            }
            None
        });
        let e = emit.clone();
        let l = live.clone();
        webrtc.connect_notify(Some("ice-connection-state"), move |w, _| {
            let state: IceConnectionState = w
                .property::<WebRTCICEConnectionState>("ice-connection-state")
                .into();
            *lock(&l.ice) = (state, Instant::now());
            e(EngineEvent::IceState(state));
        });
        if spec.role == Role::Offerer {
            let e = emit.clone();
            let l = live.clone();
            let ice_restart = spec.ice_restart;
            webrtc.connect("on-negotiation-needed", false, move |values| {
                if let Some(w) = values.first().and_then(|v| v.get::<gst::Element>().ok()) {
                    let done = Done::Offer { ice_restart };
                    create_sdp(&w, done, e.clone(), l.clone(), SDP_RETRIES);
                }
                None
            });
        }
        // The peer's audio: depay, decode, mix into the playback chain.
        let e = emit.clone();
        let l = live.clone();
        let pipe = pipeline.downgrade();
        webrtc.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let Some(pipeline) = pipe.upgrade() else {
                return;
            };
            if let Err(err) = link_remote(&pipeline, &mixer, pad, e.clone(), l.clone()) {
                e(EngineEvent::Error(err));
            }
        });

        let stopped = Arc::new(AtomicBool::new(false));
        let bus = pipeline
            .bus()
            .ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
        let (e, s, l) = (emit.clone(), stopped.clone(), live.clone());
        let handle = std::thread::Builder::new()
            .name("tincan-media-bus".into())
            .spawn(move || watch_bus(&bus, &s, &e, &l))
            .map_err(pipeline_err)?;

        Ok(Arc::new(Self {
            pipeline,
            webrtc,
            pay,
            volume,
            source: Mutex::new(source),
            sink: Mutex::new(sink),
            emit,
            role: spec.role,
            live,
            answering,
            stopped,
            bus_thread: Mutex::new(Some(handle)),
        }))
    }

    /// Starts the pipe: an offerer's `webrtcbin` asks for negotiation and the offer goes out.
    pub fn play(&self, real_microphone: bool) -> Result<(), MediaError> {
        self.pipeline.set_state(gst::State::Playing).map_err(|_| {
            let _ = self.pipeline.set_state(gst::State::Null);
            if real_microphone {
                MediaError::NoMicrophone("the audio source or output would not start".into())
            } else {
                MediaError::Pipeline("the pipeline would not start".into())
            }
        })?;
        Ok(())
    }

    pub fn observe(&self) -> Observation {
        let (ice, since) = *lock(&self.live.ice);
        let last = self.live.last_rx.load(Ordering::Relaxed);
        let rx_age = (last > 0).then(|| {
            self.live
                .epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(last - 1))
        });
        Observation {
            ice,
            ice_for: since.elapsed(),
            negotiated: self.live.negotiated.load(Ordering::Acquire),
            dtls_failed: self.live.dtls_failed.load(Ordering::Acquire),
            rx_age,
        }
    }

    /// Has this (answering) pipe been given an offer already? A second offer is a renegotiation.
    pub fn offer_received(&self) -> bool {
        lock(&self.answering).offer_received
    }

    pub fn apply_remote(&self, signal: &MediaSignal) -> Result<(), MediaError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(MediaError::Stopped);
        }
        let webrtc = &self.webrtc;
        match signal {
            MediaSignal::Offer { sdp, .. } if self.role == Role::Answerer => {
                let desc = parse_sdp(&sdp::for_webrtcbin(sdp), WebRTCSDPType::Offer)?;
                self.note_remote(sdp)?;
                lock(&self.answering).offer_received = true;
                let (w, e, l, a) = (
                    webrtc.clone(),
                    self.emit.clone(),
                    self.live.clone(),
                    self.answering.clone(),
                );
                let promise = gst::Promise::with_change_func(move |reply| {
                    if let Ok(Some(r)) = reply {
                        if let Ok(err) = r.get::<glib::Error>("error") {
                            e(EngineEvent::Error(MediaError::BadRemoteDescription(
                                err.to_string(),
                            )));
                            return;
                        }
                    }
                    let go = {
                        let mut a = lock(&a);
                        a.offer_set = true;
                        let go = a.accepted && !a.answered;
                        a.answered |= go;
                        go
                    };
                    if go {
                        create_sdp(&w, Done::Answer, e, l, SDP_RETRIES);
                    }
                });
                webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
            }
            MediaSignal::Answer { sdp } if self.role == Role::Offerer => {
                let desc = parse_sdp(&sdp::for_webrtcbin(sdp), WebRTCSDPType::Answer)?;
                self.note_remote(sdp)?;
                let (e, l) = (self.emit.clone(), self.live.clone());
                let promise = gst::Promise::with_change_func(move |reply| {
                    if let Ok(Some(r)) = reply {
                        if let Ok(err) = r.get::<glib::Error>("error") {
                            e(EngineEvent::Error(MediaError::BadRemoteDescription(
                                err.to_string(),
                            )));
                            return;
                        }
                    }
                    l.negotiated.store(true, Ordering::Release);
                });
                webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
            }
            MediaSignal::Offer { .. } | MediaSignal::Answer { .. } => {
                // An offer to the offerer or an answer to the answerer does not happen in 1:1
                // calls; applying it would wedge webrtcbin's signaling state.
                warn!("ignored a session description for the wrong role");
            }
            MediaSignal::Candidate {
                candidate,
                sdp_m_line_index,
                ..
            } => {
                if !candidate.is_empty() {
                    let mline = u32::from(sdp_m_line_index.unwrap_or(0));
                    webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, candidate]);
                }
            }
            MediaSignal::EndOfCandidates | MediaSignal::Mute { .. } => {}
        }
        Ok(())
    }

    /// What we take from the peer's description before webrtcbin is given it: the fingerprints its
    /// certificate must match, and the payload type its Opus has (which our packets then carry:
    /// an answer repeats the offer's number, and an offerer sends with the number the answer gave).
    fn note_remote(&self, sdp: &str) -> Result<(), MediaError> {
        let pt = sdp::opus_payload_type(sdp).ok_or_else(|| {
            MediaError::BadRemoteDescription("no Opus audio in the first audio m-line".into())
        })?;
        *lock(&self.live.expected) = Some(verify::expected_from_sdp(sdp));
        self.pay.set_property("pt", u32::from(pt));
        debug!(pt, "Opus payload type from the peer's description");
        Ok(())
    }

    /// The callee accepted: answer as soon as the offer is set (at once if it already is).
    pub fn accept(&self) {
        let go = {
            let mut a = lock(&self.answering);
            a.accepted = true;
            let go = a.offer_set && !a.answered;
            a.answered |= go;
            go
        };
        if go {
            create_sdp(
                &self.webrtc,
                Done::Answer,
                self.emit.clone(),
                self.live.clone(),
                SDP_RETRIES,
            );
        }
    }

    pub fn set_muted(&self, muted: bool) {
        self.volume.set_property("mute", muted);
    }

    pub fn request_stats(&self) {
        let emit = self.emit.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Ok(Some(reply)) = reply {
                emit(EngineEvent::Stats(CallStats::read(reply)));
            }
        });
        self.webrtc
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    }

    /// Replaces the capture bin in front of the encoder while the connection keeps running (no
    /// renegotiation: the peer hears the new source on the same stream).
    pub fn switch_source(&self, input: &AudioInput) -> Result<(), MediaError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(MediaError::Stopped);
        }
        let new = source_bin(Some(input))?;
        let mut current = lock(&self.source);
        let convert = self
            .pipeline
            .by_name("src_queue")
            .ok_or_else(|| MediaError::Pipeline("element src_queue missing".into()))?;
        let _ = current.set_state(gst::State::Null);
        current.unlink(&convert);
        let _ = self.pipeline.remove(&*current);
        self.pipeline.add(&new).map_err(pipeline_err)?;
        new.link(&convert).map_err(pipeline_err)?;
        if let Err(e) = new.sync_state_with_parent() {
            // Keep the chain whole: silence instead of the source that would not open.
            let _ = new.set_state(gst::State::Null);
            new.unlink(&convert);
            let _ = self.pipeline.remove(&new);
            if let Ok(silence) = source_bin(None) {
                if self.pipeline.add(&silence).is_ok() && silence.link(&convert).is_ok() {
                    let _ = silence.sync_state_with_parent();
                    *current = silence;
                }
            }
            return Err(MediaError::NoMicrophone(e.to_string()));
        }
        *current = new;
        Ok(())
    }

    /// Replaces the playback end while the call runs. The new output is opened first; if it cannot
    /// be, the current one keeps playing and the error says so.
    pub fn switch_sink(
        &self,
        output: &AudioOutput,
        meter_interval_ms: u32,
    ) -> Result<(), MediaError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(MediaError::Stopped);
        }
        let new = sink_bin(output, meter_interval_ms)?;
        let mut current = lock(&self.sink);
        let level = self
            .pipeline
            .by_name("remote_level")
            .ok_or_else(|| MediaError::Pipeline("element remote_level missing".into()))?;
        // Try the device on its own first (an audio sink opens it on the way to PAUSED): outside
        // the pipeline its failure posts nothing on the call's bus, and the call plays on.
        let opened = new.set_state(gst::State::Paused).is_ok();
        let _ = new.set_state(gst::State::Null);
        if !opened {
            return Err(MediaError::NoOutput(format!("{output:?} would not open")));
        }
        self.pipeline.add(&new).map_err(pipeline_err)?;
        let src = level
            .static_pad("src")
            .ok_or_else(|| MediaError::Pipeline("level has no src pad".into()))?;
        // Swap at an idle point of the playback chain, so no buffer meets a half-linked sink.
        let (tx, rx) = mpsc::channel::<Result<(), MediaError>>();
        let (old, next, lvl) = (current.clone(), new.clone(), level.clone());
        src.add_probe(gst::PadProbeType::IDLE, move |_, _| {
            lvl.unlink(&old);
            let linked = lvl
                .link(&next)
                .map_err(pipeline_err)
                .and_then(|()| next.sync_state_with_parent().map_err(pipeline_err));
            if linked.is_err() {
                lvl.unlink(&next);
                let _ = lvl.link(&old);
            }
            let _ = tx.send(linked);
            gst::PadProbeReturn::Remove
        });
        let swapped = rx.recv_timeout(SWAP_WAIT).unwrap_or_else(|_| {
            Err(MediaError::Pipeline(
                "the playback chain never idled".into(),
            ))
        });
        match swapped {
            Ok(()) => {
                let old = std::mem::replace(&mut *current, new);
                let _ = old.set_state(gst::State::Null);
                let _ = self.pipeline.remove(&old);
                Ok(())
            }
            Err(e) => {
                let _ = new.set_state(gst::State::Null);
                let _ = self.pipeline.remove(&new);
                Err(e)
            }
        }
    }

    /// Stops the pipeline and releases the microphone and the speaker at once.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        join(lock(&self.bus_thread).take());
    }
}

/// The ICE agent's servers and policy. Relay-only mode sets `ice-transport-policy=relay` (libnice's
/// `force-relay`: only relayed candidates are paired and announced) and no STUN server (nothing
/// but the relays is asked about our addresses). UPnP is off in every mode: libnice would
/// otherwise ask the LAN's router to open ports (IGD) and announce the mapping as a candidate —
/// traffic nobody asked for, and in relay-only mode an address the peer must not learn.
fn configure_ice(webrtc: &gst::Element, cfg: &EngineConfig) {
    if let Some(stun) = cfg.ice.stun.as_deref().filter(|_| !cfg.relay_only) {
        webrtc.set_property("stun-server", stun);
    }
    for turn in &cfg.ice.turn {
        let ok: bool = webrtc.emit_by_name("add-turn-server", &[&turn.url]);
        if !ok {
            warn!(relay = %turn, "webrtcbin refused a TURN server");
        }
    }
    for (url, why) in &cfg.ice.skipped {
        debug!(url, why, "ICE server not used");
    }
    if cfg.relay_only {
        webrtc.set_property_from_str("ice-transport-policy", "relay");
    }
    let ice = webrtc.property::<glib::Object>("ice-agent");
    for addr in &cfg.local_addresses {
        if !ice.emit_by_name::<bool>("add-local-ip-address", &[addr]) {
            warn!(addr, "libnice refused a local address");
        }
    }
    let agent = ice
        .find_property("agent")
        .and_then(|_| ice.property_value("agent").get::<glib::Object>().ok());
    match agent {
        Some(agent) if agent.find_property("upnp").is_some() => {
            agent.set_property("upnp", false);
            debug!("libnice's UPnP is off");
        }
        _ => warn!("no libnice agent found: UPnP could not be switched off"),
    }
}

/// Relay-only mode's second guard, on the sending side: whatever the ICE agent gathers, only
/// relay candidates reach the peer — trickled ones, and the `a=candidate` lines of our offers and
/// answers (every pipe of the call, so ICE restarts too).
fn relay_only_guard(emit: Emit) -> Emit {
    use tincan_proto::sdp::{relay_only_candidate, relay_only_description};
    Arc::new(move |ev| match ev {
        EngineEvent::Signal(MediaSignal::Candidate {
            candidate,
            sdp_mid,
            sdp_m_line_index,
        }) => match relay_only_candidate(&candidate) {
            Some(candidate) => emit(EngineEvent::Signal(MediaSignal::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            })),
            None => warn!("relay-only: a non-relay candidate was gathered and not sent"),
        },
        EngineEvent::Signal(MediaSignal::Offer { sdp, ice_restart }) => {
            let sdp = relay_only_description(&sdp);
            emit(EngineEvent::Signal(MediaSignal::Offer { sdp, ice_restart }));
        }
        EngineEvent::Signal(MediaSignal::Answer { sdp }) => {
            let sdp = relay_only_description(&sdp);
            emit(EngineEvent::Signal(MediaSignal::Answer { sdp }));
        }
        ev => emit(ev),
    })
}

/// Waits for a helper thread to end, unless it is the calling thread (a session stopped from its
/// own event callback).
pub(crate) fn join(handle: Option<JoinHandle<()>>) {
    if let Some(h) = handle {
        if h.thread().id() != std::thread::current().id() {
            let _ = h.join();
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: libnice asks the LAN's router for port mappings (UPnP IGD) unless told not to.
    /// The agent inside a real webrtcbin has it on by default, and off once the pipe's ICE is set
    /// up, in the normal and the relay-only mode.
    #[test]
    fn the_ice_agent_never_tries_upnp() {
        crate::init().expect("gstreamer");
        for relay_only in [false, true] {
            let webrtc = gst::ElementFactory::make("webrtcbin")
                .build()
                .expect("webrtcbin (gstreamer1.0-plugins-bad, gstreamer1.0-nice)");
            let agent = |w: &gst::Element| {
                w.property::<glib::Object>("ice-agent")
                    .property::<glib::Object>("agent")
            };
            assert!(
                agent(&webrtc).property::<bool>("upnp"),
                "libnice's default changed: this test no longer shows anything"
            );
            let cfg = EngineConfig {
                relay_only,
                ..EngineConfig::default()
            };
            configure_ice(&webrtc, &cfg);
            assert!(
                !agent(&webrtc).property::<bool>("upnp"),
                "relay_only={relay_only}"
            );
        }
    }
}
