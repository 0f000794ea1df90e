//! The webview's media switches.
//!
//! Linux (WebKitGTK): `enable-media-stream` and `enable-webrtc` are off by default and wry never sets
//! them, so the app switches them on, and answers WebKit's `permission-request` itself: microphone
//! access (a `UserMediaPermissionRequest` for audio only) is granted to the app's own pages and to
//! nothing else; every other request keeps WebKit's default (denied). Builds of WebKitGTK compiled
//! without WebRTC (Debian's, Ubuntu's) still lack `RTCPeerConnection`; the UI detects that at
//! start-up and uses the native engine. macOS and Windows webviews have WebRTC and ask the OS for
//! the microphone (the macOS usage text and entitlement are in the bundle config).

/// Is `uri` one of the app's own pages (the bundled UI, or the dev server in debug builds)?
pub fn is_app_origin(uri: &str) -> bool {
    let origin = origin_of(uri);
    let bundled = matches!(
        origin.as_str(),
        "tauri://localhost" | "http://tauri.localhost" | "https://tauri.localhost"
    );
    bundled || (cfg!(debug_assertions) && origin == "http://localhost:1420")
}

/// `scheme://host[:port]` of a URI, lower-cased.
fn origin_of(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // No user-info tricks (`http://tauri.localhost@evil.example/`).
    if authority.contains('@') {
        return String::new();
    }
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    )
}

/// Switches on media in `window`'s webview (Linux); a no-op elsewhere.
pub fn enable_media<R: tauri::Runtime>(window: &tauri::WebviewWindow<R>) {
    #[cfg(target_os = "linux")]
    linux::enable(window);
    #[cfg(not(target_os = "linux"))]
    let _ = window;
}

#[cfg(target_os = "linux")]
mod linux {
    use super::is_app_origin;
    use webkit2gtk::glib::prelude::*;
    use webkit2gtk::{
        PermissionRequestExt, SettingsExt, UserMediaPermissionRequest,
        UserMediaPermissionRequestExt, WebViewExt,
    };

    pub fn enable<R: tauri::Runtime>(window: &tauri::WebviewWindow<R>) {
        // Tests without sound hardware: WebKit's mock microphone.
        let mock = std::env::var_os("TINCAN_MOCK_CAPTURE").is_some();
        let done = window.with_webview(move |wv| {
            let view: webkit2gtk::WebView = wv.inner();
            if let Some(settings) = WebViewExt::settings(&view) {
                settings.set_enable_media_stream(true);
                settings.set_enable_webrtc(true);
                if mock {
                    settings.set_enable_mock_capture_devices(true);
                }
            }
            view.connect_permission_request(|view, request| {
                let Some(media) = request.downcast_ref::<UserMediaPermissionRequest>() else {
                    // Not ours to decide: WebKit's default (deny).
                    return false;
                };
                let uri = view.uri().map(|u| u.to_string()).unwrap_or_default();
                let audio_only = media.is_for_audio_device() && !media.is_for_video_device();
                if audio_only && is_app_origin(&uri) {
                    request.allow();
                } else {
                    tracing::warn!(%uri, audio_only, "media permission denied");
                    request.deny();
                }
                true
            });
            tracing::info!("webview: media stream and WebRTC switched on");
        });
        if let Err(e) = done {
            tracing::warn!(%e, "cannot configure the webview for media");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_app_itself_gets_the_microphone() {
        assert!(is_app_origin("tauri://localhost/index.html"));
        assert!(is_app_origin("http://tauri.localhost/"));
        assert!(is_app_origin("HTTP://TAURI.LOCALHOST"));
        assert!(!is_app_origin("http://tauri.localhost@evil.example/"));
        assert!(!is_app_origin("https://evil.example/tauri://localhost"));
        assert!(!is_app_origin("http://localhost:1421/"));
        assert!(!is_app_origin("not a uri"));
        assert_eq!(
            is_app_origin("http://localhost:1420/"),
            cfg!(debug_assertions)
        );
    }
}
