//! One generation of a call's media: a GStreamer pipeline around one `webrtcbin`.
//!
//! Send chain: source bin → leaky queue → resample to 48 kHz mono → [echo cancellation] → mute (volume) → level →
//! Opus (payload type 111, as browsers offer it) → webrtcbin. Receive chain, linked when the peer's
//! stream appears: RTP depay → Opus decode → a mixer that always runs (fed by silence too, so the
//! echo probe exists before the pipeline plays) → [echo probe] → level → sink bin.
//!
//! The source and sink are bins of their own so either can be swapped while the call runs. An ICE
//! restart replaces the whole pipe (see [`crate::MediaSession`]): GStreamer 1.22's `webrtcbin` has no
//! `ice-restart` option in `create-offer`, and libnice keeps a failed stream failed when only the
//! credentials change, so a fresh `webrtcbin` (new ICE agent, credentials and DTLS certificate) is the
//! restart that works against every peer.

use crate::config::{AudioInput, AudioOutput, EngineConfig, Role};
use crate::error::MediaError;
use crate::stats::CallStats;
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

/// Sample rate of everything inside the pipeline.
pub(crate) const RATE: u32 = 48_000;
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
    /// A DTLS certificate and key (PEM) of this pipe's own. A pipe that replaces another needs
    /// one: GStreamer's DTLS elements otherwise share one certificate per process, and a peer
    /// that sees the same fingerprint after an ICE restart (Chromium) keeps its old DTLS
    /// association, which the fresh pipe does not have.
    pub certificate: Option<Certificate>,
}

/// A pipe's own DTLS certificate.
#[derive(Clone)]
pub(crate) struct Certificate {
    /// Certificate and private key, PEM, as GStreamer's DTLS elements take them.
    pem: String,
    /// SHA-256 of the certificate's DER, as SDP writes it ("AB:CD:…").
    fingerprint: String,
}

/// A new self-signed DTLS certificate (ECDSA P-256, as browsers make them) and its private key.
/// GStreamer's own `GstDtlsCertificate` would do, but its `pem` property gives the certificate
/// without the key.
pub(crate) fn fresh_certificate() -> Result<Certificate, MediaError> {
    use sha2::Digest;
    let made = rcgen::generate_simple_self_signed(vec!["tincan".to_owned()])
        .map_err(|e| MediaError::Pipeline(format!("no DTLS certificate: {e}")))?;
    let digest = sha2::Sha256::digest(made.cert.der());
    let fingerprint = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(Certificate {
        pem: format!("{}{}", made.cert.pem(), made.signing_key.serialize_pem()),
        fingerprint,
    })
}

/// Writes the certificate's true fingerprint into our SDP. GStreamer 1.22's webrtcbin makes the
/// fingerprint by decoding every base64 line of the transport's PEM, so with a PEM that carries its
/// key (as one we supply must) it hashes certificate and key together, and a browser that checks
/// the fingerprint (all of them) refuses the handshake ("certificate unknown").
fn with_fingerprint(sdp: &str, fingerprint: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=fingerprint:") {
            out.push_str("a=fingerprint:sha-256 ");
            out.push_str(fingerprint);
            out.push_str("\r\n");
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Gives every DTLS decoder in `element` (itself, or inside it if it is a bin) that is not in
/// `done` this certificate, and adds it to `done`. webrtcbin binds its DTLS transport's
/// `certificate` (from which the SDP fingerprint is made) to the decoder's `pem`.
///
/// Once only per decoder, and before its transport's encoder goes to READY: setting `pem` makes
/// the decoder a new DTLS connection, and an encoder that already took the old one would answer
/// the handshake with the other certificate.
fn use_certificate(element: &gst::Element, pem: &str, done: &Mutex<Vec<String>>) {
    let mut done = lock(done);
    let mut apply = |e: &gst::Element| {
        let name = e.name().to_string();
        if e.factory().is_some_and(|f| f.name() == "dtlssrtpdec") && !done.contains(&name) {
            e.set_property("pem", pem);
            done.push(name);
        }
    };
    apply(element);
    if let Some(bin) = element.downcast_ref::<gst::Bin>() {
        for child in bin.iterate_recurse().into_iter().flatten() {
            apply(&child);
        }
    }
}

/// What the session's supervisor reads to judge the connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observation {
    pub ice: IceConnectionState,
    /// How long ICE has been in `ice`.
    pub ice_for: Duration,
    /// The offer / answer exchange is complete on this pipe.
    pub negotiated: bool,
    /// Since the last RTP packet from the peer; `None` before the first.
    pub rx_age: Option<Duration>,
}

