//! STUN / TURN settings of `tincan-server serve`: `--stun-url`, `--turn-url`, `--turn-secret-file`
//! and `--turn-ttl`, checked once at startup into the switchboard's [`IceConfig`].
//!
//! The server does not relay media itself. It mints short-lived credentials for a TURN server
//! run next to it (coturn with `use-auth-secret` and the same `static-auth-secret`; README,
//! "TURN (coturn) next to tincan-server") and hands them to each signed-in client
//! (`tincan_proto::ice`). The shared secret is read from a file or `$TINCAN_TURN_SECRET`, never
//! from argv, where any user of the machine could read it in `ps`.
//!
//! Mistakes are refused at startup with a typed error rather than found in the field when the
//! first call through NAT fails: a `turn:` URL without a secret, an unknown scheme, a URL with
//! credentials or a path in it, a transport other than `udp` / `tcp`.

use clap::Args;
use std::path::PathBuf;
use tincan_proto::ice::DEFAULT_TURN_TTL_SECS;
use tincan_proto::{IceConfig, SecretKey};

/// The environment variable that can carry the TURN secret (when no `--turn-secret-file`).
pub const TURN_SECRET_ENV: &str = "TINCAN_TURN_SECRET";

/// Shortest accepted `--turn-ttl`: shorter and the refresh (at 3/4 of it) would come every
/// second or so per connection.
pub const MIN_TURN_TTL_SECS: u32 = 4;
/// Longest accepted `--turn-ttl` (a day): a leaked credential should not be good for longer.
pub const MAX_TURN_TTL_SECS: u32 = 24 * 3600;

/// The command-line flags (flattened into `serve`).
#[derive(Debug, Clone, Default, Args)]
pub struct TurnArgs {
    /// Tell clients to use this STUN server (`stun:host[:port]`); repeatable. Sent without
    /// credentials.
    #[arg(
        long = "stun-url",
        value_name = "URL",
        env = "TINCAN_STUN_URLS",
        value_delimiter = ','
    )]
    pub stun_urls: Vec<String>,
    /// Tell clients to use this TURN server, with credentials minted per user
    /// (`turn:host[:port][?transport=udp|tcp]`, `turns:host:443?transport=tcp`); repeatable.
    /// Needs --turn-secret-file or $TINCAN_TURN_SECRET.
    #[arg(
        long = "turn-url",
        value_name = "URL",
        env = "TINCAN_TURN_URLS",
        value_delimiter = ','
    )]
    pub turn_urls: Vec<String>,
    /// Read the secret shared with the TURN server (coturn's `static-auth-secret`) from this
    /// file (trailing whitespace ignored). Otherwise $TINCAN_TURN_SECRET.
    #[arg(
        long,
        value_name = "FILE",
        env = "TINCAN_TURN_SECRET_FILE",
        allow_hyphen_values = true
    )]
    pub turn_secret_file: Option<PathBuf>,
    /// How long a minted TURN credential is valid, seconds (4 to 86400); clients get fresh ones
    /// at 3/4 of it.
    #[arg(long = "turn-ttl", value_name = "SECS", env = "TINCAN_TURN_TTL", default_value_t = DEFAULT_TURN_TTL_SECS)]
    pub turn_ttl_secs: u32,
}

/// Why the STUN / TURN settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum TurnConfigError {
    #[error("{flag} {url:?}: the scheme must be {expected}")]
    BadScheme {
        flag: &'static str,
        url: String,
        expected: &'static str,
    },
    #[error("{flag} {url:?}: {why}")]
    BadUrl {
        flag: &'static str,
        url: String,
        why: &'static str,
    },
    #[error(
        "--turn-url needs the secret shared with the TURN server: pass --turn-secret-file <file> \
         or set {TURN_SECRET_ENV} (the secret is never read from the command line)"
    )]
    NoSecret,
    #[error("--turn-secret-file is given but no --turn-url: the secret would not be used")]
    SecretWithoutUrl,
    #[error("cannot read the TURN secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TURN secret is empty")]
    EmptySecret,
    #[error("--turn-ttl {0}: must be between {MIN_TURN_TTL_SECS} and {MAX_TURN_TTL_SECS} seconds")]
    Ttl(u32),
}

