//! The Tauri shell: window, tray, notifications, plugin-store wiring, the profile lock. Everything
//! with logic in it lives in plain modules; this file only connects them to Tauri.

use crate::credentials::{Credentials, KeyringStore, OLD_SERVICE, SERVICE};
use crate::embedded::{port_from_env, EmbeddedHost};
use crate::ipc::{self, Shared};
use crate::native_media::{self, NativeMedia};
use crate::notifications::{Choice, RingNotice};
use crate::service::{Service, ServiceConfig};
use crate::signaling::{EventSink, Timing};
use crate::storage::{Kv, Store};
use crate::tray::{TrayModel, TrayView};
use std::sync::{Arc, Mutex};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Emitter, Manager, Runtime, WindowEvent};
use tincan_ipc::{AppEvent, CallPhase, EVENT};
use tincan_proto::{CallId, UserId};

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

/// macOS / Windows: tauri's tray and its menu items, updated as the session changes. (Linux has
/// [`crate::sni`] instead: tauri's tray there is libappindicator, with no tooltip, no attention
/// state and icon files shared between profiles.) tray-icon writes no icon files on these systems.
#[cfg_attr(target_os = "linux", allow(dead_code))]
struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    status: MenuItem<R>,
    accept: MenuItem<R>,
    decline: MenuItem<R>,
    normal: Image<'static>,
    ringing: Image<'static>,
    model: Mutex<(TrayModel, TrayView)>,
}

#[cfg_attr(target_os = "linux", allow(dead_code))]
impl<R: Runtime> Tray<R> {
    /// Feeds the pure [`TrayModel`] and copies what changed in its view onto the tray (the icon
    /// only when ringing starts or stops).
    fn on_event(&self, ev: &AppEvent) {
        let (view, old) = {
            let mut guard = lock(&self.model);
            let (model, last) = &mut *guard;
            if !model.apply(ev) {
                return;
            }
            let view = model.view();
            if view == *last {
                return;
            }
            (view.clone(), std::mem::replace(last, view))
        };
        let mut result = self
            .status
            .set_text(&view.status)
            .and_then(|()| self.accept.set_text(&view.accept_label))
            .and_then(|()| self.accept.set_enabled(view.ringing))
            .and_then(|()| self.decline.set_enabled(view.ringing))
            .and_then(|()| self.icon.set_tooltip(Some(&view.tooltip)));
        if view.ringing != old.ringing {
            let icon = if view.ringing {
                &self.ringing
            } else {
                &self.normal
            };
            result = result.and_then(|()| self.icon.set_icon(Some(icon.clone())));
        }
        if let Err(e) = result {
            tracing::debug!(%e, "tray update failed");
        }
    }
}

/// Whether this app has a tray icon a user can reach: closing the window then hides it (calls still
/// ring); without one, closing quits, since nothing could bring the window back.
struct HasTray(Box<dyn Fn() -> bool + Send + Sync>);

fn tray_icons() -> tauri::Result<(Image<'static>, Image<'static>)> {
    Ok((
        Image::from_bytes(include_bytes!("../icons/tray.png"))?.to_owned(),
        Image::from_bytes(include_bytes!("../icons/tray-ringing.png"))?.to_owned(),
    ))
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

#[cfg_attr(target_os = "linux", allow(dead_code))]
fn build_tray<R: Runtime>(app: &AppHandle<R>, profile: &str) -> tauri::Result<Tray<R>> {
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
    let (normal, ringing) = tray_icons()?;
    // An id of the profile's own: two profiles are two processes, each with its tray.
    let icon = TrayIconBuilder::with_id(crate::tray::item_id(profile))
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
        model: Mutex::new((TrayModel::default(), TrayModel::default().view())),
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
        "accept" => answer(app, None, true),
        "decline" => answer(app, None, false),
        _ => {}
    }
}

/// Accepts or declines the call ringing here (`only`: if it is still that call), from the tray or
/// the notification. Accepting shows the window: the user asked for the call.
fn answer<R: Runtime>(app: AppHandle<R>, only: Option<CallId>, accept: bool) {
    tauri::async_runtime::spawn(async move {
        let Some(shared) = app.try_state::<Shared>() else {
            return;
        };
        let call = shared.service.current_call().await;
        let Some(call) = call.filter(|c| {
            c.phase == CallPhase::Incoming && only.as_ref().is_none_or(|id| *id == c.call_id)
        }) else {
            return;
        };
        let r = if accept {
            shared.service.accept(call.call_id).await
        } else {
            shared.service.reject(call.call_id).await
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "answer from the tray or notification failed");
        }
        if accept {
            show_window(&app);
        }
    });
}

