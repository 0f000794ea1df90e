//! The `tincan-server` command line: `serve`, `usersig gen`, `usersig verify`.
//!
//! The secret key is read from `TINCAN_SECRET_KEY` or `--secret-key-file`, never from argv, where
//! any user of the machine could read it in `ps`.

use crate::ServerConfig;
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tincan_proto::{SecretKey, UserId, UserSigKey};

/// The environment variable that carries the secret key.
pub const SECRET_ENV: &str = "TINCAN_SECRET_KEY";

/// The longest `--resume-secs`: a held call keeps both users busy, so the hold is bounded.
pub const MAX_RESUME_SECS: u32 = 3600;

#[derive(Debug, Parser)]
#[command(
    name = "tincan-server",
    version,
    about = "tincan signaling server and UserSig tool"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of `serve`'s many options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the signaling server.
    Serve(ServeArgs),
    /// Generate or verify TLSSigAPIv2 UserSigs.
    #[command(subcommand)]
    Usersig(UsersigCommand),
}

#[derive(Debug, Args)]
pub struct SecretArgs {
    /// Read the secret key from this file (trailing whitespace ignored). Otherwise $TINCAN_SECRET_KEY.
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TINCAN_LISTEN", default_value = "127.0.0.1:7480")]
    pub listen: SocketAddr,
    /// The SDKAppID whose UserSigs are accepted.
    #[arg(long, env = "TINCAN_SDKAPPID")]
    pub sdkappid: u64,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// A user signing in again kicks the older session offline (instead of ringing every device).
    #[arg(long)]
    pub single_session: bool,
    /// Frames above this size get a `frame_too_large` error.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Ring timeout when an invite gives none, seconds.
    #[arg(long, default_value_t = 30)]
    pub default_ring_secs: u32,
    /// Longest ring timeout an invite may ask for, seconds.
    #[arg(long, default_value_t = 120)]
    pub max_ring_secs: u32,
    /// How long a connected call is held when a party's connection drops, and how long a
    /// `resume_call` after a restart waits for the peer's, seconds (at most an hour); 0 ends such
    /// calls at once (docs/PROTOCOL.md, "Resume").
    #[arg(long, env = "TINCAN_RESUME_SECS", default_value_t = tincan_proto::switchboard::DEFAULT_RESUME_SECS)]
    pub resume_secs: u32,
    /// Invites one user may place in any 60 s, to anyone (docs/PROTOCOL.md, "Abuse limits").
    #[arg(long, env = "TINCAN_MAX_INVITES_PER_MINUTE", default_value_t = 20)]
    pub max_invites_per_minute: u32,
    /// Invites one caller may send one callee in any --pair-window-secs.
    #[arg(long, env = "TINCAN_MAX_PAIR_INVITES", default_value_t = 10)]
    pub max_pair_invites: u32,
    /// The window of --max-pair-invites, seconds.
    #[arg(long, default_value_t = 300)]
    pub pair_window_secs: u32,
    /// After an unanswered ring, the caller may ring the same callee again once as long as it rang
    /// has passed, and at least this long, seconds (after two unanswered rings in a row); 0 turns
    /// this cooldown off.
    #[arg(long, default_value_t = 5)]
    pub min_recall_secs: u32,
    /// Ping interval, seconds.
    #[arg(long, default_value_t = 25)]
    pub heartbeat_secs: u64,
    /// Close connections silent for this long, seconds.
    #[arg(long, default_value_t = 75)]
    pub idle_timeout_secs: u64,
    /// Open connections at most.
    #[arg(long, default_value_t = 60_000)]
    pub max_connections: usize,
    /// Client frames per second per connection (a token bucket; over it, a frame is dropped with
    /// `rate_limited`). The default is far above what a call needs (a call's setup is a few dozen
    /// frames), so it never slows a real call; it stops a client that floods.
    #[arg(long, env = "TINCAN_RATE_PER_SEC", default_value_t = crate::config::DEFAULT_RATE_PER_SEC)]
    pub rate_per_sec: u32,
    /// Frames a connection may send at once above --rate-per-sec (the bucket's size).
    #[arg(long, env = "TINCAN_RATE_BURST", default_value_t = crate::config::DEFAULT_RATE_BURST)]
    pub rate_burst: u32,
    /// Bytes queued for one connection past which signals relayed to it are refused to their
    /// sender with `peer_backlogged` (the receiver stays connected). The server's own frames have
    /// headroom up to twice this; past that the connection is closed as a slow consumer.
    #[arg(long, env = "TINCAN_SEND_QUEUE_BYTES", default_value_t = crate::config::DEFAULT_SEND_QUEUE_BYTES)]
    pub send_queue_bytes: usize,
    /// A connection that takes no data for this long while frames wait for it has stopped reading:
    /// it is closed with `slow_consumer` (4002), seconds.
    #[arg(long, default_value_t = crate::config::DEFAULT_SEND_STALL_SECS)]
    pub send_stall_secs: u64,
    /// On SIGTERM / Ctrl-C every connection gets a 1001 `server_shutdown` close frame; the process
    /// waits this long at most for the closing handshakes, then exits, seconds.
    #[arg(long, default_value_t = crate::config::DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,
    /// Serve the browser UI (a trunk `dist` folder) at `/`.
    #[arg(long, value_name = "DIR", allow_hyphen_values = true)]
    pub ui_dir: Option<PathBuf>,
    /// Connections one client address may hold (behind --trusted-proxy: the forwarded address).
    #[arg(long, env = "TINCAN_MAX_CONNS_PER_IP", default_value_t = crate::config::DEFAULT_MAX_CONNS_PER_IP)]
    pub max_conns_per_ip: usize,
    /// Connections one client address may hold that have not signed in yet (TCP connections,
    /// HTTP requests, WebSockets before login); past it, new ones get 429 at once.
    #[arg(long, env = "TINCAN_MAX_UNAUTH_PER_IP", default_value_t = crate::config::DEFAULT_MAX_UNAUTH_PER_IP)]
    pub max_unauth_per_ip: usize,
    /// Seconds a client gets to send a request's headers (slowloris protection).
    #[arg(long, default_value_t = crate::config::DEFAULT_HEADER_TIMEOUT_SECS)]
    pub header_timeout_secs: u64,
    /// Seconds a connection that has not upgraded to a WebSocket may sit idle before it is closed.
    #[arg(long, default_value_t = crate::config::DEFAULT_UPGRADE_TIMEOUT_SECS)]
    pub upgrade_timeout_secs: u64,
    /// Seconds an upgraded WebSocket gets to sign in (send a valid `login`).
    #[arg(long, default_value_t = 10)]
    pub login_timeout_secs: u64,
    /// Also allow WebSockets from pages of this origin (e.g. https://app.example.com); repeatable,
    /// `*` allows any. Always allowed: no Origin (native clients), the desktop app's own
    /// (tauri://localhost, http://tauri.localhost) and this server's own pages (same host).
    #[arg(
        long = "allow-origin",
        value_name = "ORIGIN",
        env = "TINCAN_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    pub allow_origins: Vec<String>,
    /// Refuse logins whose UserSig lives longer than this (its `expire`), seconds (default 7 days).
    #[arg(long, env = "TINCAN_MAX_SIG_LIFETIME", default_value_t = crate::config::DEFAULT_MAX_SIG_LIFETIME_SECS)]
    pub max_sig_lifetime: u64,
    /// DANGEROUS, demos only: hand out a UserSig for any user ID at /dev/usersig.
    #[arg(long)]
    pub dev_issue_sigs: bool,
    /// Serve https/wss with this PEM certificate chain (needs --tls-key). Re-read on SIGHUP and when
    /// the file changes, so a renewal needs no restart.
    #[arg(
        long,
        env = "TINCAN_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        allow_hyphen_values = true
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "TINCAN_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert",
        allow_hyphen_values = true
    )]
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a change, seconds.
    #[arg(long, default_value_t = 10)]
    pub tls_reload_secs: u64,
    /// Believe X-Forwarded-For only from this peer address (a reverse proxy); repeatable.
    #[arg(
        long = "trusted-proxy",
        value_name = "ADDR",
        env = "TINCAN_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpAddr>,
    /// Keep missed calls in a SQLite file (missed-calls.sqlite3) in this folder, so they survive
    /// a restart. Default: $STATE_DIRECTORY (systemd's StateDirectory=), else
    /// $XDG_STATE_HOME/tincan-server, else ~/.local/state/tincan-server.
    #[arg(long, env = "TINCAN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep missed calls in memory only: nothing is written to disk, and a restart forgets them.
    /// Wins over --data-dir.
    #[arg(long)]
    pub memory_only: bool,
    /// Missed calls older than this are dropped, never delivered, seconds (default: 7 days).
    #[arg(long, default_value_t = tincan_proto::switchboard::DEFAULT_MISSED_TTL_MS / 1000)]
    pub missed_ttl_secs: u64,
    /// Missed calls one caller may have waiting across all callees; past it, its own oldest goes.
    #[arg(long, default_value_t = 50)]
    pub missed_per_caller: usize,
    /// Missed calls kept per user (one per caller: calling again replaces the older one).
    #[arg(long, default_value_t = 20)]
    pub missed_per_user: usize,
    /// STUN / TURN servers handed to clients, with short-lived TURN credentials
    /// (`crate::turn`; README, "TURN (coturn) next to tincan-server").
    #[command(flatten)]
    pub turn: crate::turn::TurnArgs,
}

