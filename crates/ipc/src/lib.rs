//! The typed IPC between tincan's desktop backend (src-tauri) and its UI (ui/, wasm32).
//!
//! Both sides compile this crate, so a command's arguments, its result, every event and every error
//! have exactly one shape. Wire types (user IDs, call IDs, end reasons, media signals) come from
//! `tincan-proto` and are re-exported here; nothing in this crate re-declares a protocol message.
//!
//! Nothing in this crate can carry a secret key *out* of the backend: the only field that holds one is
//! [`SignInCredentials::SecretKey::secret_key`], an argument the UI sends in. (The short-lived TURN
//! credentials in [`AppEvent::IceServers`] do go to the UI: its web engine dials TURN with them.
//! They are minted by the server per user for one TTL, and print `<redacted>` under `Debug`.)

use serde::{Deserialize, Serialize};
use std::fmt;

pub mod call_view;
pub mod native_media;
pub mod session;

/// `IceServer` (a STUN or TURN server as `RTCIceServer` takes it) is the wire type: the same for
/// the servers a user types into Settings and the ones the signaling server issues; its `Debug`
/// never prints the credential.
pub use tincan_proto::{
    CallId, CallType, CloseReason, EndReason, IceServer, MediaSignal, MissedCall, UserId,
};

/// The one event name the backend emits; the payload is an [`AppEvent`].
pub const EVENT: &str = "tincan://event";

/// Command names, as registered in the Tauri shell and invoked by the UI.
pub mod cmd {
    pub const GET_STATE: &str = "get_state";
    pub const SIGN_IN: &str = "sign_in";
    pub const SIGN_OUT: &str = "sign_out";
    pub const FORGET_CREDENTIALS: &str = "forget_credentials";
    pub const START_CALL: &str = "start_call";
    pub const ACCEPT_CALL: &str = "accept_call";
    pub const REJECT_CALL: &str = "reject_call";
    pub const HANG_UP: &str = "hang_up";
    pub const SET_MUTED: &str = "set_muted";
    pub const SEND_SIGNAL: &str = "send_signal";
    pub const GET_SETTINGS: &str = "get_settings";
    pub const SAVE_SETTINGS: &str = "save_settings";
    pub const GET_HISTORY: &str = "get_history";
    pub const CLEAR_HISTORY: &str = "clear_history";
    /// Signs out, stops hosting the local server, and exits (closing the window only hides it).
    pub const QUIT_APP: &str = "quit_app";
    /// What happens at launch and at login: a [`crate::Startup`].
    pub const GET_STARTUP: &str = "get_startup";
    /// Changes it (`{args: StartupArgs}`); returns the new [`crate::Startup`].
    pub const SET_STARTUP: &str = "set_startup";
}

/// Stable error codes. The UI branches on these, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No Secret Service (or Keychain / Credential Manager) is reachable.
    KeyringUnavailable,
    /// The keyring answered but refused or failed.
    Keyring,
    /// "Use saved" was asked for but nothing is saved.
    NoSavedCredentials,
    /// A user ID that is empty, too long, or has characters other than `A-Za-z0-9_-`.
    InvalidUserId,
    /// Some other argument is not acceptable (a malformed server address, an empty key, …).
    InvalidInput,
    /// The UserSig has expired: sign in again with a fresh one.
    UserSigExpired,
    /// The UserSig is malformed, forged, or for another user / SDKAppID.
    UserSigInvalid,
    /// The signaling server cannot be reached.
    ServerUnreachable,
    /// A `ws://` (unencrypted) address that is not on this machine: UserSigs and SDP would cross the
    /// network in clear, so the app refuses it; use `wss://`.
    InsecureServerUrl,
    /// The server's TLS certificate is not trusted (unknown CA, wrong name, expired, …).
    TlsCertificate,
    /// The CA file in the settings (or `TINCAN_CA_FILE`) cannot be read or holds no certificate.
    CaFile,
    /// Something listens on the local server's port but did not prove it is tincan's own
    /// embedded server (the keyring challenge, docs/PROTOCOL.md); nothing was sent to it.
    LocalServerNotVerified,
    /// The action needs a signed-in session.
    NotSignedIn,
    /// The action needs no call in progress.
    AlreadyInCall,
    /// No call (or not that call) is in progress.
    NoCall,
    /// The action does not fit the call's state (accepting an outgoing call, …).
    InvalidState,
    /// A user tried to call themselves.
    CallSelf,
    /// The server refused a request for another reason (the message says which).
    ServerRefused,
    /// Settings or history could not be read or written.
    Storage,
    /// This profile is already open in another window.
    ProfileInUse,
    /// A microphone or speaker could not be opened (the message names it).
    AudioDevice,
    /// The SDKAppID is empty or 0 (secret-key and UserSig sign-in need the server's number);
    /// refused before anything is sent.
    InvalidSdkAppId,
    /// "Start tincan when I log in" could not be turned on or off (the autostart entry could not be
    /// written or removed).
    Autostart,
    /// Something failed inside the app.
    Internal,
}

