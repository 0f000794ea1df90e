//! What the engine captures from, plays to, and how it negotiates.

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
    /// STUN/TURN server URLs (`stun://host:port`, `turn://user:pass@host:port`). Empty: host
    /// candidates only, never a public default.
    pub stun_server: Option<String>,
    pub turn_servers: Vec<String>,
    /// webrtcbin's jitter buffer; 50 ms (instead of 200) lets audio start sooner on good links.
    pub jitter_latency_ms: u32,
    /// How often level (and, with [`AudioOutput::Measure`], spectrum) events are posted.
    pub meter_interval_ms: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            input: AudioInput::Default,
            output: AudioOutput::Default,
            echo_cancellation: true,
            stun_server: None,
            turn_servers: Vec::new(),
            jitter_latency_ms: 50,
            meter_interval_ms: 100,
        }
    }
}
