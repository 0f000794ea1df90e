//! ICE servers (STUN and TURN) as the server hands them to clients, and the short-lived TURN
//! credentials it mints for them.
//!
//! The credentials follow the scheme coturn implements for `use-auth-secret` /
//! `static-auth-secret` (the "TURN REST API" draft, draft-uberti-behave-turn-rest-00): the
//! username is `<expiry-unix-seconds>:<user_id>` and the password is
//! `base64(HMAC-SHA1(secret, username))`. coturn recomputes the password from the shared secret
//! and refuses a username whose expiry has passed, so tincan-server and coturn share nothing but
//! the secret, and a leaked credential is worth at most one TTL.
//!
//! Only the server mints; clients only carry [`IceServer`]s to their WebRTC engines.

use crate::ids::UserId;
use crate::sensitive::{SecretKey, REDACTED};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Default lifetime of a TURN credential (`--turn-ttl`): an hour, as in the draft's example.
pub const DEFAULT_TURN_TTL_SECS: u32 = 3600;

/// One ICE server, in the shape of the W3C `RTCIceServer` dictionary, so the web engine can pass
/// it to `RTCPeerConnection` unchanged: `{"urls":[...],"username":"...","credential":"..."}`.
/// STUN servers carry no `username` / `credential` (omitted from the JSON).
///
/// The credential is short-lived but a secret while it lives: `Debug` prints `<redacted>` for it
/// (the derived `Debug` of every message holding one goes through here), while serialization
/// writes it, because the client needs it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &self.credential.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl IceServer {
    /// A STUN server entry (no credentials).
    pub fn stun(urls: Vec<String>) -> Self {
        Self {
            urls,
            username: None,
            credential: None,
        }
    }

    /// Does any of its URLs name a TURN server (`turn:` or `turns:`)?
    pub fn is_turn(&self) -> bool {
        self.urls.iter().any(|u| {
            let u = u.to_ascii_lowercase();
            u.starts_with("turn:") || u.starts_with("turns:")
        })
    }
}

/// The ICE servers a switchboard hands out at sign-in and before the credentials expire. The
/// server builds it from `--stun-url`, `--turn-url`, `--turn-secret-file` and `--turn-ttl`
/// (validated there); the default is empty: nothing is sent and nothing is scheduled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceConfig {
    /// `stun:` URLs, given without credentials.
    pub stun_urls: Vec<String>,
    /// `turn:` / `turns:` URLs; used only together with `turn_secret`.
    pub turn_urls: Vec<String>,
    /// The secret shared with coturn (`static-auth-secret`). Never logged.
    pub turn_secret: Option<SecretKey>,
    /// How long a minted credential is valid, seconds.
    pub turn_ttl_secs: u32,
}

/// What a client is told: the list, and when its TURN credentials expire (unix seconds; `None`
/// when the list holds no TURN server, so nothing will be refreshed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IssuedIceServers {
    pub ice_servers: Vec<IceServer>,
    pub expires_at: Option<u64>,
}

impl IceConfig {
    /// Does this configuration mint TURN credentials (and so need refreshes)?
    pub fn has_turn(&self) -> bool {
        !self.turn_urls.is_empty() && self.turn_secret.is_some()
    }

    /// Is there anything at all to tell a client?
    pub fn is_empty(&self) -> bool {
        self.stun_urls.is_empty() && !self.has_turn()
    }

    /// The servers for `user`, with TURN credentials valid until `now_unix_secs + turn_ttl_secs`.
    pub fn issue(&self, user: &UserId, now_unix_secs: u64) -> IssuedIceServers {
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer::stun(self.stun_urls.clone()));
        }
        let mut expires_at = None;
        if let (false, Some(secret)) = (self.turn_urls.is_empty(), &self.turn_secret) {
            let expiry = now_unix_secs.saturating_add(u64::from(self.turn_ttl_secs));
            let username = turn_username(expiry, user);
            let credential = turn_password(secret.expose().as_bytes(), &username);
            ice_servers.push(IceServer {
                urls: self.turn_urls.clone(),
                username: Some(username),
                credential: Some(credential),
            });
            expires_at = Some(expiry);
        }
        IssuedIceServers {
            ice_servers,
            expires_at,
        }
    }

    /// How long after issuing a list the client should get the next one, milliseconds: at three
    /// quarters of the TTL, so a quarter of it (15 min by default) is left for the frame to
    /// arrive and for a call being set up right then to use the old one.
    pub fn refresh_after_ms(&self) -> u64 {
        u64::from(self.turn_ttl_secs.max(1)) * 750
    }
}

