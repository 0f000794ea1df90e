//! The native engine, seen from the UI: the same [`MediaEngine`] / [`MediaSession`] as the web engine,
//! carried out by the desktop backend (GStreamer `webrtcbin`) over IPC. Used in the desktop app when
//! the webview has no `RTCPeerConnection` (Debian's and Ubuntu's WebKitGTK).
//!
//! Signals still flow through the media controller: the backend's engine emits them as events, this
//! session hands them to the controller's sink, and the controller sends them like the web engine's.

use super::stats::Route;
use super::{
    AudioDevice, CallSetup, CallStats, EventSink, Levels, MediaEngine, MediaError, MediaErrorCode,
    MediaSession, Role, SessionEvent,
};
use crate::backend::{Api, LocalFuture};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use tincan_ipc::native_media::{
    cmd, NativeCallArgs, NativeDevice, NativeMediaErrorCode, NativeMediaEvent, NativeMuteArgs,
    NativeSignalArgs, NativeStartArgs, NativeSwitchArgs, NativeSwitchOutputArgs,
};
use tincan_ipc::{CallId, IpcError, MediaSignal};
use wasm_bindgen::JsValue;

thread_local! {
    /// The live native session, so backend events find it.
    static CURRENT: RefCell<Weak<NativeSession>> = const { RefCell::new(Weak::new()) };
}

/// Routes a backend event to the live native session (called by the media controller).
pub fn dispatch(event: NativeMediaEvent) {
    if let Some(s) = CURRENT.with(|c| c.borrow().upgrade()) {
        if event.call_id() == Some(&s.call_id) {
            s.on_event(event);
        }
    }
}

/// What the user reads when the peer's encryption could not be verified.
const NOT_VERIFIED_WORDS: &str = "The call was ended because its encryption could not be \
    verified: the other side's security certificate did not match the one it announced. Someone \
    on the network may be trying to listen in. No audio was sent or played.";

fn to_media_error(code: NativeMediaErrorCode, message: String) -> MediaError {
    let code = match code {
        NativeMediaErrorCode::MissingPlugins => MediaErrorCode::WebRtcUnavailable,
        NativeMediaErrorCode::NoMicrophone => MediaErrorCode::NoMicrophone,
        NativeMediaErrorCode::PeerUnreachable => MediaErrorCode::PeerUnreachable,
        NativeMediaErrorCode::ConnectionLost => MediaErrorCode::ConnectionLost,
        NativeMediaErrorCode::SdpRejected => MediaErrorCode::SdpRejected,
        NativeMediaErrorCode::RelayUnavailable => return MediaError::relay_unavailable(),
        // Plain words for the user; the engine's technical reason goes to the log.
        NativeMediaErrorCode::MediaNotVerified => {
            web_sys::console::warn_1(&JsValue::from_str(&format!(
                "tincan: media not verified: {message}"
            )));
            return MediaError::new(MediaErrorCode::MediaNotVerified, NOT_VERIFIED_WORDS);
        }
        NativeMediaErrorCode::Negotiation | NativeMediaErrorCode::Pipeline => {
            MediaErrorCode::Negotiation
        }
    };
    MediaError::new(code, message)
}

fn ipc_failure(e: IpcError) -> MediaError {
    MediaError::new(
        MediaErrorCode::Negotiation,
        format!("The app's audio engine refused: {}", e.message),
    )
}

/// The backend's GStreamer engine.
pub struct NativeEngine {
    api: Api,
}

impl NativeEngine {
    pub fn new(api: Api) -> Self {
        Self { api }
    }
}

