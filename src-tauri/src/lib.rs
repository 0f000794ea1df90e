//! tincan's desktop app. The Tauri shell ([`shell`], [`ipc`]) is thin; the logic lives in plain
//! modules that are tested without a webview:
//!
//! - [`credentials`]: secrets in the OS keyring, wrapped in `Sensitive`.
//! - [`signaling`]: the tokio driver around `tincan_ipc::session::ClientSession` (the shared signaling
//!   client): it owns the WebSocket and the timers; the machine decides sign-in, reconnects and events.
//! - [`call_view`]: this window's view of its call, as a pure state machine.
//! - [`embedded`]: the local tincan-server that serves calls on one machine with no setup.
//! - [`storage`]: settings and call history.
//! - [`startup`]: "Sign in automatically" and "Start tincan when I log in".
//! - [`plain`]: error messages in plain words where they cross to the webview.
//! - [`service`]: ties them together behind the commands the UI calls.
//! - [`native_media`]: the GStreamer media engine, for webviews without WebRTC.

pub mod call_view;
pub mod credentials;
pub mod embedded;
pub mod ipc;
pub mod native_media;
pub mod navigation;
pub mod notifications;
pub mod plain;
pub mod service;
pub mod shell;
pub mod signaling;
#[cfg(target_os = "linux")]
pub mod sni;
pub mod startup;
pub mod storage;
pub mod transport;
pub mod tray;
pub mod webview;

/// Entry point of the binary.
pub fn main() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TINCAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colour codes only for a terminal: a log file (a desktop launcher's journal, a test's
        // app.log) gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let options = match shell::Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tincan: {e}");
            std::process::exit(2);
        }
    };
    shell::run(options);
}