/// The TURN REST username: `<expiry-unix-seconds>:<user_id>` (coturn reads the number before
/// the first `:` as the expiry).
pub fn turn_username(expiry_unix_secs: u64, user: &UserId) -> String {
    format!("{expiry_unix_secs}:{}", user.as_str())
}

/// The TURN REST password: `base64(HMAC-SHA1(secret, username))`, standard alphabet with
/// padding, as coturn computes it.
pub fn turn_password(secret: &[u8], username: &str) -> String {
    // HMAC accepts a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> IceConfig {
        IceConfig {
            stun_urls: vec!["stun:stun.example.org:3478".into()],
            turn_urls: vec![
                "turn:turn.example.org:3478?transport=udp".into(),
                "turns:turn.example.org:443?transport=tcp".into(),
            ],
            turn_secret: Some(SecretKey::new("north-wind-7".into())),
            turn_ttl_secs: 3600,
        }
    }

    /// Vectors computed independently with Python:
    /// `base64.b64encode(hmac.new(b"north-wind-7", u.encode(), hashlib.sha1).digest())`.
    #[test]
    fn password_matches_an_independent_hmac_sha1() {
        assert_eq!(
            turn_password(b"north-wind-7", "1767225600:alice"),
            "RCFjnDk41/+XOKZM3oRa9iepm4M="
        );
        assert_eq!(
            turn_password(b"north-wind-7", "1764003600:bob"),
            "QBtYN3gtcd9Vi6LhUJnsbiMc/x4="
        );
    }

    #[test]
    fn issue_mints_expiry_user_credentials() {
        let alice = UserId::new("alice").unwrap();
        let got = config().issue(&alice, 1_767_222_000);
        assert_eq!(got.expires_at, Some(1_767_225_600));
        assert_eq!(got.ice_servers.len(), 2);
        assert_eq!(got.ice_servers[0], IceServer::stun(config().stun_urls));
        let turn = &got.ice_servers[1];
        assert!(turn.is_turn() && !got.ice_servers[0].is_turn());
        assert_eq!(turn.urls, config().turn_urls);
        assert_eq!(turn.username.as_deref(), Some("1767225600:alice"));
        assert_eq!(
            turn.credential.as_deref(),
            Some("RCFjnDk41/+XOKZM3oRa9iepm4M=")
        );
    }

    #[test]
    fn nothing_configured_issues_nothing() {
        let c = IceConfig::default();
        assert!(c.is_empty() && !c.has_turn());
        let got = c.issue(&UserId::new("a").unwrap(), 1);
        assert_eq!(got, IssuedIceServers::default());
        // TURN URLs without a secret mint nothing (the server refuses that at startup anyway).
        let c = IceConfig {
            turn_secret: None,
            stun_urls: vec![],
            ..config()
        };
        assert!(c.is_empty());
    }

    #[test]
    fn serializes_like_rtc_ice_server_and_hides_the_credential_from_debug() {
        let got = config().issue(&UserId::new("alice").unwrap(), 1_767_222_000);
        let json = serde_json::to_string(&got.ice_servers).unwrap();
        assert_eq!(
            json,
            r#"[{"urls":["stun:stun.example.org:3478"]},{"urls":["turn:turn.example.org:3478?transport=udp","turns:turn.example.org:443?transport=tcp"],"username":"1767225600:alice","credential":"RCFjnDk41/+XOKZM3oRa9iepm4M="}]"#
        );
        let back: Vec<IceServer> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, got.ice_servers);
        let dbg = format!("{got:?}");
        assert!(!dbg.contains("RCFjnDk41"), "{dbg}");
        assert!(dbg.contains("<redacted>") && dbg.contains("1767225600:alice"));
        assert!(!format!("{:?}", config()).contains("north-wind-7"));
    }

    #[test]
    fn refresh_comes_at_three_quarters_of_the_ttl() {
        assert_eq!(config().refresh_after_ms(), 2_700_000);
        let short = IceConfig {
            turn_ttl_secs: 4,
            ..config()
        };
        assert_eq!(short.refresh_after_ms(), 3000);
    }
}