impl MediaEngine for NativeEngine {
    fn name(&self) -> &'static str {
        "native (GStreamer, in the app)"
    }

    fn start(
        &self,
        setup: CallSetup,
        events: EventSink,
    ) -> Result<Rc<dyn MediaSession>, MediaError> {
        let session = NativeSession::new(self.api.clone(), setup, events)?;
        Ok(session)
    }

    fn devices(&self) -> LocalFuture<Result<Vec<AudioDevice>, MediaError>> {
        let api = self.api.clone();
        Box::pin(async move {
            let list: Vec<NativeDevice> = api
                .invoke_typed(cmd::DEVICES, None::<&()>)
                .await
                .map_err(ipc_failure)?;
            Ok(list
                .into_iter()
                .map(|d| AudioDevice {
                    id: d.id,
                    label: d.label,
                    input: d.input,
                })
                .collect())
        })
    }
}

#[derive(Default)]
struct State {
    levels: Levels,
    peer_peak_hz: Option<f64>,
    stats: CallStats,
    connection: String,
    restarts: u32,
    stopped: bool,
}

pub struct NativeSession {
    api: Api,
    call_id: CallId,
    events: EventSink,
    state: RefCell<State>,
}

impl NativeSession {
    fn new(api: Api, setup: CallSetup, events: EventSink) -> Result<Rc<Self>, MediaError> {
        // The call comes with the setup: this engine never reaches back into the controller.
        let call_id = setup.call_id.clone();
        let session = Rc::new(Self {
            api: api.clone(),
            call_id: call_id.clone(),
            events: events.clone(),
            state: RefCell::new(State {
                connection: "new".into(),
                ..State::default()
            }),
        });
        CURRENT.with(|c| *c.borrow_mut() = Rc::downgrade(&session));
        let args = NativeStartArgs {
            call_id,
            caller: setup.role == Role::Caller,
            // Only the user's: the backend merges the issued ones itself, the newest at each
            // ICE restart.
            ice_servers: setup.ice_servers,
            relay_only: setup.relay_only,
            input: setup.input,
            output: setup.output,
            echo_cancellation: setup.processing.echo_cancellation,
        };
        let weak = Rc::downgrade(&session);
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = api.invoke_typed::<(), _>(cmd::START, Some(&args)).await {
                if let Some(s) = weak.upgrade() {
                    (s.events)(SessionEvent::Failed(ipc_failure(e)));
                }
            }
        });
        Ok(session)
    }

    fn on_event(&self, event: NativeMediaEvent) {
        match event {
            NativeMediaEvent::Signal { signal, .. } => (self.events)(SessionEvent::Signal(signal)),
            NativeMediaEvent::Connected { .. } => {
                self.state.borrow_mut().connection = "connected".into();
                (self.events)(SessionEvent::Connected);
            }
            NativeMediaEvent::IceRestart { restarts, .. } => {
                let mut st = self.state.borrow_mut();
                st.restarts = restarts;
                st.connection = "restarting".into();
            }
            NativeMediaEvent::FirstAudio { .. } => {
                (self.events)(SessionEvent::FirstAudio(super::webrtc::precise_now_ms()))
            }
            NativeMediaEvent::Levels {
                mic_pct, peer_pct, ..
            } => {
                self.state.borrow_mut().levels = Levels {
                    mic: f64::from(mic_pct) / 100.0,
                    peer: f64::from(peer_pct) / 100.0,
                }
            }
            NativeMediaEvent::PeerPeak { hz, .. } => {
                self.state.borrow_mut().peer_peak_hz = Some(f64::from(hz));
            }
            NativeMediaEvent::Stats {
                rtt_ms,
                jitter_ms,
                loss_permille,
                packets_received,
                packets_sent,
                local_candidate_type,
                remote_candidate_type,
                protocol,
                relay_protocol,
                ..
            } => {
                let route = match (&local_candidate_type, &remote_candidate_type, &protocol) {
                    (Some(l), Some(r), Some(p)) => Route::parse(l, r, p, relay_protocol.as_deref()),
                    _ => None,
                };
                self.state.borrow_mut().stats = CallStats {
                    route,
                    rtt_ms: rtt_ms.map(f64::from),
                    jitter_ms: jitter_ms.map(f64::from),
                    loss_pct: Some(f64::from(loss_permille) / 10.0),
                    packets_received,
                    bytes_received: 0,
                    packets_sent,
                }
            }
            NativeMediaEvent::Failed { code, message, .. } => {
                self.state.borrow_mut().connection = "failed".into();
                (self.events)(SessionEvent::Failed(to_media_error(code, message)));
            }
            // The controller's (see `Controller::on_event`); about no call.
            NativeMediaEvent::DevicesChanged => {}
        }
    }

    /// Runs a command whose refusal the caller reports (`failure` turns it into a media error).
    fn ask<A: serde::Serialize + 'static>(
        &self,
        name: &'static str,
        args: A,
        failure: fn(IpcError) -> MediaError,
    ) -> LocalFuture<Result<(), MediaError>> {
        let api = self.api.clone();
        Box::pin(async move {
            api.invoke_typed::<(), _>(name, Some(&args))
                .await
                .map_err(failure)
        })
    }

    /// Fires a command; a refusal is reported as a warning (the call goes on).
    fn fire<A: serde::Serialize + 'static>(&self, name: &'static str, args: A) {
        if self.state.borrow().stopped {
            return;
        }
        let api = self.api.clone();
        let events = self.events.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = api.invoke_typed::<(), _>(name, Some(&args)).await {
                web_sys::console::warn_1(&JsValue::from_str(&format!(
                    "tincan: {name}: {}",
                    e.message
                )));
                events(SessionEvent::Warning(ipc_failure(e)));
            }
        });
    }
}