/// Which flag a URL came from: each takes its own schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stun,
    Turn,
}

impl TurnArgs {
    /// Checks the flags and reads the secret (from the file, else `secret_env`, the value of
    /// $TINCAN_TURN_SECRET, passed in so tests need not touch the process environment).
    pub fn build(&self, secret_env: Option<String>) -> Result<IceConfig, TurnConfigError> {
        for url in &self.stun_urls {
            check_url(url, Kind::Stun)?;
        }
        for url in &self.turn_urls {
            check_url(url, Kind::Turn)?;
        }
        if !(MIN_TURN_TTL_SECS..=MAX_TURN_TTL_SECS).contains(&self.turn_ttl_secs) {
            return Err(TurnConfigError::Ttl(self.turn_ttl_secs));
        }
        let turn_secret = if self.turn_urls.is_empty() {
            if self.turn_secret_file.is_some() {
                return Err(TurnConfigError::SecretWithoutUrl);
            }
            // A $TINCAN_TURN_SECRET in the environment without --turn-url is simply unused.
            None
        } else {
            let raw = match &self.turn_secret_file {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|source| TurnConfigError::SecretFile {
                        path: path.clone(),
                        source,
                    })?
                }
                None => secret_env.ok_or(TurnConfigError::NoSecret)?,
            };
            let secret = raw.trim_end().to_owned();
            if secret.is_empty() {
                return Err(TurnConfigError::EmptySecret);
            }
            Some(SecretKey::new(secret))
        };
        Ok(IceConfig {
            stun_urls: self.stun_urls.clone(),
            turn_urls: self.turn_urls.clone(),
            turn_secret,
            turn_ttl_secs: self.turn_ttl_secs,
        })
    }
}