/// What the pipeline's callbacks (on GStreamer's threads) share with the pipe: connection state for
/// the supervisor, and the fingerprint our SDP must carry. Atomics and short locks only, never the
/// session's lock.
struct Liveness {
    /// This pipe's own certificate's fingerprint, written into our SDP (see [`with_fingerprint`]).
    fingerprint: Option<Arc<str>>,
    epoch: Instant,
    ice: Mutex<(IceConnectionState, Instant)>,
    /// Milliseconds after `epoch` (plus one) of the last RTP packet from the peer; 0 before any.
    last_rx: AtomicU64,
    negotiated: AtomicBool,
}

impl Liveness {
    fn new(fingerprint: Option<Arc<str>>) -> Self {
        let now = Instant::now();
        Self {
            fingerprint,
            epoch: now,
            ice: Mutex::new((IceConnectionState::New, now)),
            last_rx: AtomicU64::new(0),
            negotiated: AtomicBool::new(false),
        }
    }

    fn mark_rx(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_rx.store(ms, Ordering::Relaxed);
    }
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

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn pipeline_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Pipeline(e.to_string())
}

/// The capture sub-chain, as a bin with a ghost `src` pad, so it can be swapped mid-call.
fn source_bin(input: Option<&AudioInput>) -> Result<gst::Bin, MediaError> {
    let src = match input {
        None => "audiotestsrc is-live=true wave=silence".to_owned(),
        Some(AudioInput::Default) => "autoaudiosrc".to_owned(),
        Some(AudioInput::Pulse(dev)) => format!("pulsesrc device={}", quote(dev)),
        Some(AudioInput::Tone { hz }) => {
            format!("audiotestsrc is-live=true wave=sine volume=0.4 freq={hz}")
        }
    };
    let desc = format!(
        "{src} ! audioconvert ! audioresample ! capsfilter caps=audio/x-raw,rate={RATE},channels=1"
    );
    gst::parse::bin_from_description(&desc, true).map_err(pipeline_err)
}

/// A meter interval as `level` and `spectrum` take it, in nanoseconds.
fn interval_ns(ms: u32) -> u64 {
    u64::from(ms) * 1_000_000
}

/// The playback end, as a bin with a ghost `sink` pad, so the speaker can be swapped mid-call.
fn sink_bin(output: &AudioOutput, meter_interval_ms: u32) -> Result<gst::Bin, MediaError> {
    let interval = interval_ns(meter_interval_ms);
    let desc = match output {
        AudioOutput::Default => "autoaudiosink".to_owned(),
        AudioOutput::Pulse(dev) => format!("pulsesink device={}", quote(dev)),
        AudioOutput::Measure => format!(
            "spectrum bands=1024 threshold=-90 interval={interval} post-messages=true \
             message-magnitude=true ! fakesink sync=true"
        ),
    };
    gst::parse::bin_from_description(&desc, true).map_err(pipeline_err)
}

/// webrtcdsp finds its echo probe by name in a process-wide registry, so every pipe's probe gets a
/// name of its own.
fn probe_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("tincan_echo_probe_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn send_chain(cfg: &EngineConfig, probe: &str) -> String {
    let dsp = if cfg.echo_cancellation {
        format!("webrtcdsp name=dsp probe={probe} ! audioconvert ! ")
    } else {
        String::new()
    };
    let interval = interval_ns(cfg.meter_interval_ms);
    // The leaky queue keeps the source's thread from ever blocking: webrtcbin holds data back until
    // it is connected, and a source whose thread is stuck there cannot be stopped (a callee swaps its
    // silence for the microphone before that). It drops what is older than 60 ms, so nothing stale
    // is sent when the connection opens.
    format!(
        "queue name=src_queue leaky=downstream max-size-buffers=0 max-size-bytes=0 \
         max-size-time=60000000 ! audioconvert name=src_convert ! {dsp}\
         volume name=mute ! level name=local_level interval={interval} post-messages=true ! \
         audioconvert ! opusenc ! rtpopuspay pt=111 ! \
         application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate={RATE} ! \
         webrtcbin name=webrtc bundle-policy=max-bundle latency={latency}",
        latency = cfg.jitter_latency_ms
    )
}

