//! Credentials against a real Secret Service (gnome-keyring). These need a session bus with an
//! unlocked keyring, so they are `#[ignore]`d in a plain `cargo test`; scripts/test-desktop.sh runs
//! them under `dbus-run-session` with HOME and XDG dirs in a temporary folder:
//!
//! - `real_*` inside a session with gnome-keyring unlocked;
//! - `no_secret_service_*` with `DBUS_SESSION_BUS_ADDRESS` pointing nowhere.

use std::sync::Arc;
use tincan_app::credentials::{Credentials, KeyringStore, SecretStore, SERVICE};
use tincan_ipc::{ErrorCode, IpcError};
use tincan_proto::{SecretKey, Sensitive};

fn service() -> String {
    // A per-run namespace, so reruns and parallel tests never see each other's entries.
    format!("{SERVICE}.test.{}", std::process::id())
}

#[test]
#[ignore = "needs a Secret Service: run scripts/test-desktop.sh"]
fn real_keyring_round_trip_and_forget() {
    let store = Arc::new(KeyringStore::new(service()));
    let alice = Credentials::new(store.clone(), "alice");
    let bob = Credentials::new(store.clone(), "bob");
    alice.forget().expect("forget on an empty keyring is fine");
    assert!(alice.secret_key().expect("read").is_none());

    alice
        .save_secret_key(&SecretKey::new("k-alice-123".into()))
        .expect("save key");
    alice
        .save_user_sig(&Sensitive::new("sig-alice".into()))
        .expect("save sig");
    assert_eq!(alice.secret_key().unwrap().unwrap().expose(), "k-alice-123");
    assert_eq!(alice.user_sig().unwrap().unwrap().expose(), "sig-alice");
    // Profiles are separate.
    assert!(bob.secret_key().unwrap().is_none());
    // Overwrite.
    alice
        .save_secret_key(&SecretKey::new("k-alice-456".into()))
        .unwrap();
    assert_eq!(alice.secret_key().unwrap().unwrap().expose(), "k-alice-456");
    // Debug never shows it.
    let k = alice.secret_key().unwrap().unwrap();
    assert!(!format!("{k:?}").contains("k-alice"));

    alice.forget().expect("forget");
    assert!(alice.secret_key().unwrap().is_none());
    assert!(alice.user_sig().unwrap().is_none());
}

#[test]
#[ignore = "needs a Secret Service: run scripts/test-desktop.sh"]
fn real_keyring_embedded_secret_is_stable() {
    let store: Arc<dyn SecretStore> = Arc::new(KeyringStore::new(service()));
    let first = Credentials::new(store.clone(), "a")
        .embedded_secret()
        .expect("create");
    let second = Credentials::new(store.clone(), "b")
        .embedded_secret()
        .expect("read back");
    assert_eq!(first.expose(), second.expose());
    store
        .delete(tincan_app::credentials::EMBEDDED_ACCOUNT)
        .expect("clean up");
}

#[test]
#[ignore = "run with DBUS_SESSION_BUS_ADDRESS pointing nowhere: scripts/test-desktop.sh"]
fn no_secret_service_gives_a_clear_error() {
    let store = Arc::new(KeyringStore::new(service()));
    let c = Credentials::new(store, "alice");
    let err = c
        .save_secret_key(&SecretKey::new("k".into()))
        .expect_err("no keyring here");
    let ipc: IpcError = err.into();
    assert_eq!(ipc.code, ErrorCode::KeyringUnavailable, "{}", ipc.message);
    assert!(ipc.message.contains("gnome-keyring"), "{}", ipc.message);
}
