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

type Emit = Arc<dyn Fn(EngineEvent) + Send + Sync>;

struct Inner {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    volume: gst::Element,
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

fn send_chain(cfg: &EngineConfig) -> String {
    let src = match &cfg.input {
        AudioInput::Default => "autoaudiosrc".to_owned(),
        AudioInput::Pulse(dev) => format!("pulsesrc device={}", quote(dev)),
        AudioInput::Tone { hz } => {
            format!("audiotestsrc is-live=true wave=sine volume=0.4 freq={hz}")
        }
    };
    let dsp = if cfg.echo_cancellation {
        "webrtcdsp name=dsp ! audioconvert ! "
    } else {
        ""
    };
    let interval = u64::from(cfg.meter_interval_ms) * 1_000_000;
    format!(
        "{src} ! audioconvert ! audioresample ! audio/x-raw,rate={RATE},channels=1 ! {dsp}\
         volume name=mute ! level name=local_level interval={interval} post-messages=true ! \
         audioconvert ! opusenc ! rtpopuspay pt=111 ! \
         application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate={RATE} ! \
         webrtcbin name=webrtc bundle-policy=max-bundle latency={latency}",
        latency = cfg.jitter_latency_ms
    )
}

fn playback_chain(cfg: &EngineConfig) -> String {
    let probe = if cfg.echo_cancellation {
        "webrtcechoprobe name=probe ! audioconvert ! "
    } else {
        ""
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
        let desc = format!("{} {}", send_chain(cfg), playback_chain(cfg));
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
