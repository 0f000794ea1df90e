//! Drives the media engine from the backend's events: the call's phases start and stop sessions and
//! tones, remote signals go to the session, the session's signals go out through the backend
//! (`send_signal`: Tauri IPC in the app, the WebSocket in a browser), in order.
//!
//! It also publishes a read-only snapshot as `window.__tincan_media` (engine, ICE state, levels,
//! peak frequency of the peer's audio, `getStats` numbers, accept and first-audio times), which the
//! media end-to-end tests read and which helps when debugging a call in the browser console.

use super::tones::{Tone, Tones};
use super::webrtc::{precise_now_ms, WebRtcEngine};
use super::{
    devices, stats, AudioDevice, AudioProcessing, CallSetup, CallStats, Levels, MediaEngine,
    MediaError, MediaSession, Role, SessionEvent,
};
use crate::backend::Api;
use gloo_timers::callback::Interval;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use tincan_ipc::native_media::NativeMediaEvent;
use tincan_ipc::{AppEvent, CallPhase, CallView, Direction, MediaSignal, Settings};
use tincan_proto::CallId;
use wasm_bindgen::prelude::*;

const PROCESSING_KEY: &str = "tincan.audio_processing";

/// The peer counts as heard at or above this level (RMS, 0..1; the level the first-audio mark uses).
const GAP_LEVEL: f64 = 0.01;
/// How often the gap meter looks at the peer's level.
const GAP_SAMPLE_MS: u32 = 10;
/// How many of the latest gaps the snapshot lists.
const GAPS_KEPT: usize = 32;

/// Silences in the peer's audio after it was first heard: what "the call kept going through a
/// signaling drop" means to a listener, so the end-to-end tests read it (`peer_gaps` in
/// `window.__tincan_media`). A gap is counted only when at least one sample found silence, from the
/// last sample that heard the peer to the next one: a late timer alone is not a gap.
#[derive(Debug, Default)]
struct GapMeter {
    last_heard: Option<f64>,
    /// A sample since `last_heard` found silence.
    silent: bool,
    longest_ms: f64,
    /// `(start, length)` of the latest gaps, unix ms, newest last.
    gaps: VecDeque<(f64, f64)>,
}

impl GapMeter {
    /// One reading; `span_ms` is how much audio a reading covers (see
    /// `MediaSession::level_span_ms`): the silence lies between the last reading that heard the peer
    /// and the start of the one that hears it again.
    fn sample(&mut self, now: f64, level: f64, span_ms: f64) {
        if level < GAP_LEVEL {
            self.silent = self.last_heard.is_some();
            return;
        }
        if let (Some(last), true) = (self.last_heard, self.silent) {
            let len = (now - last - span_ms).max(0.0);
            self.longest_ms = self.longest_ms.max(len);
            if self.gaps.len() == GAPS_KEPT {
                self.gaps.pop_front();
            }
            self.gaps.push_back((last, len));
        }
        self.last_heard = Some(now);
        self.silent = false;
    }

    /// The silence going on now, ms (0 while the peer is heard).
    fn current_ms(&self, now: f64) -> f64 {
        match (self.last_heard, self.silent) {
            (Some(last), true) => now - last,
            _ => 0.0,
        }
    }
}

thread_local! {
    static CONTROLLER: RefCell<Option<Rc<Controller>>> = const { RefCell::new(None) };
}

/// What the views show about media.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// The last media failure of the current (or just ended) call.
    pub error: Option<MediaError>,
    pub connected: bool,
    /// When this side accepted (callee), unix ms.
    pub accept_at: Option<f64>,
    /// When the peer's audio was first heard, unix ms.
    pub first_audio_at: Option<f64>,
}

