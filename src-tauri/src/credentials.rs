//! Secrets in the OS keyring: the secret key (SDKAppID + key sign-in), a pasted UserSig, and the key of
//! the embedded local server.
//!
//! Every secret is held in a [`Sensitive`] the moment it is read, so it cannot be printed or serialized.
//! Entries are namespaced by the app identifier (the keyring "service") and the profile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tincan_ipc::{ErrorCode, IpcError};
use tincan_proto::{SecretKey, Sensitive};

/// The keyring service every entry lives under (the Tauri app identifier, tauri.conf.json).
pub const SERVICE: &str = "dev.tincan.desktop";

/// The identifier (and keyring service) of earlier builds. It ended in `.app`, which clashes
/// with the macOS bundle extension (`tauri build` warns); entries under it are moved to [`SERVICE`]
/// at launch ([`migrate`]), and the data folder named after it is moved by the shell.
pub const OLD_SERVICE: &str = "dev.tincan.app";

/// Account of the embedded server's key. Shared by all profiles, so any window can host the server.
pub const EMBEDDED_ACCOUNT: &str = "embedded-server/secret-key";

/// What goes wrong with the keyring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No Secret Service / Keychain / Credential Manager to talk to. The message is what a user
    /// reads; `detail` (the D-Bus error) goes to the log only.
    #[error(
        "No keyring is running, so tincan has nowhere safe to keep your credentials. Install \
         gnome-keyring (or another keyring), sign in to your desktop again, then try again."
    )]
    Unavailable { detail: String },
    /// The keyring answered but failed (locked and not unlocked, refused, …).
    #[error(
        "The keyring did not let tincan read or save your credentials. Unlock it and try again."
    )]
    Keyring { detail: String },
}

impl CredentialError {
    /// What the keyring library said, for the log.
    pub fn detail(&self) -> &str {
        match self {
            CredentialError::Unavailable { detail } | CredentialError::Keyring { detail } => detail,
        }
    }
}

impl From<CredentialError> for IpcError {
    fn from(e: CredentialError) -> Self {
        let code = match e {
            CredentialError::Unavailable { .. } => ErrorCode::KeyringUnavailable,
            CredentialError::Keyring { .. } => ErrorCode::Keyring,
        };
        tracing::warn!(detail = e.detail(), ?code, "keyring");
        IpcError::new(code, e.to_string())
    }
}

/// Somewhere to keep secrets. The app uses [`KeyringStore`]; tests of the logic use [`MemoryStore`].
pub trait SecretStore: Send + Sync + 'static {
    fn get(&self, account: &str) -> Result<Option<Sensitive<String>>, CredentialError>;
    fn set(&self, account: &str, secret: &Sensitive<String>) -> Result<(), CredentialError>;
    /// Removes an entry; removing a missing one is not an error.
    fn delete(&self, account: &str) -> Result<(), CredentialError>;
}

/// The OS keyring (Secret Service on Linux, Keychain on macOS, Credential Manager on Windows).
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
}

impl KeyringStore {
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    fn entry(&self, account: &str) -> Result<keyring::Entry, CredentialError> {
        keyring::Entry::new(&self.service, account).map_err(map_keyring_error)
    }
}

/// Tells "there is no keyring at all" apart from other failures, so the user gets an actionable message.
fn map_keyring_error(e: keyring::Error) -> CredentialError {
    let detail = e.to_string();
    match e {
        keyring::Error::NoStorageAccess(_) => CredentialError::Unavailable { detail },
        keyring::Error::PlatformFailure(_) => {
            let lower = detail.to_lowercase();
            if lower.contains("dbus")
                || lower.contains("d-bus")
                || lower.contains("secret service")
                || lower.contains("org.freedesktop.secrets")
                || lower.contains("autolaunch")
                || lower.contains("no such file")
            {
                CredentialError::Unavailable { detail }
            } else {
                CredentialError::Keyring { detail }
            }
        }
        _ => CredentialError::Keyring { detail },
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, account: &str) -> Result<Option<Sensitive<String>>, CredentialError> {
        match self.entry(account)?.get_password() {
            Ok(p) => Ok(Some(Sensitive::new(p))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring_error(e)),
        }
    }

    fn set(&self, account: &str, secret: &Sensitive<String>) -> Result<(), CredentialError> {
        self.entry(account)?
            .set_password(secret.expose())
            .map_err(map_keyring_error)
    }

    fn delete(&self, account: &str) -> Result<(), CredentialError> {
        match self.entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring_error(e)),
        }
    }
}

