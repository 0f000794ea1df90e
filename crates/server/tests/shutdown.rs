//! SIGTERM drains (issue 11 item 2): the real `tincan-server` binary with 100 WebSocket
//! connections (20 calls up with signals flowing both ways, 50 idle sessions, 10 not signed in)
//! gets SIGTERM; every connection must receive a 1001 `server_shutdown` close frame (not a bare
//! TCP close, 1006), and the process must exit within its grace period.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tincan_proto::{ClientMessage, MediaSignal, SecretKey, ServerMessage, UserSigKey};
use tokio_tungstenite::tungstenite::Message;

const GRACE_SECS: u64 = 5;
/// What a client records when the connection ended without a close frame.
const NO_CLOSE_FRAME: u16 = 1006;

struct Server {
    /// Taken by the test once it has signalled the process, to wait for its exit.
    child: Option<Child>,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the binary on a free loopback port, read back from its log.
fn spawn(grace_secs: u64) -> Server {
    let (child, addr) = binary::spawn_listening(
        Command::new(binary::BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--sdkappid",
                &APP.to_string(),
                "--memory-only",
                "--shutdown-grace-secs",
                &grace_secs.to_string(),
            ])
            .env("TINCAN_SECRET_KEY", SECRET),
        "SHUTDOWN_TEST_LOG",
        |_| {},
    );
    Server {
        child: Some(child),
        addr,
    }
}

async fn connect(addr: &str) -> Client {
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/ws"), None, true)
            .await
            .expect("connects");
    Client { ws }
}

async fn login(addr: &str, user: &str) -> Client {
    let mut c = connect(addr).await;
    let sig =
        UserSigKey::new(APP, SecretKey::new(SECRET.into())).gen(&uid(user), now_secs(), 600, None);
    c.send(&login_msg(user, "d1", sig)).await;
    match c.recv().await {
        ServerMessage::LoginOk { .. } => c,
        other => panic!("{user}: expected login_ok, got {other:?}"),
    }
}

/// Runs one client until its connection ends; returns the close code it received. A client in
/// a call keeps sending signals (mute toggles, 25 a second) until the server closes.
async fn run_client(mut c: Client, call: Option<String>, received: Arc<AtomicUsize>) -> u16 {
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    let mut muted = false;
    let code = loop {
        tokio::select! {
            _ = tick.tick(), if call.is_some() => {
                muted = !muted;
                let m = ClientMessage::Signal {
                    call_id: cid(call.as_deref().unwrap_or_default()),
                    signal: MediaSignal::Mute { muted },
                };
                // Once the server has closed, sending fails; the close frame is still to be read.
                let _ = c.ws.send(Message::text(m.encode())).await;
            }
            frame = c.ws.next() => match frame {
                Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
                Some(Ok(Message::Close(None))) => break 1005,
                Some(Ok(Message::Text(_))) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break NO_CLOSE_FRAME,
            },
        }
    };
    // Reading on sends our answering close and sees the server end the connection.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = c.ws.next().await {}
    })
    .await;
    code
}

/// Sends SIGTERM and waits (off the runtime) for the exit; `None` if it did not come in time.
fn terminate(
    mut child: Child,
    wait: Duration,
) -> tokio::task::JoinHandle<Option<(std::process::ExitStatus, Instant)>> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some((status, Instant::now()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_every_connection_1001_and_exits_within_the_grace_period() {
    let mut s = spawn(GRACE_SECS);
    let addr = s.addr.clone();
    let received = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();

    // 20 calls, connected.
    for i in 0..20 {
        let (caller, callee, call) = (
            format!("caller{i}"),
            format!("callee{i}"),
            format!("call{i}"),
        );
        let mut a = login(&addr, &caller).await;
        let mut b = login(&addr, &callee).await;
        a.send(&invite(&call, &callee, None)).await;
        assert!(matches!(b.recv().await, ServerMessage::Invited { .. }));
        assert!(matches!(a.recv().await, ServerMessage::Ringing { .. }));
        b.send(&ClientMessage::Accept {
            call_id: cid(&call),
        })
        .await;
        assert!(matches!(a.recv().await, ServerMessage::Accepted { .. }));
        assert!(matches!(b.recv().await, ServerMessage::Accepted { .. }));
        for c in [a, b] {
            clients.push(tokio::spawn(run_client(
                c,
                Some(call.clone()),
                received.clone(),
            )));
        }
    }
    // 50 idle sessions and 10 connections that never sign in.
    for i in 0..50 {
        let c = login(&addr, &format!("idle{i}")).await;
        clients.push(tokio::spawn(run_client(c, None, received.clone())));
    }
    for _ in 0..10 {
        let c = connect(&addr).await;
        clients.push(tokio::spawn(run_client(c, None, received.clone())));
    }
    assert_eq!(clients.len(), 100);

    // Traffic flows.
    let before = received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flowing = received.load(Ordering::Relaxed) - before;
    assert!(flowing > 100, "only {flowing} signals relayed in 500 ms");

    let child = s.child.take().expect("the server process");
    let started = Instant::now();
    let exited = terminate(child, Duration::from_secs(GRACE_SECS + 5));

    let mut codes = std::collections::BTreeMap::<u16, usize>::new();
    for c in clients {
        let code = tokio::time::timeout(Duration::from_secs(GRACE_SECS + 5), c)
            .await
            .expect("every client's connection ends")
            .expect("client task");
        *codes.entry(code).or_default() += 1;
    }
    let (status, at) = exited
        .await
        .unwrap()
        .expect("the server exits after SIGTERM");
    let took = at.duration_since(started);
    eprintln!(
        "close codes {codes:?}; {flowing} signals in 500 ms before; server exited {status} {took:?} after SIGTERM"
    );
    assert_eq!(codes, [(1001, 100)].into(), "every connection gets 1001");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(GRACE_SECS),
        "exited {took:?} after SIGTERM (grace {GRACE_SECS} s)"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_cannot_hold_the_shutdown_past_the_grace() {
    let grace = 2;
    let mut s = spawn(grace);
    let addr = s.addr.clone();
    let received = Arc::new(AtomicUsize::new(0));
    let reader = tokio::spawn(run_client(
        login(&addr, "alice").await,
        None,
        received.clone(),
    ));
    // Bob never reads and so never answers the server's close: the closing handshake cannot
    // finish, and the server must stop anyway when the grace period is over.
    let mut bob = login(&addr, "bob").await;

    let child = s.child.take().expect("the server process");
    let started = Instant::now();
    let exited = terminate(child, Duration::from_secs(grace + 5));
    let (status, at) = exited
        .await
        .unwrap()
        .expect("the server exits after SIGTERM");
    let took = at.duration_since(started);
    eprintln!("server exited {status} {took:?} after SIGTERM (grace {grace} s)");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(grace) + Duration::from_millis(500),
        "exited {took:?} after SIGTERM (grace {grace} s)"
    );
    assert_eq!(reader.await.unwrap(), 1001);
    // The close frame was sent all the same: it waits in bob's socket.
    assert_eq!(bob.expect_close().await, (1001, "server_shutdown".into()));
}
