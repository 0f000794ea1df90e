//! The shipped binary (`tincan-server serve`) on a loopback port, for what only the real process
//! shows: signals, restarts, the state on disk, resource limits.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_tincan-server");

/// The log line the server prints once it accepts connections; it carries `addr=<bound address>`.
const LISTENING: &str = "tincan-server listening";

/// The value after `name` (e.g. `"addr="`) in a log line, up to the next space.
pub fn field(line: &str, name: &str) -> Option<String> {
    line.split(name)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_owned)
}

/// Starts `cmd` (a `tincan-server serve …` the caller has configured; its stdout is taken here)
/// and waits until it listens. Returns the child and the address it bound (so tests can ask for
/// port 0). `on_line` sees every log line before "listening" is acted on; the lines are echoed to
/// stderr when the environment variable `echo_env` is set.
pub fn spawn_listening(
    cmd: &mut Command,
    echo_env: &'static str,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> (Child, String) {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server binary starts");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if std::env::var_os(echo_env).is_some() {
                eprintln!("server: {line}");
            }
            on_line(&line);
            if line.contains(LISTENING) {
                if let (Some(tx), Some(addr)) = (tx.take(), field(&line, "addr=")) {
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server says it listens");
    (child, addr)
}