/// Where missed calls are kept when no --data-dir is given: systemd's `StateDirectory=`, else the
/// XDG state folder (they are state: worth keeping, not worth backing up).
pub fn default_data_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = nonempty("STATE_DIRECTORY") {
        // systemd may list several, separated by ':'; the first is ours.
        let first = d.to_string_lossy().split(':').next().map(PathBuf::from);
        return first;
    }
    if let Some(d) = nonempty("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return Some(d.join("tincan-server"));
    }
    nonempty("HOME").map(|h| h.join(".local/state/tincan-server"))
}

#[derive(Debug, Subcommand)]
pub enum UsersigCommand {
    /// Print a UserSig on one line.
    Gen(GenArgs),
    /// Read a UserSig from stdin; exit 0 if valid, 1 with the reason on stderr if not.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    #[arg(long)]
    pub sdkappid: u64,
    /// The user ID. It may begin with '-' (`--user -abc` is a valid ID, not an option).
    #[arg(long, allow_hyphen_values = true)]
    pub user: UserId,
    /// Lifetime, seconds.
    #[arg(long)]
    pub expire: u64,
    /// Issue time, unix seconds (default: now).
    #[arg(long)]
    pub time: Option<u64>,
    /// Userbuf bytes, hex.
    #[arg(long, value_name = "HEX")]
    pub userbuf_hex: Option<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub sdkappid: u64,
    /// The user ID the sig must be for (it may begin with '-').
    #[arg(long, allow_hyphen_values = true)]
    pub user: String,
    /// Check expiry against this unix time (default: now).
    #[arg(long)]
    pub now: Option<u64>,
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "no secret key: set {SECRET_ENV}=<key> in the environment or pass --secret-key-file <file> \
         (the key is never read from the command line)"
    )]
    NoSecret,
    #[error("cannot read secret key file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secret key is empty")]
    EmptySecret,
    #[error("--userbuf-hex is not valid hex: {0}")]
    Hex(#[from] hex::FromHexError),
    #[error("cannot read the UserSig from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("invalid UserSig: {0}")]
    Invalid(#[from] tincan_proto::UserSigError),
    #[error(
        "cannot make this UserSig: {0}; a server would refuse it (use a smaller --userbuf-hex)"
    )]
    TooLarge(tincan_proto::UserSigError),
    #[error(transparent)]
    Server(#[from] crate::ServerError),
    #[error(transparent)]
    Turn(#[from] crate::turn::TurnConfigError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "no folder for missed calls: pass --data-dir <dir> (or set TINCAN_DATA_DIR, HOME or \
         STATE_DIRECTORY), or --memory-only to keep them in memory"
    )]
    NoDataDir,
}