/// An in-memory store for tests of the logic above the keyring.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    entries: Arc<Mutex<HashMap<String, Sensitive<String>>>>,
    /// When set, every call fails as if no keyring were running.
    pub unavailable: bool,
}

impl MemoryStore {
    /// A store that fails as if no Secret Service were running.
    pub fn unavailable() -> Self {
        Self {
            unavailable: true,
            ..Self::default()
        }
    }

    fn check(&self) -> Result<(), CredentialError> {
        if self.unavailable {
            return Err(CredentialError::Unavailable {
                detail: "test: no Secret Service".into(),
            });
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sensitive<String>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, account: &str) -> Result<Option<Sensitive<String>>, CredentialError> {
        self.check()?;
        Ok(self.lock().get(account).cloned())
    }
    fn set(&self, account: &str, secret: &Sensitive<String>) -> Result<(), CredentialError> {
        self.check()?;
        self.lock().insert(account.to_owned(), secret.clone());
        Ok(())
    }
    fn delete(&self, account: &str) -> Result<(), CredentialError> {
        self.check()?;
        self.lock().remove(account);
        Ok(())
    }
}

/// One profile's credentials.
#[derive(Clone)]
pub struct Credentials {
    store: Arc<dyn SecretStore>,
    profile: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(store: Arc<dyn SecretStore>, profile: impl Into<String>) -> Self {
        Self {
            store,
            profile: profile.into(),
        }
    }

    fn account(&self, what: &str) -> String {
        format!("profile/{}/{what}", self.profile)
    }

    /// Saves the secret key for SDKAppID + key sign-in.
    pub fn save_secret_key(&self, key: &SecretKey) -> Result<(), CredentialError> {
        self.store.set(&self.account("secret-key"), key)
    }

    pub fn secret_key(&self) -> Result<Option<SecretKey>, CredentialError> {
        self.store.get(&self.account("secret-key"))
    }

    /// Saves a UserSig pasted from the user's own server.
    pub fn save_user_sig(&self, sig: &Sensitive<String>) -> Result<(), CredentialError> {
        self.store.set(&self.account("user-sig"), sig)
    }

    pub fn user_sig(&self) -> Result<Option<Sensitive<String>>, CredentialError> {
        self.store.get(&self.account("user-sig"))
    }

    /// Removes this profile's pasted UserSig (one the server refused, or that expired).
    pub fn forget_user_sig(&self) -> Result<(), CredentialError> {
        self.store.delete(&self.account("user-sig"))
    }

    /// Removes this profile's secret key and UserSig (the embedded server's key stays: other
    /// profiles may use it, and it never leaves this machine).
    pub fn forget(&self) -> Result<(), CredentialError> {
        self.store.delete(&self.account("secret-key"))?;
        self.store.delete(&self.account("user-sig"))
    }

