//! Sign-in rules shared by the desktop backend and the browser client.

use crate::{ErrorCode, IpcError};

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
}