fn playback_chain(cfg: &EngineConfig, probe: &str) -> String {
    let probe = if cfg.echo_cancellation {
        format!("webrtcechoprobe name={probe} ! audioconvert ! ")
    } else {
        String::new()
    };
    let interval = interval_ns(cfg.meter_interval_ms);
    format!(
        "audiotestsrc is-live=true wave=silence ! audio/x-raw,rate={RATE},channels=1 ! \
         audiomixer name=mix ! audioconvert ! audioresample ! audio/x-raw,rate={RATE},channels=1 ! {probe}\
         level name=remote_level interval={interval} post-messages=true"
    )
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
        let volume = by_name("mute")?;
        let mixer = by_name("mix")?;
        volume.set_property("mute", spec.muted);

        let source = source_bin(spec.input)?;
        pipeline.add(&source).map_err(pipeline_err)?;
        source.link(&by_name("src_queue")?).map_err(pipeline_err)?;
        let sink = sink_bin(spec.output, cfg.meter_interval_ms)?;
        pipeline.add(&sink).map_err(pipeline_err)?;
        by_name("remote_level")?.link(&sink).map_err(pipeline_err)?;

        if let Some(stun) = &cfg.stun_server {
            webrtc.set_property_from_str("stun-server", stun);
        }
        for turn in &cfg.turn_servers {
            let _ok: bool = webrtc.emit_by_name("add-turn-server", &[turn]);
        }
        let fingerprint: Option<Arc<str>> = spec
            .certificate
            .as_ref()
            .map(|c| c.fingerprint.as_str().into());
        if let Some(pem) = spec.certificate.as_ref().map(|c| c.pem.clone()) {
            // Before anything plays: an offerer's transport exists already (made with its sink
            // pad), and its DTLS encoder takes the decoder's connection when it goes to READY, so
            // the certificate must be in place by then. Transports made later (an answerer's, at
            // the remote offer) get it as they are added, before their state is synced.
            let done = Arc::new(Mutex::new(Vec::new()));
            use_certificate(&webrtc, &pem, &done);
            webrtc.connect("deep-element-added", false, move |values| {
                if let Some(element) = values.get(2).and_then(|v| v.get::<gst::Element>().ok()) {
                    use_certificate(&element, &pem, &done);
                }
                None
            });
        }
        let live = Arc::new(Liveness::new(fingerprint));
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
        let (e, s) = (emit.clone(), stopped.clone());
        let handle = std::thread::Builder::new()
            .name("tincan-media-bus".into())
            .spawn(move || watch_bus(&bus, &s, &e))
            .map_err(pipeline_err)?;

        Ok(Arc::new(Self {
            pipeline,
            webrtc,
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
                let desc = parse_sdp(sdp, WebRTCSDPType::Offer)?;
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
                let desc = parse_sdp(sdp, WebRTCSDPType::Answer)?;
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

fn parse_sdp(sdp: &str, kind: WebRTCSDPType) -> Result<WebRTCSessionDescription, MediaError> {
    let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
        .map_err(|e| MediaError::BadRemoteDescription(e.to_string()))?;
    Ok(WebRTCSessionDescription::new(kind, msg))
}

/// What to create.
#[derive(Clone, Copy)]
enum Done {
    Offer { ice_restart: bool },
    Answer,
}

/// Creates an offer or answer, sets it locally and emits it. webrtcbin now and then answers a
/// create request without an SDP; that is retried, never passed on empty.
fn create_sdp(webrtc: &gst::Element, kind: Done, emit: Emit, live: Arc<Liveness>, retries: u32) {
    let (signal, field) = match kind {
        Done::Offer { .. } => ("create-offer", "offer"),
        Done::Answer => ("create-answer", "answer"),
    };
    let w = webrtc.clone();
    let promise = gst::Promise::with_change_func(move |reply| {
        let desc = match reply {
            Ok(Some(s)) => s.get::<WebRTCSessionDescription>(field).ok(),
            _ => None,
        };
        let Some(desc) = desc else {
            warn!(signal, retries, "webrtcbin returned no SDP");
            if retries > 0 {
                create_sdp(&w, kind, emit, live, retries - 1);
            } else {
                emit(EngineEvent::Error(MediaError::Negotiation(format!(
                    "{signal} returned no session description"
                ))));
            }
            return;
        };
        w.emit_by_name::<()>("set-local-description", &[&desc, &None::<gst::Promise>]);
        let sdp = match desc.sdp().as_text() {
            Ok(t) => match &live.fingerprint {
                Some(fp) => with_fingerprint(&t, fp),
                None => t,
            },
            Err(e) => {
                emit(EngineEvent::Error(MediaError::Negotiation(e.to_string())));
                return;
            }
        };
        let signal = match kind {
            Done::Offer { ice_restart } => MediaSignal::Offer { sdp, ice_restart },
            Done::Answer => {
                live.negotiated.store(true, Ordering::Release);
                MediaSignal::Answer { sdp }
            }
        };
        emit(EngineEvent::Signal(signal));
    });
    webrtc.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]);
}

fn link_remote(
    pipeline: &gst::Pipeline,
    mixer: &gst::Element,
    pad: &gst::Pad,
    emit: Emit,
    live: Arc<Liveness>,
) -> Result<(), MediaError> {
    let bin = gst::parse::bin_from_description(
        "rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample",
        true,
    )
    .map_err(pipeline_err)?;
    pipeline.add(&bin).map_err(pipeline_err)?;
    let sink = bin
        .static_pad("sink")
        .ok_or_else(|| MediaError::Pipeline("decoder has no sink".into()))?;
    let src = bin
        .static_pad("src")
        .ok_or_else(|| MediaError::Pipeline("decoder has no src".into()))?;
    let mix_pad = mixer
        .request_pad_simple("sink_%u")
        .ok_or_else(|| MediaError::Pipeline("mixer refused a pad".into()))?;
    src.link(&mix_pad)
        .map_err(|e| MediaError::Pipeline(format!("{e:?}")))?;
    // Liveness counts RTP packets as they leave webrtcbin's jitter buffer (real packets only: the
    // decoder's loss concealment must not look like a live peer).
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        live.mark_rx();
        gst::PadProbeReturn::Ok
    });
    let first = AtomicBool::new(true);
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if first.swap(false, Ordering::AcqRel) {
            emit(EngineEvent::RemoteAudioStarted);
        }
        gst::PadProbeReturn::Ok
    });
    bin.sync_state_with_parent().map_err(pipeline_err)?;
    pad.link(&sink)
        .map_err(|e| MediaError::Pipeline(format!("{e:?}")))?;
    debug!("remote audio linked");
    Ok(())
}

