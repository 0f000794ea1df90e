//! The app window shows the app's own pages only: any navigation elsewhere (a link, a redirect, a
//! script setting `location`) is refused, so no remote page ever runs with access to the IPC.

use tauri::{Manager, Url};

/// Whether the main window may show `url`: the bundled UI (`tauri://localhost` on Linux and macOS,
/// `http(s)://tauri.localhost` on Windows), `about:blank`, and in dev builds the dev server's origin.
pub fn is_app_url(url: &Url, dev_url: Option<&Url>) -> bool {
    match url.scheme() {
        "tauri" => url.host_str() == Some("localhost"),
        "http" | "https" if url.host_str() == Some("tauri.localhost") => true,
        "about" => url.path() == "blank",
        _ => dev_url.is_some_and(|d| d.origin() == url.origin()),
    }
}

/// A plugin that enforces [`is_app_url`] on every navigation of every webview.
pub fn guard() -> tauri::plugin::TauriPlugin<tauri::Wry> {
    tauri::plugin::Builder::new("tincan-navigation")
        .on_navigation(|webview, url| {
            let dev = if tauri::is_dev() {
                webview.config().build.dev_url.clone()
            } else {
                None
            };
            let allowed = is_app_url(url, dev.as_ref());
            if !allowed {
                tracing::warn!(%url, "refused to navigate the app window away from the app");
            }
            allowed
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_the_app_itself() {
        assert!(is_app_url(&u("tauri://localhost/index.html"), None));
        assert!(is_app_url(&u("http://tauri.localhost/"), None));
        assert!(is_app_url(&u("about:blank"), None));
        assert!(!is_app_url(&u("https://example.com/"), None));
        assert!(!is_app_url(&u("tauri://evil.example/"), None));
        assert!(!is_app_url(&u("file:///etc/passwd"), None));
        assert!(!is_app_url(&u("http://localhost:1420/"), None));
        let dev = u("http://localhost:1420");
        assert!(is_app_url(&u("http://localhost:1420/x"), Some(&dev)));
        assert!(!is_app_url(&u("http://localhost:8080/"), Some(&dev)));
    }
}