/// The error every command returns, and the payload of [`AppEvent::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcError {
    pub code: ErrorCode,
    /// A sentence a user understands.
    pub message: String,
}

impl IpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IpcError {}

/// How a user proves who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SignInCredentials {
    /// The built-in local server: the app signs with the key it generated for it.
    Embedded,
    /// SDKAppID + secret key (self-hosted admin / development). The key goes into the OS keyring and
    /// a fresh UserSig is made at each sign-in. `secret_key: None` uses the key saved earlier.
    SecretKey {
        sdk_app_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_key: Option<String>,
    },
    /// A UserSig issued by your own server, pasted once and kept in the keyring. `user_sig: None`
    /// uses the one saved earlier.
    UserSig {
        sdk_app_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_sig: Option<String>,
    },
}

/// Which kind of credentials, without any secret: what the UI may be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    Embedded,
    SecretKey,
    UserSig,
}

impl SignInCredentials {
    pub fn mode(&self) -> CredentialMode {
        match self {
            SignInCredentials::Embedded => CredentialMode::Embedded,
            SignInCredentials::SecretKey { .. } => CredentialMode::SecretKey,
            SignInCredentials::UserSig { .. } => CredentialMode::UserSig,
        }
    }
}

/// `sign_in` arguments. `user_id` is a plain string so a bad one comes back as
/// [`ErrorCode::InvalidUserId`] in plain words rather than a deserialization failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInArgs {
    pub user_id: String,
    pub credentials: SignInCredentials,
}

/// What is saved for this profile, with no secret in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCredentials {
    pub last_user_id: Option<String>,
    pub last_mode: Option<CredentialMode>,
    pub last_sdk_app_id: Option<u64>,
    /// A secret key is in the keyring.
    pub has_secret_key: bool,
    /// A pasted UserSig is in the keyring; when it expires (unix seconds).
    pub user_sig_expires_at: Option<u64>,
}

/// What happens at launch and at login (`get_startup` / `set_startup`). Kept apart from
/// [`Settings`]: these are answered once (or toggled) rather than edited with the other settings, and
/// `start_at_login` is read from the OS (the autostart entry), not from the settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Startup {
    /// At launch, sign in as the last user with the saved credentials (on by default; the local
    /// server's sign-in counts as saved).
    pub sign_in_automatically: bool,
    /// The OS starts tincan when the user logs in (off by default).
    pub start_at_login: bool,
    /// The user has answered "Start tincan when I log in?" once (either way), so it is not asked again.
    pub start_at_login_asked: bool,
}

/// `set_startup` arguments: `None` leaves a value as it is. Any `start_at_login` also marks the
/// question as asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartupArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_automatically: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_login: Option<bool>,
}

/// Where the app signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ServerInfo {
    /// The built-in local server; `hosting` when this window runs it.
    Embedded { url: String, hosting: bool },
    /// A server address from settings.
    Remote { url: String },
}

impl ServerInfo {
    pub fn url(&self) -> &str {
        match self {
            ServerInfo::Embedded { url, .. } | ServerInfo::Remote { url } => url,
        }
    }
}

/// The signaling connection, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    SignedOut,
    Connecting,
    Online,
    /// The connection dropped; the next attempt is `retry_in_ms` away.
    Reconnecting {
        attempt: u32,
        retry_in_ms: u64,
    },
}

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// Where a call is, from this window's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    /// Outgoing: the invitation is on its way.
    Dialing,
    /// Outgoing: the callee's devices are ringing.
    Ringing,
    /// Incoming: this window is ringing.
    Incoming,
    /// Incoming: accepted, waiting for the server to confirm.
    Answering,
    Connected,
    Ended,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEndInfo {
    /// The server's reason; `None` when the call failed locally (refused, connection lost, …).
    pub reason: Option<EndReason>,
    /// A sentence a user understands.
    pub message: String,
}

