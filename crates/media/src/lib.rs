//! tincan's native media engine: standard WebRTC audio over GStreamer's `webrtcbin`.
//!
//! Debian's and Ubuntu's WebKitGTK have no `RTCPeerConnection`, so on those desktops the app carries
//! calls with this engine instead of the webview's. It speaks the same WebRTC as a browser (ICE,
//! DTLS-SRTP with the peer's certificate checked against its `a=fingerprint`, an ECDSA P-256
//! certificate of its own, Opus at the offer's payload type, trickled candidates or candidates in the
//! SDP), so the other party cannot tell which engine it talks to, and it takes and emits the same [`tincan_proto::MediaSignal`]s as the web engine.
//!
//! Sources and sinks are chosen by configuration ([`AudioInput`], [`AudioOutput`]): a microphone and
//! speakers in the app, a test tone and a measuring sink (spectrum + level) in tests — the same code
//! path either way. Both can be switched mid-call. A broken connection is rebuilt (ICE restart) by the
//! caller's side, as the web engine does; see [`MediaSession`].

mod analysis;
mod config;
mod devices;
mod dtls;
mod error;
pub mod ice;
mod pipe;
mod plugins;
mod sdp;
mod session;
mod stats;
mod verify;

pub use analysis::peak_frequency;
pub use config::{AudioInput, AudioOutput, EngineConfig, IceSource, Role};
pub use devices::{
    list_devices, watch_devices, AudioDevice, DeviceKind, DeviceWatch, DevicesChanged,
};
pub use error::MediaError;
pub use ice::{IceUrls, Transport};
pub use plugins::{check_plugins, MissingPlugin};
pub use session::{
    EngineEvent, IceConnectionState, MediaSession, GIVE_UP_AFTER, RESTART_AFTER, RESTART_BACKOFF,
};
pub use stats::{relay_transport_of, CallStats, CandidateType, Route};

/// Initializes GStreamer once per process.
pub fn init() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Init(e.to_string()))
}

/// Does once per process, on a thread of its own, the slow first-time work of a call, so no call
/// waits for it: GStreamer's DTLS elements generate the process's DTLS key and certificate when the
/// first one is made (RSA 2048: 150–300 ms here, more under load), and the first WebRTC, Opus and
/// SRTP elements load their plugins. Without this, a callee that accepts within a moment of ringing
/// waits that long for its answer. Cheap to call again.
pub fn warm_up() {
    static SPAWNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SPAWNED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("tincan-media-warm-up".into())
        .spawn(warm_up_blocking);
    if let Err(e) = spawned {
        tracing::warn!(%e, "no warm-up thread");
    }
}

/// [`warm_up`] on the calling thread: returns once the work is done (at once if it was done
/// before; waits for it if another thread is doing it).
pub fn warm_up_blocking() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if init().is_err() {
            return;
        }
        let started = std::time::Instant::now();
        for name in [
            "dtlssrtpdec",
            "dtlssrtpenc",
            "webrtcbin",
            "opusenc",
            "opusdec",
        ] {
            // A missing element is check_plugins()'s to report.
            let _ = gst::ElementFactory::make(name).build();
        }
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "media engine warmed up"
        );
    });
}
