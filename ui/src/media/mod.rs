//! Audio for calls. The views never touch WebRTC: they see one [`MediaEngine`] (start a session,
//! list devices) and its [`MediaSession`]s (accept, remote signals, mute, switch devices, stats,
//! levels, stop). [`webrtc::WebRtcEngine`] is the engine for webviews and browsers that have
//! `RTCPeerConnection`; a native engine (for webviews without WebRTC) can implement the same two traits.
//!
//! [`controller`] drives the engine from the call's phases and the backend's events, so the same
//! code serves the desktop app (signals over Tauri IPC) and the browser (signals over the WebSocket).

pub mod controller;
pub mod devices;
pub mod native;
pub mod stats;
pub mod tones;
pub mod view;
pub mod webrtc;

use crate::backend::LocalFuture;
use std::fmt;
use std::rc::Rc;
use tincan_ipc::{IceServer, MediaSignal};

/// Stable error codes for media failures; views branch on these, never on the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaErrorCode {
    /// No audio input device exists.
    NoMicrophone,
    /// The user (or the browser / OS) refused microphone access.
    PermissionDenied,
    /// The microphone exists but cannot be opened (in use elsewhere, hardware error).
    MicrophoneBusy,
    /// This webview or browser has no WebRTC (`RTCPeerConnection` is missing).
    WebRtcUnavailable,
    /// Media could never connect to the peer (no network path: a TURN server may be needed).
    PeerUnreachable,
    /// Media was connected, then lost, and did not come back within 30 s.
    ConnectionLost,
    /// Negotiation failed (a browser refused an SDP or a candidate).
    Negotiation,
    /// The peer's offer or answer failed the SDP check (`tincan_proto::sdp`, the check the server
    /// runs too) and was not applied.
    SdpRejected,
    /// Relay-only mode is on (Settings) but no TURN server is available: the call is not tried,
    /// so no address of this machine is revealed.
    RelayUnavailable,
    /// The peer's encryption certificate did not match what its session description announced
    /// (native engine; browsers check this themselves and fail the connection): the call ended
    /// before any audio crossed.
    MediaNotVerified,
    /// The output device cannot be chosen in this engine.
    OutputNotSupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaError {
    pub code: MediaErrorCode,
    /// A sentence a user understands, with what to do about it.
    pub message: String,
}

impl MediaError {
    /// Relay-only mode without any TURN server (both engines check before they start).
    pub fn relay_unavailable() -> Self {
        Self::new(
            MediaErrorCode::RelayUnavailable,
            "Relay only is on, but no relay (TURN) server is available, so the call was not \
             tried. Add a TURN server in Settings, ask the server's operator for one, or turn \
             Relay only off.",
        )
    }

    pub fn new(code: MediaErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MediaError {}

/// Which side of the call this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens the microphone and sends the offer while the callee's devices ring.
    Caller,
    /// Keeps the offer while ringing; opens the microphone and answers on accept.
    Callee,
}

/// Echo cancellation, noise suppression, automatic gain: on unless the user switched them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AudioProcessing {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain_control: bool,
}

impl Default for AudioProcessing {
    fn default() -> Self {
        Self {
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain_control: true,
        }
    }
}

/// What a session is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSetup {
    /// The call the session carries audio for (the native engine names it to the backend).
    pub call_id: tincan_ipc::CallId,
    pub role: Role,
    /// The servers configured in Settings; with `issued_ice_servers` empty too, host candidates
    /// only (never a public default).
    pub ice_servers: Vec<IceServer>,
    /// The servers the signaling server issued (`login_ok` / `ice_servers`: STUN, TURN with
    /// short-lived credentials). The web engine uses them before the configured ones; the native
    /// engine's backend keeps its own copy of the latest (fresher at an ICE restart).
    pub issued_ice_servers: Vec<IceServer>,
    /// Relay-only privacy mode: TURN relays only, no host / server-reflexive candidate sent.
    pub relay_only: bool,
    /// Input / output device IDs; `None` is the system default.
    pub input: Option<String>,
    pub output: Option<String>,
    pub processing: AudioProcessing,
}

