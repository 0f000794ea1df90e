//! tincan-server: the WebSocket signaling server.
//!
//! It verifies UserSigs at sign-in, keeps presence, routes invitations under the rules of
//! [`tincan_proto::switchboard`], and relays SDP / ICE only between the parties of a call. The
//! protocol logic is the pure switchboard; this crate is the I/O around it (axum, one task per
//! connection, a ring-timeout ticker). It can run as its own binary or inside the desktop app.

pub mod admission;
pub mod challenge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod fds;
pub mod hub;
pub mod proxy;
mod routes;
pub mod store;
pub mod tls;
pub mod turn;

pub use config::ServerConfig;

use hub::Hub;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often ring deadlines are checked.
const TICK: Duration = Duration::from_millis(50);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// A running server. Dropping it leaves the server running; call [`ServerHandle::shutdown`].
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    hub: Arc<Hub>,
    stop: Arc<Notify>,
    serve: JoinHandle<()>,
    ticker: JoinHandle<()>,
    /// Reloads the certificate on SIGHUP / file change (TLS only).
    tls_watch: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Signed-in sessions right now.
    pub fn session_count(&self) -> usize {
        self.hub.session_count()
    }

    /// Open WebSocket connections right now.
    pub fn connection_count(&self) -> usize {
        self.hub.connection_count()
    }

    /// Stops listening and closes every connection with `server_shutdown` (1001), waiting up to
    /// `config.shutdown_grace` for their closing handshakes. axum's graceful shutdown does not see
    /// upgraded sockets, so the hub tracks them (one slot per connection, released only after its
    /// close frame went out and the client answered, or it gave up). Near the end of the grace
    /// period, connections still open (their clients not reading) have their queues dropped so
    /// the close frame is next; at the end the server stops regardless.
    pub async fn shutdown(self) {
        let grace = self.hub.config.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        self.hub.shutdown();
        self.stop.notify_one();
        self.ticker.abort();
        if let Some(w) = &self.tls_watch {
            w.abort();
        }
        let last_call = deadline - (grace / 4).min(Duration::from_secs(1));
        if tokio::time::timeout_at(last_call, self.hub.all_closed())
            .await
            .is_err()
        {
            tracing::info!(
                open = self.hub.connection_count(),
                "shutdown: connections still closing; dropping their queues"
            );
            self.hub.shutdown_now();
            if tokio::time::timeout_at(deadline, self.hub.all_closed())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = self.hub.connection_count(),
                    "shutdown grace period over: stopping with connections still open"
                );
            }
        }
        let mut serve = self.serve;
        if tokio::time::timeout_at(deadline, &mut serve).await.is_err() {
            serve.abort();
        }
        // Everything queued reaches the disk before the process goes.
        if let Some(store) = self.hub.take_store() {
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
        }
    }

    /// Runs until the server stops by itself (it does not, unless the listener fails).
    pub async fn wait(self) {
        let _ = self.serve.await;
    }
}

/// Binds `config.listen` and serves on the current tokio runtime.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    // Loaded before anything is served, so a bad certificate stops the start with its reason.
    let tls = config.tls.clone().map(tls::Tls::new).transpose()?;
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "serving plain ws:// on a non-loopback address: sign-ins and call setup cross the \
             network in clear. Pass --tls-cert/--tls-key, or listen on 127.0.0.1 behind a TLS proxy."
        );
    }
    if config.dev_issue_sigs {
        tracing::warn!(
            "--dev-issue-sigs is ON: anyone who can reach {addr} can get a UserSig for any user ID. \
             Use this for local demos only."
        );
    }
    let mut config = config;
    // Past the descriptors left, a connection could not even be refused cleanly: keep the cap
    // below them (with a reserve for /healthz and handshakes), so extra clients get a 503 at once.
    if let Some(budget) = fds::connection_budget() {
        if budget < config.max_connections {
            tracing::warn!(
                configured = config.max_connections,
                budget,
                "the file descriptor limit allows fewer connections than --max-connections: \
                 capped (raise the hard RLIMIT_NOFILE for more)"
            );
            config.max_connections = budget;
        }
    }
    let reload_every = config.tls_reload_every;
    // Missed calls saved by the last run, read before anyone can sign in and be told of them.
    let store = match config.data_dir.clone() {
        Some(dir) => {
            let ttl = config.switchboard.missed_ttl_ms;
            let cutoff = clock::Clock::new().now_ms().saturating_sub(ttl);
            let opened = tokio::task::spawn_blocking(move || store::Store::open(&dir, cutoff))
                .await
                .map_err(|e| ServerError::Store(store::StoreError::Thread(e.into())))?;
            Some(opened?)
        }
        None => None,
    };
    // Every accepted connection is counted and timed from here on (see `admission`).
    let admission = admission::Admission::new(admission::Limits {
        max_conns_per_ip: config.max_conns_per_ip.max(1),
        max_unauth_per_ip: config.max_unauth_per_ip.max(1),
        max_tcp: config
            .max_connections
            .saturating_add(admission::TCP_RESERVE),
        header_timeout: config.header_timeout,
        upgrade_timeout: config.upgrade_timeout,
        trusted_proxies: config.trusted_proxies.clone(),
    });
    let hub = Hub::new(config);
    if let Some((store, saved)) = store {
        hub.install_store(store, saved);
    }
    let app = routes::router(hub.clone()).into_make_service_with_connect_info::<proxy::Peer>();
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let shutdown = async move { stopped.notified().await };
    let mut tls_watch = None;
    let serve = match &tls {
        Some(tls) => {
            let listener = tls
                .listen(listener, admission)
                .map_err(|source| ServerError::Bind {
                    addr: hub.config.listen,
                    source,
                })?;
            tls_watch = Some(tokio::spawn(tls.clone().watch(reload_every)));
            tokio::spawn(async move {
                let result = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await;
                if let Err(err) = result {
                    tracing::error!(%err, "server stopped");
                }
            })
        }
        None => {
            let listener = proxy::PlainListener {
                tcp: listener,
                admission,
            };
            tokio::spawn(async move {
                let result = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await;
                if let Err(err) = result {
                    tracing::error!(%err, "server stopped");
                }
            })
        }
    };
    let ticking = hub.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            ticking.tick();
        }
    });
    let scheme = if tls.is_some() {
        "https/wss"
    } else {
        "http/ws"
    };
    tracing::info!(%addr, scheme, "tincan-server listening");
    Ok(ServerHandle {
        addr,
        hub,
        stop,
        serve,
        ticker,
        tls_watch,
    })
}