/// The user's choice on the ringing notification.
fn on_notice_choice<R: Runtime>(app: &AppHandle<R>, call_id: CallId, choice: Choice) {
    match choice {
        Choice::Accept => answer(app.clone(), Some(call_id), true),
        Choice::Decline => answer(app.clone(), Some(call_id), false),
        Choice::Show => show_window(app),
    }
}

/// Shows an event on the tray and the notification.
type Present = Box<dyn Fn(&AppEvent) + Send + Sync>;

/// The tray and the ringing notification for this platform; returns what the event sink feeds
/// and whether there is a tray.
fn desktop_presence<R: Runtime>(app: &AppHandle<R>, profile: &str) -> (Present, HasTray) {
    let notice = Mutex::new(RingNotice::default());
    #[cfg(target_os = "linux")]
    {
        let presence = Arc::new(crate::sni::Presence::default());
        let model = Mutex::new(TrayModel::default());
        let (views, rx) = tokio::sync::watch::channel(TrayModel::default().view());
        match tray_icons() {
            Ok((normal, ringing)) => {
                let menu_app = app.clone();
                let on_menu: crate::sni::OnMenu =
                    Arc::new(move |id: &str| on_tray_menu(&menu_app, id));
                let tray = crate::sni::SniTray::new(
                    profile,
                    TrayModel::default().view(),
                    &normal,
                    &ringing,
                    on_menu,
                    presence.clone(),
                );
                crate::sni::spawn(tray, rx, presence.clone());
            }
            Err(e) => tracing::warn!(%e, "no tray icon"),
        }
        let choice_app = app.clone();
        let notices = crate::notifications::linux::spawn(
            crate::tray::title(profile),
            Arc::new(move |call_id, choice| on_notice_choice(&choice_app, call_id, choice)),
        );
        let feed = move |ev: &AppEvent| {
            {
                let mut m = lock(&model);
                if m.apply(ev) {
                    // The watch skips an unchanged view: nothing is sent to the bus for it.
                    views.send_if_modified(|v| {
                        let next = m.view();
                        let changed = *v != next;
                        *v = next;
                        changed
                    });
                }
            }
            for action in lock(&notice).apply(ev) {
                let _ = notices.send(action);
            }
        };
        let has = HasTray(Box::new(move || presence.online()));
        (Box::new(feed), has)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let tray = match build_tray(app, profile) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(%e, "no tray icon");
                None
            }
        };
        let has = tray.is_some();
        let notices = plugin_notices(app);
        let feed = move |ev: &AppEvent| {
            if let Some(t) = &tray {
                t.on_event(ev);
            }
            for action in lock(&notice).apply(ev) {
                notices(action);
            }
        };
        (Box::new(feed), HasTray(Box::new(move || has)))
    }
}

