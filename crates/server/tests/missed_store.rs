//! Missed calls through the shipped binary and its SQLite store (`--data-dir`): they survive a
//! restart (killed or stopped) and are delivered once; one caller's flood cannot evict another
//! caller's entry; and they expire (`--missed-ttl-secs`), at run time and across a restart.
//!
//! The database is read from the test too, only to wait until the server's writer thread has
//! committed (so a `SIGKILL` right after is a fair test) and to check what it holds.

mod common;

use common::{binary, invite, login_msg, Client, APP, SECRET};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tincan_proto::{ClientMessage, EndReason, ServerMessage, UserId, UserSigKey};

struct Server {
    child: Child,
    addr: String,
    /// The store's "loaded=N" at start.
    loaded: usize,
}

impl Server {
    /// `tincan-server serve --data-dir <dir>` on a free loopback port.
    fn start(dir: &Path, extra: &[&str]) -> Server {
        // The store's "open" line (with how many rows it loaded) comes before "listening".
        let loaded = Arc::new(AtomicUsize::new(usize::MAX));
        let seen = loaded.clone();
        let (child, addr) = binary::spawn_listening(
            Command::new(binary::BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--sdkappid"])
                .arg(APP.to_string())
                .arg("--data-dir")
                .arg(dir)
                .args(extra)
                .env("TINCAN_SECRET_KEY", SECRET),
            "MISSED_TEST_LOG",
            move |line| {
                if line.contains("missed-call store open") {
                    if let Some(n) = binary::field(line, "loaded=").and_then(|n| n.parse().ok()) {
                        seen.store(n, Ordering::SeqCst);
                    }
                }
            },
        );
        let loaded = loaded.load(Ordering::SeqCst);
        Server {
            child,
            addr,
            loaded,
        }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as `systemctl stop` sends; waits for the exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not stop within 10 s of SIGTERM");
    }

    async fn login(
        &self,
        user: &str,
        device: &str,
    ) -> (Client, Option<Vec<tincan_proto::MissedCall>>) {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{}/ws", self.addr),
            None,
            true,
        )
        .await
        .expect("connects");
        let mut c = Client { ws };
        let sig = UserSigKey::new(APP, tincan_proto::SecretKey::new(SECRET.into())).gen(
            &uid(user),
            now_secs(),
            600,
            None,
        );
        c.send(&login_msg(user, device, sig)).await;
        match c.recv().await {
            ServerMessage::LoginOk { .. } => {}
            other => panic!("expected login_ok, got {other:?}"),
        }
        // `missed_calls` comes right after `login_ok` or not at all: a ping answered first
        // means there were none.
        c.send(&ClientMessage::Ping { nonce: Some(7) }).await;
        match c.recv().await {
            ServerMessage::MissedCalls { calls } => {
                assert!(matches!(c.recv().await, ServerMessage::Pong { .. }));
                (c, Some(calls))
            }
            ServerMessage::Pong { .. } => (c, None),
            other => panic!("expected missed_calls or pong, got {other:?}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn db(dir: &Path) -> PathBuf {
    dir.join(tincan_server::store::FILE_NAME)
}

/// (callee, caller, call_id) rows in the store, sorted.
fn rows(dir: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(db(dir)).expect("open the store");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut st = conn
        .prepare("SELECT callee, caller, call_id FROM missed_calls ORDER BY callee, caller")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Waits (up to 5 s) until the store's rows satisfy `ok`; the writer commits within
/// milliseconds, this only absorbs a busy machine.
#[track_caller]
fn wait_rows(dir: &Path, what: &str, ok: impl Fn(&[(String, String, String)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = rows(dir);
        if ok(&r) {
            return;
        }
        assert!(Instant::now() < deadline, "store never got {what}: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `caller` places `call` to an offline `callee`; the answer is `call_ended` / `offline`.
async fn call_offline(caller: &mut Client, call: &str, callee: &str) {
    caller.send(&invite(call, callee, None)).await;
    match caller.recv().await {
        ServerMessage::CallEnded { reason, .. } => assert_eq!(reason, EndReason::Offline),
        other => panic!("expected call_ended offline for {call}, got {other:?}"),
    }
}

#[tokio::test]
async fn missed_calls_survive_restarts_and_are_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    assert_eq!(s.loaded, 0);
    let (mut alice, _) = s.login("alice", "a1").await;
    call_offline(&mut alice, "call-1", "bob").await;
    let (mut carol, _) = s.login("carol", "c1").await;
    call_offline(&mut carol, "call-2", "bob").await;
    wait_rows(dir.path(), "two rows", |r| r.len() == 2);
    // Killed outright: nothing but what is committed survives.
    s.kill();

    let s = Server::start(dir.path(), &[]);
    assert_eq!(s.loaded, 2, "both missed calls loaded at start");
    let (_bob, missed) = s.login("bob", "b1").await;
    let missed = missed.expect("bob gets his missed calls");
    let got: Vec<(&str, &str)> = missed
        .iter()
        .map(|m| (m.caller.as_str(), m.call_id.as_str()))
        .collect();
    assert_eq!(got, [("alice", "call-1"), ("carol", "call-2")]);
    // A second device signing in now gets nothing: delivered once.
    let (_bob2, again) = s.login("bob", "b2").await;
    assert_eq!(again, None);
    // Stopped cleanly right away: the deletion reaches the disk before the process exits.
    s.stop();
    assert_eq!(rows(dir.path()), []);

    let s = Server::start(dir.path(), &[]);
    assert_eq!(s.loaded, 0);
    let (_bob, missed) = s.login("bob", "b1").await;
    assert_eq!(
        missed, None,
        "a missed call delivered before the restart came again"
    );
    s.stop();
    // A clean stop checkpoints: nothing is left in a -wal file.
    let wal = dir
        .path()
        .join(format!("{}-wal", tincan_server::store::FILE_NAME));
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{wal:?} left over"
    );
}

/// The failure: one account placing calls to offline users as fast as it could
/// pushed everyone else's missed calls out of a single global FIFO.
#[tokio::test]
async fn a_spammer_cannot_evict_another_callers_missed_call() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &["--missed-per-caller", "3", "--missed-per-user", "2"],
    );
    let (mut carol, _) = s.login("carol", "c1").await;
    call_offline(&mut carol, "real", "bob").await;
    let (mut mallory, _) = s.login("mallory", "m1").await;
    // Under the invite rate limits (20 a minute, 5 per callee), but far over the quotas.
    for i in 0..4 {
        call_offline(&mut mallory, &format!("spam-bob-{i}"), "bob").await;
    }
    for i in 0..12 {
        call_offline(&mut mallory, &format!("spam-{i}"), &format!("victim{i}")).await;
    }
    // Mallory holds at most its quota, the newest; carol's entry is untouched.
    wait_rows(dir.path(), "mallory's newest entries", |r| {
        r.iter()
            .any(|(callee, _, id)| callee == "victim11" && id == "spam-11")
    });
    let r = rows(dir.path());
    let mallorys: Vec<&str> = r
        .iter()
        .filter(|(_, caller, _)| caller == "mallory")
        .map(|(_, _, id)| id.as_str())
        .collect();
    assert_eq!(mallorys, ["spam-10", "spam-11", "spam-9"], "{r:?}");
    assert!(
        r.contains(&("bob".into(), "carol".into(), "real".into())),
        "{r:?}"
    );
    s.kill();

    // And after a restart, bob hears of carol's call.
    let s = Server::start(
        dir.path(),
        &["--missed-per-caller", "3", "--missed-per-user", "2"],
    );
    assert_eq!(s.loaded, 4);
    let (_bob, missed) = s.login("bob", "b1").await;
    let missed = missed.expect("bob gets carol's missed call");
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0].call_id.as_str(), "real");
}

#[tokio::test]
async fn missed_calls_expire_while_running_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = ["--missed-ttl-secs", "2"];
    let s = Server::start(dir.path(), &ttl);
    let (mut alice, _) = s.login("alice", "a1").await;
    call_offline(&mut alice, "soon-gone", "bob").await;
    wait_rows(dir.path(), "the row", |r| r.len() == 1);
    // The running server drops it when it expires, from memory and from the store.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    wait_rows(dir.path(), "the row expired", |r| r.is_empty());
    let (_bob, missed) = s.login("bob", "b1").await;
    assert_eq!(missed, None, "an expired missed call was delivered");

    // Saved, then the server is down past the TTL: the next start drops it.
    call_offline(&mut alice, "gone-by-restart", "dave").await;
    wait_rows(dir.path(), "dave's row", |r| r.len() == 1);
    s.kill();
    std::thread::sleep(Duration::from_millis(2_100));
    let s = Server::start(dir.path(), &ttl);
    assert_eq!(s.loaded, 0);
    assert_eq!(rows(dir.path()), []);
    let (_dave, missed) = s.login("dave", "d1").await;
    assert_eq!(missed, None);
}

#[tokio::test]
async fn memory_only_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--memory-only"]);
    assert_eq!(s.loaded, usize::MAX, "no store opened");
    let (mut alice, _) = s.login("alice", "a1").await;
    call_offline(&mut alice, "c", "bob").await;
    s.stop();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// With no --data-dir and nowhere to put one (no HOME, no XDG or systemd folder), the server
/// says what to pass instead of guessing.
#[test]
fn no_folder_is_refused_with_advice() {
    let out = Command::new(binary::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--sdkappid"])
        .arg(APP.to_string())
        .env("TINCAN_SECRET_KEY", SECRET)
        .env_remove("HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("STATE_DIRECTORY")
        .env_remove("TINCAN_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data-dir") && err.contains("--memory-only"),
        "{err}"
    );
}

/// systemd's StateDirectory= is the default folder; a second server on the same folder is
/// refused at start (both would deliver the same missed calls).
#[tokio::test]
async fn state_directory_is_the_default_and_one_server_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--sdkappid"])
        .arg(APP.to_string())
        .env("TINCAN_SECRET_KEY", SECRET)
        .env("STATE_DIRECTORY", dir.path())
        .env_remove("TINCAN_DATA_DIR")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = out.lines().map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("tincan-server listening")),
        "first server starts"
    );
    assert!(db(dir.path()).exists(), "the store is in $STATE_DIRECTORY");
    let second = Command::new(binary::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--sdkappid"])
        .arg(APP.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .env("TINCAN_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another tincan-server"), "{err}");
}
