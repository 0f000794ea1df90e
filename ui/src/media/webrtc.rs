//! The WebRTC engine: `RTCPeerConnection`, `getUserMedia` and Web Audio, through web-sys.
//!
//! Every asynchronous step of a session (remote signals, accept, ICE restart) runs through one
//! queue, in order, so a candidate never races its offer and the answer is made exactly once.

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
    // An explicit list, even when empty: no engine default (a public STUN server) sneaks in.
    let servers: Vec<serde_json::Value> = setup
        .ice_servers
        .iter()
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
    let cfg = serde_json::json!({ "iceServers": servers, "bundlePolicy": "max-bundle" });
    js_sys::JSON::parse(&cfg.to_string()).unwrap_or(JsValue::NULL)
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
        let (sink, stopped) = {
            let st = s.borrow();
            (st.events.clone(), st.stopped)
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

        let mut st = self.s.borrow_mut();
        st.closures.push(on_candidate);
        st.closures.push(on_track);
        st.closures.push(on_ice);
        let weak = Rc::downgrade(&self.s);
        st.stats_timer = Some(Interval::new(1_000, move || {
            if let Some(s) = weak.upgrade() {
                wasm_bindgen_futures::spawn_local(Self::poll_stats(s));
            }
        }));
    }

    fn on_remote_stream(s: &Rc<RefCell<State>>, stream: &MediaStream) {
        let audio = {
            let mut st = s.borrow_mut();
            st.audio.set_src_object(Some(stream));
            // Web Audio reads the remote stream only while a media element plays it.
            st.peer_analyser = analyser_for(stream);
            st.audio.clone()
        };
        if let Ok(p) = audio.play() {
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = JsFuture::from(p).await {
                    web_sys::console::warn_2(&JsValue::from_str("tincan: playback refused"), &e);
                }
            });
        }
        let output = s.borrow().setup.output.clone();
        if output.is_some() {
            let audio = audio.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let _ = set_sink(&audio, output.as_deref()).await;
            });
        }
        // Watch for the first audible remote sound.
        let weak = Rc::downgrade(s);
        let timer = Interval::new(5, move || {
            let Some(s) = weak.upgrade() else { return };
            let level = s.borrow().peer_analyser.as_ref().map(rms).unwrap_or(0.0);
            if level > 0.01 {
                let at = precise_now_ms();
                {
                    let mut st = s.borrow_mut();
                    if st.first_audio.is_some() {
                        return;
                    }
                    st.first_audio = Some(at);
                }
                Self::emit(&s, SessionEvent::FirstAudio(at));
                let t = s.borrow_mut().first_audio_timer.take();
                if let Some(t) = t {
                    // Dropped after this tick returns.
                    Timeout::new(0, move || drop(t)).forget();
                }
            }
        });
        s.borrow_mut().first_audio_timer = Some(timer);
    }

    fn on_ice_state(s: &Rc<RefCell<State>>) {
        let state = s.borrow().pc.ice_connection_state();
        use web_sys::RtcIceConnectionState as I;
        match state {
            I::Connected | I::Completed => {
                let first = {
                    let mut st = s.borrow_mut();
                    st.restart_timer = None;
                    st.give_up_timer = None;
                    let first = !st.ever_connected;
                    st.ever_connected = true;
                    first
                };
                if first {
                    Self::emit(s, SessionEvent::Connected);
                }
            }
            I::Disconnected => {
                let weak = Rc::downgrade(s);
                s.borrow_mut().restart_timer = Some(Timeout::new(RESTART_AFTER_MS, move || {
                    if let Some(s) = weak.upgrade() {
                        if s.borrow().pc.ice_connection_state() != I::Connected {
                            WebRtcSession { s }.enqueue(Op::Restart);
                        }
                    }
                }));
                Self::arm_give_up(s);
            }
            I::Failed => {
                WebRtcSession { s: s.clone() }.enqueue(Op::Restart);
                Self::arm_give_up(s);
            }
            _ => {}
        }
    }

    fn ice_up(s: &Rc<RefCell<State>>) -> bool {
        use web_sys::RtcIceConnectionState as I;
        matches!(
            s.borrow().pc.ice_connection_state(),
            I::Connected | I::Completed
        )
    }

    /// Ends the call unless media (re)connects within [`GIVE_UP_AFTER_MS`].
    fn arm_give_up(s: &Rc<RefCell<State>>) {
        if s.borrow().give_up_timer.is_some() || Self::ice_up(s) {
            return;
        }
        let weak = Rc::downgrade(s);
        let t = Timeout::new(GIVE_UP_AFTER_MS, move || {
            let Some(s) = weak.upgrade() else { return };
            s.borrow_mut().give_up_timer = None;
            if Self::ice_up(&s) {
                return;
            }
            let ever = s.borrow().ever_connected;
            let e = if ever {
                MediaError::new(
                    MediaErrorCode::ConnectionLost,
                    "Connection lost: the audio connection dropped and could not be restored \
                     within 30 seconds.",
                )
            } else {
                MediaError::new(
                    MediaErrorCode::PeerUnreachable,
                    "The other side cannot be reached: no network path for the audio was found. \
                     If you are on different networks, add a TURN server in Settings.",
                )
            };
            Self::emit(&s, SessionEvent::Failed(e));
        });
        s.borrow_mut().give_up_timer = Some(t);
    }

    async fn poll_stats(s: Rc<RefCell<State>>) {
        let pc = s.borrow().pc.clone();
        let Ok(report) = JsFuture::from(pc.get_stats()).await else {
            return;
        };
        let mut stats = CallStats::default();
        let mut lost: i64 = 0;
        let mut selected_pair: Option<String> = None;
        let mut pairs: Vec<(String, JsValue)> = Vec::new();
        let values: Vec<JsValue> = {
            let out = js_sys::Array::new();
            let cb = Closure::<dyn FnMut(JsValue)>::new({
                let out = out.clone();
                move |v: JsValue| {
                    out.push(&v);
                }
            });
            let for_each = js_sys::Reflect::get(&report, &JsValue::from_str("forEach"))
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
            if let Some(f) = for_each {
                let _ = f.call1(&report, cb.as_ref());
            }
            out.iter().collect()
        };
        for v in &values {
            match get_str(v, "type").as_deref() {
                Some("inbound-rtp") if get_str(v, "kind").as_deref() == Some("audio") => {
                    stats.packets_received += get_num(v, "packetsReceived").unwrap_or(0.0) as u64;
                    stats.bytes_received += get_num(v, "bytesReceived").unwrap_or(0.0) as u64;
                    lost += get_num(v, "packetsLost").unwrap_or(0.0) as i64;
                    if let Some(j) = get_num(v, "jitter") {
                        stats.jitter_ms = Some(j * 1000.0);
                    }
                }
                Some("outbound-rtp") if get_str(v, "kind").as_deref() == Some("audio") => {
                    stats.packets_sent += get_num(v, "packetsSent").unwrap_or(0.0) as u64;
                }
                Some("transport") => selected_pair = get_str(v, "selectedCandidatePairId"),
                Some("candidate-pair") => {
                    if let Some(id) = get_str(v, "id") {
                        pairs.push((id, v.clone()));
                    }
                }
                _ => {}
            }
        }
        let pair = pairs
            .iter()
            .find(|(id, _)| Some(id) == selected_pair.as_ref())
            .or_else(|| {
                pairs.iter().find(|(_, p)| {
                    get_str(p, "state").as_deref() == Some("succeeded")
                        && js_sys::Reflect::get(p, &JsValue::from_str("nominated"))
                            .ok()
                            .and_then(|n| n.as_bool())
                            .unwrap_or(false)
                })
            });
        if let Some((_, p)) = pair {
            stats.rtt_ms = get_num(p, "currentRoundTripTime").map(|r| r * 1000.0);
        }
        let mut st = s.borrow_mut();
        let now = (stats.packets_received, lost);
        stats.loss_pct = st.last_counts.and_then(|prev| loss_pct(prev, now));
        st.last_counts = Some(now);
        st.stats = stats;
    }

    fn enqueue(&self, op: Op) {
        let start = {
            let mut st = self.s.borrow_mut();
            if st.stopped {
                return;
            }
            st.queue.push_back(op);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            let s = self.s.clone();
            wasm_bindgen_futures::spawn_local(async move {
                loop {
                    let op = {
                        let mut st = s.borrow_mut();
                        match st.queue.pop_front() {
                            Some(op) if !st.stopped => op,
                            _ => {
                                st.running = false;
                                break;
                            }
                        }
                    };
                    if let Err(e) = Self::run(&s, op).await {
                        Self::emit(&s, SessionEvent::Failed(e));
                    }
                }
            });
        }
    }

    async fn run(s: &Rc<RefCell<State>>, op: Op) -> Result<(), MediaError> {
        match op {
            Op::OpenMic => {
                Self::open_mic(s).await?;
                Self::attach_track(s);
                // The caller offers as soon as it has its microphone.
                if s.borrow().setup.role == Role::Caller {
                    Self::offer(s, false).await?;
                }
            }
            Op::Accept => {
                s.borrow_mut().accepted = true;
                Self::open_mic(s).await?;
                if s.borrow().have_offer {
                    Self::attach_track(s);
                    Self::answer(s).await?;
                }
            }
            Op::Restart => {
                let caller = s.borrow().setup.role == Role::Caller;
                if caller && s.borrow().pc.remote_description().is_some() {
                    Self::offer(s, true).await?;
                }
            }
            Op::Remote(signal) => Self::on_signal(s, signal).await?,
        }
        Ok(())
    }

    async fn open_mic(s: &Rc<RefCell<State>>) -> Result<(), MediaError> {
        if s.borrow().local.is_some() {
            return Ok(());
        }
        let (input, processing) = {
            let st = s.borrow();
            (st.setup.input.clone(), st.setup.processing)
        };
        let stream = match devices::open_microphone(input.as_deref(), processing).await {
            Ok(st) => st,
            // A saved device that is gone: fall back to the default one.
            Err(e) if e.code == MediaErrorCode::NoMicrophone && input.is_some() => {
                devices::open_microphone(None, processing).await?
            }
            Err(e) => return Err(e),
        };
        let mut st = s.borrow_mut();
        if st.stopped {
            // Hung up while the microphone was opening: release it at once.
            stop_stream(&stream);
            return Ok(());
        }
        let muted = st.muted;
        for t in stream.get_audio_tracks().iter() {
            let t: MediaStreamTrack = t.unchecked_into();
            t.set_enabled(!muted);
        }
        st.mic_analyser = analyser_for(&stream);
        st.local = Some(stream);
        Ok(())
    }

    fn attach_track(s: &Rc<RefCell<State>>) {
        let mut st = s.borrow_mut();
        if st.sender.is_some() {
            return;
        }
        let Some(stream) = st.local.clone() else {
            return;
        };
        let Some(track) = stream
            .get_audio_tracks()
            .get(0)
            .dyn_into::<MediaStreamTrack>()
            .ok()
        else {
            return;
        };
        st.sender = Some(st.pc.add_track_0(&track, &stream));
    }

    async fn offer(s: &Rc<RefCell<State>>, ice_restart: bool) -> Result<(), MediaError> {
        let pc = s.borrow().pc.clone();
        let opts = web_sys::RtcOfferOptions::new();
        opts.set_ice_restart(ice_restart);
        let offer = JsFuture::from(pc.create_offer_with_rtc_offer_options(&opts))
            .await
            .map_err(|e| negotiation("createOffer", &e))?;
        let sdp = get_str(&offer, "sdp")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| negotiation("createOffer", &JsValue::from_str("no SDP")))?;
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        desc.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&desc))
            .await
            .map_err(|e| negotiation("setLocalDescription", &e))?;
        Self::emit(
            s,
            SessionEvent::Signal(MediaSignal::Offer { sdp, ice_restart }),
        );
        if ice_restart {
            s.borrow_mut().restarts += 1;
        }
        Ok(())
    }

    async fn answer(s: &Rc<RefCell<State>>) -> Result<(), MediaError> {
        let pc = s.borrow().pc.clone();
        let answer = JsFuture::from(pc.create_answer())
            .await
            .map_err(|e| negotiation("createAnswer", &e))?;
        let sdp = get_str(&answer, "sdp")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| negotiation("createAnswer", &JsValue::from_str("no SDP")))?;
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        desc.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&desc))
            .await
            .map_err(|e| negotiation("setLocalDescription", &e))?;
        s.borrow_mut().answered = true;
        Self::emit(s, SessionEvent::Signal(MediaSignal::Answer { sdp }));
        Self::arm_give_up(s);
        Ok(())
    }

    async fn set_remote(
        s: &Rc<RefCell<State>>,
        kind: RtcSdpType,
        sdp: &str,
    ) -> Result<(), MediaError> {
        let pc = s.borrow().pc.clone();
        let desc = RtcSessionDescriptionInit::new(kind);
        desc.set_sdp(sdp);
        JsFuture::from(pc.set_remote_description(&desc))
            .await
            .map_err(|e| negotiation("setRemoteDescription", &e))?;
        let pending = std::mem::take(&mut s.borrow_mut().pending_candidates);
        for c in pending {
            add_candidate(&pc, &c).await;
        }
        Ok(())
    }

    async fn on_signal(s: &Rc<RefCell<State>>, signal: MediaSignal) -> Result<(), MediaError> {
        let role = s.borrow().setup.role;
        // The SDP check (the server's too) before the browser sees anything: a refused offer or
        // answer is not applied and fails the session; a refused candidate is skipped.
        let checked = s
            .borrow_mut()
            .peer_signals
            .admit(&signal, &sdp::Limits::default());
        if let Err(e) = checked {
            return refused(&signal, &e);
        }
        match signal {
            MediaSignal::Offer { sdp, .. } if role == Role::Callee => {
                Self::set_remote(s, RtcSdpType::Offer, &sdp).await?;
                let (accepted, answered) = {
                    let mut st = s.borrow_mut();
                    st.have_offer = true;
                    (st.accepted, st.answered)
                };
                // A first offer is answered on accept; an ICE-restart offer at once.
                if accepted || answered {
                    Self::attach_track(s);
                    Self::answer(s).await?;
                }
            }
            MediaSignal::Answer { sdp } if role == Role::Caller => {
                Self::set_remote(s, RtcSdpType::Answer, &sdp).await?;
                Self::arm_give_up(s);
            }
            MediaSignal::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(sdp_mid.as_deref());
                init.set_sdp_m_line_index(sdp_m_line_index);
                let pc = s.borrow().pc.clone();
                if pc.remote_description().is_some() {
                    add_candidate(&pc, &init).await;
                } else {
                    s.borrow_mut().pending_candidates.push(init);
                }
            }
            // Offers to the caller and answers to the callee do not happen in this protocol's
            // 1:1 calls; mute is shown by the call view.
            _ => {}
        }
        Ok(())
    }
}

/// A peer's signal that failed the SDP check: an offer or answer is the session's failure, with a
/// stable code; a candidate is only logged.
fn refused(signal: &MediaSignal, e: &SdpError) -> Result<(), MediaError> {
    let text = format!(
        "The other side's audio setup was refused ({}): {e}.",
        e.code()
    );
    match signal {
        MediaSignal::Offer { .. } | MediaSignal::Answer { .. } => {
            Err(MediaError::new(MediaErrorCode::SdpRejected, text))
        }
        _ => {
            web_sys::console::warn_1(&JsValue::from_str(&format!(
                "tincan: candidate skipped: {text}"
            )));
            Ok(())
        }
    }
}

async fn add_candidate(pc: &RtcPeerConnection, c: &RtcIceCandidateInit) {
    // A candidate the browser cannot use (e.g. an mDNS name it cannot resolve) is not fatal.
    if let Err(e) =
        JsFuture::from(pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(c))).await
    {
        web_sys::console::debug_2(&JsValue::from_str("tincan: candidate skipped"), &e);
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
