//! What happens at launch and at login: "Sign in automatically" (a flag in the profile's settings
//! store, acted on by [`crate::service::Service::sign_in_at_launch`]) and "Start tincan when I log
//! in" (tauri-plugin-autostart: an XDG autostart `.desktop` file on Linux, a LaunchAgent on macOS,
//! the Run key on Windows). Off by default and asked once: the UI asks while
//! `start_at_login_asked` is false, and any answer sets it.
//!
//! Each profile has its own entry (`tincan.desktop` for the default profile,
//! `tincan-<profile>.desktop` otherwise, starting `tincan --profile <profile>`), so turning it on in
//! one profile does not start another. On Linux the plugin writes to `$HOME/.config/autostart`
//! (the `auto-launch` crate ignores `XDG_CONFIG_HOME`); that is where every desktop looks unless
//! the user moved their config folder.

use crate::ipc::{audit, Shared};
use tauri::plugin::TauriPlugin;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_autostart::ManagerExt;
use tincan_ipc::{ErrorCode, IpcError, Startup, StartupArgs};

/// The autostart entry's name for a profile (the `.desktop` file's stem on Linux).
pub fn entry_name(profile: &str) -> String {
    if profile == "default" {
        "tincan".into()
    } else {
        format!("tincan-{profile}")
    }
}

/// The plugin, set up for `profile`: the entry starts this executable with that profile.
pub fn plugin<R: Runtime>(profile: &str) -> TauriPlugin<R> {
    let mut builder = tauri_plugin_autostart::Builder::new().app_name(entry_name(profile));
    if profile != "default" {
        builder = builder.args(["--profile", profile]);
    }
    builder.build()
}

fn autostart_error(e: impl std::fmt::Display) -> IpcError {
    tracing::warn!(%e, "autostart");
    IpcError::new(
        ErrorCode::Autostart,
        "tincan could not change whether it starts when you log in.",
    )
}

fn current<R: Runtime>(app: &AppHandle<R>, s: &Shared) -> Result<Startup, IpcError> {
    let store = s.service.store();
    Ok(Startup {
        sign_in_automatically: store.sign_in_automatically(),
        start_at_login: app.autolaunch().is_enabled().map_err(autostart_error)?,
        start_at_login_asked: store.start_at_login_asked(),
    })
}

/// `get_startup`.
#[tauri::command]
pub async fn get_startup<R: Runtime>(
    app: AppHandle<R>,
    s: State<'_, Shared>,
) -> Result<Startup, IpcError> {
    let r = current(&app, &s);
    match &r {
        Ok(v) => audit("get_startup", v),
        Err(e) => audit("get_startup", e),
    }
    r
}

/// `set_startup`: changes what `args` sets, and returns the result as read back.
#[tauri::command]
pub async fn set_startup<R: Runtime>(
    app: AppHandle<R>,
    s: State<'_, Shared>,
    args: StartupArgs,
) -> Result<Startup, IpcError> {
    let r = set(&app, &s, args);
    match &r {
        Ok(v) => audit("set_startup", v),
        Err(e) => audit("set_startup", e),
    }
    r
}

fn set<R: Runtime>(app: &AppHandle<R>, s: &Shared, args: StartupArgs) -> Result<Startup, IpcError> {
    let store = s.service.store();
    if let Some(on) = args.sign_in_automatically {
        store.set_sign_in_automatically(on)?;
    }
    if let Some(on) = args.start_at_login {
        let manager = app.autolaunch();
        if on {
            manager.enable().map_err(autostart_error)?;
        } else {
            manager.disable().map_err(autostart_error)?;
        }
        store.set_start_at_login_asked()?;
        tracing::info!(on, "start at login");
    }
    current(app, s)
}
