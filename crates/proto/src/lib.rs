//! tincan's shared vocabulary: wire messages, identifiers, the call state machine, the switchboard
//! that routes calls, the SDP check every party runs, and TLSSigAPIv2 UserSigs.
//!
//! Pure Rust with no I/O, so the server, the desktop app and the wasm UI all use the same types and
//! the same rules; a message has one shape everywhere.

pub mod call;
pub mod ice;
pub mod ids;
pub mod message;
pub mod sdp;
pub mod sensitive;
pub mod switchboard;
pub mod usersig;
pub mod wire;

pub use call::{Call, CallEnd, CallError, CallEvent, Outcome, Party, Phase};
pub use ice::{IceConfig, IceServer};
pub use ids::{CallId, DeviceId, IdError, UserId};
pub use message::{
    CallType, ClientMessage, CloseReason, DecodeError, EndReason, ErrorCode, MediaSignal,
    MissedCall, ServerMessage, SigToken, DEFAULT_RING_TIMEOUT_SECS, PROTOCOL_VERSION,
};
pub use sensitive::{SecretKey, Sensitive};
pub use usersig::{UserSigClaims, UserSigError, UserSigKey};
