//! Tencent TLSSigAPIv2 UserSigs: generate, verify, and build PrivateMapKey userbufs.
//!
//! A UserSig is `base64url'(zlib(JSON))` where the JSON carries the identifier, app ID, issue time,
//! lifetime, optional userbuf and `TLS.sig`, the standard-base64 HMAC-SHA256 of a fixed content string
//! keyed with the secret key's UTF-8 bytes. The base64 alphabet swaps `+/=` for `*-_`.
//!
//! Tokens from different official libraries differ in JSON key order, spacing and deflate bytes, so
//! verification parses the JSON and recomputes the HMAC from the token's own fields; it never compares
//! token strings. Generation emits the Node library's JSON byte for byte (compact, its key order).

use crate::ids::UserId;
use crate::sensitive::SecretKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::io::{Read, Write};
use subtle::ConstantTimeEq;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The largest UserSig (as text) we look at. Real ones are ~200–400 bytes.
pub const MAX_SIG_LEN: usize = 4096;
/// The largest inflated JSON we accept; anything that inflates past this is refused (zip bombs).
pub const MAX_INFLATED_LEN: usize = 8192;

/// What is wrong with a UserSig. Each variant is a distinct, user-explainable failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserSigError {
    #[error("UserSig is malformed: {0}")]
    Malformed(Malformed),
    #[error("UserSig has version {found:?}; only \"2.0\" is supported")]
    WrongVersion { found: String },
    #[error("UserSig was issued for SDKAppID {found}, not {expected}")]
    WrongSdkAppId { expected: u64, found: u64 },
    #[error("UserSig was issued for user {found:?}, not {expected:?}")]
    WrongIdentifier { expected: String, found: String },
    #[error("UserSig signature does not match (wrong secret key or a forged token)")]
    BadSignature,
    #[error("UserSig expired at {expired_at} (unix seconds); it is now {now}")]
    Expired { expired_at: u64, now: u64 },
}

/// The specific way a UserSig fails to decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Malformed {
    #[error("empty")]
    Empty,
    #[error("longer than {MAX_SIG_LEN} bytes")]
    TooLong,
    #[error("not valid base64")]
    Base64,
    #[error("not valid zlib data")]
    Zlib,
    #[error("inflates to more than {MAX_INFLATED_LEN} bytes")]
    InflatesTooLarge,
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("field {0} is missing")]
    MissingField(&'static str),
    #[error("field TLS.userbuf is not valid base64")]
    Userbuf,
}

impl From<Malformed> for UserSigError {
    fn from(m: Malformed) -> Self {
        UserSigError::Malformed(m)
    }
}

/// The fields a valid UserSig carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSigClaims {
    pub identifier: String,
    pub sdk_app_id: u64,
    /// Issue time, unix seconds.
    pub time: u64,
    /// Lifetime in seconds.
    pub expire: u64,
    pub userbuf: Option<Vec<u8>>,
}

impl UserSigClaims {
    /// The last second at which the sig is valid (it is expired iff `now > expires_at`).
    pub fn expires_at(&self) -> u64 {
        self.time.saturating_add(self.expire)
    }
}

/// Generates and verifies UserSigs for one SDKAppID.
#[derive(Clone)]
pub struct UserSigKey {
    sdk_app_id: u64,
    key: SecretKey,
}

impl std::fmt::Debug for UserSigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSigKey")
            .field("sdk_app_id", &self.sdk_app_id)
            .field("key", &self.key)
            .finish()
    }
}

/// The string TLSSigAPIv2 signs. Every line ends with `\n`.
pub fn content_to_sign(
    identifier: &str,
    sdk_app_id: u64,
    time: u64,
    expire: u64,
    userbuf_b64: Option<&str>,
) -> String {
    let mut s = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdk_app_id}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(ub) = userbuf_b64 {
        s.push_str("TLS.userbuf:");
        s.push_str(ub);
        s.push('\n');
    }
    s
}

