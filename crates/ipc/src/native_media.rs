//! IPC for the native media engine (GStreamer, in the backend), used when the webview has no
//! `RTCPeerConnection` (Debian's and Ubuntu's WebKitGTK).
//!
//! The UI drives it exactly as it drives the web engine: it starts a session per call, hands it the
//! peer's signals, mutes and switches devices; the backend answers with [`NativeMediaEvent`]s (signals
//! for the peer, levels, stats). The audio itself never crosses IPC.

use crate::IceServer;
use serde::{Deserialize, Serialize};
use tincan_proto::{CallId, MediaSignal};

/// Command names.
pub mod cmd {
    pub const INFO: &str = "native_media_info";
    pub const START: &str = "native_media_start";
    pub const ACCEPT: &str = "native_media_accept";
    pub const SIGNAL: &str = "native_media_signal";
    pub const MUTE: &str = "native_media_mute";
    pub const SWITCH_INPUT: &str = "native_media_switch_input";
    pub const SWITCH_OUTPUT: &str = "native_media_switch_output";
    pub const STOP: &str = "native_media_stop";
    pub const DEVICES: &str = "native_media_devices";
}

/// Whether the native engine can run here, and what to install if not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeEngineInfo {
    pub available: bool,
    /// "element (package)" for each missing GStreamer element.
    pub missing: Vec<String>,
}

/// Starts the media of one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeStartArgs {
    pub call_id: CallId,
    /// The caller offers at once (while the callee rings); the callee waits for `accept`.
    pub caller: bool,
    /// The servers to use: the ones tincan-server issued (with fresh TURN credentials) first,
    /// then the ones configured in Settings; empty means host candidates only.
    pub ice_servers: Vec<IceServer>,
    /// Relay-only privacy mode (Settings): TURN relays only, and no host or server-reflexive
    /// candidate is ever sent to the peer. Without a TURN server the session fails at once with
    /// `relay_unavailable`.
    #[serde(default)]
    pub relay_only: bool,
    /// Device IDs from `native_media_devices`; `None` is the system default.
    pub input: Option<String>,
    pub output: Option<String>,
    /// Echo cancellation, noise suppression and gain control.
    pub echo_cancellation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeCallArgs {
    pub call_id: CallId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeSignalArgs {
    pub call_id: CallId,
    pub signal: MediaSignal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeMuteArgs {
    pub call_id: CallId,
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeSwitchArgs {
    pub call_id: CallId,
    pub input: Option<String>,
}

/// Chooses the speaker mid-call (`None`: the system default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeSwitchOutputArgs {
    pub call_id: CallId,
    pub output: Option<String>,
}

/// The test source: a sine tone instead of a microphone ("tone:HZ"), for trying a call on a
/// machine without sound hardware.
pub const TEST_TONE_INPUT: &str = "tone:440";
/// The measuring output: no sound card needed; reports levels and the loudest frequency.
pub const MEASURE_OUTPUT: &str = "measure";

/// A microphone or speaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeDevice {
    pub id: String,
    pub label: String,
    pub input: bool,
}

/// Stable codes for native media failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NativeMediaErrorCode {
    /// GStreamer elements are missing; the message names the packages.
    MissingPlugins,
    NoMicrophone,
    /// Media never connected within 30 s (no network path; a TURN server may be needed).
    PeerUnreachable,
    /// Media was connected, then lost, and ICE restarts did not bring it back within 30 s.
    ConnectionLost,
    /// Negotiation failed (an SDP the engine could not use).
    Negotiation,
    /// The peer's offer or answer failed the SDP check (`tincan_proto::sdp`) and was not applied;
    /// the message names the check.
    SdpRejected,
    /// The peer's DTLS certificate did not match the fingerprint in its session description
    /// (`media_not_verified`): someone on the path may be in the middle. No audio was played or
    /// sent, and the call ends.
    MediaNotVerified,
    /// Relay-only mode is on, but no TURN server is available (the server issued none and
    /// Settings list none): the call is not tried, so no address of ours is revealed.
    RelayUnavailable,
    /// Anything else inside the pipeline.
    Pipeline,
}

/// What the native engine reports to the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NativeMediaEvent {
    /// Send this to the peer.
    Signal {
        call_id: CallId,
        signal: MediaSignal,
    },
    /// ICE connected: media can flow.
    Connected { call_id: CallId },
    /// The first audio from the peer was decoded (again after each ICE restart).
    FirstAudio { call_id: CallId },
    /// The connection broke and was rebuilt (ICE restart); `restarts` counts them in this call.
    IceRestart { call_id: CallId, restarts: u32 },
    /// Levels in percent of full scale (RMS), about ten times a second.
    Levels {
        call_id: CallId,
        mic_pct: u8,
        peer_pct: u8,
    },
    /// With the measuring output: the loudest frequency received, Hz (diagnostics and tests).
    PeerPeak { call_id: CallId, hz: u32 },
    /// Connection numbers, about once a second (integers so events compare exactly).
    Stats {
        call_id: CallId,
        rtt_ms: Option<u32>,
        jitter_ms: Option<u32>,
        /// Inbound loss, tenths of a percent.
        loss_permille: u32,
        packets_received: u64,
        packets_sent: u64,
        /// How the audio travels, once ICE selected a pair: the local and remote candidate types
        /// (`host`, `srflx`, `prflx`, `relay`), the local candidate's transport (`udp` / `tcp`),
        /// and with a relayed local candidate how the TURN server is reached (`udp` / `tcp`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local_candidate_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote_candidate_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relay_protocol: Option<String>,
    },
    /// The session failed; the call cannot carry audio.
    Failed {
        call_id: CallId,
        code: NativeMediaErrorCode,
        message: String,
    },
    /// Microphones or speakers were plugged in or out (the engine's device monitor, in or out of a
    /// call): the device menus list them again (`native_media_devices`).
    DevicesChanged,
}

impl NativeMediaEvent {
    /// The call this event is about; `None` for news that is not about a call (devices).
    pub fn call_id(&self) -> Option<&CallId> {
        Some(match self {
            NativeMediaEvent::Signal { call_id, .. }
            | NativeMediaEvent::Connected { call_id }
            | NativeMediaEvent::FirstAudio { call_id }
            | NativeMediaEvent::IceRestart { call_id, .. }
            | NativeMediaEvent::Levels { call_id, .. }
            | NativeMediaEvent::PeerPeak { call_id, .. }
            | NativeMediaEvent::Stats { call_id, .. }
            | NativeMediaEvent::Failed { call_id, .. } => call_id,
            NativeMediaEvent::DevicesChanged => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{NativeMediaErrorCode, NativeMediaEvent};

    /// The UI's native engine listens for this kind by name; it is about no call.
    #[test]
    fn devices_changed_is_a_kind_of_its_own_without_a_call() {
        let ev = NativeMediaEvent::DevicesChanged;
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"kind": "devices_changed"})
        );
        assert_eq!(ev.call_id(), None);
    }

    /// The UI branches on these codes, never on the words: their wire names stay put.
    #[test]
    fn native_media_error_codes_are_stable() {
        for (code, wire) in [
            (NativeMediaErrorCode::ConnectionLost, "connection_lost"),
            (NativeMediaErrorCode::MediaNotVerified, "media_not_verified"),
            (NativeMediaErrorCode::RelayUnavailable, "relay_unavailable"),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), wire);
        }
    }
}
