//! Errors of the native engine, each one something a user or an operator can act on.

use crate::plugins::MissingPlugin;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("GStreamer plugins are missing: {}", describe(.0))]
    MissingPlugins(Vec<MissingPlugin>),
    #[error("the media pipeline could not be built: {0}")]
    Pipeline(String),
    #[error("the peer's session description is invalid: {0}")]
    BadRemoteDescription(String),
    #[error("WebRTC negotiation failed: {0}")]
    Negotiation(String),
    #[error("no microphone could be opened: {0}")]
    NoMicrophone(String),
    #[error("the audio output could not be opened: {0}")]
    NoOutput(String),
    /// Media was connected, then lost, and ICE restarts did not bring it back in time.
    #[error("the audio connection dropped and could not be restored within 30 seconds")]
    ConnectionLost,
    /// Media never connected (no network path; a TURN server may be needed).
    #[error("the other side cannot be reached: no network path for the audio was found")]
    PeerUnreachable,
    /// The peer's DTLS certificate does not match the `a=fingerprint` of its session description
    /// (or there was none to check): someone on the path may be in the middle. No audio was
    /// played or sent; the call must end.
    #[error("the call's encryption could not be verified: {0}")]
    NotVerified(String),
    /// Relay-only mode is on, but no TURN server is known (the server issued none and Settings
    /// list none): the call cannot connect without revealing our addresses, so it is not tried.
    #[error("relay-only mode is on, but no TURN relay server is available")]
    NoRelay,
    #[error("the media engine has stopped")]
    Stopped,
}

fn describe(missing: &[MissingPlugin]) -> String {
    missing
        .iter()
        .map(|m| format!("{} (install {})", m.element, m.package))
        .collect::<Vec<_>>()
        .join(", ")
}