/// RFC 7064 / 7065 URIs: `stun:` / `stuns:` host [":" port], `turn:` / `turns:` host [":" port]
/// ["?transport=" udp|tcp]. No user info, path or other query: an engine would ignore or
/// misread them.
fn check_url(url: &str, kind: Kind) -> Result<(), TurnConfigError> {
    let (flag, expected, schemes): (_, _, &[&str]) = match kind {
        Kind::Stun => ("--stun-url", "stun: or stuns:", &["stun", "stuns"]),
        Kind::Turn => ("--turn-url", "turn: or turns:", &["turn", "turns"]),
    };
    let bad = |why| TurnConfigError::BadUrl {
        flag,
        url: url.to_owned(),
        why,
    };
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(TurnConfigError::BadScheme {
            flag,
            url: url.to_owned(),
            expected,
        });
    };
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(TurnConfigError::BadScheme {
            flag,
            url: url.to_owned(),
            expected,
        });
    }
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if authority.starts_with("//") {
        return Err(bad(
            "no \"//\" after the scheme (turn:host:3478, not turn://host:3478)",
        ));
    }
    if authority.contains(['@', '/', ' ', '\t', '#']) {
        return Err(bad(
            "only host[:port] may follow the scheme (no user, password or path)",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(bad("an IPv6 address needs its closing ']'"));
        };
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None => return Err(bad("junk after the IPv6 address")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is missing"));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
    }
    if let Some(q) = query {
        if kind == Kind::Stun {
            return Err(bad("a STUN URL takes no query"));
        }
        let transport = q
            .strip_prefix("transport=")
            .ok_or_else(|| bad("the only query a TURN URL takes is ?transport=udp|tcp"))?;
        match (scheme.as_str(), transport.to_ascii_lowercase().as_str()) {
            ("turn", "udp" | "tcp") | ("turns", "tcp") => {}
            ("turns", "udp") => {
                return Err(bad(
                    "turns: over UDP (DTLS) is not supported by browsers; use ?transport=tcp",
                ))
            }
            _ => return Err(bad("the transport must be udp or tcp")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(stun: &[&str], turn: &[&str]) -> TurnArgs {
        TurnArgs {
            stun_urls: stun.iter().map(|s| s.to_string()).collect(),
            turn_urls: turn.iter().map(|s| s.to_string()).collect(),
            turn_secret_file: None,
            turn_ttl_secs: DEFAULT_TURN_TTL_SECS,
        }
    }

    #[test]
    fn nothing_configured_is_an_empty_config() {
        let c = args(&[], &[]).build(Some("ignored".into())).unwrap();
        assert_eq!(
            c,
            IceConfig {
                turn_ttl_secs: DEFAULT_TURN_TTL_SECS,
                ..IceConfig::default()
            }
        );
        assert!(c.is_empty());
    }

    #[test]
    fn good_urls_are_taken() {
        let c = args(
            &[
                "stun:turn.example.org",
                "stun:[2001:db8::1]:3478",
                "stuns:h:5349",
            ],
            &[
                "turn:turn.example.org:3478?transport=udp",
                "turn:198.51.100.7:3478?transport=tcp",
                "turns:turn.example.org:443?transport=tcp",
                "TURN:turn.example.org",
            ],
        )
        .build(Some("s3cret\n".into()))
        .unwrap();
        assert!(c.has_turn());
        assert_eq!(c.turn_secret.as_ref().unwrap().expose(), "s3cret");
    }

    #[test]
    fn a_turn_url_without_a_secret_is_refused() {
        let e = args(&[], &["turn:h:3478"]).build(None).unwrap_err();
        assert!(matches!(e, TurnConfigError::NoSecret), "{e}");
        let e = args(&[], &["turn:h:3478"])
            .build(Some(" \n".into()))
            .unwrap_err();
        assert!(matches!(e, TurnConfigError::EmptySecret), "{e}");
        let mut a = args(&[], &[]);
        a.turn_secret_file = Some("/nonexistent".into());
        assert!(matches!(
            a.build(None).unwrap_err(),
            TurnConfigError::SecretWithoutUrl
        ));
        let mut a = args(&[], &["turn:h"]);
        a.turn_secret_file = Some("/nonexistent/turn-secret".into());
        assert!(matches!(
            a.build(None).unwrap_err(),
            TurnConfigError::SecretFile { .. }
        ));
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let scheme = |stun: &[&str], turn: &[&str]| {
            matches!(
                args(stun, turn).build(Some("s".into())),
                Err(TurnConfigError::BadScheme { .. })
            )
        };
        assert!(scheme(&[], &["http://h"]));
        assert!(scheme(&[], &["stun:h"]));
        assert!(scheme(&["turn:h"], &[]));
        assert!(scheme(&["h:3478"], &[]));
        assert!(scheme(&["nocolon"], &[]));
        for bad in [
            "turn://h:3478",
            "turn:user:pw@h:3478",
            "turn:h:3478/path",
            "turn::3478",
            "turn:h:0",
            "turn:h:99999",
            "turn:h:x",
            "turn:h?transport=sctp",
            "turn:h?foo=bar",
            "turns:h:443?transport=udp",
            "turn:[2001:db8::1",
        ] {
            let e = args(&[], &[bad]).build(Some("s".into())).unwrap_err();
            assert!(matches!(e, TurnConfigError::BadUrl { .. }), "{bad}: {e}");
        }
        let e = args(&["stun:h?transport=udp"], &[])
            .build(None)
            .unwrap_err();
        assert!(matches!(e, TurnConfigError::BadUrl { .. }));
    }

    #[test]
    fn the_ttl_is_bounded() {
        for (ttl, ok) in [(3, false), (4, true), (86_400, true), (86_401, false)] {
            let mut a = args(&[], &["turn:h"]);
            a.turn_ttl_secs = ttl;
            assert_eq!(a.build(Some("s".into())).is_ok(), ok, "{ttl}");
        }
    }

    #[test]
    fn errors_never_show_the_secret() {
        let c = args(&[], &["turn:h"])
            .build(Some("hunter2".into()))
            .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