struct Inner {
    call_id: Option<CallId>,
    ended: bool,
    session: Option<Rc<dyn MediaSession>>,
    accepted: bool,
    muted: bool,
    /// Signaling could not reach the peer (this side or the peer reconnecting to the server).
    away: bool,
    tones: Tones,
    settings: Settings,
    /// The ICE servers the signaling server issued last (`AppEvent::IceServers`).
    issued_ice: Vec<tincan_ipc::IceServer>,
    processing: AudioProcessing,
    outbox: VecDeque<(CallId, MediaSignal)>,
    sending: bool,
    status: Status,
    snapshot_timer: Option<Interval>,
    gap: GapMeter,
    gap_timer: Option<Interval>,
    device_change: Option<Closure<dyn FnMut()>>,
    /// The input and output the current session uses (`None`: the system default), so the in-call
    /// menus show the device in use, not the first entry.
    input: Option<String>,
    output: Option<String>,
    /// Counts device plug-ins and -outs (the browser's `devicechange`, the native engine's
    /// `devices_changed`): the device menus list devices again when it moves.
    device_generation: u64,
}

pub struct Controller {
    api: Api,
    engine: Option<Rc<dyn MediaEngine>>,
    inner: RefCell<Inner>,
}

/// Which engine the user wants; `Auto` unless changed in Settings (kept in this window's storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnginePreference {
    /// The webview's own WebRTC when it has one, else (in the desktop app) the native engine.
    #[default]
    Auto,
    /// Always the webview's WebRTC.
    Web,
    /// Always the native engine (desktop app only).
    Native,
}

const ENGINE_KEY: &str = "tincan.media_engine";

impl EnginePreference {
    pub fn load() -> Self {
        web_sys::window()
            .and_then(|w| w.local_storage().ok().flatten())
            .and_then(|s| s.get_item(ENGINE_KEY).ok().flatten())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Applies the next time the window opens (the engine is chosen at start-up).
    pub fn save(self) {
        if let (Some(s), Ok(t)) = (
            web_sys::window().and_then(|w| w.local_storage().ok().flatten()),
            serde_json::to_string(&self),
        ) {
            let _ = s.set_item(ENGINE_KEY, &t);
        }
    }
}

/// The webview's own WebRTC when it has one; in the desktop app without it (Debian's and Ubuntu's
/// WebKitGTK), the backend's native engine; either can be forced in Settings.
fn choose_engine(api: &Api, pref: EnginePreference) -> Option<Rc<dyn MediaEngine>> {
    let web = || WebRtcEngine::detect().map(|e| Rc::new(e) as Rc<dyn MediaEngine>);
    let native = || {
        crate::browser::in_tauri()
            .then(|| Rc::new(super::native::NativeEngine::new(api.clone())) as Rc<dyn MediaEngine>)
    };
    match pref {
        EnginePreference::Auto => web().or_else(native),
        EnginePreference::Web => web(),
        EnginePreference::Native => native().or_else(web),
    }
}

/// The controller of this page, once [`install`]ed.
pub fn get() -> Option<Rc<Controller>> {
    CONTROLLER.with(|c| c.borrow().clone())
}

/// Creates the page's controller and subscribes it to the backend's events. Idempotent.
pub fn install(api: &Api) -> Rc<Controller> {
    if let Some(c) = get() {
        return c;
    }
    let engine = choose_engine(api, EnginePreference::load());
    let processing = web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .and_then(|s| s.get_item(PROCESSING_KEY).ok().flatten())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let c = Rc::new(Controller {
        api: api.clone(),
        engine,
        inner: RefCell::new(Inner {
            call_id: None,
            ended: true,
            session: None,
            accepted: false,
            muted: false,
            away: false,
            tones: Tones::default(),
            settings: Settings::default(),
            issued_ice: Vec::new(),
            processing,
            outbox: VecDeque::new(),
            sending: false,
            status: Status::default(),
            snapshot_timer: None,
            gap: GapMeter::default(),
            gap_timer: None,
            device_change: None,
            input: None,
            output: None,
            device_generation: 0,
        }),
    });
    CONTROLLER.with(|slot| *slot.borrow_mut() = Some(c.clone()));
    web_sys::console::info_1(&JsValue::from_str(&format!(
        "tincan: RTCPeerConnection {}; audio engine: {}",
        if devices::webrtc_available() {
            "present"
        } else {
            "missing"
        },
        c.engine_name().unwrap_or("none")
    )));
    let weak = Rc::downgrade(&c);
    let api2 = api.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let on_event: Rc<dyn Fn(AppEvent)> = {
            let weak = weak.clone();
            Rc::new(move |ev| {
                if let Some(c) = weak.upgrade() {
                    c.on_event(ev);
                }
            })
        };
        if let Err(e) = api2.subscribe(on_event).await {
            web_sys::console::warn_1(&JsValue::from_str(&format!(
                "tincan: media cannot follow calls: {e}"
            )));
        }
        if let Some(c) = weak.upgrade() {
            c.refresh_settings();
        }
    });
    let weak = Rc::downgrade(&c);
    let timer = Interval::new(100, move || {
        if let Some(c) = weak.upgrade() {
            c.publish();
        }
    });
    let weak = Rc::downgrade(&c);
    let gap_timer = Interval::new(GAP_SAMPLE_MS, move || {
        if let Some(c) = weak.upgrade() {
            c.sample_gap();
        }
    });
    let weak = Rc::downgrade(&c);
    let dc = devices::on_device_change(move || {
        if let Some(c) = weak.upgrade() {
            c.on_device_change();
        }
    });
    {
        let mut i = c.inner.borrow_mut();
        i.snapshot_timer = Some(timer);
        i.gap_timer = Some(gap_timer);
        i.device_change = dc;
    }
    c
}

