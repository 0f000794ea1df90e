//! The app's core, free of Tauri: sign-in with each kind of credentials, the signaling session,
//! settings and history. The Tauri commands in `crate::ipc` are one-line wrappers around these
//! methods, and tests drive them directly against a real tincan-server.

use crate::credentials::Credentials;
use crate::embedded::{EmbeddedHost, EMBEDDED_SDK_APP_ID};
use crate::signaling::{BoxFuture, Connector, EventSink, LoginPlan, PlanError, Signaling, Timing};
use crate::storage::Store;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tincan_ipc::{
    AppEvent, AppState, CallView, ConnectionState, CredentialMode, ErrorCode, HistoryEntry,
    IpcError, SavedCredentials, ServerInfo, Settings, SignInArgs, SignInCredentials,
};
use tincan_proto::{
    usersig, CallId, CallType, ClientMessage, DeviceId, MediaSignal, SecretKey, Sensitive,
    SigToken, UserId, UserSigKey, PROTOCOL_VERSION,
};

/// Everything the core needs from the outside.
pub struct ServiceConfig {
    pub profile: String,
    pub credentials: Credentials,
    pub store: Store,
    pub host: Arc<EmbeddedHost>,
    /// A server address that wins over the settings (`--server` / `TINCAN_SERVER`).
    pub server_override: Option<String>,
    /// Where events go (the window, the tray).
    pub sink: EventSink,
    pub timing: Timing,
}

/// The app's core.
pub struct Service {
    profile: String,
    creds: Credentials,
    store: Store,
    host: Arc<EmbeddedHost>,
    server_override: Option<String>,
    sink: EventSink,
    timing: Timing,
    session: tokio::sync::Mutex<Option<Signaling>>,
    /// Bumped by every sign-in or sign-out the user asks for: the sign-in at launch stops retrying
    /// once the user has taken over.
    user_acted: AtomicU64,
    /// The running session signs in with a pasted UserSig (so a refusal of it later, at a reconnect,
    /// removes it from the keyring).
    pasted_session: Arc<AtomicBool>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    crate::signaling::now_ms() / 1000
}

fn invalid(msg: impl Into<String>) -> IpcError {
    IpcError::new(ErrorCode::InvalidInput, msg)
}

/// Parses a user ID, with the rule in the message. Nothing is cut: a pasted ID that is too long is
/// refused, not shortened into somebody else's.
pub fn parse_user_id(s: &str) -> Result<UserId, IpcError> {
    use tincan_proto::IdError;
    UserId::new(s.trim()).map_err(|e| {
        let words = match e {
            IdError::Empty { .. } => "Enter a user ID.".to_owned(),
            IdError::TooLong { len, max, .. } => format!(
                "That user ID is too long: it has {len} characters, and at most {max} are allowed."
            ),
            IdError::BadCharacter { .. } => "That user ID is not valid: it may contain only \
                                             letters A to Z, digits, underscores and hyphens."
                .to_owned(),
        };
        IpcError::new(ErrorCode::InvalidUserId, words)
    })
}

/// Refuses an SDKAppID of 0 (an empty field in the UI) before anything is read or sent.
fn check_sdk_app_id(sdk_app_id: u64) -> Result<(), IpcError> {
    if sdk_app_id == 0 {
        return Err(IpcError::new(
            ErrorCode::InvalidSdkAppId,
            "Enter the SDKAppID: the number your server runs with.",
        ));
    }
    Ok(())
}

/// Whether a sign-in error means the server (or the expiry check) refused the UserSig itself, so a
/// saved one is worth nothing any more.
fn sig_refused(e: &IpcError) -> bool {
    matches!(
        e.code,
        ErrorCode::UserSigInvalid | ErrorCode::UserSigExpired
    )
}

