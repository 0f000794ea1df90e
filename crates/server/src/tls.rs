//! https / wss served by the server itself, with rustls (ring provider: no OpenSSL).
//!
//! The certificate chain and key are PEM files. They are read again on SIGHUP and whenever either
//! file's modification time or size changes (polled), so a renewal (certbot, acme.sh, a cron job)
//! needs no restart: new connections get the new certificate, open ones keep theirs. A new pair that
//! does not load (unreadable, not PEM, key not matching the certificate, half-written) is logged as
//! an error and the old one stays in use; the next change is tried again.
//!
//! TLS handshakes run in tasks of their own with a deadline, so a client that opens TCP and says
//! nothing cannot hold up everyone else's accept.

use crate::admission::{Admission, Guarded};
use crate::proxy::Peer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// A client gets this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once (each costs a task and some crypto); more wait in the backlog.
const MAX_HANDSHAKES: usize = 512;

/// Where the certificate chain and its private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate / key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable private key: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("the key in {key} does not belong to the certificate in {cert}: {detail}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("TLS setup failed: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks a certificate chain and its key.
pub fn load(files: &TlsFiles) -> Result<rustls::sign::CertifiedKey, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::Read {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: files.cert.clone(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            detail: e.to_string(),
        })?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        detail: e.to_string(),
    })?;
    Ok(certified)
}

/// Hands every handshake the certificate loaded last.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl CertResolver {
    fn new(first: rustls::sign::CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(first)),
        }
    }

    fn set(&self, key: rustls::sign::CertifiedKey) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
    }
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The TLS side of a server: its rustls configuration and the resolver reloads swap keys in.
#[derive(Debug, Clone)]
pub struct Tls {
    files: TlsFiles,
    resolver: Arc<CertResolver>,
    config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Loads the files once; an error here stops the server from starting.
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let resolver = Arc::new(CertResolver::new(load(&files)?));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // HTTP/1.1 only: WebSocket upgrades are HTTP/1.1 (RFC 8441 over h2 is not served).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            files,
            resolver,
            config: Arc::new(config),
        })
    }

    /// Reads the files again; on success new handshakes use the new pair, on error nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load(&self.files)?;
        self.resolver.set(key);
        Ok(())
    }

    /// Reloads on SIGHUP and when a file changes (checked every `poll`); the future runs until
    /// aborted. The SIGHUP handler is installed here, before the future first runs, so a signal
    /// sent right after the server said it is listening cannot hit the default action (exit).
    pub fn watch(self, poll: Duration) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut hup = Hangup::install();
        async move {
            let mut seen = stamp(&self.files);
            loop {
                let why = tokio::select! {
                    Some(()) = hup.next() => "SIGHUP",
                    _ = tokio::time::sleep(poll) => "file change",
                };
                let now = stamp(&self.files);
                if why == "file change" && now == seen {
                    continue;
                }
                seen = now;
                match self.reload() {
                    Ok(()) => tracing::info!(
                        cert = %self.files.cert.display(), why, "TLS certificate reloaded"
                    ),
                    Err(err) => tracing::error!(
                        %err, why,
                        "the new TLS certificate cannot be used; still serving the previous one"
                    ),
                }
            }
        }
    }

    /// Accepts TCP on `tcp` and hands out finished TLS streams; handshakes run concurrently. Each
    /// connection is counted and timed from `accept` (see [`crate::admission`]); one refused there
    /// is closed before its handshake.
    pub fn listen(
        &self,
        tcp: TcpListener,
        admission: Arc<Admission>,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let task = tokio::spawn(accept_loop(tcp, acceptor, tx, admission));
        Ok(TlsListener {
            rx,
            local,
            task: task.abort_handle(),
        })
    }
}

/// SIGHUP where there is one (Unix); elsewhere (the app embeds this crate on Windows) never fires.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = signal(SignalKind::hangup())
                .map_err(|err| {
                    tracing::warn!(%err, "no SIGHUP handler; the certificate reloads on file change only")
                })
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// `None` when no signal can come (then `select!` waits on the other branch).
    async fn next(&mut self) -> Option<()> {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            return s.recv().await;
        }
        None
    }
}

/// What identifies one version of a file: modification time, size and (on Unix) the inode, which a
/// rename-into-place or a switched symlink (certbot's `live/` links) changes even when the time is
/// coarse and the size the same. `None` while a file is missing for the moment.
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

fn stamp(files: &TlsFiles) -> [Stamp; 2] {
    let one = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            (m.modified().ok(), m.len(), ino)
        })
    };
    [one(&files.cert), one(&files.key)]
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<Guarded<TcpStream>>, SocketAddr)>,
    admission: Arc<Admission>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(s) => s,
            Err(err) => {
                // EMFILE and friends: refused at once with 503, one log line per interval.
                crate::fds::overload().on_accept_error(err, &tcp).await;
                continue;
            }
        };
        let local = stream.local_addr().unwrap_or(peer);
        let Ok(meter) = admission.admit_tcp(peer, local) else {
            // Refused (per-address or total cap): closed before any TLS work is spent on it.
            continue;
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY");
        }
        let stream = Guarded::new(stream, meter);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match result {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// An axum listener whose connections are TLS streams, handshakes done.
#[derive(Debug)]
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<Guarded<TcpStream>>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<Guarded<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop is gone (aborted at shutdown): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            conn: Some(stream.io().get_ref().0.meter().clone()),
        }
    }
}
