//! The Tauri shell: window, tray, notifications, plugin-store wiring, the profile lock. Everything
//! with logic in it lives in plain modules; this file only connects them to Tauri.

use crate::credentials::{Credentials, KeyringStore, SERVICE};
use crate::embedded::{port_from_env, EmbeddedHost};
use crate::ipc::{self, Shared};
use crate::native_media::{self, NativeMedia};
use crate::service::{Service, ServiceConfig};
use crate::signaling::{EventSink, Timing};
use crate::storage::{Kv, Store};
use crate::tray::TrayModel;
use std::sync::{Arc, Mutex};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Emitter, Manager, Runtime, WindowEvent};
use tauri_plugin_notification::NotificationExt;
use tincan_ipc::{AppEvent, CallPhase, EVENT};
use tincan_proto::UserId;

/// Command-line options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--profile NAME`: separate settings, credentials and lock, for a second window.
    pub profile: String,
    /// `--server URL` (or `TINCAN_SERVER`): overrides the server address in settings.
    pub server: Option<String>,
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("--profile needs a name of 1-32 letters, digits, '_' or '-'")]
    BadProfile,
    #[error("--server needs a ws:// or wss:// address")]
    BadServer,
}

impl Options {
    /// Parses `--profile NAME` / `--profile=NAME` and `--server URL`; other arguments are ignored
    /// (WebDriver and desktop launchers add their own).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, OptionsError> {
        let mut o = Options {
            profile: "default".into(),
            server: std::env::var("TINCAN_SERVER")
                .ok()
                .filter(|s| !s.is_empty()),
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (key, inline) = match a.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (a.clone(), None),
            };
            match key.as_str() {
                "--profile" => {
                    let v = inline
                        .or_else(|| it.next())
                        .ok_or(OptionsError::BadProfile)?;
                    if UserId::new(v.as_str()).is_err() {
                        return Err(OptionsError::BadProfile);
                    }
                    o.profile = v;
                }
                "--server" => {
                    let v = inline
                        .or_else(|| it.next())
                        .ok_or(OptionsError::BadServer)?;
                    if !(v.starts_with("ws://") || v.starts_with("wss://")) {
                        return Err(OptionsError::BadServer);
                    }
                    o.server = Some(v);
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// tauri-plugin-store as the settings backend.
struct PluginKv<R: Runtime>(Arc<tauri_plugin_store::Store<R>>);

impl<R: Runtime> Kv for PluginKv<R> {
    fn get(&self, key: &str) -> Option<serde_json::Value> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: serde_json::Value) {
        self.0.set(key, value);
    }
    fn save(&self) -> Result<(), String> {
        self.0.save().map_err(|e| e.to_string())
    }
}

/// The tray and its menu items, updated as the session changes.
struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    status: MenuItem<R>,
    accept: MenuItem<R>,
    decline: MenuItem<R>,
    normal: Image<'static>,
    ringing: Image<'static>,
    model: Mutex<TrayModel>,
}

impl<R: Runtime> Tray<R> {
    /// Feeds the pure [`TrayModel`] and copies its view onto the tray.
    fn on_event(&self, ev: &AppEvent) {
        let view = {
            let mut model = lock(&self.model);
            if !model.apply(ev) {
                return;
            }
            model.view()
        };
        let icon = if view.ringing {
            &self.ringing
        } else {
            &self.normal
        };
        let result = self
            .status
            .set_text(&view.status)
            .and_then(|()| self.accept.set_text(&view.accept_label))
            .and_then(|()| self.accept.set_enabled(view.ringing))
            .and_then(|()| self.decline.set_enabled(view.ringing))
            .and_then(|()| self.icon.set_icon(Some(icon.clone())))
            .and_then(|()| self.icon.set_tooltip(Some(&view.tooltip)));
        if let Err(e) = result {
            tracing::debug!(%e, "tray update failed");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn show_window<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

fn build_tray<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<Tray<R>> {
    let show = MenuItem::with_id(app, "show", "Show tincan", true, None::<&str>)?;
    let status = MenuItem::with_id(app, "status", "Signed out", false, None::<&str>)?;
    let accept = MenuItem::with_id(app, "accept", "Accept call", false, None::<&str>)?;
    let decline = MenuItem::with_id(app, "decline", "Decline", false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit tincan", true, None::<&str>)?;
    let sep1 = PredefinedMenuItem::separator(app)?;
    let sep2 = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[&show, &status, &sep1, &accept, &decline, &sep2, &quit],
    )?;
    let normal = Image::from_bytes(include_bytes!("../icons/tray.png"))?.to_owned();
    let ringing = Image::from_bytes(include_bytes!("../icons/tray-ringing.png"))?.to_owned();
    let icon = TrayIconBuilder::with_id("main")
        .icon(normal.clone())
        .tooltip("tincan")
        .menu(&menu)
        .on_menu_event(|app, event| on_tray_menu(app, event.id.as_ref()))
        .build(app)?;
    Ok(Tray {
        icon,
        status,
        accept,
        decline,
        normal,
        ringing,
        model: Mutex::new(TrayModel::default()),
    })
}

fn on_tray_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let app = app.clone();
    match id {
        "show" => show_window(&app),
        "quit" => {
            tauri::async_runtime::spawn(async move {
                if let Some(shared) = app.try_state::<Shared>() {
                    shared.service.shutdown().await;
                }
                app.exit(0);
            });
        }
        "accept" | "decline" => {
            let accept = id == "accept";
            tauri::async_runtime::spawn(async move {
                let Some(shared) = app.try_state::<Shared>() else {
                    return;
                };
                let call = shared.service.current_call().await;
                let Some(call) = call.filter(|c| c.phase == CallPhase::Incoming) else {
                    return;
                };
                let r = if accept {
                    shared.service.accept(call.call_id).await
                } else {
                    shared.service.reject(call.call_id).await
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "tray action failed");
                }
                if accept {
                    show_window(&app);
                }
            });
        }
        _ => {}
    }
}

/// Takes the single-instance lock of a profile: a second window with the same profile would fight
/// over its settings and its device ID.
fn lock_profile(dir: &std::path::Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("instance.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(
            "this profile is already open in another tincan window; start a second window with \
             `--profile NAME`"
                .into(),
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// Runs the app.
pub fn run(options: Options) {
    let builder = tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::default().build())
        .plugin(tauri_plugin_notification::init())
        .plugin(crate::navigation::guard())
        .invoke_handler(tauri::generate_handler![
            ipc::get_state,
            ipc::sign_in,
            ipc::sign_out,
            ipc::forget_credentials,
            ipc::start_call,
            ipc::accept_call,
            ipc::reject_call,
            ipc::hang_up,
            ipc::set_muted,
            ipc::send_signal,
            ipc::get_settings,
            ipc::save_settings,
            ipc::get_history,
            ipc::clear_history,
            ipc::quit_app,
            native_media::commands::native_media_info,
            native_media::commands::native_media_devices,
            native_media::commands::native_media_start,
            native_media::commands::native_media_accept,
            native_media::commands::native_media_signal,
            native_media::commands::native_media_mute,
            native_media::commands::native_media_switch_input,
            native_media::commands::native_media_switch_output,
            native_media::commands::native_media_stop,
        ])
        .on_window_event(|window, event| {
            // Closing the window hides it: the app keeps receiving calls from the tray.
            if let WindowEvent::CloseRequested { api, .. } = event {
                if window.app_handle().tray_by_id("main").is_some() {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
        })
        .setup(move |app| {
            let handle = app.handle().clone();
            let profile = options.profile.clone();
            let data = app.path().app_data_dir()?.join("profiles").join(&profile);
            let lock = match lock_profile(&data) {
                Ok(f) => f,
                Err(msg) => {
                    eprintln!("tincan: {msg}");
                    std::process::exit(2);
                }
            };
            // Held for the life of the process.
            app.manage(ProfileLock(lock));
            if let Some(w) = app.get_webview_window("main") {
                crate::webview::enable_media(&w);
            }
            if profile != "default" {
                if let Some(w) = app.get_webview_window("main") {
                    let _ = w.set_title(&format!("tincan — {profile}"));
                }
            }
            let store = tauri_plugin_store::StoreExt::store(
                app,
                format!("profiles/{profile}/settings.json"),
            )?;
            let tray = match build_tray(&handle) {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    tracing::warn!(%e, "no tray icon");
                    None
                }
            };
            let emit_handle = handle.clone();
            let sink: EventSink = Arc::new(move |ev: AppEvent| {
                ipc::audit("event", &ev);
                if let Some(t) = &tray {
                    t.on_event(&ev);
                }
                if let AppEvent::Incoming { caller, .. } = &ev {
                    let shown = emit_handle
                        .notification()
                        .builder()
                        .title("Incoming call")
                        .body(format!("{caller} is calling you"))
                        .show();
                    if let Err(e) = shown {
                        tracing::info!(%e, "no desktop notification");
                    }
                    show_window(&emit_handle);
                }
                if let Err(e) = emit_handle.emit(EVENT, &ev) {
                    tracing::warn!(%e, "could not emit an event");
                }
            });
            app.manage(NativeMedia::new(sink.clone()));
            // The first call should not wait for GStreamer's first-time work (DTLS key, plugins);
            // done on a thread of its own.
            tincan_media::warm_up();
            let service = Service::new(ServiceConfig {
                profile,
                credentials: Credentials::new(
                    Arc::new(KeyringStore::new(SERVICE)),
                    options.profile.clone(),
                ),
                store: Store::new(Arc::new(PluginKv(store))),
                host: Arc::new(EmbeddedHost::new(port_from_env())),
                server_override: options.server.clone(),
                sink,
                timing: Timing::default(),
            });
            app.manage(Shared {
                service: Arc::new(service),
            });
            Ok(())
        });
    let app = match builder.build(tauri::generate_context!()) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("tincan: cannot start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            if let Some(shared) = handle.try_state::<Shared>() {
                let service = shared.service.clone();
                tauri::async_runtime::block_on(async move { service.shutdown().await });
            }
        }
    });
}

struct ProfileLock(#[allow(dead_code)] std::fs::File);

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse() {
        let o = Options::parse(args(&["--profile", "bob", "--server=ws://h:1/ws"])).unwrap();
        assert_eq!(o.profile, "bob");
        assert_eq!(o.server.as_deref(), Some("ws://h:1/ws"));
        assert_eq!(
            Options::parse(args(&["--profile", "no spaces"])),
            Err(OptionsError::BadProfile)
        );
        assert_eq!(
            Options::parse(args(&["--server", "http://x"])),
            Err(OptionsError::BadServer)
        );
        assert_eq!(Options::parse(args(&[])).unwrap().profile, "default");
    }

    #[test]
    fn profile_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_profile(dir.path()).unwrap();
        assert!(lock_profile(dir.path()).is_err());
        drop(first);
        assert!(lock_profile(dir.path()).is_ok());
    }
}
