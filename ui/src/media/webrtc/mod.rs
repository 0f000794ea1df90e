//! The WebRTC engine: `RTCPeerConnection`, `getUserMedia` and Web Audio, through web-sys.
//!
//! Every asynchronous step of a session (remote signals, accept, ICE restart) runs through one
//! queue, in order, so a candidate never races its offer and the answer is made exactly once.
//!
//! Split along its lines: this module holds the engine, a session's state, its setup and the
//! [`MediaSession`] face; [`negotiate`] the ordered queue of negotiation steps (microphone, offer,
//! answer, the peer's signals and their SDP check); [`monitor`] what watches a live session (ICE
//! state, restart and give-up timers, the peer's audio, `getStats`).

mod monitor;
mod negotiate;

use super::devices::{self, mic_error};
use super::stats::loss_pct;
use super::tones::audio_context;
use super::{
    AudioDevice, CallSetup, CallStats, EventSink, Levels, MediaEngine, MediaError, MediaErrorCode,
    MediaSession, Role, SessionEvent,
};
use crate::backend::LocalFuture;
use gloo_timers::callback::{Interval, Timeout};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use tincan_ipc::MediaSignal;
use tincan_proto::sdp::{self, CandidateBudget, SdpError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AnalyserNode, HtmlAudioElement, MediaStream, MediaStreamTrack, RtcIceCandidateInit,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcRtpSender, RtcSdpType,
    RtcSessionDescriptionInit, RtcTrackEvent,
};

/// ICE restart after this long in `disconnected`.
const RESTART_AFTER_MS: u32 = 2_000;
/// Give up when media has not (re)connected within this long.
const GIVE_UP_AFTER_MS: u32 = 30_000;

/// Unix milliseconds with sub-millisecond precision.
pub fn precise_now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.time_origin() + p.now())
        .unwrap_or_else(js_sys::Date::now)
}

pub struct WebRtcEngine;

impl WebRtcEngine {
    /// The engine, when this page has WebRTC.
    pub fn detect() -> Option<Self> {
        devices::webrtc_available().then_some(WebRtcEngine)
    }
}

impl MediaEngine for WebRtcEngine {
    fn name(&self) -> &'static str {
        "WebRTC (built into this window)"
    }

    fn start(
        &self,
        setup: CallSetup,
        events: EventSink,
    ) -> Result<Rc<dyn MediaSession>, MediaError> {
        let session = WebRtcSession::new(setup, events)?;
        Ok(Rc::new(session))
    }

    fn devices(&self) -> LocalFuture<Result<Vec<AudioDevice>, MediaError>> {
        Box::pin(devices::list())
    }
}

enum Op {
    Remote(MediaSignal),
    Accept,
    Restart,
    OpenMic,
}

struct State {
    setup: CallSetup,
    pc: RtcPeerConnection,
    events: EventSink,
    local: Option<MediaStream>,
    sender: Option<RtcRtpSender>,
    muted: bool,
    accepted: bool,
    answered: bool,
    have_offer: bool,
    pending_candidates: Vec<RtcIceCandidateInit>,
    /// The SDP check's count of the peer's candidates (the per-call cap, as on the server).
    peer_signals: CandidateBudget,
    queue: VecDeque<Op>,
    running: bool,
    stopped: bool,
    audio: HtmlAudioElement,
    mic_analyser: Option<AnalyserNode>,
    peer_analyser: Option<AnalyserNode>,
    ever_connected: bool,
    restarts: u32,
    restart_timer: Option<Timeout>,
    give_up_timer: Option<Timeout>,
    stats: CallStats,
    last_counts: Option<(u64, i64)>,
    stats_timer: Option<Interval>,
    first_audio_timer: Option<Interval>,
    first_audio: Option<f64>,
    closures: Vec<Closure<dyn FnMut(JsValue)>>,
}

pub struct WebRtcSession {
    s: Rc<RefCell<State>>,
}

