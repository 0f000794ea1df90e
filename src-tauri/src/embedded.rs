//! The embedded local server: with no server configured the app uses ws://127.0.0.1:7480/ws, and if
//! nothing listens there it starts tincan-server in-process on that port. Every window on the machine
//! signs with the same key (kept in the keyring), so any of them can host, and when the host quits the
//! next reconnect of another window takes over.
//!
//! Anything on the machine could listen on that port first, so the app sends the server nothing
//! (no UserSig, no call) before it has proven it holds the keyring's key: a challenge in the
//! WebSocket upgrade (`tincan_server::challenge`, docs/PROTOCOL.md). The sigs made for it live
//! minutes, and a sig made for a shared server is never sent here (with no server configured, only
//! the embedded sign-in is offered).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tincan_ipc::{ErrorCode, IpcError};
use tincan_proto::SecretKey;
use tokio::sync::Mutex;

/// The SDKAppID the embedded server runs with.
pub const EMBEDDED_SDK_APP_ID: u64 = 1_400_000_001;
/// The port it listens on (overridable with `TINCAN_EMBEDDED_PORT`, for tests).
pub const DEFAULT_PORT: u16 = 7480;

/// The port from the environment, or the default.
pub fn port_from_env() -> u16 {
    std::env::var("TINCAN_EMBEDDED_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// Hosts (or finds) the local server.
#[derive(Debug)]
pub struct EmbeddedHost {
    addr: SocketAddr,
    handle: Mutex<Option<tincan_server::ServerHandle>>,
}

impl EmbeddedHost {
    pub fn new(port: u16) -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            handle: Mutex::new(None),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The address the local server is (to be) found at; the challenge's proof is bound to it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether this process runs the server now.
    pub async fn hosting(&self) -> bool {
        self.handle.lock().await.is_some()
    }

    /// Makes sure something serves `addr`: if nothing answers, starts the server here. Returns
    /// whether this call started it.
    pub async fn ensure(
        &self,
        secret: impl FnOnce() -> Result<SecretKey, IpcError>,
    ) -> Result<bool, IpcError> {
        let mut handle = self.handle.lock().await;
        if handle.is_some() {
            return Ok(false);
        }
        let probe = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(self.addr),
        )
        .await;
        if matches!(probe, Ok(Ok(_))) {
            return Ok(false);
        }
        let mut config =
            tincan_server::ServerConfig::new(self.addr, EMBEDDED_SDK_APP_ID, secret()?);
        // Other windows (and this one) check it is the app's own before sending it anything.
        config.answer_app_challenge = true;
        // Quitting the app must feel instant: peers get their 1001 close frame at once, and a
        // peer that never answers the close cannot hold the quit for the server's default grace.
        config.shutdown_grace = Duration::from_secs(1);
        match tincan_server::start(config).await {
            Ok(h) => {
                tracing::info!(addr = %h.local_addr(), "hosting the embedded server");
                *handle = Some(h);
                Ok(true)
            }
            // Another window won the race to bind: use its server.
            Err(tincan_server::ServerError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                Ok(false)
            }
            Err(e) => Err(IpcError::new(
                ErrorCode::ServerUnreachable,
                format!("Could not start the local server: {e}"),
            )),
        }
    }

    /// Stops hosting (at quit); other windows take over on their next reconnect.
    pub async fn shutdown(&self) {
        if let Some(h) = self.handle.lock().await.take() {
            h.shutdown().await;
        }
    }
}