impl Service {
    pub fn new(c: ServiceConfig) -> Self {
        if let Err(e) = c.store.close_interrupted() {
            tracing::warn!(error = %e, "could not tidy the call history");
        }
        // Wrap the sink: history is written as calls start and end, and a pasted UserSig the
        // server refuses at a reconnect leaves the keyring.
        let store = c.store.clone();
        let outer = c.sink.clone();
        let pasted_session = Arc::new(AtomicBool::new(false));
        let (pasted, creds) = (pasted_session.clone(), c.credentials.clone());
        let sink: EventSink = Arc::new(move |ev: AppEvent| {
            if let AppEvent::Error { error } = &ev {
                if sig_refused(error) && pasted.load(Ordering::Relaxed) {
                    forget_refused_sig(&creds, error);
                }
            }
            let history_changed = match &ev {
                AppEvent::Call { call: Some(call) } => store.record_call(call),
                AppEvent::MissedCalls { calls } => store.record_missed(calls).map(|()| true),
                _ => Ok(false),
            };
            outer(ev);
            match history_changed {
                Ok(true) => outer(AppEvent::History {
                    entries: store.history(),
                }),
                Ok(false) => {}
                Err(error) => outer(AppEvent::Error { error }),
            }
        });
        Self {
            profile: c.profile,
            creds: c.credentials,
            store: c.store,
            host: c.host,
            server_override: c.server_override,
            sink,
            timing: c.timing,
            session: tokio::sync::Mutex::new(None),
            user_acted: AtomicU64::new(0),
            pasted_session,
        }
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// Where this profile signs in.
    pub async fn server_info(&self) -> ServerInfo {
        match self.remote_url() {
            Some(url) => ServerInfo::Remote { url },
            None => ServerInfo::Embedded {
                url: self.host.url(),
                hosting: self.host.hosting().await,
            },
        }
    }

    fn remote_url(&self) -> Option<String> {
        self.server_override
            .clone()
            .or_else(|| self.store.settings().server_url)
    }

    /// What is saved, without any secret. Keyring trouble reads as "nothing saved" here; sign-in
    /// reports it properly.
    pub fn saved(&self) -> SavedCredentials {
        let has_secret_key = match self.creds.secret_key() {
            Ok(k) => k.is_some(),
            Err(e) => {
                tracing::debug!(error = %e, "keyring not readable");
                false
            }
        };
        let user_sig_expires_at = self
            .creds
            .user_sig()
            .ok()
            .flatten()
            .and_then(|s| usersig::inspect(s.expose()).ok())
            .map(|c| c.expires_at());
        SavedCredentials {
            last_user_id: self.store.last_user_id(),
            last_mode: self.store.last_mode(),
            last_sdk_app_id: self.store.last_sdk_app_id(),
            has_secret_key,
            user_sig_expires_at,
        }
    }

    pub async fn state(&self) -> AppState {
        let snap = self.session.lock().await.as_ref().map(|s| s.snapshot());
        AppState {
            profile: self.profile.clone(),
            server: self.server_info().await,
            connection: snap
                .as_ref()
                .map(|s| s.connection.clone())
                .unwrap_or(ConnectionState::SignedOut),
            user: snap.as_ref().and_then(|s| s.user.clone()),
            call: snap.and_then(|s| s.call),
            saved: self.saved(),
        }
    }

    /// Signs in (replacing any current session), as the user asked.
    pub async fn sign_in(&self, args: SignInArgs) -> Result<AppState, IpcError> {
        self.user_acted.fetch_add(1, Ordering::Relaxed);
        self.do_sign_in(args).await
    }

    /// The sign-in at launch: as the last user, with what is saved, when "Sign in automatically" is
    /// on. `None` when there is nothing to do (turned off, never signed in, nothing saved). A server
    /// that cannot be reached yet (the network comes up after the desktop session) is tried again,
    /// backing off from 2 s to a minute, until it answers or the user signs in or out; only the
    /// first failure is reported (as an `Error` event: no command waits for this one).
    pub async fn sign_in_at_launch(&self) -> Option<Result<AppState, IpcError>> {
        let args = self.launch_sign_in()?;
        let started = self.user_acted.load(Ordering::Relaxed);
        let mut delay = Duration::from_secs(2);
        let mut reported = false;
        loop {
            let r = self.do_sign_in(args.clone()).await;
            let retry = matches!(&r, Err(e) if e.code == ErrorCode::ServerUnreachable);
            if let Err(error) = &r {
                tracing::info!(code = ?error.code, "sign-in at launch failed");
                if !reported {
                    (self.sink)(AppEvent::Error {
                        error: error.clone(),
                    });
                    reported = true;
                }
            }
            if !retry {
                return Some(r);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
            if self.user_acted.load(Ordering::Relaxed) != started {
                return Some(r);
            }
        }
    }

    /// What the sign-in at launch would use, if anything.
    fn launch_sign_in(&self) -> Option<SignInArgs> {
        if !self.store.sign_in_automatically() {
            return None;
        }
        let user_id = self.store.last_user_id()?;
        let sdk_app_id = self.store.last_sdk_app_id();
        let credentials = match self.store.last_mode()? {
            // The local server's key is the app's own: always "saved". Not when a server address
            // has been set since (that sign-in would be refused).
            CredentialMode::Embedded => {
                if self.remote_url().is_some() {
                    return None;
                }
                SignInCredentials::Embedded
            }
            CredentialMode::SecretKey => {
                self.creds.secret_key().ok()??;
                SignInCredentials::SecretKey {
                    sdk_app_id: sdk_app_id?,
                    secret_key: None,
                }
            }
            CredentialMode::UserSig => {
                self.creds.user_sig().ok()??;
                SignInCredentials::UserSig {
                    sdk_app_id: sdk_app_id?,
                    user_sig: None,
                }
            }
        };
        Some(SignInArgs {
            user_id,
            credentials,
        })
    }

    async fn do_sign_in(&self, args: SignInArgs) -> Result<AppState, IpcError> {
        let user = parse_user_id(&args.user_id)?;
        let settings = self.store.settings();
        // Minutes, capped (issue 11): a fresh sig is minted at every connection anyway.
        let lifetime = settings.minted_sig_lifetime_secs();
        let remote = self.remote_url();
        let mode = args.credentials.mode();
        let (source, sdk_app_id, url, saved_key_now) = match args.credentials {
            SignInCredentials::Embedded => {
                if let Some(url) = &remote {
                    return Err(invalid(format!(
                        "This profile uses the server at {url}; sign in with a secret key or a \
                         UserSig, or clear the server address in settings to use the local server."
                    )));
                }
                let key = self.creds.embedded_secret()?;
                (
                    SigSource::Key { key, lifetime },
                    EMBEDDED_SDK_APP_ID,
                    self.host.url(),
                    false,
                )
            }
            SignInCredentials::SecretKey {
                sdk_app_id,
                secret_key,
            } => {
                check_sdk_app_id(sdk_app_id)?;
                no_shared_sig_to_local(remote.as_deref())?;
                let (key, fresh) = match secret_key.map(|k| k.trim().to_owned()) {
                    Some(k) if !k.is_empty() => {
                        let key = SecretKey::new(k);
                        // Saved first, so a missing keyring is reported before anything else.
                        self.creds.save_secret_key(&key)?;
                        (key, true)
                    }
                    _ => (
                        self.creds.secret_key()?.ok_or_else(|| {
                            IpcError::new(
                                ErrorCode::NoSavedCredentials,
                                "No secret key is saved yet: enter it once.",
                            )
                        })?,
                        false,
                    ),
                };
                (
                    SigSource::Key { key, lifetime },
                    sdk_app_id,
                    remote.clone().unwrap_or_else(|| self.host.url()),
                    fresh,
                )
            }
            SignInCredentials::UserSig {
                sdk_app_id,
                user_sig,
            } => {
                check_sdk_app_id(sdk_app_id)?;
                no_shared_sig_to_local(remote.as_deref())?;
                let sig = match user_sig.map(|s| s.trim().to_owned()) {
                    Some(s) if !s.is_empty() => {
                        let sig = Sensitive::new(s);
                        check_pasted_sig(&sig, &user, sdk_app_id)?;
                        self.creds.save_user_sig(&sig)?;
                        sig
                    }
                    _ => {
                        let sig = self.creds.user_sig()?.ok_or_else(|| {
                            IpcError::new(
                                ErrorCode::NoSavedCredentials,
                                "No UserSig is saved yet: paste the one your server issued.",
                            )
                        })?;
                        // A saved sig that has expired is of no use: it is not offered again. (One
                        // for another user ID or SDKAppID stays: it may be right for those.)
                        if let Err(e) = check_pasted_sig(&sig, &user, sdk_app_id) {
                            if e.code == ErrorCode::UserSigExpired {
                                forget_refused_sig(&self.creds, &e);
                            }
                            return Err(e);
                        }
                        sig
                    }
                };
                (
                    SigSource::Pasted(sig),
                    sdk_app_id,
                    remote.clone().unwrap_or_else(|| self.host.url()),
                    false,
                )
            }
        };
        let embedded = remote.is_none();
        let mut tls = crate::transport::TlsOptions::from_env_or(settings.ca_file.as_deref());
        if embedded {
            // Only the embedded sign-in gets here (see `no_shared_sig_to_local`): the server on the
            // local port must prove it holds the same key before the login goes out.
            if let SigSource::Key { key, .. } = &source {
                tls.app_server = Some(crate::transport::AppServerCheck {
                    secret: key.clone(),
                    addr: self.host.addr(),
                });
            }
        }
        let connector = Arc::new(SessionConnector {
            url,
            user: user.clone(),
            device: self.store.device_id(),
            sdk_app_id,
            source,
            host: embedded.then(|| self.host.clone()),
            creds: self.creds.clone(),
            sink: self.sink.clone(),
            tls,
        });
        let mut session = self.session.lock().await;
        if let Some(old) = session.take() {
            old.logout().await;
        }
        self.pasted_session
            .store(mode == CredentialMode::UserSig, Ordering::Relaxed);
        match Signaling::start(connector, self.sink.clone(), self.timing.clone()).await {
            Ok((s, _)) => {
                *session = Some(s);
            }
            Err(e) => {
                if saved_key_now && e.code == ErrorCode::UserSigInvalid {
                    // A key the server refuses is not worth keeping. (A key saved earlier stays:
                    // the same code also means "this SDKAppID" or "sigs this long", which a
                    // setting fixes; the new key the user types replaces it.)
                    let _ = self.creds.forget();
                }
                if mode == CredentialMode::UserSig && sig_refused(&e) {
                    // The server refused this UserSig: it is not offered as saved again.
                    forget_refused_sig(&self.creds, &e);
                }
                return Err(e);
            }
        }
        drop(session);
        let sdk = (mode != CredentialMode::Embedded).then_some(sdk_app_id);
        self.store.remember_sign_in(user.as_str(), mode, sdk)?;
        (self.sink)(AppEvent::Server {
            server: self.server_info().await,
        });
        Ok(self.state().await)
    }

    /// Signs out, as the user asked.
    pub async fn sign_out(&self) {
        self.user_acted.fetch_add(1, Ordering::Relaxed);
        self.end_session().await;
    }

    async fn end_session(&self) {
        if let Some(s) = self.session.lock().await.take() {
            s.logout().await;
        }
    }

    /// Removes the profile's saved secret key and UserSig from the keyring (and signs out when the
    /// current session depends on them).
    pub async fn forget_credentials(&self) -> Result<SavedCredentials, IpcError> {
        self.creds.forget()?;
        Ok(self.saved())
    }

    async fn with_session<T>(
        &self,
        f: impl AsyncFnOnce(&Signaling) -> Result<T, IpcError>,
    ) -> Result<T, IpcError> {
        let guard = self.session.lock().await;
        match guard.as_ref() {
            Some(s) => f(s).await,
            None => Err(IpcError::new(ErrorCode::NotSignedIn, "Sign in first.")),
        }
    }

    pub async fn start_call(&self, callee: &str) -> Result<CallView, IpcError> {
        let callee = parse_user_id(callee)?;
        let timeout = self.store.settings().ring_timeout_secs;
        self.with_session(async |s| s.call(callee, CallType::Audio, timeout).await)
            .await
    }
    pub async fn accept(&self, call_id: CallId) -> Result<(), IpcError> {
        self.with_session(async |s| s.accept(call_id).await).await
    }
    pub async fn reject(&self, call_id: CallId) -> Result<(), IpcError> {
        self.with_session(async |s| s.reject(call_id).await).await
    }
    pub async fn hang_up(&self, call_id: CallId) -> Result<(), IpcError> {
        self.with_session(async |s| s.hangup(call_id).await).await
    }
    pub async fn set_muted(&self, muted: bool) -> Result<(), IpcError> {
        self.with_session(async |s| s.set_muted(muted).await).await
    }
    pub async fn send_signal(&self, call_id: CallId, signal: MediaSignal) -> Result<(), IpcError> {
        self.with_session(async |s| s.signal(call_id, signal).await)
            .await
    }

    /// The current call, if any (for the tray).
    pub async fn current_call(&self) -> Option<CallView> {
        self.session
            .lock()
            .await
            .as_ref()
            .and_then(|s| s.snapshot().call)
    }

    pub fn settings(&self) -> Settings {
        self.store.settings()
    }

    /// The profile's settings store (for the startup flags, `crate::startup`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Saves settings. A changed server address applies at the next sign-in.
    pub async fn save_settings(&self, s: Settings) -> Result<AppState, IpcError> {
        self.store.save_settings(&s)?;
        (self.sink)(AppEvent::Server {
            server: self.server_info().await,
        });
        Ok(self.state().await)
    }

    pub fn history(&self) -> Vec<HistoryEntry> {
        self.store.history()
    }

    pub fn clear_history(&self) -> Result<Vec<HistoryEntry>, IpcError> {
        self.store.clear_history()?;
        Ok(Vec::new())
    }

    /// At quit: sign out and stop hosting, so another window takes over the local server.
    pub async fn shutdown(&self) {
        self.user_acted.fetch_add(1, Ordering::Relaxed);
        self.end_session().await;
        self.host.shutdown().await;
    }
}

/// A secret key or a pasted UserSig belongs to a shared server: with no server address set, the
/// only server is the local one (or whatever listens on its port), and such a sig must never be
/// sent there. Refused before anything is read from the keyring or the network.
fn no_shared_sig_to_local(remote: Option<&str>) -> Result<(), IpcError> {
    if remote.is_none() {
        return Err(invalid(
            "No server address is set, so tincan uses its built-in local server, which needs no \
             secret key or UserSig: choose the local sign-in, or set your server's address in \
             Settings first.",
        ));
    }
    Ok(())
}

/// Removes a saved UserSig that was refused, and logs why.
fn forget_refused_sig(creds: &Credentials, why: &IpcError) {
    match creds.forget_user_sig() {
        Ok(()) => tracing::info!(code = ?why.code, "removed the refused UserSig from the keyring"),
        Err(e) => tracing::warn!(detail = e.detail(), "could not remove a refused UserSig"),
    }
}

/// Checks a pasted UserSig before it is used: readable, for this user and SDKAppID, not expired.
/// The words say what to do; what exactly failed to decode goes to the log.
fn check_pasted_sig(
    sig: &Sensitive<String>,
    user: &UserId,
    sdk_app_id: u64,
) -> Result<(), IpcError> {
    let claims = usersig::inspect(sig.expose()).map_err(|e| {
        tracing::info!(error = %e, "a UserSig that does not decode");
        let words = match e {
            usersig::UserSigError::Malformed(usersig::Malformed::Empty) => "Paste a UserSig.",
            usersig::UserSigError::Malformed(usersig::Malformed::TooLong) => {
                "That is too long to be a UserSig. Copy just the UserSig your server issued."
            }
            usersig::UserSigError::WrongVersion { .. } => {
                "That UserSig is of a kind tincan does not know. Get a new one from your server."
            }
            _ => {
                "That is not a UserSig, or only part of one. Copy the whole UserSig your server \
                 issued and paste it again."
            }
        };
        IpcError::new(ErrorCode::UserSigInvalid, words)
    })?;
    if claims.identifier != user.as_str() {
        return Err(IpcError::new(
            ErrorCode::UserSigInvalid,
            format!(
                "That UserSig was issued for the user ID \"{}\", not \"{user}\".",
                claims.identifier
            ),
        ));
    }
    if sdk_app_id != 0 && claims.sdk_app_id != sdk_app_id {
        return Err(IpcError::new(
            ErrorCode::UserSigInvalid,
            format!(
                "That UserSig was issued for SDKAppID {}, not {sdk_app_id}.",
                claims.sdk_app_id
            ),
        ));
    }
    if now_secs() > claims.expires_at() {
        return Err(IpcError::new(
            ErrorCode::UserSigExpired,
            "Your sign-in has expired: this UserSig is no longer valid. Get a new one from your \
             server and sign in again.",
        ));
    }
    Ok(())
}

/// How the UserSig for each connection is made.
enum SigSource {
    /// Made fresh from a secret key at each attempt.
    Key { key: SecretKey, lifetime: u64 },
    /// Pasted once; checked for expiry at each attempt.
    Pasted(Sensitive<String>),
}

struct SessionConnector {
    url: String,
    user: UserId,
    device: DeviceId,
    sdk_app_id: u64,
    source: SigSource,
    /// Set when the local server is used: it is (re)started here when nothing serves it.
    host: Option<Arc<EmbeddedHost>>,
    creds: Credentials,
    sink: EventSink,
    tls: crate::transport::TlsOptions,
}

impl Connector for SessionConnector {
    fn plan(&self) -> BoxFuture<'_, Result<LoginPlan, PlanError>> {
        Box::pin(async move {
            if let Some(host) = &self.host {
                let creds = self.creds.clone();
                let started = host
                    .ensure(|| creds.embedded_secret().map_err(IpcError::from))
                    .await
                    .map_err(|error| PlanError {
                        error,
                        fatal: false,
                    })?;
                if started {
                    (self.sink)(AppEvent::Server {
                        server: ServerInfo::Embedded {
                            url: host.url(),
                            hosting: true,
                        },
                    });
                }
            }
            let sig = match &self.source {
                SigSource::Key { key, lifetime } => UserSigKey::new(self.sdk_app_id, key.clone())
                    .gen(&self.user, now_secs(), *lifetime, None),
                SigSource::Pasted(sig) => {
                    // (An expired one is removed from the keyring by the service's event sink,
                    // which sees this error.)
                    check_pasted_sig(sig, &self.user, self.sdk_app_id)
                        .map_err(|error| PlanError { error, fatal: true })?;
                    sig.expose().clone()
                }
            };
            Ok(LoginPlan {
                url: self.url.clone(),
                login: ClientMessage::Login {
                    version: PROTOCOL_VERSION,
                    sdk_app_id: self.sdk_app_id,
                    user_id: self.user.clone(),
                    user_sig: SigToken(sig),
                    device_id: self.device.clone(),
                },
                tls: self.tls.clone(),
            })
        })
    }
}