fn escape(b64: &str) -> String {
    b64.chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

fn unescape(token: &str) -> String {
    token
        .chars()
        .map(|c| match c {
            '*' => '+',
            '-' => '/',
            '_' => '=',
            c => c,
        })
        .collect()
}

/// The JSON shape of a token, as the Node library writes it (field order matters for byte equality).
#[derive(serde::Serialize)]
struct TokenOut<'a> {
    #[serde(rename = "TLS.ver")]
    ver: &'static str,
    #[serde(rename = "TLS.identifier")]
    identifier: &'a str,
    #[serde(rename = "TLS.sdkappid")]
    sdk_app_id: u64,
    #[serde(rename = "TLS.time")]
    time: u64,
    #[serde(rename = "TLS.expire")]
    expire: u64,
    #[serde(rename = "TLS.userbuf", skip_serializing_if = "Option::is_none")]
    userbuf: Option<&'a str>,
    #[serde(rename = "TLS.sig")]
    sig: &'a str,
}

/// The JSON shape as read; any key order, any spacing.
#[derive(Deserialize)]
struct TokenIn {
    #[serde(rename = "TLS.ver")]
    ver: Option<String>,
    #[serde(rename = "TLS.identifier")]
    identifier: Option<String>,
    #[serde(rename = "TLS.sdkappid")]
    sdk_app_id: Option<u64>,
    #[serde(rename = "TLS.time")]
    time: Option<u64>,
    #[serde(rename = "TLS.expire")]
    expire: Option<u64>,
    #[serde(rename = "TLS.userbuf")]
    userbuf: Option<String>,
    #[serde(rename = "TLS.sig")]
    sig: Option<String>,
}

impl UserSigKey {
    /// A signer/verifier for `sdk_app_id` with the given secret key.
    pub fn new(sdk_app_id: u64, key: SecretKey) -> Self {
        Self { sdk_app_id, key }
    }

    /// The SDKAppID this key signs for.
    pub fn sdk_app_id(&self) -> u64 {
        self.sdk_app_id
    }

