//! The WebSocket connection to a tincan-server: `wss://` with rustls, `ws://` only on this machine.
//!
//! A UserSig, SDP, ICE passwords and DTLS fingerprints all cross this connection, so anything that
//! leaves the machine must be encrypted and the server authenticated. `wss://` is verified against
//! the platform's trust store (rustls-native-certs: the system CA bundle on Linux, the Keychain on
//! macOS, the Windows store) plus, for a self-hosted server with a private CA, the CA certificates
//! of one PEM file (Settings or `TINCAN_CA_FILE`). Plain `ws://` is refused before any connection is
//! tried unless the host is loopback (127.0.0.0/8, ::1, `localhost`), which is what the embedded
//! server and a reverse proxy on the same machine use.
//!
//! The crypto provider is rustls' `ring`: no OpenSSL on the signaling path.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tincan_ipc::{ErrorCode, IpcError};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// The environment variable naming a CA file; it wins over the setting.
pub const CA_FILE_ENV: &str = "TINCAN_CA_FILE";

/// A connected WebSocket (plain on loopback, TLS otherwise).
pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How the server is authenticated: `wss://` servers by their certificate, the embedded local
/// server by its answer to the keyring challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (PEM), on top of the platform's store.
    pub ca_file: Option<PathBuf>,
    /// Set for the embedded local server: it must prove it holds this key before anything is sent.
    pub app_server: Option<AppServerCheck>,
}

/// What the embedded local server must prove (see `tincan_server::challenge`): that it holds the
/// keyring's embedded-server key and answers on the address the app dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppServerCheck {
    pub secret: tincan_proto::SecretKey,
    /// The address the app connects to (`127.0.0.1:<port>`), which the proof is bound to.
    pub addr: std::net::SocketAddr,
}

impl TlsOptions {
    /// `TINCAN_CA_FILE` if set and non-empty, else the setting (blank means none).
    pub fn from_env_or(setting: Option<&str>) -> Self {
        Self::from_parts(std::env::var(CA_FILE_ENV).ok().as_deref(), setting)
    }

    fn from_parts(env: Option<&str>, setting: Option<&str>) -> Self {
        let ca_file = env
            .filter(|s| !s.trim().is_empty())
            .or(setting)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Self {
            ca_file,
            app_server: None,
        }
    }
}

/// Why a connection could not be made. [`ConnectError::code`] is what the UI branches on.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("“{url}” is not a WebSocket address (it must start with wss:// or ws://): {detail}")]
    BadUrl { url: String, detail: String },
    #[error(
        "refusing ws://{host}: an unencrypted connection would send your sign-in and call setup in \
         clear across the network. Use a wss:// address (plain ws:// is only allowed to this machine: \
         localhost, 127.0.0.0/8 or ::1)"
    )]
    Insecure { host: String },
    #[error("cannot use the CA file {path}: {detail}")]
    CaFile { path: PathBuf, detail: String },
    #[error(
        "the server's TLS certificate is not trusted ({detail}). If this server uses a private CA, \
         set its CA certificate file in Settings"
    )]
    Certificate { detail: String },
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error(
        "something else is listening on the local server's address {addr} and did not prove it is \
         tincan's own server, so nothing was sent to it. Quit the program that uses this port, or \
         set a shared server's address in Settings"
    )]
    NotOurServer { addr: std::net::SocketAddr },
    #[error("{0}")]
    Network(String),
}

impl ConnectError {
    /// The stable IPC code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadUrl { .. } => ErrorCode::InvalidInput,
            Self::Insecure { .. } => ErrorCode::InsecureServerUrl,
            Self::CaFile { .. } => ErrorCode::CaFile,
            Self::Certificate { .. } => ErrorCode::TlsCertificate,
            Self::NotOurServer { .. } => ErrorCode::LocalServerNotVerified,
            Self::Tls(_) | Self::Network(_) => ErrorCode::ServerUnreachable,
        }
    }

    /// A retry cannot help: the address or the trust settings must change first.
    pub fn is_fatal(&self) -> bool {
        // An impostor on the local port may go away (or be our own server restarting): retry.
        !matches!(
            self,
            Self::Tls(_) | Self::Network(_) | Self::NotOurServer { .. }
        )
    }

    /// The error for the UI, naming the server.
    pub fn to_ipc(&self, url: &str) -> IpcError {
        let message = match self {
            Self::Network(detail) | Self::Tls(detail) => {
                format!("Cannot reach the server at {url}: {detail}")
            }
            other => {
                let mut m = other.to_string();
                if let Some(first) = m.get(0..1) {
                    let up = first.to_uppercase();
                    m.replace_range(0..1, &up);
                }
                format!("{m}.")
            }
        };
        IpcError::new(self.code(), message)
    }
}

/// Whether `host` (as written in a URL, IPv6 in brackets or not) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<IpAddr>()
        .map(|ip| ip.to_canonical().is_loopback())
        .unwrap_or(false)
}