fn negotiation(what: &str, e: &JsValue) -> MediaError {
    MediaError::new(
        MediaErrorCode::Negotiation,
        format!(
            "Setting up the audio failed ({what}: {}).",
            js_sys::Reflect::get(e, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
                .unwrap_or_else(|| format!("{e:?}"))
        ),
    )
}

fn rtc_config(setup: &CallSetup) -> JsValue {
    // An explicit list, even when empty: no engine default (a public STUN server) sneaks in. The
    // server-issued servers come first (fresh TURN credentials), then the user's.
    let servers: Vec<serde_json::Value> = setup
        .issued_ice_servers
        .iter()
        .chain(&setup.ice_servers)
        .map(|s| {
            let mut v = serde_json::json!({ "urls": s.urls });
            if let Some(u) = &s.username {
                v["username"] = u.clone().into();
            }
            if let Some(c) = &s.credential {
                v["credential"] = c.clone().into();
            }
            v
        })
        .collect();
    let policy = if setup.relay_only { "relay" } else { "all" };
    let cfg = serde_json::json!({
        "iceServers": servers,
        "iceTransportPolicy": policy,
        "bundlePolicy": "max-bundle",
    });
    js_sys::JSON::parse(&cfg.to_string()).unwrap_or(JsValue::NULL)
}

/// Any TURN server at all among the servers of `setup` (relay-only mode needs one).
fn has_turn(setup: &CallSetup) -> bool {
    setup
        .issued_ice_servers
        .iter()
        .chain(&setup.ice_servers)
        .any(|s| s.is_turn())
}

/// Relay-only mode's second guard, on the sending side (the browser gathers only relay
/// candidates under `iceTransportPolicy: "relay"`): only relay candidates leave, trickled or in
/// an offer / answer, and with their related address hidden (`tincan_proto::sdp`).
fn relay_only_signal(signal: MediaSignal) -> Option<MediaSignal> {
    use tincan_proto::sdp::{relay_only_candidate, relay_only_description};
    Some(match signal {
        MediaSignal::Candidate {
            candidate,
            sdp_mid,
            sdp_m_line_index,
        } => match relay_only_candidate(&candidate) {
            Some(candidate) => MediaSignal::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            },
            None => {
                web_sys::console::warn_1(&JsValue::from_str(
                    "tincan: relay-only: a non-relay candidate was not sent",
                ));
                return None;
            }
        },
        MediaSignal::Offer { sdp, ice_restart } => MediaSignal::Offer {
            sdp: relay_only_description(&sdp),
            ice_restart,
        },
        MediaSignal::Answer { sdp } => MediaSignal::Answer {
            sdp: relay_only_description(&sdp),
        },
        other => other,
    })
}

fn rms(a: &AnalyserNode) -> f64 {
    let mut buf = vec![0f32; a.fft_size() as usize];
    a.get_float_time_domain_data(&mut buf);
    if buf.is_empty() {
        return 0.0;
    }
    let sum: f64 = buf.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
    (sum / buf.len() as f64).sqrt()
}

/// RMS of the newest `n` samples only (the analyser's buffer ends with the newest), so a short gap
/// is not smeared over the whole FFT window (4096 samples, 85 ms).
fn rms_recent(a: &AnalyserNode, n: usize) -> f64 {
    let mut buf = vec![0f32; a.fft_size() as usize];
    a.get_float_time_domain_data(&mut buf);
    let tail = &buf[buf.len().saturating_sub(n)..];
    if tail.is_empty() {
        return 0.0;
    }
    let sum: f64 = tail.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
    (sum / tail.len() as f64).sqrt()
}

fn analyser_for(stream: &MediaStream) -> Option<AnalyserNode> {
    let ctx = audio_context()?;
    let src = ctx.create_media_stream_source(stream).ok()?;
    let a = ctx.create_analyser().ok()?;
    a.set_fft_size(4096);
    a.set_smoothing_time_constant(0.2);
    src.connect_with_audio_node(&a).ok()?;
    Some(a)
}

fn get_num(o: &JsValue, k: &str) -> Option<f64> {
    js_sys::Reflect::get(o, &JsValue::from_str(k))
        .ok()
        .and_then(|v| v.as_f64())
}

fn get_str(o: &JsValue, k: &str) -> Option<String> {
    js_sys::Reflect::get(o, &JsValue::from_str(k))
        .ok()
        .and_then(|v| v.as_string())
}