/// One call as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallView {
    pub call_id: CallId,
    pub peer: UserId,
    pub direction: Direction,
    pub call_type: CallType,
    pub phase: CallPhase,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    pub connected_at_ms: Option<u64>,
    pub ended: Option<CallEndInfo>,
    /// Ring timeout (seconds) the call was placed or received with.
    pub timeout_secs: u32,
    pub muted: bool,
    pub remote_muted: bool,
    /// This side lost the server during the connected call and is resuming it: the media goes on,
    /// the UI says "Reconnecting…" with the timer running (see `session::resume`).
    #[serde(default)]
    pub reconnecting: bool,
    /// The server says the peer lost its connection and may come back within the grace period.
    #[serde(default)]
    pub peer_reconnecting: bool,
}

/// Everything the UI needs at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    /// The settings profile (`--profile NAME`; "default" otherwise).
    pub profile: String,
    pub server: ServerInfo,
    pub connection: ConnectionState,
    pub user: Option<UserId>,
    pub call: Option<CallView>,
    pub saved: SavedCredentials,
}

/// `start_call` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartCallArgs {
    pub callee: String,
}

/// Arguments of commands about one call (`accept_call`, `reject_call`, `hang_up`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallArgs {
    pub call_id: CallId,
}

/// `set_muted` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteArgs {
    pub muted: bool,
}

/// `send_signal` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalArgs {
    pub call_id: CallId,
    pub signal: MediaSignal,
}

/// Default ring timeout, seconds.
pub const DEFAULT_RING_TIMEOUT_SECS: u32 = tincan_proto::DEFAULT_RING_TIMEOUT_SECS;
/// Default lifetime of a UserSig the app makes from a secret key, seconds (10 minutes). The app
/// mints a new one for every connection, and a session outlives the sig it signed in with, so a
/// short sig costs nothing and a leaked one is soon worthless.
pub const DEFAULT_USERSIG_LIFETIME_SECS: u64 = 600;
/// Shortest lifetime the settings accept, seconds.
pub const MIN_USERSIG_LIFETIME_SECS: u64 = 60;
/// Longest lifetime the settings accept, seconds (1 hour); a stored longer value (older versions
/// defaulted to a day) is capped to it when a sig is minted.
pub const MAX_USERSIG_LIFETIME_SECS: u64 = 3_600;

/// User settings of one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `ws://` or `wss://` address of a shared tincan-server; `None` uses the built-in local one.
    pub server_url: Option<String>,
    /// STUN / TURN servers. Empty by default: tincan never adds a public server on its own.
    pub ice_servers: Vec<IceServer>,
    /// Relay-only privacy mode (off by default): calls go through a TURN relay only and no local
    /// or public address of this machine is sent to the other side. Needs a TURN server (issued
    /// by the signaling server or listed above).
    pub relay_only: bool,
    /// Chosen input / output device IDs; `None` is the system default.
    pub microphone: Option<String>,
    pub speaker: Option<String>,
    /// How long an outgoing call rings, seconds.
    pub ring_timeout_secs: u32,
    /// Lifetime of a UserSig made from a secret key, seconds.
    pub usersig_lifetime_secs: u64,
    /// A PEM file of CA certificates trusted for `wss://` on top of the system's store, for a
    /// self-hosted server with a private CA. `TINCAN_CA_FILE` wins over it.
    pub ca_file: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server_url: None,
            ice_servers: Vec::new(),
            relay_only: false,
            microphone: None,
            speaker: None,
            ring_timeout_secs: DEFAULT_RING_TIMEOUT_SECS,
            usersig_lifetime_secs: DEFAULT_USERSIG_LIFETIME_SECS,
            ca_file: None,
        }
    }
}

/// Longest ring timeout the settings accept (the server clamps further).
pub const MAX_RING_TIMEOUT_SECS: u32 = 120;

impl Settings {
    /// The lifetime to mint UserSigs with: the setting, within the accepted range (a value stored
    /// by an older version, or edited by hand, cannot make sigs live a day).
    pub fn minted_sig_lifetime_secs(&self) -> u64 {
        self.usersig_lifetime_secs
            .clamp(MIN_USERSIG_LIFETIME_SECS, MAX_USERSIG_LIFETIME_SECS)
    }