fn rms_db(s: &gst::StructureRef) -> Option<f64> {
    let rms = s.get::<glib::ValueArray>("rms").ok()?;
    rms.iter()
        .filter_map(|v| v.get::<f64>().ok())
        .max_by(|a, b| a.total_cmp(b))
}

fn watch_bus(bus: &gst::Bus, stopped: &AtomicBool, emit: &Emit) {
    while !stopped.load(Ordering::Acquire) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(err) => {
                let text = format!(
                    "{} ({})",
                    err.error(),
                    err.debug().map(|d| d.to_string()).unwrap_or_default()
                );
                emit(EngineEvent::Error(MediaError::Pipeline(text)));
            }
            gst::MessageView::Element(el) => {
                let Some(s) = el.structure() else { continue };
                let source = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                match s.name().as_str() {
                    "level" => {
                        if let Some(db) = rms_db(s) {
                            emit(if source == "local_level" {
                                EngineEvent::LocalLevel(db)
                            } else {
                                EngineEvent::RemoteLevel(db)
                            });
                        }
                    }
                    "spectrum" => {
                        if let Ok(list) = s.get::<gst::List>("magnitude") {
                            let mags: Vec<f32> =
                                list.iter().filter_map(|v| v.get::<f32>().ok()).collect();
                            if let Some((hz, db)) = crate::peak_frequency(&mags, RATE) {
                                emit(EngineEvent::RemotePeak { hz, db });
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_sdp_carries_the_certificates_own_fingerprint() {
        let c = fresh_certificate().unwrap();
        assert!(c.pem.contains("BEGIN CERTIFICATE") && c.pem.contains("PRIVATE KEY"));
        assert_eq!(c.fingerprint.len(), 32 * 3 - 1);
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\n";
        let out = with_fingerprint(sdp, &c.fingerprint);
        assert_eq!(
            out,
            format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 {}\r\na=setup:actpass\r\n", c.fingerprint)
        );
    }
}