    /// `TLS.sig`: standard base64 of HMAC-SHA256 over [`content_to_sign`].
    pub fn hmac_b64(
        &self,
        identifier: &str,
        time: u64,
        expire: u64,
        userbuf_b64: Option<&str>,
    ) -> String {
        let mac = self.mac(identifier, time, expire, userbuf_b64);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn mac(
        &self,
        identifier: &str,
        time: u64,
        expire: u64,
        userbuf_b64: Option<&str>,
    ) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(self.key.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(
            content_to_sign(identifier, self.sdk_app_id, time, expire, userbuf_b64).as_bytes(),
        );
        mac
    }

    /// The token's inflated JSON, exactly as the official Node library writes it.
    pub fn token_json(
        &self,
        identifier: &str,
        time: u64,
        expire: u64,
        userbuf: Option<&[u8]>,
    ) -> String {
        let userbuf_b64 = userbuf.map(|b| STANDARD.encode(b));
        let sig = self.hmac_b64(identifier, time, expire, userbuf_b64.as_deref());
        let out = TokenOut {
            ver: "2.0",
            identifier,
            sdk_app_id: self.sdk_app_id,
            time,
            expire,
            userbuf: userbuf_b64.as_deref(),
            sig: &sig,
        };
        serde_json::to_string(&out).unwrap_or_else(|_| unreachable!("plain struct serializes"))
    }

    /// Generates a UserSig issued at `time` (unix seconds), valid for `expire` seconds.
    pub fn gen(
        &self,
        identifier: &UserId,
        time: u64,
        expire: u64,
        userbuf: Option<&[u8]>,
    ) -> String {
        let json = self.token_json(identifier.as_str(), time, expire, userbuf);
        let mut enc = ZlibEncoder::new(Vec::with_capacity(json.len()), Compression::default());
        // Writing into a Vec cannot fail.
        let compressed = enc
            .write_all(json.as_bytes())
            .and_then(|()| enc.finish())
            .unwrap_or_else(|_| unreachable!("in-memory deflate"));
        escape(&STANDARD.encode(compressed))
    }

    /// [`UserSigKey::gen`], refusing a sig that [`UserSigKey::verify`] would refuse for its size:
    /// a large `userbuf` can make the token longer than [`MAX_SIG_LEN`] or its JSON larger than
    /// [`MAX_INFLATED_LEN`] (found by fuzzing: a 3 KB userbuf gave a sig nobody could sign in
    /// with). Use this wherever the userbuf comes from outside (the CLI's `--userbuf-hex`).
    pub fn try_gen(
        &self,
        identifier: &UserId,
        time: u64,
        expire: u64,
        userbuf: Option<&[u8]>,
    ) -> Result<String, UserSigError> {
        if self
            .token_json(identifier.as_str(), time, expire, userbuf)
            .len()
            > MAX_INFLATED_LEN
        {
            return Err(Malformed::InflatesTooLarge.into());
        }
        let sig = self.gen(identifier, time, expire, userbuf);
        if sig.len() > MAX_SIG_LEN {
            return Err(Malformed::TooLong.into());
        }
        Ok(sig)
    }

    /// Verifies `token` for `identifier` at time `now` (unix seconds) and returns its claims.
    pub fn verify(
        &self,
        token: &str,
        identifier: &str,
        now: u64,
    ) -> Result<UserSigClaims, UserSigError> {
        let (parsed, claims) = decode(token)?;
        if parsed.ver.as_deref() != Some("2.0") {
            return Err(UserSigError::WrongVersion {
                found: parsed.ver.unwrap_or_default(),
            });
        }
        if claims.sdk_app_id != self.sdk_app_id {
            return Err(UserSigError::WrongSdkAppId {
                expected: self.sdk_app_id,
                found: claims.sdk_app_id,
            });
        }
        if claims.identifier != identifier {
            return Err(UserSigError::WrongIdentifier {
                expected: identifier.to_owned(),
                found: claims.identifier,
            });
        }
        let given = STANDARD
            .decode(parsed.sig.as_deref().unwrap_or_default())
            .map_err(|_| UserSigError::BadSignature)?;
        let expected = self
            .mac(
                &claims.identifier,
                claims.time,
                claims.expire,
                parsed.userbuf.as_deref(),
            )
            .finalize()
            .into_bytes();
        if !bool::from(expected.as_slice().ct_eq(given.as_slice())) {
            return Err(UserSigError::BadSignature);
        }
        if now > claims.expires_at() {
            return Err(UserSigError::Expired {
                expired_at: claims.expires_at(),
                now,
            });
        }
        Ok(claims)
    }
}

/// Decodes a token without checking its signature: for display ("this sig expires at …") and for
/// the first step of [`UserSigKey::verify`].
pub fn inspect(token: &str) -> Result<UserSigClaims, UserSigError> {
    decode(token).map(|(_, c)| c)
}

/// Inflates a token's JSON, refusing oversized input and output.
pub fn inflate(token: &str) -> Result<String, UserSigError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Malformed::Empty.into());
    }
    if token.len() > MAX_SIG_LEN {
        return Err(Malformed::TooLong.into());
    }
    let compressed = STANDARD
        .decode(unescape(token))
        .map_err(|_| Malformed::Base64)?;
    let mut json = Vec::with_capacity(512);
    ZlibDecoder::new(compressed.as_slice())
        .take(MAX_INFLATED_LEN as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|_| Malformed::Zlib)?;
    if json.len() > MAX_INFLATED_LEN {
        return Err(Malformed::InflatesTooLarge.into());
    }
    String::from_utf8(json).map_err(|e| Malformed::Json(e.to_string()).into())
}

fn decode(token: &str) -> Result<(TokenIn, UserSigClaims), UserSigError> {
    let json = inflate(token)?;
    let parsed: TokenIn =
        serde_json::from_str(&json).map_err(|e| Malformed::Json(e.to_string()))?;
    let claims = UserSigClaims {
        identifier: parsed
            .identifier
            .clone()
            .ok_or(Malformed::MissingField("TLS.identifier"))?,
        sdk_app_id: parsed
            .sdk_app_id
            .ok_or(Malformed::MissingField("TLS.sdkappid"))?,
        time: parsed.time.ok_or(Malformed::MissingField("TLS.time"))?,
        expire: parsed.expire.ok_or(Malformed::MissingField("TLS.expire"))?,
        userbuf: match &parsed.userbuf {
            None => None,
            Some(b) => Some(STANDARD.decode(b).map_err(|_| Malformed::Userbuf)?),
        },
    };
    if parsed.sig.is_none() {
        return Err(Malformed::MissingField("TLS.sig").into());
    }
    if parsed.ver.is_none() {
        return Err(Malformed::MissingField("TLS.ver").into());
    }
    Ok((parsed, claims))
}

/// The room a PrivateMapKey grants access to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    Numeric(u32),
    Named(String),
}