    /// Checks the values a user typed; the message says what is wrong.
    pub fn validate(&self) -> Result<(), IpcError> {
        if let Some(url) = &self.server_url {
            let url = url.trim();
            if !(url.starts_with("ws://") || url.starts_with("wss://")) || url.len() < 8 {
                return Err(IpcError::new(
                    ErrorCode::InvalidInput,
                    "The server address must start with ws:// or wss://, for example wss://calls.example.com/ws (plain ws:// only to this machine).",
                ));
            }
        }
        if self.ring_timeout_secs == 0 || self.ring_timeout_secs > MAX_RING_TIMEOUT_SECS {
            return Err(IpcError::new(
                ErrorCode::InvalidInput,
                format!("The ring timeout must be between 1 and {MAX_RING_TIMEOUT_SECS} seconds."),
            ));
        }
        if !(MIN_USERSIG_LIFETIME_SECS..=MAX_USERSIG_LIFETIME_SECS)
            .contains(&self.usersig_lifetime_secs)
        {
            return Err(IpcError::new(
                ErrorCode::InvalidInput,
                format!(
                    "The sign-in lifetime must be between {} and {} minutes.",
                    MIN_USERSIG_LIFETIME_SECS / 60,
                    MAX_USERSIG_LIFETIME_SECS / 60
                ),
            ));
        }
        for s in &self.ice_servers {
            if s.urls.is_empty()
                || s.urls.iter().any(|u| {
                    !(u.starts_with("stun:") || u.starts_with("turn:") || u.starts_with("turns:"))
                })
            {
                return Err(IpcError::new(
                    ErrorCode::InvalidInput,
                    "Each ICE server address must start with stun:, turn: or turns:.",
                ));
            }
        }
        Ok(())
    }
}

/// How a call in the history went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Still going (or the app stopped mid-call; see [`HistoryEntry`]).
    InProgress,
    Answered,
    Missed,
    Declined,
    Busy,
    Cancelled,
    NoAnswer,
    Offline,
    Failed,
}

impl CallOutcome {
    /// The outcome a call's end reason gives, seen from `direction`.
    pub fn from_end(direction: Direction, connected: bool, reason: Option<EndReason>) -> Self {
        if connected {
            return CallOutcome::Answered;
        }
        match (direction, reason) {
            (_, None) | (_, Some(EndReason::ConnectionLost)) => CallOutcome::Failed,
            (_, Some(EndReason::Hangup)) => CallOutcome::Answered,
            (_, Some(EndReason::Rejected)) | (_, Some(EndReason::DeclinedElsewhere)) => {
                CallOutcome::Declined
            }
            (_, Some(EndReason::LineBusy)) => CallOutcome::Busy,
            (Direction::Outgoing, Some(EndReason::Cancelled)) => CallOutcome::Cancelled,
            (Direction::Incoming, Some(EndReason::Cancelled)) => CallOutcome::Missed,
            (_, Some(EndReason::NoResponse)) => CallOutcome::NoAnswer,
            (Direction::Incoming, Some(EndReason::Timeout)) => CallOutcome::Missed,
            (Direction::Outgoing, Some(EndReason::Timeout)) => CallOutcome::NoAnswer,
            (_, Some(EndReason::Offline)) => CallOutcome::Offline,
            (_, Some(EndReason::AnsweredElsewhere)) => CallOutcome::Answered,
            // This device left (signed out, signed in elsewhere, reconnected) while it rang.
            (
                Direction::Outgoing,
                Some(EndReason::LoggedOut | EndReason::KickedOffline | EndReason::Replaced),
            ) => CallOutcome::Cancelled,
            (
                Direction::Incoming,
                Some(EndReason::LoggedOut | EndReason::KickedOffline | EndReason::Replaced),
            ) => CallOutcome::Missed,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::InProgress => "in progress",
            CallOutcome::Answered => "answered",
            CallOutcome::Missed => "missed",
            CallOutcome::Declined => "declined",
            CallOutcome::Busy => "busy",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::NoAnswer => "no answer",
            CallOutcome::Offline => "offline",
            CallOutcome::Failed => "failed",
        }
    }
}

/// One call in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub call_id: CallId,
    pub peer: UserId,
    pub direction: Direction,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    /// How long it was connected, when it was.
    pub duration_ms: Option<u64>,
    pub outcome: CallOutcome,
}

