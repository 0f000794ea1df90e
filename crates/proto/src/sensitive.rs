//! A wrapper for secrets (secret keys, UserSigs) so they cannot end up in a log line or an IPC reply.
//!
//! `Sensitive<T>` prints `<redacted>` under `Debug` and `Display`, deliberately implements neither
//! `Serialize` nor `Display` of its content, and wipes its memory when dropped. Reading the secret takes
//! an explicit `expose()` call, which is easy to find in review.

use std::fmt;
use zeroize::Zeroize;

/// What every secret prints as under `Debug` (also for secrets that must be serialized, like a
/// TURN credential in `crate::ice::IceServer`, whose `Debug` is written by hand with this).
pub const REDACTED: &str = "<redacted>";

/// A secret value that refuses to be printed or serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive<T: Zeroize>(T);

impl<T: Zeroize> Sensitive<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Borrows the secret. Every call site is a place where the secret is used on purpose.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Sensitive<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

/// A secret key (TLSSigAPIv2 uses the key string's UTF-8 bytes as the HMAC key).
pub type SecretKey = Sensitive<String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SecretKey::new("hunter2".to_owned());
        assert_eq!(format!("{key:?}"), "<redacted>");
        assert_eq!(key.expose(), "hunter2");
    }
}
