//! The Tauri commands: thin wrappers over [`crate::service::Service`]. Arguments and results are the
//! types of `tincan-ipc`; errors cross as `{code, message}`.
//!
//! With `TINCAN_IPC_AUDIT=<file>` every command result and every event is also appended to that file
//! as one JSON line, so a test can check that no secret ever reaches the webview.

use crate::service::Service;
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use tincan_ipc::{
    AppState, CallArgs, CallView, HistoryEntry, IpcError, MuteArgs, SavedCredentials, Settings,
    SignInArgs, SignalArgs, StartCallArgs,
};

/// The app-wide state Tauri hands to commands.
pub struct Shared {
    pub service: Arc<Service>,
}

type Res<T> = Result<T, IpcError>;

/// Appends a line to the audit file, when one is configured.
pub fn audit<T: Serialize>(what: &str, value: &T) {
    let Some(path) = std::env::var_os("TINCAN_IPC_AUDIT") else {
        return;
    };
    // One whole line per write, one writer at a time: events and command results come from
    // several threads at once.
    static WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let line = format!("{}\n", serde_json::json!({ "what": what, "value": value }));
    let _guard = WRITER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(%e, "could not write the IPC audit file");
    }
}

fn audited<T: Serialize>(cmd: &str, r: Res<T>) -> Res<T> {
    // The message in plain words (the code stays): see `crate::plain`.
    let r = r.map_err(crate::plain::plain);
    match &r {
        Ok(v) => audit(cmd, v),
        Err(e) => audit(cmd, e),
    }
    r
}

#[tauri::command]
pub async fn get_state(s: tauri::State<'_, Shared>) -> Res<AppState> {
    audited("get_state", Ok(s.service.state().await))
}

#[tauri::command]
pub async fn sign_in(s: tauri::State<'_, Shared>, args: SignInArgs) -> Res<AppState> {
    audited("sign_in", s.service.sign_in(args).await)
}

#[tauri::command]
pub async fn sign_out(s: tauri::State<'_, Shared>) -> Res<AppState> {
    s.service.sign_out().await;
    audited("sign_out", Ok(s.service.state().await))
}

#[tauri::command]
pub async fn forget_credentials(s: tauri::State<'_, Shared>) -> Res<SavedCredentials> {
    audited("forget_credentials", s.service.forget_credentials().await)
}

#[tauri::command]
pub async fn start_call(s: tauri::State<'_, Shared>, args: StartCallArgs) -> Res<CallView> {
    audited("start_call", s.service.start_call(&args.callee).await)
}

#[tauri::command]
pub async fn accept_call(s: tauri::State<'_, Shared>, args: CallArgs) -> Res<()> {
    audited("accept_call", s.service.accept(args.call_id).await)
}

#[tauri::command]
pub async fn reject_call(s: tauri::State<'_, Shared>, args: CallArgs) -> Res<()> {
    audited("reject_call", s.service.reject(args.call_id).await)
}

#[tauri::command]
pub async fn hang_up(s: tauri::State<'_, Shared>, args: CallArgs) -> Res<()> {
    audited("hang_up", s.service.hang_up(args.call_id).await)
}

#[tauri::command]
pub async fn set_muted(s: tauri::State<'_, Shared>, args: MuteArgs) -> Res<()> {
    audited("set_muted", s.service.set_muted(args.muted).await)
}

#[tauri::command]
pub async fn send_signal(s: tauri::State<'_, Shared>, args: SignalArgs) -> Res<()> {
    audited(
        "send_signal",
        s.service.send_signal(args.call_id, args.signal).await,
    )
}

#[tauri::command]
pub async fn get_settings(s: tauri::State<'_, Shared>) -> Res<Settings> {
    audited("get_settings", Ok(s.service.settings()))
}

#[tauri::command]
pub async fn save_settings(s: tauri::State<'_, Shared>, settings: Settings) -> Res<AppState> {
    audited("save_settings", s.service.save_settings(settings).await)
}

#[tauri::command]
pub async fn get_history(s: tauri::State<'_, Shared>) -> Res<Vec<HistoryEntry>> {
    audited("get_history", Ok(s.service.history()))
}

/// Quits the app: signs out, hands the local server over to other windows, exits.
#[tauri::command]
pub async fn quit_app(app: tauri::AppHandle, s: tauri::State<'_, Shared>) -> Res<()> {
    audit("quit_app", &());
    s.service.shutdown().await;
    app.exit(0);
    Ok(())
}

#[tauri::command]
pub async fn clear_history(s: tauri::State<'_, Shared>) -> Res<Vec<HistoryEntry>> {
    audited("clear_history", s.service.clear_history())
}
