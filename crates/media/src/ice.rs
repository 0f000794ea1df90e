//! STUN / TURN servers as webrtcbin takes them, from the W3C `RTCIceServer` shape the server
//! issues and Settings keep (`urls` like `stun:host:port`, `turn:host:port?transport=udp`,
//! `turns:host:443?transport=tcp`, plus `username` / `credential`).
//!
//! What GStreamer 1.22 (`gst-libs/gst/webrtc/nice/nice.c`) and libnice 0.1.21 want, and why each
//! rule below exists:
//! - webrtcbin parses the URL with `gst_uri_from_string_escaped` and splits the user info at its
//!   **first** `:`, then percent-decodes user and password. REST-API usernames are
//!   `<expiry>:<user_id>` and passwords are base64 (`/`, `+`, `=`), so both are percent-encoded
//!   here (every byte but RFC 3986's unreserved ones).
//! - It needs `//` (without it GstUri parses no host), a user and a password, and no query key
//!   but `transport` (`udp` / `tcp`).
//! - `turn://host` without `transport` makes two relays (UDP and TCP); the W3C meaning of a bare
//!   `turn:` URL is UDP, so `?transport=udp` is written out.
//! - webrtcbin takes **one** STUN server (`stun-server`): the first `stun:` URL of the list wins
//!   (the server-issued list comes first, see [`IceUrls::push_server`]'s callers), the others are
//!   dropped with a log line.
//! - libnice refuses a ninth relay per component; the list is capped at [`MAX_RELAYS`].
//! - `turns:` is TURN over TLS in a browser. libnice 0.1.21 has no TLS client for TURN: with
//!   webrtcbin's RFC 5245 mode its `TURN_TLS` relay is plain TURN over TCP to the `turns:` port
//!   (its only "TLS" socket is the pseudo-SSL header of Google's old dialect). So the native engine
//!   dials a `turns:` server as **TURN over TCP** to the same host and port (`turn://…?transport=tcp`)
//!   and says so: coturn accepts plain TCP on its TLS port too, so the route still works where
//!   only TCP 443 is open, but nothing there is TLS-protected except the media itself (SRTP) and
//!   the password (TURN never sends it, only an HMAC with it). The route reads `tcp`, never `tls`.

use std::fmt;

/// libnice's cap (`NICE_CANDIDATE_MAX_TURN_SERVERS`): more are refused with a warning.
pub const MAX_RELAYS: usize = 8;

/// How a TURN relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// `turns:` in the list; dialled as plain TCP by this engine (see the module docs).
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Why a URL was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IceUrlError {
    #[error("not a stun:, turn: or turns: URL")]
    Scheme,
    #[error("no host")]
    NoHost,
    #[error("the port is not 1-65535")]
    Port,
    #[error("unknown query (only transport=udp or transport=tcp)")]
    Query,
    #[error("a TURN server needs a username and a credential")]
    NoCredentials,
}

/// One URL, parsed (RFC 7064 / 7065).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub turn: bool,
    pub secure: bool,
    /// As written; an IPv6 address keeps its brackets.
    pub host: String,
    pub port: u16,
    /// `?transport=`, if given.
    pub transport: Option<Transport>,
}

