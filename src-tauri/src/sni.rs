//! Linux: the tray as a StatusNotifierItem of this app's own (ksni, over D-Bus), instead of tauri's
//! tray (libappindicator). What that gives, and libappindicator does not:
//!
//! - a `ToolTip` ("tincan: signed in as alice", "bob is calling"), and `Status` `NeedsAttention`
//!   with an attention icon while a call rings;
//! - the icons as `IconPixmap` data on the bus: no PNG files in `$XDG_RUNTIME_DIR/tray-icon/`, so two
//!   profiles on one machine (two processes) cannot delete each other's icon file, as tray-icon's
//!   shared `tray-icon-<id>-N.png` names did;
//! - an item id of each profile's own (`tincan-<profile>`), and D-Bus signals (`NewIcon`,
//!   `NewToolTip`, `NewStatus`) only for what really changed: ksni compares the properties.
//!
//! It needs a StatusNotifierWatcher (KDE, XFCE, GNOME with the AppIndicator extension, most panels).
//! Without one the item waits for one to appear; `crate::shell` then closes the window instead of
//! hiding it, since nothing could bring it back.

use crate::tray::{item_id, title, TrayView};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tauri::image::Image;

/// Called with the menu item's id ("show", "accept", "decline", "quit") when the user picks it.
pub type OnMenu = Arc<dyn Fn(&str) + Send + Sync>;

/// Whether a StatusNotifierWatcher has the item: unknown, online, offline; and a nudge to register
/// again.
#[derive(Debug, Default)]
pub struct Presence(AtomicU8, tokio::sync::Notify);

impl Presence {
    const ONLINE: u8 = 1;
    const OFFLINE: u8 = 2;
    pub fn online(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::ONLINE
    }
}

/// The item.
pub struct SniTray {
    id: String,
    title: String,
    view: TrayView,
    normal: Vec<ksni::Icon>,
    ringing: Vec<ksni::Icon>,
    on_menu: OnMenu,
    presence: Arc<Presence>,
}

/// RGBA (tauri's decoded PNG) to the ARGB32, network byte order, that `IconPixmap` carries.
pub fn pixmap(image: &Image<'_>) -> ksni::Icon {
    let data = image
        .rgba()
        .chunks_exact(4)
        .flat_map(|p| [p[3], p[0], p[1], p[2]])
        .collect();
    ksni::Icon {
        width: image.width() as i32,
        height: image.height() as i32,
        data,
    }
}

impl SniTray {
    pub fn new(
        profile: &str,
        view: TrayView,
        normal: &Image<'_>,
        ringing: &Image<'_>,
        on_menu: OnMenu,
        presence: Arc<Presence>,
    ) -> Self {
        Self {
            id: item_id(profile),
            title: title(profile),
            view,
            normal: vec![pixmap(normal)],
            ringing: vec![pixmap(ringing)],
            on_menu,
            presence,
        }
    }

    /// Replaces what the item shows (ksni then signals only the properties that changed).
    pub fn set_view(&mut self, view: TrayView) {
        self.view = view;
    }

    /// This item, for a new service (the old one keeps a copy until it is shut down).
    fn take(&mut self) -> Self {
        Self {
            id: self.id.clone(),
            title: self.title.clone(),
            view: self.view.clone(),
            normal: self.normal.clone(),
            ringing: self.ringing.clone(),
            on_menu: self.on_menu.clone(),
            presence: self.presence.clone(),
        }
    }

    fn item(&self, id: &'static str, label: &str, enabled: bool) -> ksni::MenuItem<Self> {
        ksni::menu::StandardItem {
            label: label.into(),
            enabled,
            activate: Box::new(move |t: &mut Self| (t.on_menu)(id)),
            ..Default::default()
        }
        .into()
    }
}