/// Events from the backend, all under the one name [`EVENT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppEvent {
    /// The signaling connection changed.
    Connection { state: ConnectionState },
    /// Signed in (also after a reconnect) or out.
    User { user: Option<UserId> },
    /// Where the app signs in changed (e.g. this window took over hosting the local server).
    Server { server: ServerInfo },
    /// The call changed (`None`: no call any more).
    Call { call: Option<CallView> },
    /// A call rings here (TRTCCalling `INVITED`); the `Call` event with the full view comes too.
    Incoming {
        call_id: CallId,
        caller: UserId,
        call_type: CallType,
    },
    /// WebRTC negotiation from the other party.
    RemoteSignal {
        call_id: CallId,
        from: UserId,
        signal: MediaSignal,
    },
    /// This session was closed because the user signed in elsewhere.
    KickedOffline {
        reason: CloseReason,
        message: String,
    },
    /// Calls that rang while this user was away.
    MissedCalls { calls: Vec<MissedCall> },
    /// The history changed; fetch it with `get_history`.
    History { entries: Vec<HistoryEntry> },
    /// Something went wrong that no command is waiting for.
    Error { error: IpcError },
    /// From the native media engine (webviews without WebRTC).
    NativeMedia {
        event: native_media::NativeMediaEvent,
    },
    /// The STUN / TURN servers the signaling server issued (in `login_ok`, then fresh TURN
    /// credentials in each `ice_servers` refresh). Replaces the previous list; the media engines
    /// use the latest at call start and ICE restart, merged with any servers the user configured.
    /// Sent only when the list changes (so never by a server with none configured); an empty
    /// list after sign-out. `expires_at`: when the TURN credentials expire, unix seconds.
    IceServers {
        ice_servers: Vec<IceServer>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_as_code_and_message() {
        let e = IpcError::new(ErrorCode::KeyringUnavailable, "no keyring");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "keyring_unavailable", "message": "no keyring"})
        );
    }

    #[test]
    fn events_are_tagged_by_kind() {
        let ev = AppEvent::Connection {
            state: ConnectionState::Reconnecting {
                attempt: 2,
                retry_in_ms: 1000,
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "connection");
        assert_eq!(v["state"]["state"], "reconnecting");
        let back: AppEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn credentials_are_tagged_by_mode() {
        let c: SignInCredentials =
            serde_json::from_str(r#"{"mode":"secret_key","sdk_app_id":7}"#).unwrap();
        assert_eq!(
            c,
            SignInCredentials::SecretKey {
                sdk_app_id: 7,
                secret_key: None
            }
        );
        assert_eq!(c.mode(), CredentialMode::SecretKey);
    }

    #[test]
    fn settings_validation_speaks_plainly() {
        let mut s = Settings::default();
        assert!(s.validate().is_ok());
        s.server_url = Some("http://x".into());
        assert_eq!(s.validate().unwrap_err().code, ErrorCode::InvalidInput);
        s.server_url = Some("wss://calls.example.com/ws".into());
        s.ring_timeout_secs = 0;
        assert!(s.validate().is_err());
        s.ring_timeout_secs = 30;
        s.ice_servers.push(IceServer {
            urls: vec!["http://nope".into()],
            username: None,
            credential: None,
        });
        assert!(s.validate().is_err());
        // Old files with missing fields still load.
        let old: Settings = serde_json::from_str(r#"{"server_url":null}"#).unwrap();
        assert_eq!(old.ring_timeout_secs, DEFAULT_RING_TIMEOUT_SECS);
        // Relay-only is off unless switched on (and an older file has no such field).
        assert!(!old.relay_only && !Settings::default().relay_only);
    }

    /// Issue 11: the app mints sigs of minutes, and the setting is capped.
    #[test]
    fn the_sig_lifetime_is_minutes_and_capped() {
        let mut s = Settings::default();
        assert_eq!(s.usersig_lifetime_secs, 600);
        assert_eq!(s.minted_sig_lifetime_secs(), 600);
        s.usersig_lifetime_secs = MAX_USERSIG_LIFETIME_SECS;
        assert!(s.validate().is_ok());
        s.usersig_lifetime_secs = 86_400;
        let e = s.validate().unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(
            e.message.contains("between 1 and 60 minutes"),
            "{}",
            e.message
        );
        // A day stored by an older version is minted as an hour at most.
        assert_eq!(s.minted_sig_lifetime_secs(), MAX_USERSIG_LIFETIME_SECS);
        s.usersig_lifetime_secs = 59;
        assert!(s.validate().is_err());
        assert_eq!(s.minted_sig_lifetime_secs(), MIN_USERSIG_LIFETIME_SECS);
    }

    #[test]
    fn outcomes_follow_end_reasons() {
        use CallOutcome as O;
        use Direction::*;
        assert_eq!(
            O::from_end(Outgoing, false, Some(EndReason::Rejected)),
            O::Declined
        );
        assert_eq!(
            O::from_end(Outgoing, false, Some(EndReason::LineBusy)),
            O::Busy
        );
        assert_eq!(
            O::from_end(Incoming, false, Some(EndReason::Cancelled)),
            O::Missed
        );
        assert_eq!(
            O::from_end(Incoming, false, Some(EndReason::Timeout)),
            O::Missed
        );
        assert_eq!(
            O::from_end(Outgoing, false, Some(EndReason::NoResponse)),
            O::NoAnswer
        );
        assert_eq!(
            O::from_end(Outgoing, true, Some(EndReason::Hangup)),
            O::Answered
        );
        assert_eq!(O::from_end(Outgoing, false, None), O::Failed);
    }
}
