//! The small rules [`super::ClientSession`] applies: the words for a refused login, the reconnect
//! backoff, the keepalive interval, and reading a WebSocket close frame.

use crate::{ErrorCode, IpcError};
use tincan_proto::CloseReason;

/// The user-facing error for a refused login.
pub fn login_error(code: tincan_proto::ErrorCode, message: &str) -> IpcError {
    use tincan_proto::ErrorCode as E;
    match code {
        E::UserSigExpired => IpcError::new(
            ErrorCode::UserSigExpired,
            "Your sign-in has expired. Get a new UserSig and sign in again.",
        ),
        E::UserSigInvalid | E::UserSigMismatch => IpcError::new(
            ErrorCode::UserSigInvalid,
            format!(
                "The server did not accept your credentials ({message}). Check the user ID, the \
                 SDKAppID and the secret key or UserSig."
            ),
        ),
        E::UserSigTooLong => IpcError::new(
            ErrorCode::UserSigInvalid,
            format!(
                "The server refuses sign-ins that last this long ({message}). Lower the sign-in \
                 lifetime in Settings, or get a UserSig with a shorter lifetime."
            ),
        ),
        E::UnsupportedVersion => IpcError::new(
            ErrorCode::ServerRefused,
            "The server speaks another protocol version; update tincan or the server.",
        ),
        E::TooManyDevices => IpcError::new(
            ErrorCode::ServerRefused,
            "You are signed in on too many devices. Sign out somewhere else first.",
        ),
        _ => IpcError::new(
            ErrorCode::ServerRefused,
            format!("The server refused the sign-in: {message}"),
        ),
    }
}

/// Delay before reconnect attempt `attempt` (1-based), doubling from `start_ms` up to `max_ms`;
/// `jitter` in `0.0..1.0` adds up to 20 %.
pub fn backoff_ms(start_ms: u64, max_ms: u64, attempt: u32, jitter: f64) -> u64 {
    let exp = attempt.saturating_sub(1).min(16);
    let base = start_ms.saturating_mul(1u64 << exp).min(max_ms);
    let extra = (base as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as u64;
    (base + extra).min(max_ms)
}

/// How often to send a `ping`, milliseconds: a little more often than the server's `heartbeat_secs`
/// asks (so one late timer never trips its idle timeout), and never more than once every 1.6 s.
pub fn keepalive_every_ms(heartbeat_secs: u32) -> u64 {
    u64::from(heartbeat_secs.max(2)) * 800
}

/// Every close reason, to map a bare close code back to its reason.
const CLOSE_REASONS: [CloseReason; 10] = [
    CloseReason::KickedOffline,
    CloseReason::Replaced,
    CloseReason::SlowConsumer,
    CloseReason::IdleTimeout,
    CloseReason::LoginTimeout,
    CloseReason::AuthFailed,
    CloseReason::LoggedOut,
    CloseReason::FrameTooLarge,
    CloseReason::ServerShutdown,
    CloseReason::ServerFull,
];

/// The server's reason for closing, from a WebSocket close frame: the reason word when it has one,
/// else the application close code (4000–4005) — a browser's `CloseEvent` may carry either.
/// Codes that several reasons could share (1000, 1001, …) are read only from the word.
pub fn close_reason(code: Option<u16>, reason: &str) -> Option<CloseReason> {
    CloseReason::from_str_opt(reason).or_else(|| {
        let code = code.filter(|c| (4000..5000).contains(c))?;
        CLOSE_REASONS.into_iter().find(|r| r.close_code() == code)
    })
}

/// Does this close mean "stop": a reconnect would undo what the server (or the user) decided?
pub fn close_is_final(reason: Option<CloseReason>) -> bool {
    matches!(
        reason,
        Some(
            CloseReason::KickedOffline
                | CloseReason::Replaced
                | CloseReason::LoggedOut
                | CloseReason::AuthFailed
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_errors_are_plain() {
        let e = login_error(tincan_proto::ErrorCode::UserSigExpired, "x");
        assert_eq!(e.code, ErrorCode::UserSigExpired);
        assert!(e.message.contains("expired"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(500, 15_000, 1, 0.0), 500);
        assert_eq!(backoff_ms(500, 15_000, 3, 0.0), 2_000);
        assert_eq!(backoff_ms(500, 15_000, 30, 1.0), 15_000);
    }

    #[test]
    fn keepalive_is_a_bit_faster_than_the_server_asks() {
        assert_eq!(keepalive_every_ms(25), 20_000);
        assert_eq!(keepalive_every_ms(0), 1_600);
    }

    #[test]
    fn close_reasons_read_from_word_or_code() {
        assert_eq!(close_reason(None, "replaced"), Some(CloseReason::Replaced));
        assert_eq!(
            close_reason(Some(4000), ""),
            Some(CloseReason::KickedOffline)
        );
        assert_eq!(close_reason(Some(1006), ""), None);
        assert_eq!(close_reason(Some(1000), ""), None);
        assert!(close_is_final(close_reason(Some(4005), "")));
        assert!(!close_is_final(close_reason(Some(4002), "")));
    }
}