/// Checks the address before anything touches the network; returns whether it is `wss://`.
pub fn check_url(url: &str) -> Result<bool, ConnectError> {
    let bad = |detail: &str| ConnectError::BadUrl {
        url: url.to_owned(),
        detail: detail.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: tokio_tungstenite::tungstenite::http::uri::InvalidUri| bad(&e.to_string()))?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    match uri.scheme_str() {
        Some("wss") => Ok(true),
        Some("ws") if is_loopback_host(host) => Ok(false),
        Some("ws") => Err(ConnectError::Insecure {
            host: host.to_owned(),
        }),
        _ => Err(bad("unknown scheme")),
    }
}

/// The platform's CA certificates, read once per process (reading the store takes milliseconds and
/// it does not change under a running app often enough to matter).
fn native_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a platform CA certificate could not be read");
        }
        found.certs
    })
}

/// Reads every certificate of a PEM file; it must hold at least one.
pub fn load_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConnectError> {
    use rustls::pki_types::pem::PemObject;
    let err = |detail: String| ConnectError::CaFile {
        path: path.to_owned(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(err(
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The rustls client configuration for these options.
pub fn client_config(tls: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(native_roots().iter().cloned());
    if ignored > 0 {
        tracing::debug!(ignored, "platform CA certificates rustls cannot use");
    }
    if let Some(path) = &tls.ca_file {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|e| ConnectError::CaFile {
                path: path.clone(),
                detail: format!("not a usable CA certificate ({e})"),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to a tincan-server WebSocket. `ws://` to anything but loopback is refused before any
/// connection is tried; `wss://` is verified as described in the module docs.
pub async fn connect(url: &str, tls: &TlsOptions) -> Result<Ws, ConnectError> {
    let secure = check_url(url)?;
    let connector = if secure {
        Connector::Rustls(client_config(tls)?)
    } else {
        Connector::Plain
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    // The embedded server's challenge: a fresh nonce per connection, in the upgrade request.
    let nonce = tls
        .app_server
        .as_ref()
        .map(|_| crate::credentials::random_hex(tincan_server::challenge::NONCE_BYTES));
    if let Some(n) = &nonce {
        let value = n
            .parse()
            .map_err(|_| ConnectError::Network("bad nonce".into()))?;
        request
            .headers_mut()
            .insert(tincan_server::challenge::CHALLENGE_HEADER, value);
    }
    // Nagle off: signaling frames are small and latency-bound (an offer waits for its answer).
    let (ws, response) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
            .await
            .map_err(classify)?;
    if let (Some(check), Some(nonce)) = (&tls.app_server, &nonce) {
        let proof = response
            .headers()
            .get(tincan_server::challenge::PROOF_HEADER)
            .and_then(|v| v.to_str().ok());
        let proven = proof
            .is_some_and(|p| tincan_server::challenge::verify(&check.secret, nonce, check.addr, p));
        if !proven {
            // Dropped without a frame: not even a close goes to an impostor.
            tracing::warn!(addr = %check.addr, answered = proof.is_some(), "the local server did not prove it is tincan's own; nothing sent");
            drop(ws);
            return Err(ConnectError::NotOurServer { addr: check.addr });
        }
    }
    Ok(ws)
}

/// Sorts a tungstenite error into "the certificate was refused" and the rest.
fn classify(e: tokio_tungstenite::tungstenite::Error) -> ConnectError {
    use tokio_tungstenite::tungstenite::Error as E;
    let rustls_error = match &e {
        E::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => ConnectError::Certificate {
            detail: describe_cert_error(c),
        },
        Some(other) => ConnectError::Tls(other.to_string()),
        None => match e {
            E::Tls(t) => ConnectError::Tls(t.to_string()),
            other => ConnectError::Network(other.to_string()),
        },
    }
}

fn describe_cert_error(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => "it is signed by an unknown certificate authority".into(),
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for this server's name".into()
        }
        C::Revoked => "it has been revoked".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.9.8.7",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.2",
            "example.com",
            "localhost.example.com",
            "[::2]",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn the_environment_wins_over_the_setting() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            TlsOptions::from_parts(Some("/e.pem"), Some("/s.pem")).ca_file,
            p("/e.pem")
        );
        assert_eq!(
            TlsOptions::from_parts(None, Some(" /s.pem ")).ca_file,
            p("/s.pem")
        );
        assert_eq!(
            TlsOptions::from_parts(Some(""), Some("/s.pem")).ca_file,
            p("/s.pem")
        );
        assert_eq!(TlsOptions::from_parts(None, Some("  ")).ca_file, None);
        assert_eq!(TlsOptions::from_parts(None, None).ca_file, None);
    }

    #[test]
    fn urls() {
        assert!(check_url("wss://calls.example.com/ws").unwrap());
        assert!(!check_url("ws://127.0.0.1:7480/ws").unwrap());
        assert!(!check_url("ws://[::1]:7480/ws").unwrap());
        let e = check_url("ws://calls.example.com:7480/ws").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InsecureServerUrl);
        assert!(e.is_fatal());
        assert_eq!(
            check_url("http://x/ws").unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }
}