impl MediaSession for NativeSession {
    fn accept(&self) {
        self.fire(
            cmd::ACCEPT,
            NativeCallArgs {
                call_id: self.call_id.clone(),
            },
        );
    }

    fn remote_signal(&self, signal: MediaSignal) {
        self.fire(
            cmd::SIGNAL,
            NativeSignalArgs {
                call_id: self.call_id.clone(),
                signal,
            },
        );
    }

    fn set_muted(&self, muted: bool) {
        self.fire(
            cmd::MUTE,
            NativeMuteArgs {
                call_id: self.call_id.clone(),
                muted,
            },
        );
    }

    fn switch_input(&self, device: Option<String>) -> LocalFuture<Result<(), MediaError>> {
        let args = NativeSwitchArgs {
            call_id: self.call_id.clone(),
            input: device,
        };
        self.ask(cmd::SWITCH_INPUT, args, ipc_failure)
    }

    fn set_output(&self, device: Option<String>) -> LocalFuture<Result<(), MediaError>> {
        let args = NativeSwitchOutputArgs {
            call_id: self.call_id.clone(),
            output: device,
        };
        self.ask(cmd::SWITCH_OUTPUT, args, |e| {
            MediaError::new(
                MediaErrorCode::OutputNotSupported,
                format!(
                    "That speaker could not be opened; the current one keeps playing ({}).",
                    e.message
                ),
            )
        })
    }

    fn stats(&self) -> CallStats {
        self.state.borrow().stats
    }

    fn levels(&self) -> Levels {
        self.state.borrow().levels
    }

    fn peer_peak_hz(&self) -> Option<f64> {
        self.state.borrow().peer_peak_hz
    }

    fn connection_state(&self) -> String {
        self.state.borrow().connection.clone()
    }

    fn level_span_ms(&self) -> f64 {
        // The engine's level element reports every 100 ms (`EngineConfig::meter_interval_ms`), each
        // reading the RMS of the 100 ms before it.
        100.0
    }

    fn ice_restarts(&self) -> u32 {
        self.state.borrow().restarts
    }

    fn stop(&self) {
        let args = NativeCallArgs {
            call_id: self.call_id.clone(),
        };
        self.fire(cmd::STOP, args);
        self.state.borrow_mut().stopped = true;
    }
}
