//! Server settings. Every limit that protects the server from a client lives here, with a default
//! sized for tens of thousands of signed-in sessions on a small machine.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tincan_proto::switchboard;
use tincan_proto::SecretKey;

/// Client frames per second per connection, by default: a call's setup (invite, offer, a few
/// dozen ICE candidates) fits in the burst many times over, so a real call is never slowed.
pub const DEFAULT_RATE_PER_SEC: u32 = 100;
/// Frames per connection allowed in one burst, by default.
pub const DEFAULT_RATE_BURST: u32 = 200;

/// Everything a server needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub sdk_app_id: u64,
    /// Signs and verifies UserSigs; never logged (it is `Sensitive`).
    pub secret: SecretKey,
    /// Call rules: single-session, ring timeouts, device limits.
    pub switchboard: switchboard::Config,
    /// Frames larger than this get a `frame_too_large` error; the connection stays up.
    pub max_frame_bytes: usize,
    /// Frames larger than this end the connection (the WebSocket layer will not buffer them).
    pub hard_frame_bytes: usize,
    /// Outgoing frames queued per connection; a reader that falls further behind is disconnected.
    pub send_queue: usize,
    /// How often the server pings an idle client.
    pub heartbeat: Duration,
    /// A connection that says nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A connection must log in within this time.
    pub login_timeout: Duration,
    /// Failed logins allowed on one connection before it is closed.
    pub max_failed_logins: u32,
    /// Open WebSocket connections at most (signed in or not); more get HTTP 503.
    pub max_connections: usize,
    /// Client frames per second, with `rate_burst` allowed in a burst.
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    /// Serve the browser UI from this folder at `/`.
    pub ui_dir: Option<PathBuf>,
    /// Let anyone get a UserSig for any user ID at `/dev/usersig` (local demos only).
    pub dev_issue_sigs: bool,
    /// Serve https / wss with this certificate and key (see [`crate::tls`]); `None` is plain TCP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// How often the certificate files are checked for a change (SIGHUP reloads at once).
    pub tls_reload_every: Duration,
    /// Peers whose `X-Forwarded-For` is believed (see [`crate::proxy`]).
    pub trusted_proxies: Vec<IpAddr>,
}

impl ServerConfig {
    /// A configuration with the default limits.
    pub fn new(listen: SocketAddr, sdk_app_id: u64, secret: SecretKey) -> Self {
        let max_frame_bytes = 64 * 1024;
        Self {
            listen,
            sdk_app_id,
            secret,
            switchboard: switchboard::Config {
                max_frame_bytes: max_frame_bytes as u32,
                ..switchboard::Config::default()
            },
            max_frame_bytes,
            hard_frame_bytes: 4 * max_frame_bytes,
            send_queue: 64,
            heartbeat: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(75),
            login_timeout: Duration::from_secs(10),
            max_failed_logins: 3,
            max_connections: 60_000,
            rate_per_sec: DEFAULT_RATE_PER_SEC,
            rate_burst: DEFAULT_RATE_BURST,
            ui_dir: None,
            dev_issue_sigs: false,
            tls: None,
            tls_reload_every: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
        }
    }

    /// Sets the soft frame limit (and the hard one, at four times it).
    pub fn with_max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self.hard_frame_bytes = n.saturating_mul(4);
        self.switchboard.max_frame_bytes = u32::try_from(n).unwrap_or(u32::MAX);
        self
    }
}