impl ksni::Tray for SniTray {
    fn id(&self) -> String {
        self.id.clone()
    }
    fn title(&self) -> String {
        self.title.clone()
    }
    fn category(&self) -> ksni::Category {
        ksni::Category::Communications
    }
    fn status(&self) -> ksni::Status {
        if self.view.ringing {
            ksni::Status::NeedsAttention
        } else {
            ksni::Status::Active
        }
    }
    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        if self.view.ringing {
            self.ringing.clone()
        } else {
            self.normal.clone()
        }
    }
    fn attention_icon_pixmap(&self) -> Vec<ksni::Icon> {
        self.ringing.clone()
    }
    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: self.view.tooltip.clone(),
            description: self.view.status.clone(),
            ..Default::default()
        }
    }
    /// A click on the icon shows the window (a user's own act, so focusing it is right).
    fn activate(&mut self, _x: i32, _y: i32) {
        (self.on_menu)("show");
    }
    fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
        use ksni::MenuItem::Separator;
        vec![
            self.item("show", "Show tincan", true),
            self.item("status", &self.view.status, false),
            Separator,
            self.item("accept", &self.view.accept_label, self.view.ringing),
            self.item("decline", "Decline", self.view.ringing),
            Separator,
            self.item("quit", "Quit tincan", true),
        ]
    }
    fn watcher_online(&self) {
        self.presence.0.store(Presence::ONLINE, Ordering::Relaxed);
    }
    fn watcher_offline(&self, reason: ksni::OfflineReason) -> bool {
        tracing::info!(
            ?reason,
            "no StatusNotifierWatcher: the tray icon is not shown"
        );
        self.presence.0.store(Presence::OFFLINE, Ordering::Relaxed);
        if matches!(&reason, ksni::OfflineReason::Error(ksni::Error::Watcher(e))
            if !matches!(e, zbus::fdo::Error::ServiceUnknown(_)))
        {
            // A watcher owns its name but refused the item, e.g. one that takes the name before
            // exporting its object (haskell-status-notifier-item's does): ksni would wait for the
            // next owner change, so `spawn` registers anew shortly.
            self.presence.1.notify_one();
        }
        // Keep the service: a watcher that appears later (a panel started after us) gets the item.
        true
    }
}

/// Starts the item and keeps it in step with `views` (the latest view wins). Runs until the app
/// ends.
pub fn spawn(
    tray: SniTray,
    mut views: tokio::sync::watch::Receiver<TrayView>,
    presence: Arc<Presence>,
) {
    tauri::async_runtime::spawn(async move {
        let Some(mut handle) = start(tray, &presence).await else {
            return;
        };
        let mut retries = 0u32;
        loop {
            let view = views.borrow_and_update().clone();
            if handle.update(|t| t.set_view(view)).await.is_none() {
                return;
            }
            tokio::select! {
                changed = views.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = presence.1.notified(), if retries < 5 => {
                    retries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    // The same item again, on a fresh service (and bus name), which registers.
                    let Some(tray) = handle.update(|t| t.take()).await else { return };
                    handle.shutdown().await;
                    let Some(h) = start(tray, &presence).await else { return };
                    handle = h;
                }
            }
        }
    });
}

/// Starts the item's service; online unless the watcher was found missing (or refused it) meanwhile.
async fn start(tray: SniTray, presence: &Presence) -> Option<ksni::Handle<SniTray>> {
    use ksni::TrayMethods;
    presence.0.store(0, Ordering::Relaxed);
    match tray.assume_sni_available(true).spawn().await {
        Ok(h) => {
            let _ = presence.0.compare_exchange(
                0,
                Presence::ONLINE,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            Some(h)
        }
        Err(e) => {
            tracing::info!(error = %e, "no tray icon (StatusNotifierItem)");
            presence.0.store(Presence::OFFLINE, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixmaps_are_argb_in_network_order() {
        let image = Image::new(&[10, 20, 30, 255, 1, 2, 3, 4], 2, 1);
        let icon = pixmap(&image);
        assert_eq!((icon.width, icon.height), (2, 1));
        assert_eq!(icon.data, vec![255, 10, 20, 30, 4, 1, 2, 3]);
    }

    #[test]
    fn status_and_tooltip_follow_the_view() {
        use crate::tray::TrayModel;
        use ksni::Tray;
        use tincan_ipc::{AppEvent, ConnectionState};
        let (normal, ringing) = (Image::new(&[0; 4], 1, 1), Image::new(&[9; 4], 1, 1));
        let mut model = TrayModel::default();
        model.apply(&AppEvent::Connection {
            state: ConnectionState::Online,
        });
        model.apply(&AppEvent::User {
            user: Some(tincan_proto::UserId::new("alice").unwrap()),
        });
        let t = SniTray::new(
            "bob",
            model.view(),
            &normal,
            &ringing,
            Arc::new(|_: &str| {}),
            Arc::default(),
        );
        assert_eq!(t.id(), "tincan-bob");
        assert_eq!(t.title(), "tincan — bob");
        assert!(matches!(t.status(), ksni::Status::Active));
        assert_eq!(t.tool_tip().title, "tincan: signed in as alice");
        assert_eq!(t.icon_pixmap()[0].data, vec![0; 4]);
        assert_eq!(t.menu().len(), 7);
    }
}