/// macOS / Windows: the ringing notification through tauri-plugin-notification: Accept and Decline
/// buttons (an action type; on macOS in an "Options" menu) and a click on it showing the call. What
/// the plugin cannot do there: set urgency or a category, and remove a shown notification
/// (notify-rust cannot), so a toast outlives the ring until the OS hides it; answering a stale one
/// does nothing, since the call is checked first. (Compiled everywhere, used off Linux.)
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn plugin_notices<R: Runtime>(
    app: &AppHandle<R>,
) -> impl Fn(crate::notifications::NoticeAction) + Send + Sync + 'static {
    use crate::notifications::{body, summary, NoticeAction};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicI32, Ordering};
    use tauri_plugin_notification::{Action, ActionType, NotificationExt};
    const TYPE: &str = "incoming-call";
    let plugin = app.notification();
    let _ = plugin.register_action_types(vec![ActionType::builder(TYPE)
        .actions(vec![
            Action::builder("accept", "Accept").build(),
            Action::builder("decline", "Decline").build(),
        ])
        .build()]);
    // Notification id -> the call it rings for.
    let calls: Arc<Mutex<HashMap<i32, CallId>>> = Arc::default();
    let (seen, choice_app) = (calls.clone(), app.clone());
    let _ = plugin.on_action(move |performed| {
        let Some(id) = performed.notification().map(|n| n.id()) else {
            return;
        };
        let Some(call_id) = lock(&seen).get(&id).cloned() else {
            return;
        };
        let choice = match performed.action_id() {
            "tap" => Some(Choice::Show),
            key => Choice::from_key(key),
        };
        if let Some(choice) = choice {
            on_notice_choice(&choice_app, call_id, choice);
        }
    });
    let app = app.clone();
    let next = AtomicI32::new(1);
    move |action| match action {
        NoticeAction::Show { call_id, caller } => {
            let id = next.fetch_add(1, Ordering::Relaxed);
            lock(&calls).insert(id, call_id);
            let shown = app
                .notification()
                .builder()
                .id(id)
                .action_type_id(TYPE)
                .title(summary())
                .body(body(&caller))
                .show();
            if let Err(e) = shown {
                tracing::info!(%e, "no desktop notification");
            }
        }
        NoticeAction::Close { call_id } => {
            let ids: Vec<i32> = {
                let mut calls = lock(&calls);
                let ids = calls
                    .iter()
                    .filter(|(_, c)| **c == call_id)
                    .map(|(id, _)| *id)
                    .collect();
                calls.retain(|_, c| *c != call_id);
                ids
            };
            // A no-op on macOS / Windows (see above); kept for the platforms where it works.
            let _ = app.notification().remove_active(ids);
        }
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

/// Unix: the running instance of a profile listens on `instance.sock` in the profile's folder, and a
/// second launch of the same profile (the app menu, a terminal) asks it to show and focus its window,
/// then exits 0. Without this a hidden window on a desktop with no tray (stock GNOME) could not be
/// brought back. Per profile, so `--profile bob` still starts a window of its own; the only request
/// understood is "show". (tauri-plugin-single-instance keys on the app identifier, one instance for
/// all profiles, so it does not fit.) Windows keeps the "already open" error.
#[cfg(unix)]
mod instance {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    const SHOW: &[u8; 5] = b"show\n";
    const OK: &[u8; 3] = b"ok\n";

    fn socket(dir: &Path) -> PathBuf {
        dir.join("instance.sock")
    }

    /// Listens for "show" on a thread of its own. Called by the instance that holds the profile
    /// lock, so a socket file left by a crashed instance is its to replace.
    pub fn listen(dir: &Path, on_show: impl Fn() + Send + 'static) -> std::io::Result<()> {
        let path = socket(dir);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::thread::Builder::new()
            .name("instance".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut c) = conn else { continue };
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 5];
                    if c.read_exact(&mut buf).is_ok() && &buf == SHOW {
                        on_show();
                        let _ = c.write_all(OK);
                    }
                }
            })?;
        Ok(())
    }

    /// Asks the profile's running instance to show its window; true when it did.
    pub fn ask_show(dir: &Path) -> bool {
        let Ok(mut c) = UnixStream::connect(socket(dir)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 3];
        c.write_all(SHOW).is_ok() && c.read_exact(&mut buf).is_ok() && &buf == OK
    }
}