/// Parses `stun:`, `stuns:`, `turn:` or `turns:` URLs (a `//` after the scheme is tolerated).
pub fn parse_url(url: &str) -> Result<ParsedUrl, IceUrlError> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':').ok_or(IceUrlError::Scheme)?;
    let (turn, secure) = match scheme.to_ascii_lowercase().as_str() {
        "stun" => (false, false),
        "stuns" => (false, true),
        "turn" => (true, false),
        "turns" => (true, true),
        _ => return Err(IceUrlError::Scheme),
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let transport = match query {
        None | Some("") => None,
        Some(q) => match q.to_ascii_lowercase().as_str() {
            "transport=udp" if turn => Some(Transport::Udp),
            "transport=tcp" if turn => Some(Transport::Tcp),
            _ => return Err(IceUrlError::Query),
        },
    };
    // User info in the URL itself is not the W3C shape; the credential fields carry it.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(IceUrlError::NoHost)?;
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let host_ok = host.len() > 2 || (!host.starts_with('[') && !host.is_empty());
    if !host_ok
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
    {
        return Err(IceUrlError::NoHost);
    }
    let port = match port {
        None => {
            if secure {
                5349
            } else {
                3478
            }
        }
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(IceUrlError::Port)?,
    };
    Ok(ParsedUrl {
        turn,
        secure,
        host,
        port,
        transport,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One TURN relay as webrtcbin's `add-turn-server` takes it. `Debug` / `Display` hide the
/// credentials (they go to logs).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnUrl {
    /// `turn://user:pass@host:port?transport=udp|tcp`: carries the credential, never log it.
    pub url: String,
    /// As listed (`Tls` for a `turns:` URL, dialled over TCP).
    pub listed: Transport,
    /// `host:port` and transport, for logs.
    pub display: String,
}

impl fmt::Debug for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Display for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// The servers of one call in webrtcbin's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceUrls {
    /// `stun://host:port`: the first STUN URL listed.
    pub stun: Option<String>,
    pub turn: Vec<TurnUrl>,
    /// URLs not used, with why (for a log line; no credentials in them).
    pub skipped: Vec<(String, String)>,
}

impl IceUrls {
    /// Adds one `RTCIceServer` (its URLs and credentials). Call it for the server-issued ones
    /// first, then the user's: the first STUN URL wins, and relays past [`MAX_RELAYS`] are dropped.
    pub fn push_server(
        &mut self,
        urls: &[String],
        username: Option<&str>,
        credential: Option<&str>,
    ) {
        for url in urls {
            if let Err(e) = self.push_url(url, username, credential) {
                self.skipped.push((redact(url), e.to_string()));
            }
        }
    }

    fn push_url(
        &mut self,
        url: &str,
        username: Option<&str>,
        credential: Option<&str>,
    ) -> Result<(), IceUrlError> {
        let p = parse_url(url)?;
        if !p.turn {
            if p.secure {
                // libnice has no STUN over TLS.
                return Err(IceUrlError::Scheme);
            }
            let stun = format!("stun://{}:{}", p.host, p.port);
            match &self.stun {
                None => self.stun = Some(stun),
                Some(first) if *first == stun => {}
                Some(_) => {
                    self.skipped.push((
                        url.to_owned(),
                        "webrtcbin takes one STUN server; the first listed is used".into(),
                    ));
                }
            }
            return Ok(());
        }
        let (Some(user), Some(pass)) = (username, credential) else {
            return Err(IceUrlError::NoCredentials);
        };
        let listed = match (p.secure, p.transport) {
            (true, _) => Transport::Tls,
            (false, Some(Transport::Tcp)) => Transport::Tcp,
            (false, _) => Transport::Udp,
        };
        let dialled = if listed == Transport::Udp {
            "udp"
        } else {
            "tcp"
        };
        let hostport = format!("{}:{}", p.host, p.port);
        let turn = TurnUrl {
            url: format!(
                "turn://{}:{}@{hostport}?transport={dialled}",
                percent_encode(user),
                percent_encode(pass)
            ),
            listed,
            display: format!("{}:{hostport} ({dialled})", listed.as_str()),
        };
        if self.turn.iter().any(|t| t.url == turn.url) {
            return Ok(());
        }
        if self.turn.len() >= MAX_RELAYS {
            self.skipped
                .push((turn.display, format!("more than {MAX_RELAYS} relays")));
            return Ok(());
        }
        self.turn.push(turn);
        Ok(())
    }
}

/// A URL without any user info, for logs.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => {
            let scheme = scheme_user.split(':').next().unwrap_or("");
            format!("{scheme}:…@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[(&[&str], Option<&str>, Option<&str>)]) -> IceUrls {
        let mut out = IceUrls::default();
        for (u, user, cred) in list {
            let u: Vec<String> = u.iter().map(|s| s.to_string()).collect();
            out.push_server(&u, *user, *cred);
        }
        out
    }

    /// A REST-API credential (coturn's `use-auth-secret`): `<expiry>:<user>` and base64 with
    /// `/`, `+` and `=` — every one of them would move webrtcbin's user/password split or end
    /// the URL's user info if not encoded.
    #[test]
    fn rest_credentials_are_percent_encoded() {
        let got = urls(&[(
            &["turn:turn.example.org:3478?transport=udp"],
            Some("1767225600:alice@example"),
            Some("q+/b=c:d%e f"),
        )]);
        assert_eq!(
            got.turn[0].url,
            "turn://1767225600%3Aalice%40example:q%2B%2Fb%3Dc%3Ad%25e%20f@turn.example.org:3478?transport=udp"
        );
        assert_eq!(got.turn[0].listed, Transport::Udp);
        // The credential never reaches a log line.
        let shown = format!("{:?} {}", got.turn[0], got.turn[0]);
        assert!(
            !shown.contains("q%2B") && !shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn transports_and_defaults() {
        let got = urls(&[(
            &[
                "turn:198.51.100.1",
                "turn:198.51.100.1:3478?transport=tcp",
                "turns:turn.example.org:443?transport=tcp",
                "turns:turn.example.org",
                "turn://[2001:db8::1]:3479",
            ],
            Some("u"),
            Some("p"),
        )]);
        let list: Vec<(&str, Transport)> = got
            .turn
            .iter()
            .map(|t| (t.url.as_str(), t.listed))
            .collect();
        assert_eq!(
            list,
            vec![
                ("turn://u:p@198.51.100.1:3478?transport=udp", Transport::Udp),
                ("turn://u:p@198.51.100.1:3478?transport=tcp", Transport::Tcp),
                // TURN over TLS is dialled as TURN over TCP to the same port (module docs).
                (
                    "turn://u:p@turn.example.org:443?transport=tcp",
                    Transport::Tls
                ),
                (
                    "turn://u:p@turn.example.org:5349?transport=tcp",
                    Transport::Tls
                ),
                (
                    "turn://u:p@[2001:db8::1]:3479?transport=udp",
                    Transport::Udp
                ),
            ]
        );
        assert!(got.skipped.is_empty(), "{:?}", got.skipped);
    }

    #[test]
    fn the_first_stun_server_wins_and_bad_urls_are_skipped() {
        let got = urls(&[
            (&["stun:stun.server.example:3478"], None, None),
            (&["stun:user.example", "stuns:x.example"], None, None),
            (
                &[
                    "turn:t.example?transport=sctp",
                    "turn:t.example:0",
                    "http://x",
                    "turn:",
                ],
                Some("u"),
                Some("p"),
            ),
            (&["turn:t.example"], None, None),
        ]);
        assert_eq!(got.stun.as_deref(), Some("stun://stun.server.example:3478"));
        assert!(got.turn.is_empty());
        let why: Vec<&str> = got.skipped.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(why.len(), 7, "{why:?}");
        assert!(why[0].contains("one STUN server"));
        assert_eq!(
            why.last(),
            Some(&"a TURN server needs a username and a credential")
        );
    }

    #[test]
    fn relays_are_deduplicated_and_capped() {
        let many: Vec<String> = (0..12).map(|i| format!("turn:t{i}.example")).collect();
        let mut got = IceUrls::default();
        got.push_server(&["turn:t0.example".into()], Some("u"), Some("p"));
        got.push_server(&many, Some("u"), Some("p"));
        assert_eq!(got.turn.len(), MAX_RELAYS);
        assert_eq!(got.skipped.len(), 12 - MAX_RELAYS);
    }
}
