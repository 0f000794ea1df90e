//! A live call survives a signaling drop (issue 15, server side; docs/PROTOCOL.md "Resume"): a real
//! server on loopback, real WebSocket clients. A dropped socket is held for the grace period and
//! resumed by the same device; the grace running out ends the call once for each; after the real
//! binary is killed and started again, the two parties' claims re-create the call; a third user's
//! claim reaches nobody; a device that comes back after its call ended is told how (the resync).

mod common;

use common::*;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tincan_proto::{ClientMessage, EndReason, ErrorCode, MediaSignal, ServerMessage};

const RESTART_OFFER: &str =
    include_str!("../../proto/tests/data/sdp/chromium-156-offer-restart.sdp");

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn resume(call: &str, peer: &str, connected_at_ms: u64) -> ClientMessage {
    ClientMessage::ResumeCall {
        call_id: cid(call),
        peer: uid(peer),
        connected_at_ms,
    }
}

fn mute(call: &str) -> ClientMessage {
    ClientMessage::Signal {
        call_id: cid(call),
        signal: MediaSignal::Mute { muted: true },
    }
}

fn ice_restart(call: &str) -> ClientMessage {
    ClientMessage::Signal {
        call_id: cid(call),
        signal: MediaSignal::Offer {
            sdp: RESTART_OFFER
                .replace('\n', "\r\n")
                .replace("\r\r\n", "\r\n"),
            ice_restart: true,
        },
    }
}

fn hangup(call: &str) -> ClientMessage {
    ClientMessage::Hangup { call_id: cid(call) }
}

#[track_caller]
fn assert_ended(m: &ServerMessage, reason: EndReason, by: &str) -> Option<u64> {
    match m {
        ServerMessage::CallEnded {
            reason: r,
            by: Some(b),
            duration_ms,
            ..
        } if *r == reason && b.as_str() == by => *duration_ms,
        other => panic!("expected call_ended {reason:?} by {by}, got {other:?}"),
    }
}

#[track_caller]
fn assert_reconnecting(m: &ServerMessage, peer: &str) -> u32 {
    match m {
        ServerMessage::PeerReconnecting {
            peer: p,
            grace_secs,
            ..
        } if p.as_str() == peer => *grace_secs,
        other => panic!("expected peer_reconnecting {peer}, got {other:?}"),
    }
}

#[track_caller]
fn assert_resumed(m: &ServerMessage, peer: &str) -> u64 {
    match m {
        ServerMessage::CallResumed {
            peer: p,
            connected_at_ms,
            ..
        } if p.as_str() == peer => *connected_at_ms,
        other => panic!("expected call_resumed with {peer}, got {other:?}"),
    }
}

#[track_caller]
fn assert_reconnected(m: &ServerMessage, peer: &str) {
    match m {
        ServerMessage::PeerReconnected { peer: p, .. } if p.as_str() == peer => {}
        other => panic!("expected peer_reconnected {peer}, got {other:?}"),
    }
}

/// A socket dropped mid-call: the peer hears `peer_reconnecting`, signals to the absent party are
/// refused, the same device resumes, and relayed signals (an ICE restart's offer) flow again.
#[tokio::test]
async fn a_dropped_socket_resumes_within_the_grace_period() {
    let s = server().await;
    let (alice, mut bob) = connected(&s, "c1").await;
    let started = now_ms();
    drop(alice); // The TCP connection goes away without a close frame.
    assert_eq!(assert_reconnecting(&bob.recv().await, "alice"), 30);
    bob.send(&ice_restart("c1")).await;
    bob.expect_error(ErrorCode::PeerAbsent).await;

    let mut alice = s.login("alice", "a1").await;
    // Not back before it says so.
    alice.send(&mute("c1")).await;
    alice.expect_error(ErrorCode::InvalidState).await;
    alice.send(&resume("c1", "bob", started)).await;
    let at = assert_resumed(&alice.recv().await, "bob");
    assert!(at <= started && started - at < 5_000, "original start kept");
    assert_reconnected(&bob.recv().await, "alice");

    bob.send(&ice_restart("c1")).await;
    match alice.recv().await {
        ServerMessage::Signal {
            from,
            signal: MediaSignal::Offer { ice_restart, .. },
            ..
        } => assert!(ice_restart && from.as_str() == "bob"),
        other => panic!("expected the relayed offer, got {other:?}"),
    }
    alice.send(&mute("c1")).await;
    assert!(matches!(bob.recv().await, ServerMessage::Signal { .. }));

    alice.send(&hangup("c1")).await;
    assert_ended(&alice.recv().await, EndReason::Hangup, "alice");
    assert_ended(&bob.recv().await, EndReason::Hangup, "alice");
    bob.expect_silence(300).await;
}

