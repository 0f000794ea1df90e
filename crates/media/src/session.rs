//! One call's media: a GStreamer pipeline around `webrtcbin`.
//!
//! Send chain: source → resample to 48 kHz mono → [echo cancellation] → mute (volume) → level →
//! Opus (payload type 111, as browsers offer it) → webrtcbin. Receive chain, linked when the peer's
//! stream appears: RTP depay → Opus decode → a mixer that always runs (fed by silence too, so the
//! echo probe exists before the pipeline plays) → [echo probe] → level → [spectrum] → sink.

use crate::analysis::peak_frequency;
use crate::config::{AudioInput, AudioOutput, EngineConfig, Role};
use crate::error::MediaError;
use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCICEConnectionState, WebRTCSDPType, WebRTCSessionDescription};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tincan_proto::MediaSignal;
use tracing::{debug, warn};

/// Sample rate of everything inside the pipeline.
const RATE: u32 = 48_000;
/// How many times a `create-offer` / `create-answer` that returned no SDP is retried.
const SDP_RETRIES: u32 = 3;

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
    /// The first decoded audio from the peer.
    RemoteAudioStarted,
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

/// Connection quality numbers from webrtcbin's stats.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallStats {
    /// Round-trip time reported by the peer's receiver reports, ms.
    pub rtt_ms: Option<f64>,
    /// Inbound jitter, ms.
    pub jitter_ms: Option<f64>,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub packets_sent: u64,
}

impl CallStats {
    /// Inbound loss in percent.
    pub fn loss_pct(&self) -> f64 {
        let total = self.packets_received as f64 + self.packets_lost.max(0) as f64;
        if total == 0.0 {
            0.0
        } else {
            100.0 * self.packets_lost.max(0) as f64 / total
        }
    }