/// What a session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A signal for the peer (offer, answer, candidate).
    Signal(MediaSignal),
    /// Media is flowing (ICE connected).
    Connected,
    /// Remote audio arrived for the first time; unix milliseconds (fractional).
    FirstAudio(f64),
    /// A failure the call cannot go on with (no microphone, lost connection, …).
    Failed(MediaError),
    /// A failure the call survives (a device switch that did not work, …).
    Warning(MediaError),
}

/// An input or output device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDevice {
    pub id: String,
    pub label: String,
    pub input: bool,
}

/// Round-trip time, jitter and loss in plain words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Good,
    Fair,
    Poor,
}

impl Quality {
    pub fn label(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Fair => "fair",
            Quality::Poor => "poor",
        }
    }
}

/// The numbers behind [`Quality`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallStats {
    /// How the audio travels (the selected candidate pair), once known.
    pub route: Option<stats::Route>,
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    /// Lost packets over the last interval, percent.
    pub loss_pct: Option<f64>,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
}

/// Audio levels, 0.0 (silence) to 1.0 (full scale RMS).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Levels {
    pub mic: f64,
    pub peer: f64,
}

pub type EventSink = Rc<dyn Fn(SessionEvent)>;

/// A media engine: makes sessions and lists devices.
pub trait MediaEngine {
    /// A short name for the UI ("WebRTC (browser engine)").
    fn name(&self) -> &'static str;
    /// Starts the media of one call. The caller's session opens the microphone and offers at once;
    /// the callee's waits for [`MediaSession::accept`].
    fn start(
        &self,
        setup: CallSetup,
        events: EventSink,
    ) -> Result<Rc<dyn MediaSession>, MediaError>;
    /// Microphones and speakers (labels appear once microphone access was granted).
    fn devices(&self) -> LocalFuture<Result<Vec<AudioDevice>, MediaError>>;
}

/// The media of one call.
pub trait MediaSession {
    /// The callee accepted: open the microphone and answer.
    fn accept(&self);
    /// A signal from the peer.
    fn remote_signal(&self, signal: MediaSignal);
    fn set_muted(&self, muted: bool);
    /// Switches the microphone without renegotiation (`replaceTrack`).
    fn switch_input(&self, device: Option<String>) -> LocalFuture<Result<(), MediaError>>;
    /// Chooses the speaker (`setSinkId` where the engine has it).
    fn set_output(&self, device: Option<String>) -> LocalFuture<Result<(), MediaError>>;
    /// The latest statistics (refreshed about once a second).
    fn stats(&self) -> CallStats;
    fn levels(&self) -> Levels;
    /// The peer's level over the last few milliseconds, for the audio-gap meter (an engine whose
    /// levels come at intervals reports the latest one).
    fn peer_level_now(&self) -> f64 {
        self.levels().peer
    }
    /// How much audio one level reading covers, ms (0: a reading is of the current instant). A
    /// silence between two readings that heard the peer is at most their distance minus this.
    fn level_span_ms(&self) -> f64 {
        0.0
    }
    /// Dominant frequency of the peer's audio, Hz (diagnostics and tests).
    fn peer_peak_hz(&self) -> Option<f64>;
    /// ICE connection state, as the engine names it.
    fn connection_state(&self) -> String;
    /// The signaling server issued new ICE servers (fresh TURN credentials) during the call: an
    /// engine that restarts ICE in place uses them from its next restart. The native engine's
    /// backend reads the latest itself.
    fn update_issued_ice_servers(&self, _servers: Vec<IceServer>) {}
    /// ICE restarts this session made (diagnostics and tests).
    fn ice_restarts(&self) -> u32 {
        0
    }
    /// Signaling relays to the peer again after an outage (this side resumed the call, or the peer
    /// came back): a restart that was due while it could not be delivered is made now. Engines that
    /// retry on their own (the native one) need nothing.
    fn signaling_back(&self) {}
    /// The offer/answer state (`stable`, `have-local-offer`, …) where the engine has one
    /// (diagnostics and tests: an offer made while signaling was down is answered after it is back).
    fn signaling_state(&self) -> Option<String> {
        None
    }
    /// Ends the media: closes the connection and releases the microphone at once.
    fn stop(&self);
}