/// The grace runs out: both end with `connection_lost` exactly once; the absent one, back later,
/// is told the same in answer to its `resume_call`; nobody stays busy.
#[tokio::test]
async fn grace_expiry_ends_the_call_once_for_each() {
    let s = server_with(|c| c.switchboard.resume_secs = 2).await;
    let (alice, mut bob) = connected(&s, "c2").await;
    drop(alice);
    assert_eq!(assert_reconnecting(&bob.recv().await, "alice"), 2);
    let t = std::time::Instant::now();
    assert_ended(&bob.recv().await, EndReason::ConnectionLost, "alice");
    let waited = t.elapsed();
    assert!(
        waited > Duration::from_millis(1_500) && waited < Duration::from_millis(4_500),
        "{waited:?}"
    );
    bob.expect_silence(1_000).await;

    let mut alice = s.login("alice", "a1").await;
    alice.send(&resume("c2", "bob", now_ms() - 5_000)).await;
    assert_ended(&alice.recv().await, EndReason::ConnectionLost, "alice");
    // Neither is busy now.
    bob.send(&invite("c3", "alice", None)).await;
    assert!(matches!(alice.recv().await, ServerMessage::Invited { .. }));
}

/// A call that ended while a party was away (the peer hung up) is told to it on resume.
#[tokio::test]
async fn resync_tells_a_returning_party_how_its_call_ended() {
    let s = server().await;
    let (mut alice, bob) = connected(&s, "c4").await;
    drop(bob);
    assert_reconnecting(&alice.recv().await, "bob");
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send(&hangup("c4")).await;
    assert_ended(&alice.recv().await, EndReason::Hangup, "alice");
    let mut bob = s.login("bob", "b1").await;
    bob.send(&resume("c4", "alice", now_ms())).await;
    let d = assert_ended(&bob.recv().await, EndReason::Hangup, "alice");
    assert!(d.is_some_and(|d| d >= 300), "{d:?}");
    alice.expect_silence(300).await;
}

/// A third user who knows a live call's ID and claims it is answered like any claim that waits for
/// its peer, reaches neither party, relays nothing, and hears `connection_lost` when the grace
/// runs out; the call goes on untouched.
#[tokio::test]
async fn a_third_user_claiming_a_live_call_learns_nothing_and_changes_nothing() {
    let s = server_with(|c| c.switchboard.resume_secs = 2).await;
    let (mut alice, mut bob) = connected(&s, "c5").await;
    let mut mallory = s.login("mallory", "m1").await;
    mallory.send(&resume("c5", "bob", now_ms())).await;
    assert_eq!(assert_reconnecting(&mallory.recv().await, "bob"), 2);
    assert_resumed(&mallory.recv().await, "bob");
    mallory.send(&mute("c5")).await;
    mallory.expect_error(ErrorCode::PeerAbsent).await;
    // A second claim (naming the other party) is refused: one claim at a time.
    mallory.send(&resume("c5", "alice", now_ms())).await;
    mallory.expect_error(ErrorCode::AlreadyInCall).await;
    alice.expect_silence(200).await;
    bob.expect_silence(0).await;
    // The live call is untouched.
    alice.send(&mute("c5")).await;
    assert!(matches!(bob.recv().await, ServerMessage::Signal { .. }));
    assert_ended(&mallory.recv().await, EndReason::ConnectionLost, "bob");
    alice.expect_silence(300).await;
    bob.expect_silence(0).await;
    bob.send(&hangup("c5")).await;
    assert_ended(&alice.recv().await, EndReason::Hangup, "bob");
    assert_ended(&bob.recv().await, EndReason::Hangup, "bob");
    mallory.expect_silence(200).await;
}

/// The shipped binary, killed (SIGKILL) and started again on the same port with nothing kept.
struct Binary {
    child: Child,
    addr: String,
}