/// Runs the app.
pub fn run(options: Options) {
    let builder = tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::default().build())
        .plugin(tauri_plugin_notification::init())
        .plugin(crate::startup::plugin(&options.profile))
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
            crate::startup::get_startup,
            crate::startup::set_startup,
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
                let tray = window.app_handle().try_state::<HasTray>();
                if tray.is_some_and(|t| (t.0)()) {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
        })
        .setup(move |app| {
            let handle = app.handle().clone();
            let profile = options.profile.clone();
            let app_data = app.path().app_data_dir()?;
            // Earlier builds were `dev.tincan.app`: their folder becomes ours (once).
            if let Some(parent) = app_data.parent() {
                crate::storage::migrate_data_dir(&parent.join(OLD_SERVICE), &app_data);
            }
            let data = app_data.join("profiles").join(&profile);
            let lock = match lock_profile(&data) {
                Ok(f) => f,
                Err(msg) => {
                    #[cfg(unix)]
                    if instance::ask_show(&data) {
                        eprintln!(
                            "tincan: profile {profile} is already running; showed its window"
                        );
                        std::process::exit(0);
                    }
                    eprintln!("tincan: {msg}");
                    std::process::exit(2);
                }
            };
            // Held for the life of the process.
            app.manage(ProfileLock(lock));
            #[cfg(unix)]
            {
                let show = handle.clone();
                if let Err(e) = instance::listen(&data, move || show_window(&show)) {
                    tracing::warn!(%e, "a second launch of this profile cannot show this window");
                }
            }
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
            let (present, has_tray) = desktop_presence(&handle, &profile);
            app.manage(has_tray);
            let emit_handle = handle.clone();
            let sink: EventSink = Arc::new(move |ev: AppEvent| {
                // Error messages in plain words where they leave for the webview (codes kept).
                let ev = match ev {
                    AppEvent::Error { error } => AppEvent::Error {
                        error: crate::plain::plain(error),
                    },
                    ev => ev,
                };
                ipc::audit("event", &ev);
                // A ring shows the notification and the tray's attention state; it never raises
                // or focuses the window (the desktop's convention for calls, and no focus theft
                // by whoever calls).
                present(&ev);
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
            let service = Arc::new(service);
            app.manage(Shared {
                service: service.clone(),
            });
            let launch_profile = options.profile.clone();
            tauri::async_runtime::spawn(async move {
                // Keyring entries saved under the old identifier first (blocking D-Bus calls, and
                // the sign-in below must find them).
                let moved = tauri::async_runtime::spawn_blocking(move || {
                    crate::credentials::migrate(
                        &KeyringStore::new(OLD_SERVICE),
                        &KeyringStore::new(SERVICE),
                        &launch_profile,
                    )
                })
                .await;
                match moved {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(n, "moved keyring entries from {OLD_SERVICE}"),
                    Ok(Err(e)) => tracing::debug!(detail = e.detail(), "no keyring migration"),
                    Err(e) => tracing::warn!(%e, "keyring migration did not run"),
                }
                // Remembered credentials sign in by themselves: a calling app that waits for a
                // click cannot ring.
                if let Some(r) = service.sign_in_at_launch().await {
                    tracing::info!(ok = r.is_ok(), "sign-in at launch");
                }
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

    #[cfg(unix)]
    #[test]
    fn a_second_launch_asks_the_first_to_show_its_window() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!instance::ask_show(dir.path()), "nobody listens yet");
        let (tx, rx) = std::sync::mpsc::channel();
        instance::listen(dir.path(), move || tx.send(()).unwrap()).unwrap();
        assert!(instance::ask_show(dir.path()));
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        // A stale socket file (a crashed instance) is replaced by the next instance.
        instance::listen(dir.path(), || {}).unwrap();
        assert!(instance::ask_show(dir.path()));
    }

    /// Packaging: an identifier that builds cleanly for macOS (not `*.app`) and is the keyring
    /// service; icons only in the standard hicolor sizes, named as the bundler files them (a
    /// `@2x` name lands in a `256x256@2` folder no desktop looks in).
    #[test]
    fn identifier_and_icons_are_standard() {
        let conf: serde_json::Value =
            serde_json::from_str(include_str!("../../tauri.conf.json")).unwrap();
        let id = conf["identifier"].as_str().unwrap();
        assert!(!id.ends_with(".app"), "{id}");
        assert_eq!(id, SERVICE);
        assert_ne!(id, OLD_SERVICE);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sizes = Vec::new();
        for icon in conf["bundle"]["icon"].as_array().unwrap() {
            let path = icon.as_str().unwrap();
            if !path.ends_with(".png") {
                continue;
            }
            assert!(!path.contains('@'), "{path}");
            let bytes = std::fs::read(root.join(path)).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{path}");
            let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
            let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
            assert_eq!(w, h, "{path}");
            assert!(
                [16, 24, 32, 48, 64, 128, 256, 512].contains(&w),
                "{path}: {w}"
            );
            let name = std::path::Path::new(path)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            assert!(
                name == "icon.png" || name == format!("{w}x{w}.png"),
                "{path}: {w}"
            );
            sizes.push(w);
        }
        for needed in [32, 48, 64, 128, 256] {
            assert!(sizes.contains(&needed), "no {needed} px icon: {sizes:?}");
        }
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