    fn read(reply: &gst::StructureRef) -> Self {
        let mut out = CallStats::default();
        for (_, value) in reply.iter() {
            let Ok(stat) = value.get::<gst::Structure>() else {
                continue;
            };
            match stat.name().as_str() {
                "inbound-rtp" => {
                    out.packets_received += stat.get::<u64>("packets-received").unwrap_or(0);
                    out.packets_lost += stat.get::<i64>("packets-lost").unwrap_or(0);
                    if let Ok(j) = stat.get::<f64>("jitter") {
                        out.jitter_ms = Some(j * 1000.0);
                    }
                }
                "outbound-rtp" => {
                    out.packets_sent += stat.get::<u64>("packets-sent").unwrap_or(0);
                }
                "remote-inbound-rtp" => {
                    if let Ok(rtt) = stat.get::<f64>("round-trip-time") {
                        out.rtt_ms = Some(rtt * 1000.0);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

type Emit = Arc<dyn Fn(EngineEvent) + Send + Sync>;

struct Inner {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    volume: gst::Element,
    source: Mutex<gst::Bin>,
    emit: Emit,
    stopped: AtomicBool,
    bus_thread: Mutex<Option<JoinHandle<()>>>,
}

/// A running media session. Dropping it stops it and releases the microphone.
pub struct MediaSession {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession").finish_non_exhaustive()
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A source element for `input`, as a launch-line fragment.
fn source_desc(input: &AudioInput) -> String {
    match input {
        AudioInput::Default => "autoaudiosrc".to_owned(),
        AudioInput::Pulse(dev) => format!("pulsesrc device={}", quote(dev)),
        AudioInput::Tone { hz } => {
            format!("audiotestsrc is-live=true wave=sine volume=0.4 freq={hz}")
        }
    }
}

/// The capture sub-chain, as a bin with a ghost `src` pad, so it can be swapped mid-call.
fn source_bin(input: &AudioInput) -> Result<gst::Bin, MediaError> {
    let desc = format!(
        "{} ! audioconvert ! audioresample ! capsfilter caps=audio/x-raw,rate={RATE},channels=1",
        source_desc(input)
    );
    gst::parse::bin_from_description(&desc, true).map_err(|e| MediaError::Pipeline(e.to_string()))
}

/// Links a new capture bin into the send chain (in front of `src_convert`).
fn attach_source(pipeline: &gst::Pipeline, bin: &gst::Bin) -> Result<(), MediaError> {
    let convert = pipeline
        .by_name("src_convert")
        .ok_or_else(|| MediaError::Pipeline("element src_convert missing".into()))?;
    pipeline
        .add(bin)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    bin.link(&convert)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    Ok(())
}

/// webrtcdsp finds its echo probe by name in a process-wide registry, so every session's probe
/// gets a name of its own.
fn probe_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("tincan_echo_probe_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn send_chain(cfg: &EngineConfig, probe: &str) -> String {
    let dsp = if cfg.echo_cancellation {
        format!("webrtcdsp name=dsp probe={probe} ! audioconvert ! ")
    } else {
        String::new()
    };
    let interval = u64::from(cfg.meter_interval_ms) * 1_000_000;
    format!(
        "audioconvert name=src_convert ! {dsp}\
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
    let interval = u64::from(cfg.meter_interval_ms) * 1_000_000;
    let (spectrum, sink) = match &cfg.output {
        AudioOutput::Default => (String::new(), "autoaudiosink".to_owned()),
        AudioOutput::Pulse(dev) => (String::new(), format!("pulsesink device={}", quote(dev))),
        AudioOutput::Measure => (
            format!(
                "spectrum name=spectrum bands=1024 threshold=-90 interval={interval} post-messages=true message-magnitude=true ! "
            ),
            "fakesink sync=true".to_owned(),
        ),
    };
    format!(
        "audiotestsrc is-live=true wave=silence ! audio/x-raw,rate={RATE},channels=1 ! \
         audiomixer name=mix ! audioconvert ! audioresample ! audio/x-raw,rate={RATE},channels=1 ! {probe}\
         level name=remote_level interval={interval} post-messages=true ! {spectrum}{sink}"
    )
}

impl MediaSession {
    /// Builds and starts the pipeline. An [`Role::Offerer`] emits its offer as soon as the pipeline
    /// runs; an [`Role::Answerer`] waits for [`MediaSession::apply_remote`] with the offer.
    pub fn start(
        cfg: &EngineConfig,
        role: Role,
        emit: impl Fn(EngineEvent) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        crate::check_plugins()?;
        let probe = probe_name();
        let desc = format!(
            "{} {}",
            send_chain(cfg, &probe),
            playback_chain(cfg, &probe)
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| MediaError::Pipeline(e.to_string()))?
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
        let source = source_bin(&cfg.input)?;
        attach_source(&pipeline, &source)?;
        if let Some(stun) = &cfg.stun_server {
            webrtc.set_property_from_str("stun-server", stun);
        }
        for turn in &cfg.turn_servers {
            let _ok: bool = webrtc.emit_by_name("add-turn-server", &[turn]);
        }
        let emit: Emit = Arc::new(emit);
        let inner = Arc::new(Inner {
            pipeline: pipeline.clone(),
            webrtc: webrtc.clone(),
            volume,
            source: Mutex::new(source),
            emit: emit.clone(),
            stopped: AtomicBool::new(false),
            bus_thread: Mutex::new(None),
        });

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
        webrtc.connect_notify(Some("ice-connection-state"), move |w, _| {
            let state = w.property::<WebRTCICEConnectionState>("ice-connection-state");
            e(EngineEvent::IceState(state.into()));
        });
        if role == Role::Offerer {
            let e = emit.clone();
            webrtc.connect("on-negotiation-needed", false, move |values| {
                if let Some(w) = values.first().and_then(|v| v.get::<gst::Element>().ok()) {
                    create_sdp(&w, WebRTCSDPType::Offer, e.clone(), SDP_RETRIES);
                }
                None
            });
        }
        // The peer's audio: depay, decode, mix into the playback chain.
        let e = emit.clone();
        let pipe = pipeline.downgrade();
        webrtc.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let Some(pipeline) = pipe.upgrade() else {
                return;
            };
            if let Err(err) = link_remote(&pipeline, &mixer, pad, e.clone()) {
                e(EngineEvent::Error(err));
            }
        });

        let bus = pipeline
            .bus()
            .ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
        let watcher = inner.clone();
        let handle = std::thread::Builder::new()
            .name("tincan-media-bus".into())
            .spawn(move || watch_bus(&bus, &watcher))
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        if let Ok(mut slot) = inner.bus_thread.lock() {
            *slot = Some(handle);
        }

        pipeline.set_state(gst::State::Playing).map_err(|_| {
            let _ = pipeline.set_state(gst::State::Null);
            match &cfg.input {
                AudioInput::Tone { .. } => {
                    MediaError::Pipeline("the pipeline would not start".into())
                }
                _ => MediaError::NoMicrophone("the audio source would not start".into()),
            }
        })?;
        Ok(Self { inner })
    }

    /// Applies a signal from the peer: its offer or answer, or one of its ICE candidates.
    pub fn apply_remote(&self, signal: &MediaSignal) -> Result<(), MediaError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(MediaError::Stopped);
        }
        let webrtc = &self.inner.webrtc;
        match signal {
            MediaSignal::Offer { sdp, .. } => {
                let desc = parse_sdp(sdp, WebRTCSDPType::Offer)?;
                let w = webrtc.clone();
                let e = self.inner.emit.clone();
                let promise = gst::Promise::with_change_func(move |_reply| {
                    create_sdp(&w, WebRTCSDPType::Answer, e, SDP_RETRIES);
                });
                webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &promise]);
            }
            MediaSignal::Answer { sdp } => {
                let desc = parse_sdp(sdp, WebRTCSDPType::Answer)?;
                webrtc
                    .emit_by_name::<()>("set-remote-description", &[&desc, &None::<gst::Promise>]);
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

    /// Mutes or unmutes the microphone (silence is sent, so the connection stays warm).
    pub fn set_muted(&self, muted: bool) {
        self.inner.volume.set_property("mute", muted);
    }

    /// Asks webrtcbin for its statistics; the answer comes as [`EngineEvent::Stats`].
    pub fn request_stats(&self) {
        let emit = self.inner.emit.clone();
        let promise = gst::Promise::with_change_func(move |reply| {
            if let Ok(Some(reply)) = reply {
                emit(EngineEvent::Stats(CallStats::read(reply)));
            }
        });
        self.inner
            .webrtc
            .emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    }

    /// Switches the microphone mid-call, without renegotiation: the capture bin is replaced in
    /// front of the encoder while the connection keeps running.
    pub fn switch_input(&self, input: &AudioInput) -> Result<(), MediaError> {
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(MediaError::Stopped);
        }
        let new = source_bin(input)?;
        let mut current = self
            .inner
            .source
            .lock()
            .map_err(|_| MediaError::Pipeline("source lock poisoned".into()))?;
        let pipeline = &self.inner.pipeline;
        let _ = current.set_state(gst::State::Null);
        if let Some(convert) = pipeline.by_name("src_convert") {
            current.unlink(&convert);
        }
        let _ = pipeline.remove(&*current);
        attach_source(pipeline, &new)?;
        new.sync_state_with_parent()
            .map_err(|e| MediaError::NoMicrophone(e.to_string()))?;
        *current = new;
        Ok(())
    }

    /// Stops the pipeline and releases the microphone at once.
    pub fn stop(&self) {
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.inner.pipeline.set_state(gst::State::Null);
        let handle = self.inner.bus_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse_sdp(sdp: &str, kind: WebRTCSDPType) -> Result<WebRTCSessionDescription, MediaError> {
    let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
        .map_err(|e| MediaError::BadRemoteDescription(e.to_string()))?;
    Ok(WebRTCSessionDescription::new(kind, msg))
}

/// Creates an offer or answer, sets it locally and emits it. webrtcbin now and then answers a
/// create request without an SDP; that is retried, never passed on empty.
fn create_sdp(webrtc: &gst::Element, kind: WebRTCSDPType, emit: Emit, retries: u32) {
    let (signal, field) = match kind {
        WebRTCSDPType::Offer => ("create-offer", "offer"),
        _ => ("create-answer", "answer"),
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
                create_sdp(&w, kind, emit, retries - 1);
            } else {
                emit(EngineEvent::Error(MediaError::Negotiation(format!(
                    "{signal} returned no session description"
                ))));
            }
            return;
        };
        w.emit_by_name::<()>("set-local-description", &[&desc, &None::<gst::Promise>]);
        let sdp = match desc.sdp().as_text() {
            Ok(t) => t,
            Err(e) => {
                emit(EngineEvent::Error(MediaError::Negotiation(e.to_string())));
                return;
            }
        };
        let signal = match kind {
            WebRTCSDPType::Offer => MediaSignal::Offer {
                sdp,
                ice_restart: false,
            },
            _ => MediaSignal::Answer { sdp },
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
) -> Result<(), MediaError> {
    let bin = gst::parse::bin_from_description(
        "rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample",
        true,
    )
    .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    pipeline
        .add(&bin)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
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
    let first = AtomicBool::new(true);
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if first.swap(false, Ordering::AcqRel) {
            emit(EngineEvent::RemoteAudioStarted);
        }
        gst::PadProbeReturn::Ok
    });
    bin.sync_state_with_parent()
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
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

fn watch_bus(bus: &gst::Bus, inner: &Inner) {
    while !inner.stopped.load(Ordering::Acquire) {
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
                (inner.emit)(EngineEvent::Error(MediaError::Pipeline(text)));
            }
            gst::MessageView::Element(el) => {
                let Some(s) = el.structure() else { continue };
                let source = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                match s.name().as_str() {
                    "level" => {
                        if let Some(db) = rms_db(s) {
                            let event = if source == "local_level" {
                                EngineEvent::LocalLevel(db)
                            } else {
                                EngineEvent::RemoteLevel(db)
                            };
                            (inner.emit)(event);
                        }
                    }
                    "spectrum" => {
                        if let Ok(list) = s.get::<gst::List>("magnitude") {
                            let mags: Vec<f32> =
                                list.iter().filter_map(|v| v.get::<f32>().ok()).collect();
                            if let Some((hz, db)) = peak_frequency(&mags, RATE) {
                                (inner.emit)(EngineEvent::RemotePeak { hz, db });
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