impl Binary {
    fn start(listen: &str) -> Self {
        let (child, addr) = binary::spawn_listening(
            Command::new(binary::BIN)
                .args([
                    "serve",
                    "--listen",
                    listen,
                    "--sdkappid",
                    &APP.to_string(),
                    "--resume-secs",
                    "3",
                    // Nothing on disk: a restart keeps nothing, and no state is shared between runs.
                    "--memory-only",
                ])
                .env("TINCAN_SECRET_KEY", SECRET),
            "RESUME_TEST_LOG",
            |_| {},
        );
        Binary { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn rig(&self) -> Rig {
        Rig {
            url: format!("ws://{}/ws", self.addr),
        }
    }
}

/// Clients of the binary (the shared rig's `TestServer` owns an in-process server).
struct Rig {
    url: String,
}

impl Rig {
    async fn login(&self, user: &str, device: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(&self.url, None, true)
            .await
            .expect("connects");
        let mut c = Client { ws };
        let key = tincan_proto::UserSigKey::new(APP, tincan_proto::SecretKey::new(SECRET.into()));
        let sig = key.gen(&uid(user), now_secs(), 3600, None);
        c.send(&login_msg(user, device, sig)).await;
        match c.recv().await {
            ServerMessage::LoginOk { .. } => c,
            other => panic!("expected login_ok, got {other:?}"),
        }
    }

    /// `caller` calls `callee`, who accepts.
    async fn connected(&self, call: &str, caller: &str, callee: &str) -> (Client, Client) {
        let mut a = self.login(caller, &format!("{caller}-d")).await;
        let mut b = self.login(callee, &format!("{callee}-d")).await;
        a.send(&invite(call, callee, None)).await;
        assert!(matches!(b.recv().await, ServerMessage::Invited { .. }));
        assert!(matches!(a.recv().await, ServerMessage::Ringing { .. }));
        b.send(&ClientMessage::Accept { call_id: cid(call) }).await;
        assert!(matches!(a.recv().await, ServerMessage::Accepted { .. }));
        assert!(matches!(b.recv().await, ServerMessage::Accepted { .. }));
        (a, b)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kill and restart the real binary mid-call: both parties claim the call, it is re-created with
/// its original start, signals flow and hang-up works; a third user's claim made in between pairs
/// with nothing; a claim whose peer never comes back ends after the grace, and the late peer is
/// told so.
#[tokio::test]
async fn a_server_restart_recreates_the_call_from_both_claims() {
    let mut srv = Binary::start("127.0.0.1:0");
    let rig = srv.rig();
    let (alice, bob) = rig.connected("r1", "alice", "bob").await;
    let started = now_ms();
    let (carol, dave) = rig.connected("r2", "carol", "dave").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let addr = srv.addr.clone();
    srv.kill();
    drop((alice, bob, carol, dave));
    let mut srv = Binary::start(&addr);
    assert_eq!(srv.addr, addr, "restarted on the same port");
    let rig = srv.rig();

    // Alice claims first (her estimate of the start a little late), mallory claims the same call
    // naming bob, then bob claims naming alice.
    let mut alice = rig.login("alice", "alice-d").await;
    alice.send(&resume("r1", "bob", started + 150)).await;
    assert_eq!(assert_reconnecting(&alice.recv().await, "bob"), 3);
    assert_eq!(assert_resumed(&alice.recv().await, "bob"), started + 150);
    let mut mallory = rig.login("mallory", "mallory-d").await;
    mallory.send(&resume("r1", "bob", started)).await;
    assert_reconnecting(&mallory.recv().await, "bob");
    assert_resumed(&mallory.recv().await, "bob");
    let mut bob = rig.login("bob", "bob-d").await;
    bob.send(&resume("r1", "alice", started)).await;
    assert_eq!(assert_resumed(&bob.recv().await, "alice"), started);
    assert_reconnected(&alice.recv().await, "bob");
    mallory.expect_silence(0).await;

    // The call works again: an ICE restart and mute both ways, mallory hears none of it.
    alice.send(&ice_restart("r1")).await;
    assert!(matches!(
        bob.recv().await,
        ServerMessage::Signal {
            signal: MediaSignal::Offer {
                ice_restart: true,
                ..
            },
            ..
        }
    ));
    bob.send(&mute("r1")).await;
    assert!(matches!(alice.recv().await, ServerMessage::Signal { .. }));
    mallory.send(&mute("r1")).await;
    mallory.expect_error(ErrorCode::PeerAbsent).await;

    // Only carol comes back for her call: her claim ends after the grace.
    let mut carol = rig.login("carol", "carol-d").await;
    carol.send(&resume("r2", "dave", started)).await;
    assert_reconnecting(&carol.recv().await, "dave");
    assert_resumed(&carol.recv().await, "dave");
    assert_ended(&mallory.recv().await, EndReason::ConnectionLost, "bob");
    assert_ended(&carol.recv().await, EndReason::ConnectionLost, "dave");
    let mut dave = rig.login("dave", "dave-d").await;
    dave.send(&resume("r2", "carol", started)).await;
    assert_ended(&dave.recv().await, EndReason::ConnectionLost, "carol");

    // Hang-up works, with the call's original start.
    alice.expect_silence(0).await;
    bob.send(&hangup("r1")).await;
    let d = assert_ended(&alice.recv().await, EndReason::Hangup, "bob").unwrap();
    let since_start = now_ms() - started;
    assert!(
        d + 1_000 >= since_start && d <= since_start + 200,
        "duration {d} ms counts from the original start ({since_start} ms ago)"
    );
    assert_ended(&bob.recv().await, EndReason::Hangup, "bob");
    srv.kill();
}