impl SecretArgs {
    /// Loads the secret from the file or the environment.
    pub fn load(&self) -> Result<SecretKey, CliError> {
        let raw = match &self.secret_key_file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| CliError::SecretFile {
                path: path.clone(),
                source,
            })?,
            None => std::env::var(SECRET_ENV).map_err(|_| CliError::NoSecret)?,
        };
        let key = raw.trim_end().to_owned();
        if key.is_empty() {
            return Err(CliError::EmptySecret);
        }
        Ok(SecretKey::new(key))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the command line; the binary's `main` is just this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tincan-server: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Usersig(UsersigCommand::Gen(a)) => {
            let key = UserSigKey::new(a.sdkappid, a.secret.load()?);
            let userbuf = a.userbuf_hex.as_deref().map(hex::decode).transpose()?;
            let sig = key
                .try_gen(
                    &a.user,
                    a.time.unwrap_or_else(unix_now),
                    a.expire,
                    userbuf.as_deref(),
                )
                .map_err(CliError::TooLarge)?;
            println!("{sig}");
            Ok(())
        }
        Command::Usersig(UsersigCommand::Verify(a)) => {
            let key = UserSigKey::new(a.sdkappid, a.secret.load()?);
            let mut sig = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut sig)
                .map_err(CliError::Stdin)?;
            let claims = key.verify(sig.trim(), &a.user, a.now.unwrap_or_else(unix_now))?;
            eprintln!(
                "valid: user {} until {} (unix seconds)",
                claims.identifier,
                claims.expires_at()
            );
            Ok(())
        }
        Command::Serve(a) => serve(a),
    }
}

