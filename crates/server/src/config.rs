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

/// Bytes queued per connection before relayed signals to it are refused, by default: room for
/// a dozen full offers (16 KiB each) or a thousand ICE candidates, far more than a call's setup.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 256 * 1024;
/// Seconds without write progress (while frames wait) before a reader counts as stopped.
pub const DEFAULT_SEND_STALL_SECS: u64 = 5;
/// Seconds a shutdown waits for every connection's closing handshake.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 5;

/// Connections one client address may hold, by default (a household or an office behind one NAT
/// address: dozens of people, each with a device or two).
pub const DEFAULT_MAX_CONNS_PER_IP: usize = 256;
/// Connections one client address may hold that have not signed in yet, by default: a browser
/// loading the UI opens about six, an app reconnecting one; far fewer than an attacker needs.
pub const DEFAULT_MAX_UNAUTH_PER_IP: usize = 32;
/// Seconds a client gets to send a request's headers, by default.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Seconds a connection that has not become a WebSocket may sit idle, by default.
pub const DEFAULT_UPGRADE_TIMEOUT_SECS: u64 = 30;
/// Longest UserSig lifetime (`TLS.expire`) accepted at login, by default: 7 days. The desktop app
/// mints sigs of minutes; a sig minted by an operator's own issuer for longer is refused with
/// `user_sig_too_long`, so a leaked sig cannot be used for months.
pub const DEFAULT_MAX_SIG_LIFETIME_SECS: u64 = 7 * 24 * 3600;

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
    /// Bytes queued for one connection past which `signal`s relayed to it are refused to their
    /// sender (`peer_backlogged`); the connection itself stays up. Frames the server owes the
    /// client have headroom up to [`ServerConfig::send_queue_hard_bytes`] (twice this).
    pub send_queue_bytes: usize,
    /// A connection whose writer makes no progress for this long while frames are queued has
    /// stopped reading: its queue is dropped and it is closed with `slow_consumer` (4002).
    pub send_stall: Duration,
    /// On SIGTERM / [`crate::ServerHandle::shutdown`], how long connections get to receive their
    /// 1001 close frame and finish the closing handshake before the server stops anyway.
    pub shutdown_grace: Duration,
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
    /// Connections (accepted, upgraded or not) one client address may hold; see
    /// [`crate::admission`]. Behind a trusted proxy, the forwarded address.
    pub max_conns_per_ip: usize,
    /// Connections one client address may hold that have not signed in.
    pub max_unauth_per_ip: usize,
    /// A request's headers must arrive within this (from the connection's start or the request's
    /// first byte), or the connection is closed.
    pub header_timeout: Duration,
    /// A connection that has not upgraded to a WebSocket is closed after this long with nothing
    /// written to it.
    pub upgrade_timeout: Duration,
    /// Extra `Origin`s allowed to open `/ws` (besides none, the app's own and the server's own;
    /// `*` allows any). See [`crate::admission::origin_allowed`].
    pub allowed_origins: Vec<String>,
    /// Logins with a UserSig that lives longer than this (its `expire`, seconds) are refused.
    pub max_sig_lifetime_secs: u64,
    /// Answer the desktop app's proof-of-identity challenge (see [`crate::challenge`]): only the
    /// app's embedded server sets this.
    pub answer_app_challenge: bool,
    /// Keep missed calls in a SQLite file here (see [`crate::store`]), so they survive a restart;
    /// `None` keeps them in memory only. The `tincan-server` binary sets one by default; a server
    /// embedded in another program (the desktop app, tests) chooses.
    pub data_dir: Option<PathBuf>,
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
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            send_stall: Duration::from_secs(DEFAULT_SEND_STALL_SECS),
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECS),
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
            data_dir: None,
            max_conns_per_ip: DEFAULT_MAX_CONNS_PER_IP,
            max_unauth_per_ip: DEFAULT_MAX_UNAUTH_PER_IP,
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            upgrade_timeout: Duration::from_secs(DEFAULT_UPGRADE_TIMEOUT_SECS),
            allowed_origins: Vec::new(),
            max_sig_lifetime_secs: DEFAULT_MAX_SIG_LIFETIME_SECS,
            answer_app_challenge: false,
        }
    }

    /// Past this many queued bytes a connection is closed as a slow consumer even if it is still
    /// reading a little: twice the relay budget, so the server's own frames always have headroom.
    pub fn send_queue_hard_bytes(&self) -> usize {
        self.send_queue_bytes.saturating_mul(2)
    }

    /// Sets the soft frame limit (and the hard one, at four times it).
    pub fn with_max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self.hard_frame_bytes = n.saturating_mul(4);
        self.switchboard.max_frame_bytes = u32::try_from(n).unwrap_or(u32::MAX);
        self
    }
}
