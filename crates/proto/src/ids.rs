//! Validated identifiers: user IDs, device IDs and call IDs.
//!
//! Every identifier that crosses the wire is parsed into one of these types at the edge, so the rest of
//! the code never sees an empty, oversized or oddly-charactered ID. The rule is TRTC's: 1–32 bytes of
//! `[A-Za-z0-9_-]` for users; call and device IDs use the same alphabet with room for a UUID.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} may contain only A-Z, a-z, 0-9, '_' and '-'")]
    BadCharacter { kind: &'static str },
}

fn validate(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::BadCharacter { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        ///
        /// Held as a shared `Arc<str>`: the server keeps each signed-in user's and device's IDs
        /// in several maps, and a clone is then a reference count, not an allocation.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Parses and validates an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate($kind, &s, Self::MAX_LEN)?;
                Ok(Self(Arc::from(s)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visit;
                impl serde::de::Visitor<'_> for Visit {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", $kind))
                    }
                    // Validated from the borrowed text, then copied once into the `Arc`.
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        validate($kind, v, $name::MAX_LEN).map_err(E::custom)?;
                        Ok($name(Arc::from(v)))
                    }
                }
                d.deserialize_str(Visit)
            }
        }
    };
}

id_type!(
    /// A user's ID: 1–32 bytes of `[A-Za-z0-9_-]`, as in TRTC.
    UserId,
    "user ID",
    32
);
id_type!(
    /// One signed-in instance of a user (a desktop install, a browser tab). Chosen by the client.
    DeviceId,
    "device ID",
    64
);
id_type!(
    /// A call (TRTCCalling's `inviteID`). Chosen by the caller, usually a UUID; unique on the server.
    CallId,
    "call ID",
    64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_trtc_rules() {
        assert!(UserId::new("alice_01-x").is_ok());
        assert!(UserId::new("a".repeat(32)).is_ok());
        assert_eq!(
            UserId::new("a".repeat(33)),
            Err(IdError::TooLong {
                kind: "user ID",
                len: 33,
                max: 32
            })
        );
        assert_eq!(UserId::new(""), Err(IdError::Empty { kind: "user ID" }));
        assert!(matches!(
            UserId::new("bob smith"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            UserId::new("émile"),
            Err(IdError::BadCharacter { .. })
        ));
    }

    #[test]
    fn deserializing_validates() {
        let ok: UserId = serde_json::from_str("\"bob\"").unwrap();
        assert_eq!(ok.as_str(), "bob");
        assert!(serde_json::from_str::<UserId>("\"no/slash\"").is_err());
        // An escaped string (decoded into serde's scratch buffer, not borrowed) is validated too.
        let escaped: UserId = serde_json::from_str("\"b\\u006fb\"").unwrap();
        assert_eq!(escaped, ok);
        assert!(serde_json::from_str::<UserId>("\"\\u0020\"").is_err());
        assert!(serde_json::from_str::<UserId>("42").is_err());
        // Through a `Value` (owned strings) as well.
        let v: DeviceId = serde_json::from_value(serde_json::json!("dev-1")).unwrap();
        assert_eq!(v.as_str(), "dev-1");
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"dev-1\"");
    }

    #[test]
    fn clones_share_one_allocation() {
        let a = CallId::new("c1").unwrap();
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