impl WebRtcSession {
    fn new(setup: CallSetup, events: EventSink) -> Result<Self, MediaError> {
        if !devices::webrtc_available() {
            return Err(devices::webrtc_unavailable());
        }
        if setup.relay_only && !has_turn(&setup) {
            return Err(MediaError::relay_unavailable());
        }
        let cfg: web_sys::RtcConfiguration = rtc_config(&setup).unchecked_into();
        let pc = RtcPeerConnection::new_with_configuration(&cfg)
            .map_err(|e| negotiation("RTCPeerConnection", &e))?;
        let audio: HtmlAudioElement = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.create_element("audio").ok())
            .and_then(|e| e.dyn_into().ok())
            .ok_or_else(|| MediaError::new(MediaErrorCode::Negotiation, "no document"))?;
        audio.set_autoplay(true);
        let role = setup.role;
        let s = Rc::new(RefCell::new(State {
            setup,
            pc: pc.clone(),
            events,
            local: None,
            sender: None,
            muted: false,
            accepted: false,
            answered: false,
            have_offer: false,
            pending_candidates: Vec::new(),
            peer_signals: CandidateBudget::default(),
            queue: VecDeque::new(),
            running: false,
            stopped: false,
            audio,
            mic_analyser: None,
            peer_analyser: None,
            ever_connected: false,
            restarts: 0,
            restart_timer: None,
            give_up_timer: None,
            stats: CallStats::default(),
            last_counts: None,
            stats_timer: None,
            first_audio_timer: None,
            first_audio: None,
            closures: Vec::new(),
        }));
        let session = WebRtcSession { s };
        session.wire(&pc);
        if role == Role::Caller {
            session.enqueue(Op::OpenMic);
        }
        Ok(session)
    }

    fn emit(s: &Rc<RefCell<State>>, ev: SessionEvent) {
        let (sink, stopped, relay_only) = {
            let st = s.borrow();
            (st.events.clone(), st.stopped, st.setup.relay_only)
        };
        let ev = match ev {
            SessionEvent::Signal(signal) if relay_only => match relay_only_signal(signal) {
                Some(signal) => SessionEvent::Signal(signal),
                None => return,
            },
            ev => ev,
        };
        if !stopped {
            sink(ev);
        }
    }

    fn wire(&self, pc: &RtcPeerConnection) {
        let weak = Rc::downgrade(&self.s);
        let on_candidate = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let Some(s) = weak.upgrade() else { return };
            let e: RtcPeerConnectionIceEvent = e.unchecked_into();
            let signal = match e.candidate() {
                Some(c) if !c.candidate().is_empty() => MediaSignal::Candidate {
                    candidate: c.candidate(),
                    sdp_mid: c.sdp_mid(),
                    sdp_m_line_index: c.sdp_m_line_index(),
                },
                _ => MediaSignal::EndOfCandidates,
            };
            Self::emit(&s, SessionEvent::Signal(signal));
        });
        pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));

        let weak = Rc::downgrade(&self.s);
        let on_track = Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let Some(s) = weak.upgrade() else { return };
            let e: RtcTrackEvent = e.unchecked_into();
            let stream: MediaStream = match e.streams().get(0).dyn_into::<MediaStream>() {
                Ok(st) => st,
                Err(_) => {
                    let Ok(st) = MediaStream::new() else { return };
                    st.add_track(&e.track());
                    st
                }
            };
            Self::on_remote_stream(&s, &stream);
        });
        pc.set_ontrack(Some(on_track.as_ref().unchecked_ref()));

        let weak = Rc::downgrade(&self.s);
        let on_ice = Closure::<dyn FnMut(JsValue)>::new(move |_e: JsValue| {
            let Some(s) = weak.upgrade() else { return };
            Self::on_ice_state(&s);
        });
        pc.set_oniceconnectionstatechange(Some(on_ice.as_ref().unchecked_ref()));

        // DTLS can fail while ICE stays connected (`connectionState` "failed", ICE "connected"):
        // no audio then, and the ICE watch alone would never notice. Restarting gives the call a
        // new DTLS association, as the native engine does for a failed handshake.
        let weak = Rc::downgrade(&self.s);
        let on_conn = Closure::<dyn FnMut(JsValue)>::new(move |_e: JsValue| {
            let Some(s) = weak.upgrade() else { return };
            let pc = s.borrow().pc.clone();
            if get_str(&pc, "connectionState").as_deref() == Some("failed") {
                WebRtcSession { s: s.clone() }.enqueue(Op::Restart);
                Self::arm_give_up(&s);
            }
        });
        let _ = js_sys::Reflect::set(
            pc,
            &JsValue::from_str("onconnectionstatechange"),
            on_conn.as_ref().unchecked_ref(),
        );

        let mut st = self.s.borrow_mut();
        st.closures.push(on_candidate);
        st.closures.push(on_track);
        st.closures.push(on_ice);
        st.closures.push(on_conn);
        let weak = Rc::downgrade(&self.s);
        st.stats_timer = Some(Interval::new(1_000, move || {
            if let Some(s) = weak.upgrade() {
                wasm_bindgen_futures::spawn_local(Self::poll_stats(s));
            }
        }));
    }
}