impl Controller {
    /// Settings just saved (devices, ICE servers): used from the next session on.
    pub fn set_settings(&self, settings: Settings) {
        self.inner.borrow_mut().settings = settings;
    }

    /// The call whose media this controller carries, if any.
    pub fn call_id(&self) -> Option<CallId> {
        self.inner.borrow().call_id.clone()
    }

    pub fn engine_name(&self) -> Option<&'static str> {
        self.engine.as_ref().map(|e| e.name())
    }

    pub fn status(&self) -> Status {
        self.inner.borrow().status.clone()
    }

    fn session(&self) -> Option<Rc<dyn MediaSession>> {
        self.inner.borrow().session.clone()
    }

    pub fn levels(&self) -> Levels {
        self.session().map(|s| s.levels()).unwrap_or_default()
    }

    pub fn stats(&self) -> Option<CallStats> {
        self.session().map(|s| s.stats())
    }

    pub fn processing(&self) -> AudioProcessing {
        self.inner.borrow().processing
    }

    pub fn set_processing(&self, p: AudioProcessing) {
        self.inner.borrow_mut().processing = p;
        if let (Some(s), Ok(t)) = (
            web_sys::window().and_then(|w| w.local_storage().ok().flatten()),
            serde_json::to_string(&p),
        ) {
            let _ = s.set_item(PROCESSING_KEY, &t);
        }
    }

    pub async fn devices(&self) -> Result<Vec<AudioDevice>, MediaError> {
        match &self.engine {
            Some(e) => e.devices().await,
            None => Err(devices::webrtc_unavailable()),
        }
    }

    pub async fn switch_input(&self, device: Option<String>) -> Result<(), MediaError> {
        match self.session() {
            Some(s) => {
                s.switch_input(device.clone()).await?;
                self.inner.borrow_mut().input = device;
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub async fn set_output(&self, device: Option<String>) -> Result<(), MediaError> {
        match self.session() {
            Some(s) => {
                s.set_output(device.clone()).await?;
                self.inner.borrow_mut().output = device;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The microphone and speaker in use: the session's during a call, else the settings' (`None`:
    /// the system default).
    pub fn devices_in_use(&self) -> (Option<String>, Option<String>) {
        let i = self.inner.borrow();
        if i.session.is_some() {
            (i.input.clone(), i.output.clone())
        } else {
            (i.settings.microphone.clone(), i.settings.speaker.clone())
        }
    }

    /// Shows a failure the call survives (a device that could not be switched to).
    pub fn warn(&self, e: MediaError) {
        self.inner.borrow_mut().status.error = Some(e);
    }

    /// Forgets the error shown (the banner's close button).
    pub fn dismiss_error(&self) {
        self.inner.borrow_mut().status.error = None;
    }

    fn refresh_settings(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let api = self.api.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Ok(s) = api.get_settings().await {
                if let Some(c) = weak.upgrade() {
                    c.inner.borrow_mut().settings = s;
                }
            }
        });
    }

    fn on_event(self: &Rc<Self>, ev: AppEvent) {
        match ev {
            AppEvent::Call { call } => self.on_call(call.as_ref()),
            AppEvent::RemoteSignal {
                call_id, signal, ..
            } => {
                let session = {
                    let i = self.inner.borrow();
                    (i.call_id.as_ref() == Some(&call_id) && !i.ended)
                        .then(|| i.session.clone())
                        .flatten()
                };
                if let Some(s) = session {
                    s.remote_signal(signal);
                }
            }
            AppEvent::NativeMedia {
                event: NativeMediaEvent::DevicesChanged,
            } => self.on_device_change(),
            AppEvent::NativeMedia { event } => super::native::dispatch(event),
            AppEvent::IceServers { ice_servers, .. } => {
                let session = {
                    let mut i = self.inner.borrow_mut();
                    i.issued_ice = ice_servers.clone();
                    i.session.clone()
                };
                if let Some(s) = session {
                    s.update_issued_ice_servers(ice_servers);
                }
            }
            AppEvent::User { user: None } => self.end(),
            _ => {}
        }
    }

    fn on_call(self: &Rc<Self>, call: Option<&CallView>) {
        let Some(c) = call else {
            self.end();
            return;
        };
        let new_call = self.inner.borrow().call_id.as_ref() != Some(&c.call_id);
        if new_call {
            self.end();
            if c.phase == CallPhase::Ended {
                return;
            }
            let mut i = self.inner.borrow_mut();
            i.call_id = Some(c.call_id.clone());
            i.ended = false;
            i.accepted = false;
            i.muted = false;
            i.away = false;
            i.status = Status::default();
            i.gap = GapMeter::default();
        } else if self.inner.borrow().ended {
            return;
        }
        match (c.direction, c.phase) {
            (_, CallPhase::Ended) => {
                self.end();
                // Settings may have changed during the call.
                self.refresh_settings();
                return;
            }
            (Direction::Outgoing, CallPhase::Dialing) => {}
            (Direction::Outgoing, CallPhase::Ringing) => {
                self.inner.borrow_mut().tones.play(Tone::Ringback);
                self.ensure_session(c, Role::Caller);
            }
            (Direction::Outgoing, _) => {
                self.inner.borrow_mut().tones.stop();
                self.ensure_session(c, Role::Caller);
            }
            (Direction::Incoming, CallPhase::Incoming) => {
                self.inner.borrow_mut().tones.play(Tone::Ringtone);
                self.ensure_session(c, Role::Callee);
            }
            (Direction::Incoming, _) => {
                self.inner.borrow_mut().tones.stop();
                self.ensure_session(c, Role::Callee);
                let first = {
                    let mut i = self.inner.borrow_mut();
                    let first = !i.accepted;
                    if first {
                        i.accepted = true;
                        i.status.accept_at = Some(precise_now_ms());
                    }
                    first
                };
                if first {
                    if let Some(s) = self.session() {
                        s.accept();
                    }
                }
            }
        }
        let back = {
            let mut i = self.inner.borrow_mut();
            let away = c.reconnecting || c.peer_reconnecting;
            std::mem::replace(&mut i.away, away) && !away
        };
        if back {
            if let Some(s) = self.session() {
                s.signaling_back();
            }
        }
        let changed = {
            let mut i = self.inner.borrow_mut();
            let changed = i.muted != c.muted;
            i.muted = c.muted;
            changed
        };
        if changed {
            if let Some(s) = self.session() {
                s.set_muted(c.muted);
            }
        }
    }

    fn ensure_session(self: &Rc<Self>, c: &CallView, role: Role) {
        if self.inner.borrow().session.is_some() {
            return;
        }
        let Some(engine) = self.engine.clone() else {
            let mut i = self.inner.borrow_mut();
            if i.status.error.is_none() {
                i.status.error = Some(devices::webrtc_unavailable());
            }
            return;
        };
        let setup = {
            let i = self.inner.borrow();
            CallSetup {
                call_id: c.call_id.clone(),
                role,
                ice_servers: i.settings.ice_servers.clone(),
                issued_ice_servers: i.issued_ice.clone(),
                relay_only: i.settings.relay_only,
                input: i.settings.microphone.clone(),
                output: i.settings.speaker.clone(),
                processing: i.processing,
            }
        };
        // Relay-only without any relay: not tried at all (no address of ours may leave), in
        // either engine. The engines check too.
        let no_relay = setup.relay_only
            && !setup
                .issued_ice_servers
                .iter()
                .chain(&setup.ice_servers)
                .any(|s| s.is_turn());
        if no_relay {
            self.fail(&c.call_id, MediaError::relay_unavailable());
            return;
        }
        let weak: Weak<Self> = Rc::downgrade(self);
        let call_id = c.call_id.clone();
        let sink: super::EventSink = Rc::new(move |ev| {
            if let Some(c) = weak.upgrade() {
                c.on_session_event(&call_id, ev);
            }
        });
        let (input, output) = (setup.input.clone(), setup.output.clone());
        match engine.start(setup, sink) {
            Ok(s) => {
                s.set_muted(c.muted);
                let mut i = self.inner.borrow_mut();
                i.session = Some(s);
                i.input = input;
                i.output = output;
            }
            Err(e) => self.fail(&c.call_id, e),
        }
    }

    fn on_session_event(self: &Rc<Self>, call_id: &CallId, ev: SessionEvent) {
        if self.inner.borrow().call_id.as_ref() != Some(call_id) {
            return;
        }
        match ev {
            SessionEvent::Signal(signal) => {
                self.inner
                    .borrow_mut()
                    .outbox
                    .push_back((call_id.clone(), signal));
                self.pump();
            }
            SessionEvent::Connected => self.inner.borrow_mut().status.connected = true,
            SessionEvent::FirstAudio(at) => {
                let mut i = self.inner.borrow_mut();
                i.status.first_audio_at.get_or_insert(at);
            }
            SessionEvent::Failed(e) => self.fail(call_id, e),
            SessionEvent::Warning(e) => self.inner.borrow_mut().status.error = Some(e),
        }
    }

    /// A failure the call cannot survive: show it, release the media, end the call.
    fn fail(self: &Rc<Self>, call_id: &CallId, e: MediaError) {
        web_sys::console::warn_1(&JsValue::from_str(&format!("tincan: media failed: {e}")));
        self.end();
        self.inner.borrow_mut().status.error = Some(e);
        let api = self.api.clone();
        let call_id = call_id.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = api.hang_up(call_id).await;
        });
    }

    /// Sends queued signals one after another, so the peer sees them in order.
    fn pump(self: &Rc<Self>) {
        if std::mem::replace(&mut self.inner.borrow_mut().sending, true) {
            return;
        }
        let me = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let next = me.inner.borrow_mut().outbox.pop_front();
                let Some((call_id, signal)) = next else {
                    me.inner.borrow_mut().sending = false;
                    break;
                };
                if let Err(e) = me.api.send_signal(call_id, signal).await {
                    web_sys::console::debug_1(&JsValue::from_str(&format!(
                        "tincan: signal not sent: {e}"
                    )));
                }
            }
        });
    }

    /// Stops tones and media; the microphone is released at once.
    fn end(&self) {
        let session = {
            let mut i = self.inner.borrow_mut();
            i.tones.stop();
            i.ended = true;
            i.outbox.clear();
            i.session.take()
        };
        if let Some(s) = session {
            s.stop();
        }
    }

    /// See [`Inner::device_generation`].
    pub fn device_generation(&self) -> u64 {
        self.inner.borrow().device_generation
    }

    fn on_device_change(self: &Rc<Self>) {
        let follow = {
            let mut i = self.inner.borrow_mut();
            i.device_generation += 1;
            // Following the default device: a headset that becomes the default is picked up,
            // unless the call uses a microphone the user chose (in Settings or in the call's menu).
            i.input.is_none()
        };
        if let (true, Some(s)) = (follow, self.session()) {
            let me = self.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = s.switch_input(None).await {
                    me.inner.borrow_mut().status.error = Some(e);
                }
            });
        }
    }

    /// One look at the peer's level for the gap meter, once the peer was first heard.
    fn sample_gap(&self) {
        let Some(session) = self.session() else {
            return;
        };
        if self.inner.borrow().status.first_audio_at.is_none() {
            return;
        }
        let (level, span) = (session.peer_level_now(), session.level_span_ms());
        self.inner
            .borrow_mut()
            .gap
            .sample(precise_now_ms(), level, span);
    }

    /// Writes `window.__tincan_media`.
    fn publish(&self) {
        let session = self.session();
        let i = self.inner.borrow();
        let levels = session.as_ref().map(|s| s.levels()).unwrap_or_default();
        let st = session.as_ref().map(|s| s.stats());
        let snap = serde_json::json!({
            "engine": self.engine_name(),
            "call_id": i.call_id.as_ref().map(|c| c.to_string()),
            "active": session.is_some(),
            "ice_state": session.as_ref().map(|s| s.connection_state()),
            "ice_restarts": session.as_ref().map(|s| s.ice_restarts()),
            "signaling_state": session.as_ref().and_then(|s| s.signaling_state()),
            "connected": i.status.connected,
            "accept_at": i.status.accept_at,
            "first_audio_at": i.status.first_audio_at,
            "mic_level": levels.mic,
            "peer_level": levels.peer,
            "peer_peak_hz": session.as_ref().and_then(|s| s.peer_peak_hz()),
            "packets_received": st.map(|s| s.packets_received),
            "packets_sent": st.map(|s| s.packets_sent),
            "bytes_received": st.map(|s| s.bytes_received),
            "rtt_ms": st.and_then(|s| s.rtt_ms),
            // How the audio travels (tests read it; the panel shows it as #connection-kind).
            "route": st.and_then(|s| s.route).map(|r| serde_json::json!({
                "kind": r.kind(),
                "local_type": r.local,
                "remote_type": r.remote,
                "protocol": r.protocol,
                "relay_protocol": r.relay_protocol,
                "text": r.describe(),
            })),
            "relay_only": i.settings.relay_only,
            "jitter_ms": st.and_then(|s| s.jitter_ms),
            "loss_pct": st.and_then(|s| s.loss_pct),
            "quality": st.map(|s| stats::quality(&s).label()),
            "tone": i.tones.current().map(|t| format!("{t:?}").to_lowercase()),
            "muted": i.muted,
            "error": i.status.error.as_ref().map(|e| format!("{:?}", e.code)),
            "peer_gap_longest_ms": i.gap.longest_ms,
            "peer_silent_ms": i.gap.current_ms(precise_now_ms()),
            "peer_gaps": i.gap.gaps.iter().map(|(at, len)| [*at, *len]).collect::<Vec<_>>(),
        });
        drop(i);
        if let (Some(w), Ok(v)) = (web_sys::window(), js_sys::JSON::parse(&snap.to_string())) {
            let _ = js_sys::Reflect::set(&w, &JsValue::from_str("__tincan_media"), &v);
        }
    }
}
