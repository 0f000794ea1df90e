//! What the engine captures from, plays to, and how it negotiates.

use crate::ice::IceUrls;
use std::sync::Arc;

/// Where a pipe's ICE servers come from when they change during a call: asked at call start and
/// again for every replacement pipe (an ICE restart), so a restart dials TURN with the newest
/// short-lived credentials the signaling server issued, not the ones the call started with
/// (coturn refuses a new allocation with an expired one).
#[derive(Clone)]
pub struct IceSource(pub Arc<dyn Fn() -> IceUrls + Send + Sync>);

impl std::fmt::Debug for IceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IceSource")
    }
}

/// Where outgoing audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioInput {
    /// The system's default microphone (`autoaudiosrc`).
    Default,
    /// A PulseAudio / PipeWire-Pulse source by name (`pulsesrc device=…`).
    Pulse(String),
    /// A sine tone (`audiotestsrc`): for tests and "test my call" without a microphone.
    Tone { hz: f64 },
}

/// Where incoming audio goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioOutput {
    /// The system's default output (`autoaudiosink`).
    Default,
    /// A PulseAudio / PipeWire-Pulse sink by name (`pulsesink device=…`).
    Pulse(String),
    /// No sound card: measure what arrives (level and spectrum events) and discard it.
    Measure,
}

/// Which side of the negotiation this engine takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Creates the offer (the caller, so the offer can travel while the callee rings).
    Offerer,
    /// Answers a remote offer.
    Answerer,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub input: AudioInput,
    pub output: AudioOutput,
    /// Echo cancellation, noise suppression and gain control (`webrtcdsp`); on by default.
    pub echo_cancellation: bool,
    /// STUN / TURN servers in webrtcbin's terms ([`IceUrls::push_server`] from the W3C list:
    /// the server-issued ones merged with the user's). Empty: host candidates only, never a
    /// public default.
    pub ice: IceUrls,
    /// When set, replaces [`EngineConfig::ice`] at every pipe (see [`IceSource`]).
    pub ice_source: Option<IceSource>,
    /// Relay-only privacy mode: ICE uses TURN relays only (`ice-transport-policy=relay`), and no
    /// host / server-reflexive candidate is sent to the peer, so it never learns our addresses.
    pub relay_only: bool,
    /// The local addresses ICE may use (libnice's `add-local-ip-address`); empty: every interface
    /// (libnice leaves loopback out when there is another). Tests on one machine give
    /// `127.0.0.1` to reach a TURN server on loopback: a socket bound to another address cannot
    /// send to 127.0.0.1.
    pub local_addresses: Vec<String>,
    /// webrtcbin's jitter buffer; 50 ms (instead of 200) lets audio start sooner on good links.
    pub jitter_latency_ms: u32,
    /// How often level (and, with [`AudioOutput::Measure`], spectrum) events are posted.
    pub meter_interval_ms: u32,
}

impl EngineConfig {
    /// The servers for the next pipe: the source's latest, else the fixed list.
    pub fn current_ice(&self) -> IceUrls {
        match &self.ice_source {
            Some(source) => (source.0)(),
            None => self.ice.clone(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            input: AudioInput::Default,
            output: AudioOutput::Default,
            echo_cancellation: true,
            ice: IceUrls::default(),
            ice_source: None,
            relay_only: false,
            local_addresses: Vec::new(),
            jitter_latency_ms: 50,
            meter_interval_ms: 100,
        }
    }
}