fn stop_stream(stream: &MediaStream) {
    for t in stream.get_tracks().iter() {
        let t: MediaStreamTrack = t.unchecked_into();
        t.stop();
    }
}

async fn set_sink(audio: &HtmlAudioElement, device: Option<&str>) -> Result<(), MediaError> {
    let f = js_sys::Reflect::get(audio, &JsValue::from_str("setSinkId"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or_else(|| {
            MediaError::new(
                MediaErrorCode::OutputNotSupported,
                "This window cannot choose the speaker; the system default plays the call.",
            )
        })?;
    let p = f
        .call1(audio, &JsValue::from_str(device.unwrap_or("")))
        .map_err(|e| negotiation("setSinkId", &e))?;
    JsFuture::from(js_sys::Promise::from(p))
        .await
        .map_err(|e| negotiation("setSinkId", &e))?;
    Ok(())
}

impl MediaSession for WebRtcSession {
    fn accept(&self) {
        self.enqueue(Op::Accept);
    }

    fn remote_signal(&self, signal: MediaSignal) {
        self.enqueue(Op::Remote(signal));
    }

    fn set_muted(&self, muted: bool) {
        let mut st = self.s.borrow_mut();
        st.muted = muted;
        if let Some(stream) = &st.local {
            for t in stream.get_audio_tracks().iter() {
                let t: MediaStreamTrack = t.unchecked_into();
                t.set_enabled(!muted);
            }
        }
    }

    fn switch_input(&self, device: Option<String>) -> LocalFuture<Result<(), MediaError>> {
        let s = self.s.clone();
        Box::pin(async move {
            let processing = s.borrow().setup.processing;
            let stream = devices::open_microphone(device.as_deref(), processing).await?;
            let track: MediaStreamTrack = stream
                .get_audio_tracks()
                .get(0)
                .dyn_into()
                .map_err(|e| mic_error(&e))?;
            let (sender, old, muted) = {
                let st = s.borrow();
                (st.sender.clone(), st.local.clone(), st.muted)
            };
            track.set_enabled(!muted);
            if let Some(sender) = sender {
                JsFuture::from(sender.replace_track(Some(&track)))
                    .await
                    .map_err(|e| negotiation("replaceTrack", &e))?;
            }
            if let Some(old) = old {
                stop_stream(&old);
            }
            let mut st = s.borrow_mut();
            st.mic_analyser = analyser_for(&stream);
            st.setup.input = device;
            st.local = Some(stream);
            Ok(())
        })
    }

    fn set_output(&self, device: Option<String>) -> LocalFuture<Result<(), MediaError>> {
        let s = self.s.clone();
        Box::pin(async move {
            let audio = s.borrow().audio.clone();
            set_sink(&audio, device.as_deref()).await?;
            s.borrow_mut().setup.output = device;
            Ok(())
        })
    }

    fn stats(&self) -> CallStats {
        self.s.borrow().stats
    }

    fn levels(&self) -> Levels {
        let st = self.s.borrow();
        Levels {
            mic: if st.muted {
                0.0
            } else {
                st.mic_analyser.as_ref().map(rms).unwrap_or(0.0)
            },
            peer: st.peer_analyser.as_ref().map(rms).unwrap_or(0.0),
        }
    }

    fn signaling_back(&self) {
        // The offer of a restart made during the outage was kept and has been sent by now; one
        // that the peer's absence made the server refuse (`peer_absent`) is made again here, as
        // is one the 2-second timer never got to while ICE stayed down.
        // Only from a settled negotiation: an offer still waiting for its answer (the kept one,
        // delivered after the resume) must not be replaced, or its answer would not fit.
        let settled = self.s.borrow().pc.signaling_state() == web_sys::RtcSignalingState::Stable;
        if settled && !Self::ice_up(&self.s) && self.s.borrow().ever_connected {
            self.enqueue(Op::Restart);
        }
    }

    fn signaling_state(&self) -> Option<String> {
        use web_sys::RtcSignalingState as S;
        let st = match self.s.borrow().pc.signaling_state() {
            S::Stable => "stable",
            S::HaveLocalOffer => "have-local-offer",
            S::HaveRemoteOffer => "have-remote-offer",
            S::HaveLocalPranswer => "have-local-pranswer",
            S::HaveRemotePranswer => "have-remote-pranswer",
            S::Closed => "closed",
            _ => "unknown",
        };
        Some(st.into())
    }

    fn peer_level_now(&self) -> f64 {
        // 10 ms at 48 kHz.
        let st = self.s.borrow();
        st.peer_analyser
            .as_ref()
            .map(|a| rms_recent(a, 480))
            .unwrap_or(0.0)
    }

    fn peer_peak_hz(&self) -> Option<f64> {
        let st = self.s.borrow();
        let a = st.peer_analyser.as_ref()?;
        let ctx = audio_context()?;
        let mut bins = vec![0f32; a.frequency_bin_count() as usize];
        a.get_float_frequency_data(&mut bins);
        let (i, db) = bins
            .iter()
            .enumerate()
            .filter(|(i, _)| *i > 2)
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        if !db.is_finite() || *db < -90.0 {
            return None;
        }
        Some(i as f64 * f64::from(ctx.sample_rate()) / f64::from(a.fft_size()))
    }

    fn ice_restarts(&self) -> u32 {
        self.s.borrow().restarts
    }

    fn update_issued_ice_servers(&self, servers: Vec<tincan_ipc::IceServer>) {
        let mut st = self.s.borrow_mut();
        if st.stopped || st.setup.issued_ice_servers == servers {
            return;
        }
        st.setup.issued_ice_servers = servers;
        // Used from the next gathering on (an ICE restart): fresh TURN credentials. A list that
        // would leave relay-only mode without a relay is not applied (the old one may still work).
        if st.setup.relay_only && !has_turn(&st.setup) {
            return;
        }
        let cfg: web_sys::RtcConfiguration = rtc_config(&st.setup).unchecked_into();
        if let Err(e) = st.pc.set_configuration_with_configuration(&cfg) {
            web_sys::console::warn_2(&JsValue::from_str("tincan: new ICE servers refused"), &e);
        }
    }

    fn connection_state(&self) -> String {
        format!("{:?}", self.s.borrow().pc.ice_connection_state()).to_lowercase()
    }

    fn stop(&self) {
        let mut st = self.s.borrow_mut();
        if st.stopped {
            return;
        }
        st.stopped = true;
        st.queue.clear();
        if let Some(stream) = st.local.take() {
            stop_stream(&stream);
        }
        st.pc.set_onicecandidate(None);
        st.pc.set_ontrack(None);
        st.pc.set_oniceconnectionstatechange(None);
        let _ = js_sys::Reflect::set(
            &st.pc,
            &JsValue::from_str("onconnectionstatechange"),
            &JsValue::NULL,
        );
        st.pc.close();
        st.audio.set_src_object(None);
        st.restart_timer = None;
        st.give_up_timer = None;
        st.stats_timer = None;
        if let Some(t) = st.first_audio_timer.take() {
            Timeout::new(0, move || drop(t)).forget();
        }
        st.mic_analyser = None;
        st.peer_analyser = None;
    }
}