/// Privilege bits of a PrivateMapKey.
pub mod privilege {
    pub const CREATE: u32 = 1;
    pub const ENTER: u32 = 2;
    pub const SEND_AUDIO: u32 = 4;
    pub const RECV_AUDIO: u32 = 8;
    pub const SEND_VIDEO: u32 = 16;
    pub const RECV_VIDEO: u32 = 32;
    pub const SEND_SUB_STREAM: u32 = 64;
    pub const RECV_SUB_STREAM: u32 = 128;
    pub const ALL: u32 = 255;
}

/// Builds the PrivateMapKey userbuf (big-endian), as `genPrivateMapKey` / `genPrivateMapKeyWithStringRoomID`.
///
/// `expires_at` is absolute: the sig's `time + expire`.
pub fn private_map_key_userbuf(
    account: &str,
    sdk_app_id: u32,
    room: &Room,
    expires_at: u32,
    privilege_map: u32,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32 + account.len());
    let (version, room_num) = match room {
        Room::Numeric(n) => (0u8, *n),
        Room::Named(_) => (1u8, 0),
    };
    buf.push(version);
    buf.extend_from_slice(&(account.len() as u16).to_be_bytes());
    buf.extend_from_slice(account.as_bytes());
    buf.extend_from_slice(&sdk_app_id.to_be_bytes());
    buf.extend_from_slice(&room_num.to_be_bytes());
    buf.extend_from_slice(&expires_at.to_be_bytes());
    buf.extend_from_slice(&privilege_map.to_be_bytes());
    buf.extend_from_slice(&0u32.to_be_bytes()); // account type
    if let Room::Named(name) = room {
        buf.extend_from_slice(&(name.len() as u16).to_be_bytes());
        buf.extend_from_slice(name.as_bytes());
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> UserSigKey {
        UserSigKey::new(1400000000, SecretKey::new("secret".into()))
    }

    #[test]
    fn round_trip_and_expiry() {
        let k = key();
        let alice = UserId::new("alice").unwrap();
        let sig = k.gen(&alice, 1000, 60, None);
        let c = k.verify(&sig, "alice", 1060).unwrap();
        assert_eq!(c.expires_at(), 1060);
        assert_eq!(
            k.verify(&sig, "alice", 1061),
            Err(UserSigError::Expired {
                expired_at: 1060,
                now: 1061
            })
        );
        assert!(matches!(
            k.verify(&sig, "bob", 1000),
            Err(UserSigError::WrongIdentifier { .. })
        ));
        let other = UserSigKey::new(1400000000, SecretKey::new("other".into()));
        assert_eq!(
            other.verify(&sig, "alice", 1000),
            Err(UserSigError::BadSignature)
        );
        let other_app = UserSigKey::new(1, SecretKey::new("secret".into()));
        assert!(matches!(
            other_app.verify(&sig, "alice", 1000),
            Err(UserSigError::WrongSdkAppId { .. })
        ));
    }

    #[test]
    fn malformed_tokens_are_typed() {
        let k = key();
        assert_eq!(k.verify("", "a", 0), Err(Malformed::Empty.into()));
        assert_eq!(k.verify("!!!", "a", 0), Err(Malformed::Base64.into()));
        assert_eq!(k.verify("aGVsbG8_", "a", 0), Err(Malformed::Zlib.into()));
        assert_eq!(
            k.verify(&"A".repeat(MAX_SIG_LEN + 4), "a", 0),
            Err(Malformed::TooLong.into())
        );
    }

    #[test]
    fn zip_bombs_are_refused() {
        let json = format!(
            "{{\"TLS.ver\":\"2.0\",\"pad\":\"{}\"}}",
            " ".repeat(1 << 20)
        );
        let mut enc = ZlibEncoder::new(Vec::new(), Compression::best());
        enc.write_all(json.as_bytes()).unwrap();
        let token = escape(&STANDARD.encode(enc.finish().unwrap()));
        assert!(
            token.len() < MAX_SIG_LEN,
            "the bomb is small: {}",
            token.len()
        );
        assert_eq!(inspect(&token), Err(Malformed::InflatesTooLarge.into()));
    }

    #[test]
    fn missing_fields_are_named() {
        let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
        enc.write_all(br#"{"TLS.ver":"2.0","TLS.identifier":"a","TLS.sdkappid":1,"TLS.time":1,"TLS.expire":1}"#)
            .unwrap();
        let token = escape(&STANDARD.encode(enc.finish().unwrap()));
        assert_eq!(
            inspect(&token),
            Err(Malformed::MissingField("TLS.sig").into())
        );
    }
}