fn serve(a: ServeArgs) -> Result<(), CliError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let secret = a.secret.load()?;
    let ice = a
        .turn
        .build(std::env::var(crate::turn::TURN_SECRET_ENV).ok())?;
    // Before anything opens a descriptor: each connection needs one, and the usual soft limit
    // (1,024) would stall the server near a thousand sessions.
    crate::fds::raise_nofile_limit();
    let mut config =
        ServerConfig::new(a.listen, a.sdkappid, secret).with_max_frame_bytes(a.max_frame_bytes);
    config.switchboard.single_session = a.single_session;
    config.switchboard.default_ring_secs = a.default_ring_secs;
    config.switchboard.max_ring_secs = a.max_ring_secs.max(1);
    config.switchboard.resume_secs = a.resume_secs.min(MAX_RESUME_SECS);
    config.switchboard.max_invites_per_minute = a.max_invites_per_minute;
    config.switchboard.max_pair_invites = a.max_pair_invites;
    config.switchboard.pair_window_secs = a.pair_window_secs;
    config.switchboard.min_recall_secs = a.min_recall_secs;
    config.switchboard.heartbeat_secs = u32::try_from(a.heartbeat_secs).unwrap_or(u32::MAX);
    config.heartbeat = Duration::from_secs(a.heartbeat_secs.max(1));
    config.idle_timeout = Duration::from_secs(a.idle_timeout_secs.max(1));
    config.max_connections = a.max_connections;
    config.send_queue_bytes = a.send_queue_bytes.max(1024);
    config.send_stall = Duration::from_secs(a.send_stall_secs.max(1));
    config.shutdown_grace = Duration::from_secs(a.shutdown_grace_secs);
    config.rate_per_sec = a.rate_per_sec.max(1);
    config.rate_burst = a.rate_burst.max(1);
    config.ui_dir = a.ui_dir;
    config.dev_issue_sigs = a.dev_issue_sigs;
    config.tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
        _ => None,
    };
    config.tls_reload_every = Duration::from_secs(a.tls_reload_secs.max(1));
    config.trusted_proxies = a.trusted_proxies;
    config.max_conns_per_ip = a.max_conns_per_ip.max(1);
    config.max_unauth_per_ip = a.max_unauth_per_ip.max(1);
    config.header_timeout = Duration::from_secs(a.header_timeout_secs.max(1));
    config.upgrade_timeout = Duration::from_secs(a.upgrade_timeout_secs.max(1));
    config.login_timeout = Duration::from_secs(a.login_timeout_secs.max(1));
    config.allowed_origins = a.allow_origins;
    config.max_sig_lifetime_secs = a.max_sig_lifetime.max(60);
    config.switchboard.missed_ttl_ms = a.missed_ttl_secs.max(1).saturating_mul(1000);
    config.switchboard.max_missed_per_caller = a.missed_per_caller;
    config.switchboard.max_missed_per_user = a.missed_per_user;
    if !ice.is_empty() {
        tracing::info!(
            stun = ?ice.stun_urls,
            turn = ?ice.turn_urls,
            ttl_secs = ice.turn_ttl_secs,
            "handing ICE servers to clients"
        );
    }
    config.switchboard.ice = ice;
    config.data_dir = if a.memory_only {
        None
    } else {
        Some(
            a.data_dir
                .or_else(default_data_dir)
                .ok_or(CliError::NoDataDir)?,
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    rt.block_on(async {
        let handle = crate::start(config).await?;
        shutdown_signal().await;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    })
}

/// Ctrl-C or SIGTERM (what `systemctl stop` and container runtimes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