    /// The embedded server's key, generated on first use and kept in the keyring.
    pub fn embedded_secret(&self) -> Result<SecretKey, CredentialError> {
        if let Some(k) = self.store.get(EMBEDDED_ACCOUNT)? {
            return Ok(k);
        }
        let key = SecretKey::new(random_hex(32));
        self.store.set(EMBEDDED_ACCOUNT, &key)?;
        // Read back, so two windows racing to create it end up with the same key.
        Ok(self.store.get(EMBEDDED_ACCOUNT)?.unwrap_or(key))
    }
}

/// Moves this profile's entries and the embedded server's key from `old` (the keyring service of
/// the old identifier) to `new`, where `new` has none yet: the first launch after the identifier
/// changed finds the credentials saved before. Returns how many entries moved. Idempotent, so it
/// runs at every launch (a profile first opened later migrates then).
pub fn migrate(
    old: &dyn SecretStore,
    new: &dyn SecretStore,
    profile: &str,
) -> Result<usize, CredentialError> {
    let accounts = [
        format!("profile/{profile}/secret-key"),
        format!("profile/{profile}/user-sig"),
        EMBEDDED_ACCOUNT.to_owned(),
    ];
    let mut moved = 0;
    for account in &accounts {
        let Some(secret) = old.get(account)? else {
            continue;
        };
        if new.get(account)?.is_none() {
            new.set(account, &secret)?;
            moved += 1;
        }
        old.delete(account)?;
    }
    Ok(moved)
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_forget() {
        let store = Arc::new(MemoryStore::default());
        let c = Credentials::new(store.clone(), "alice");
        assert!(c.secret_key().unwrap().is_none());
        c.save_secret_key(&SecretKey::new("k1".into())).unwrap();
        c.save_user_sig(&Sensitive::new("sig".into())).unwrap();
        assert_eq!(c.secret_key().unwrap().unwrap().expose(), "k1");
        // Another profile does not see it.
        let other = Credentials::new(store, "bob");
        assert!(other.secret_key().unwrap().is_none());
        c.forget().unwrap();
        assert!(c.secret_key().unwrap().is_none());
        assert!(c.user_sig().unwrap().is_none());
    }

    #[test]
    fn embedded_secret_is_made_once_and_shared() {
        let store = Arc::new(MemoryStore::default());
        let a = Credentials::new(store.clone(), "a")
            .embedded_secret()
            .unwrap();
        let b = Credentials::new(store, "b").embedded_secret().unwrap();
        assert_eq!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
    }

    #[test]
    fn no_keyring_is_a_clear_typed_error() {
        let store = Arc::new(MemoryStore {
            unavailable: true,
            ..MemoryStore::default()
        });
        let err = Credentials::new(store, "a").secret_key().unwrap_err();
        let ipc: IpcError = err.into();
        assert_eq!(ipc.code, ErrorCode::KeyringUnavailable);
        assert!(ipc.message.contains("gnome-keyring"));
        // A short sentence: no command lines, no D-Bus detail (that goes to the log).
        assert!(!ipc.message.contains('`'), "{}", ipc.message);
        assert!(
            !ipc.message.contains("test: no Secret Service"),
            "{}",
            ipc.message
        );
        assert!(ipc.message.len() < 200, "{}", ipc.message);
    }

    #[test]
    fn migration_moves_entries_once_and_keeps_newer_ones() {
        let old = MemoryStore::default();
        let new = MemoryStore::default();
        let o = Credentials::new(Arc::new(old.clone()), "alice");
        o.save_secret_key(&SecretKey::new("k-old".into())).unwrap();
        o.save_user_sig(&Sensitive::new("sig-old".into())).unwrap();
        old.set(EMBEDDED_ACCOUNT, &Sensitive::new("emb-old".into()))
            .unwrap();
        // The new service already has an embedded key (another profile migrated or made one).
        new.set(EMBEDDED_ACCOUNT, &Sensitive::new("emb-new".into()))
            .unwrap();
        assert_eq!(migrate(&old, &new, "alice").unwrap(), 2);
        let n = Credentials::new(Arc::new(new.clone()), "alice");
        assert_eq!(n.secret_key().unwrap().unwrap().expose(), "k-old");
        assert_eq!(n.user_sig().unwrap().unwrap().expose(), "sig-old");
        assert_eq!(n.embedded_secret().unwrap().expose(), "emb-new");
        assert!(o.secret_key().unwrap().is_none());
        assert!(old.get(EMBEDDED_ACCOUNT).unwrap().is_none());
        // Again: nothing left to move.
        assert_eq!(migrate(&old, &new, "alice").unwrap(), 0);
    }
}
