//! Settings and call history of one profile, over a small key-value interface.
//!
//! The app backs it with tauri-plugin-store (one JSON file per profile, see `crate::shell`); tests back
//! it with [`MemoryKv`] or a JSON file. Nothing secret is stored here: secrets live in the keyring.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tincan_ipc::{
    CallOutcome, CallPhase, CallView, CredentialMode, ErrorCode, HistoryEntry, IpcError, Settings,
};
use tincan_proto::DeviceId;

/// A key-value store that can be flushed to disk.
pub trait Kv: Send + Sync + 'static {
    fn get(&self, key: &str) -> Option<Value>;
    fn set(&self, key: &str, value: Value);
    /// Writes to disk now.
    fn save(&self) -> Result<(), String>;
}

/// An in-memory [`Kv`], optionally mirrored to a JSON file (tests; survives "restarts").
#[derive(Debug, Default, Clone)]
pub struct MemoryKv {
    map: Arc<Mutex<HashMap<String, Value>>>,
    file: Option<std::path::PathBuf>,
}

impl MemoryKv {
    /// A store mirrored to `file`, loading what is there.
    pub fn with_file(file: std::path::PathBuf) -> Self {
        let map = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        Self {
            map: Arc::new(Mutex::new(map)),
            file: Some(file),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Kv for MemoryKv {
    fn get(&self, key: &str) -> Option<Value> {
        self.lock().get(key).cloned()
    }
    fn set(&self, key: &str, value: Value) {
        self.lock().insert(key.to_owned(), value);
    }
    fn save(&self) -> Result<(), String> {
        if let Some(f) = &self.file {
            let text = serde_json::to_string_pretty(&*self.lock()).map_err(|e| e.to_string())?;
            std::fs::write(f, text).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Moves the app's data folder from the one named after the old identifier (`old`) to the new one
/// (`new`), once: when `new` does not exist yet and `old` does. Profiles, settings, history and the
/// webview's data all live in it, so one rename carries them over (same parent folder, so the same
/// file system). Returns whether it moved. A failure leaves both as they were and starts fresh.
pub fn migrate_data_dir(old: &std::path::Path, new: &std::path::Path) -> bool {
    if new.exists() || !old.is_dir() {
        return false;
    }
    match std::fs::rename(old, new) {
        Ok(()) => {
            tracing::info!(from = %old.display(), to = %new.display(), "moved the data folder");
            true
        }
        Err(e) => {
            tracing::warn!(%e, from = %old.display(), "could not move the old data folder");
            false
        }
    }
}

fn storage_error(e: String) -> IpcError {
    IpcError::new(
        ErrorCode::Storage,
        format!("Could not save your settings or history: {e}"),
    )
}

const SETTINGS: &str = "settings";
const DEVICE_ID: &str = "device_id";
const LAST_USER: &str = "last_user_id";
const LAST_MODE: &str = "last_mode";
const LAST_SDK_APP_ID: &str = "last_sdk_app_id";
const HISTORY: &str = "history";
const SIGN_IN_AUTOMATICALLY: &str = "sign_in_automatically";
const START_AT_LOGIN_ASKED: &str = "start_at_login_asked";

/// Most entries kept in the history.
pub const HISTORY_LIMIT: usize = 200;

/// One profile's settings store.
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(kv: Arc<dyn Kv>) -> Self {
        Self { kv }
    }

    /// The settings; a missing or unreadable entry gives the defaults.
    pub fn settings(&self) -> Settings {
        self.kv
            .get(SETTINGS)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// Validates and saves new settings.
    pub fn save_settings(&self, s: &Settings) -> Result<(), IpcError> {
        s.validate()?;
        let mut s = s.clone();
        s.server_url = s
            .server_url
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        s.ca_file = s
            .ca_file
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        // Refused now rather than at the next sign-in: ws:// off this machine, an unreadable CA file.
        if let Some(url) = &s.server_url {
            crate::transport::check_url(url).map_err(|e| e.to_ipc(url))?;
        }
        if let Some(ca) = &s.ca_file {
            crate::transport::load_ca_file(std::path::Path::new(ca)).map_err(|e| e.to_ipc(ca))?;
        }
        let v = serde_json::to_value(&s).map_err(|e| storage_error(e.to_string()))?;
        self.kv.set(SETTINGS, v);
        self.kv.save().map_err(storage_error)
    }

    /// This install's device ID for this profile, made on first use.
    pub fn device_id(&self) -> DeviceId {
        if let Some(id) = self
            .kv
            .get(DEVICE_ID)
            .and_then(|v| v.as_str().and_then(|s| DeviceId::new(s).ok()))
        {
            return id;
        }
        let id = DeviceId::new(format!("desktop-{}", crate::credentials::random_hex(12)))
            .unwrap_or_else(|_| unreachable!("hex is a valid device ID"));
        self.kv
            .set(DEVICE_ID, Value::String(id.as_str().to_owned()));
        if let Err(e) = self.kv.save() {
            tracing::warn!(%e, "could not save the device ID");
        }
        id
    }

    /// Remembers who signed in last and how (no secret).
    pub fn remember_sign_in(
        &self,
        user: &str,
        mode: CredentialMode,
        sdk_app_id: Option<u64>,
    ) -> Result<(), IpcError> {
        self.kv.set(LAST_USER, Value::String(user.to_owned()));
        self.kv.set(
            LAST_MODE,
            serde_json::to_value(mode).map_err(|e| storage_error(e.to_string()))?,
        );
        self.kv.set(
            LAST_SDK_APP_ID,
            sdk_app_id.map(Value::from).unwrap_or(Value::Null),
        );
        self.kv.save().map_err(storage_error)
    }

    pub fn last_user_id(&self) -> Option<String> {
        self.kv.get(LAST_USER)?.as_str().map(str::to_owned)
    }
    pub fn last_mode(&self) -> Option<CredentialMode> {
        serde_json::from_value(self.kv.get(LAST_MODE)?).ok()
    }
    pub fn last_sdk_app_id(&self) -> Option<u64> {
        self.kv.get(LAST_SDK_APP_ID)?.as_u64()
    }

    /// "Sign in automatically": on unless the user turned it off.
    pub fn sign_in_automatically(&self) -> bool {
        self.kv
            .get(SIGN_IN_AUTOMATICALLY)
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
    }

    pub fn set_sign_in_automatically(&self, on: bool) -> Result<(), IpcError> {
        self.kv.set(SIGN_IN_AUTOMATICALLY, Value::Bool(on));
        self.kv.save().map_err(storage_error)
    }

    /// Whether "Start tincan when I log in?" was answered (it is asked once).
    pub fn start_at_login_asked(&self) -> bool {
        self.kv
            .get(START_AT_LOGIN_ASKED)
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    pub fn set_start_at_login_asked(&self) -> Result<(), IpcError> {
        self.kv.set(START_AT_LOGIN_ASKED, Value::Bool(true));
        self.kv.save().map_err(storage_error)
    }

    /// The history, newest first. Entries left `in_progress` by a crash read as `failed`.
    pub fn history(&self) -> Vec<HistoryEntry> {
        let mut entries: Vec<HistoryEntry> = self
            .kv
            .get(HISTORY)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        entries.sort_by_key(|e| std::cmp::Reverse(e.started_at_ms));
        entries
    }

    /// Marks calls a crash left "in progress" as failed (at start-up, before any call exists).
    pub fn close_interrupted(&self) -> Result<(), IpcError> {
        let mut entries = self.history();
        let mut changed = false;
        for e in entries
            .iter_mut()
            .filter(|e| e.outcome == CallOutcome::InProgress)
        {
            e.outcome = CallOutcome::Failed;
            changed = true;
        }
        if changed {
            self.write_history(entries)?;
        }
        Ok(())
    }

    fn write_history(&self, mut entries: Vec<HistoryEntry>) -> Result<(), IpcError> {
        entries.sort_by_key(|e| std::cmp::Reverse(e.started_at_ms));
        entries.truncate(HISTORY_LIMIT);
        let v = serde_json::to_value(&entries).map_err(|e| storage_error(e.to_string()))?;
        self.kv.set(HISTORY, v);
        self.kv.save().map_err(storage_error)
    }

    /// Records a call's state: written (and flushed) when it starts and again when it ends, so a
    /// crash mid-call leaves a trace. Returns whether the history changed.
    pub fn record_call(&self, call: &CallView) -> Result<bool, IpcError> {
        let outcome = match call.phase {
            CallPhase::Ended => CallOutcome::from_end(
                call.direction,
                call.connected_at_ms.is_some(),
                call.ended.as_ref().and_then(|e| e.reason),
            ),
            _ => CallOutcome::InProgress,
        };
        let duration_ms = match (call.phase, call.connected_at_ms) {
            (CallPhase::Ended, Some(c)) => Some(crate::signaling::now_ms().saturating_sub(c)),
            _ => None,
        };
        let mut entries = self.history();
        match entries.iter_mut().find(|e| e.call_id == call.call_id) {
            Some(e) => {
                if e.outcome == outcome {
                    return Ok(false);
                }
                e.outcome = outcome;
                if duration_ms.is_some() {
                    e.duration_ms = duration_ms;
                }
            }
            None => entries.push(HistoryEntry {
                call_id: call.call_id.clone(),
                peer: call.peer.clone(),
                direction: call.direction,
                started_at_ms: call.started_at_ms,
                duration_ms,
                outcome,
            }),
        }
        self.write_history(entries)?;
        Ok(true)
    }

    /// Adds calls that rang while this user was away.
    pub fn record_missed(&self, calls: &[tincan_proto::MissedCall]) -> Result<(), IpcError> {
        let mut entries = self.history();
        for m in calls {
            if entries.iter().any(|e| e.call_id == m.call_id) {
                continue;
            }
            entries.push(HistoryEntry {
                call_id: m.call_id.clone(),
                peer: m.caller.clone(),
                direction: tincan_ipc::Direction::Incoming,
                started_at_ms: m.at_ms,
                duration_ms: None,
                outcome: CallOutcome::Missed,
            });
        }
        self.write_history(entries)
    }

    pub fn clear_history(&self) -> Result<(), IpcError> {
        self.write_history(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_ipc::{CallEndInfo, Direction};
    use tincan_proto::{CallId, CallType, EndReason, UserId};

    fn call(id: &str, phase: CallPhase) -> CallView {
        CallView {
            call_id: CallId::new(id).unwrap(),
            peer: UserId::new("bob").unwrap(),
            direction: Direction::Outgoing,
            call_type: CallType::Audio,
            phase,
            started_at_ms: 1000,
            connected_at_ms: None,
            ended: None,
            timeout_secs: 30,
            muted: false,
            remote_muted: false,
            reconnecting: false,
            peer_reconnecting: false,
        }
    }

    #[test]
    fn settings_default_validate_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("settings.json");
        let s = Store::new(Arc::new(MemoryKv::with_file(file.clone())));
        assert_eq!(s.settings(), Settings::default());
        let mut new = Settings {
            server_url: Some("  wss://10.0.0.2:7480/ws ".into()),
            ring_timeout_secs: 45,
            ..Settings::default()
        };
        s.save_settings(&new).unwrap();
        // A fresh store over the same file (an app restart) reads it back, trimmed.
        let again = Store::new(Arc::new(MemoryKv::with_file(file)));
        new.server_url = Some("wss://10.0.0.2:7480/ws".into());
        assert_eq!(again.settings(), new);
        // Plain ws:// off this machine is refused with its own code; on loopback it is fine.
        let clear = Settings {
            server_url: Some("ws://10.0.0.2:7480/ws".into()),
            ..Settings::default()
        };
        let e = again.save_settings(&clear).unwrap_err();
        assert_eq!(e.code, ErrorCode::InsecureServerUrl);
        assert!(e.message.contains("wss://"), "{}", e.message);
        let local = Settings {
            server_url: Some("ws://127.0.0.1:7480/ws".into()),
            ..Settings::default()
        };
        again.save_settings(&local).unwrap();
        // A CA file that is not there, or holds no certificate, is refused.
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        for path in [dir.path().join("missing.pem"), not_pem] {
            let s = Settings {
                ca_file: Some(path.display().to_string()),
                ..Settings::default()
            };
            assert_eq!(again.save_settings(&s).unwrap_err().code, ErrorCode::CaFile);
        }
        let bad = Settings {
            server_url: Some("ftp://x".into()),
            ..Settings::default()
        };
        assert_eq!(
            again.save_settings(&bad).unwrap_err().code,
            ErrorCode::InvalidInput
        );
    }

    #[test]
    fn startup_flags_default_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("settings.json");
        let s = Store::new(Arc::new(MemoryKv::with_file(file.clone())));
        assert!(s.sign_in_automatically());
        assert!(!s.start_at_login_asked());
        s.set_sign_in_automatically(false).unwrap();
        s.set_start_at_login_asked().unwrap();
        let again = Store::new(Arc::new(MemoryKv::with_file(file)));
        assert!(!again.sign_in_automatically());
        assert!(again.start_at_login_asked());
    }

    #[test]
    fn the_old_data_folder_moves_once() {
        let root = tempfile::tempdir().unwrap();
        let old = root.path().join(crate::credentials::OLD_SERVICE);
        let new = root.path().join(crate::credentials::SERVICE);
        assert!(!migrate_data_dir(&old, &new), "nothing to move");
        let profile = old.join("profiles").join("alice");
        std::fs::create_dir_all(&profile).unwrap();
        let settings = Settings {
            ring_timeout_secs: 55,
            ..Settings::default()
        };
        Store::new(Arc::new(MemoryKv::with_file(profile.join("settings.json"))))
            .save_settings(&settings)
            .unwrap();
        assert!(migrate_data_dir(&old, &new));
        assert!(!old.exists());
        let moved = Store::new(Arc::new(MemoryKv::with_file(
            new.join("profiles/alice/settings.json"),
        )));
        assert_eq!(moved.settings().ring_timeout_secs, 55);
        // A new folder that exists wins: an old one that reappears (an old version still
        // running) is left alone.
        std::fs::create_dir_all(&old).unwrap();
        assert!(!migrate_data_dir(&old, &new));
        assert!(old.exists() && new.join("profiles/alice/settings.json").exists());
    }

    #[test]
    fn device_id_is_stable() {
        let s = Store::new(Arc::new(MemoryKv::default()));
        assert_eq!(s.device_id(), s.device_id());
    }

    #[test]
    fn history_written_at_start_and_end_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("history.json");
        let s = Store::new(Arc::new(MemoryKv::with_file(file.clone())));
        assert!(s.record_call(&call("c1", CallPhase::Dialing)).unwrap());
        // Ringing is the same outcome: no rewrite.
        assert!(!s.record_call(&call("c1", CallPhase::Ringing)).unwrap());
        // "Crash": a new store over the same file.
        let after = Store::new(Arc::new(MemoryKv::with_file(file)));
        assert_eq!(after.history()[0].outcome, CallOutcome::InProgress);
        after.close_interrupted().unwrap();
        assert_eq!(after.history()[0].outcome, CallOutcome::Failed);

        let mut ended = call("c2", CallPhase::Ringing);
        after.record_call(&ended).unwrap();
        ended.started_at_ms = 2000;
        ended.phase = CallPhase::Ended;
        ended.ended = Some(CallEndInfo {
            reason: Some(EndReason::Rejected),
            message: String::new(),
        });
        after.record_call(&ended).unwrap();
        let h = after.history();
        assert_eq!(h.len(), 2);
        let c2 = h.iter().find(|e| e.call_id.as_str() == "c2").unwrap();
        assert_eq!(c2.outcome, CallOutcome::Declined);
    }

    #[test]
    fn missed_calls_are_added_once() {
        let s = Store::new(Arc::new(MemoryKv::default()));
        let m = tincan_proto::MissedCall {
            call_id: CallId::new("m1").unwrap(),
            caller: UserId::new("carol").unwrap(),
            call_type: CallType::Audio,
            at_ms: 5,
        };
        s.record_missed(std::slice::from_ref(&m)).unwrap();
        s.record_missed(&[m]).unwrap();
        let h = s.history();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].outcome, CallOutcome::Missed);
    }
}
