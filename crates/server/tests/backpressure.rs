//! Backpressure lands on the sender, never on the innocent (issue 11), through a real server on
//! loopback with real WebSocket clients:
//! - a caller's burst of ICE candidates while the call rings never knocks the callee's devices off;
//!   the caller hears a typed error for everything that was not relayed;
//! - a connection's own replies to any burst the rate limit allows all go out (65 pings, a full
//!   burst, and a burst far over the outbox's byte budget);
//! - a client that stops reading gets `peer_backlogged` sent to its peer's *sender*, and only after
//!   the stall period is it closed, with a real 4002 close frame when it reads again;
//! - binary and oversized frames count against the rate limit like any other.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tincan_proto::{ClientMessage, EndReason, ErrorCode, MediaSignal, ServerMessage};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const OFFER: &str = include_str!("../../proto/tests/data/sdp/chromium-156-offer-trickle.sdp");

fn candidate(n: u32) -> MediaSignal {
    MediaSignal::Candidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122194687 192.0.2.2 {} typ host generation 0",
            10000 + n % 50000
        ),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

fn signal(call: &str, signal: MediaSignal) -> ClientMessage {
    ClientMessage::Signal {
        call_id: cid(call),
        signal,
    }
}

/// Writes all of `msgs` in one go (one flush), the way a burst arrives in one TCP read.
async fn burst(c: &mut Client, msgs: impl IntoIterator<Item = ClientMessage>) {
    for m in msgs {
        c.ws.feed(Message::text(m.encode())).await.expect("feed");
    }
    c.ws.flush().await.expect("flush");
}

/// Sends pings until one is answered, counting the error codes of the frames sent before it;
/// panics on anything but errors (and on a close). A burst over the rate limit empties the
/// bucket, so a ping right after it may itself be refused (`rate_limited`): pings go out every
/// 100 ms, and each one refused before the answered one is taken off the count. Every frame has
/// exactly one outcome, in order, so once the pong for ping `k` is in, all outcomes before it are.
async fn errors_until_pong(c: &mut Client, base: u64) -> HashMap<ErrorCode, usize> {
    let mut seen: HashMap<ErrorCode, usize> = HashMap::new();
    let mut sent = 0u64;
    let mut next_ping = tokio::time::Instant::now();
    let answered = loop {
        if tokio::time::Instant::now() >= next_ping {
            assert!(sent < 50, "no ping answered");
            c.send(&ClientMessage::Ping {
                nonce: Some(base * 1000 + sent),
            })
            .await;
            sent += 1;
            next_ping += Duration::from_millis(100);
        }
        let Ok(m) = tokio::time::timeout_at(next_ping, c.recv()).await else {
            continue;
        };
        match m {
            ServerMessage::Pong { nonce: Some(n) } => break n - base * 1000,
            ServerMessage::Error { code, .. } => *seen.entry(code).or_default() += 1,
            other => panic!("unexpected {other:?}"),
        }
    };
    // The pings before the answered one were refused by the rate limit.
    if answered > 0 {
        let limited = seen.entry(ErrorCode::RateLimited).or_default();
        assert!(*limited >= answered as usize, "{answered} pings unanswered");
        *limited -= answered as usize;
        if *limited == 0 {
            seen.remove(&ErrorCode::RateLimited);
        }
    }
    // The pings after it each have one outcome still to come.
    for _ in answered + 1..sent {
        match c.recv().await {
            ServerMessage::Pong { .. }
            | ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    seen
}

/// Reads the signals relayed to `c` until its own pong; returns how many arrived.
async fn signals_until_pong(c: &mut Client, nonce: u64) -> usize {
    c.send(&ClientMessage::Ping { nonce: Some(nonce) }).await;
    let mut n = 0;
    loop {
        match c.recv().await {
            ServerMessage::Pong { nonce: Some(got) } if got == nonce => return n,
            ServerMessage::Signal { .. } => n += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_candidate_burst_while_ringing_never_knocks_the_callee_off() {
    // The shipped defaults: this is what a real deployment sees.
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    // A callee per burst (the abuse limits slow down re-ringing one callee), two devices each.
    for (call, n, nonce, callee) in [("c1", 70u32, 1u64, "bob"), ("c2", 300, 2, "carol")] {
        let mut b1 = s.login(callee, "d1").await;
        let mut b2 = s.login(callee, "d2").await;
        alice.send(&invite(call, callee, None)).await;
        for b in [&mut b1, &mut b2] {
            assert!(matches!(b.recv().await, ServerMessage::Invited { .. }));
        }
        assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));

        // The whole burst in one write, while bob's devices ring.
        burst(&mut alice, (0..n).map(|i| signal(call, candidate(i)))).await;
        let errors = errors_until_pong(&mut alice, nonce).await;
        let refused: usize = errors.values().sum();
        let known = [
            ErrorCode::SdpRejected,
            ErrorCode::RateLimited,
            ErrorCode::PeerBacklogged,
        ];
        assert!(
            errors.keys().all(|c| known.contains(c)),
            "{call}: unexpected errors {errors:?}"
        );
        // Both devices got every candidate that was relayed, and are still connected.
        let got1 = signals_until_pong(&mut b1, nonce).await;
        let got2 = signals_until_pong(&mut b2, nonce).await;
        assert_eq!(got1, got2, "{call}: both devices get the same");
        assert_eq!(
            got1 + refused,
            n as usize,
            "{call}: every candidate is either relayed or refused to the sender ({errors:?})"
        );
        assert!(got1 >= 64, "{call}: only {got1} relayed");
        eprintln!("{call}: {n} candidates: {got1} relayed to each device, refused {errors:?}");

        alice
            .send(&ClientMessage::Cancel { call_id: cid(call) })
            .await;
        for b in [&mut b1, &mut b2] {
            assert!(matches!(b.recv().await, ServerMessage::CallEnded { .. }));
        }
        // The canceller may or may not hear its own call_ended; a pong says it is done.
        alice.send(&ClientMessage::Ping { nonce: Some(99) }).await;
        loop {
            match alice.recv().await {
                ServerMessage::Pong { nonce: Some(99) } => break,
                ServerMessage::CallEnded { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // Alice and this callee's two devices (the last callee's went when their clients did).
        assert_eq!(
            s.handle.session_count(),
            3,
            "{call}: nobody was disconnected"
        );
        for c in [&mut b1, &mut b2] {
            c.expect_silence(100).await;
        }
    }
    alice.expect_silence(100).await;
}

#[tokio::test]
async fn every_reply_to_an_allowed_burst_goes_out() {
    let s = server().await;
    let burst_size = u64::from(tincan_server::config::DEFAULT_RATE_BURST);
    for n in [65, burst_size] {
        let mut c = s.login("alice", &format!("d{n}")).await;
        // The bucket refills the token the login took.
        tokio::time::sleep(Duration::from_millis(50)).await;
        burst(
            &mut c,
            (0..n).map(|i| ClientMessage::Ping { nonce: Some(i) }),
        )
        .await;
        for i in 0..n {
            assert_eq!(
                c.recv().await,
                ServerMessage::Pong { nonce: Some(i) },
                "{n} pings"
            );
        }
        c.expect_silence(200).await;
    }

    // A burst whose replies are far over the outbox's byte budget: the reader waits for room
    // (the client's own frames wait in TCP) instead of dropping or disconnecting.
    let s = server_with(|c| {
        c.rate_per_sec = 100_000;
        c.rate_burst = 100_000;
        c.send_queue_bytes = 16 * 1024;
    })
    .await;
    let mut c = s.login("alice", "a1").await;
    let n = 5_000;
    burst(
        &mut c,
        (0..n).map(|i| ClientMessage::Ping { nonce: Some(i) }),
    )
    .await;
    for i in 0..n {
        assert_eq!(c.recv().await, ServerMessage::Pong { nonce: Some(i) });
    }
    c.expect_silence(200).await;
}

/// The server's word that the peer's connection is gone while the call waits for it to come back.
fn is_peer_lost(m: &ServerMessage) -> bool {
    serde_json::to_value(m).is_ok_and(|v| v["type"] == "peer_reconnecting")
}

/// A client whose socket takes little before it is full (a small receive buffer), so that a
/// client that stops reading stops the server's writes quickly.
async fn small_window_client(s: &TestServer) -> Client {
    let addr = s.handle.local_addr();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (ws, _) = tokio_tungstenite::client_async(s.url.as_str(), MaybeTlsStream::Plain(tcp))
        .await
        .expect("handshake");
    Client { ws }
}

/// The stall period of the slow-consumer test: long enough that a loaded machine does not cut a
/// client mid-test by accident, short enough to keep the test fast.
const STALL: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_client_that_stops_reading_gets_4002_after_the_stall_and_its_peer_is_told() {
    let s = server_with(|c| {
        *c = c.clone().with_max_frame_bytes(60_000);
        c.switchboard.sdp.max_sdp_bytes = 60_000;
        c.rate_per_sec = 100_000;
        c.rate_burst = 100_000;
        c.send_queue_bytes = 64 * 1024;
        c.send_stall = STALL;
    })
    .await;
    let mut alice = s.login("alice", "a1").await;
    let mut bob = small_window_client(&s).await;
    bob.send(&login_msg("bob", "b1", s.sig("bob"))).await;
    assert!(matches!(bob.recv().await, ServerMessage::LoginOk { .. }));
    alice.send(&invite("c1", "bob", None)).await;
    assert!(matches!(bob.recv().await, ServerMessage::Invited { .. }));
    assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));
    bob.send(&ClientMessage::Accept { call_id: cid("c1") })
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::Accepted { .. }));
    assert!(matches!(bob.recv().await, ServerMessage::Accepted { .. }));

    // Bob stops reading. Alice sends him real offers padded to 30 KB (only what passes the SDP
    // check is relayed) until the server tells her he is backlogged.
    let sdp = format!("{OFFER}a=x-pad:{}\r\n", "a".repeat(30_000));
    let offer = signal(
        "c1",
        MediaSignal::Offer {
            sdp,
            ice_restart: false,
        },
    );
    let mut sent = 0;
    let backlogged_at = loop {
        assert!(sent < 2_000, "no backpressure after {sent} offers");
        alice.send(&offer).await;
        sent += 1;
        let errors = errors_until_pong(&mut alice, sent).await;
        if let Some(&n) = errors.get(&ErrorCode::PeerBacklogged) {
            assert_eq!(n, 1);
            break tokio::time::Instant::now();
        }
        assert!(errors.is_empty(), "{errors:?}");
    };
    eprintln!("peer_backlogged after {sent} offers");
    // Backlogged is not disconnected: bob is still signed in, alice may keep trying.
    assert_eq!(s.handle.session_count(), 2);
    alice.send(&offer).await;
    assert_eq!(
        errors_until_pong(&mut alice, 1_000_000)
            .await
            .get(&ErrorCode::PeerBacklogged),
        Some(&1)
    );

    // After the stall period without progress bob counts as gone: alice hears that his
    // connection was lost (the call ends, or waits for him to reconnect)...
    loop {
        match alice.recv().await {
            ServerMessage::CallEnded { reason, .. } => {
                assert_eq!(reason, EndReason::ConnectionLost);
                break;
            }
            ServerMessage::Error {
                code: ErrorCode::PeerBacklogged,
                ..
            } => continue,
            other if is_peer_lost(&other) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let waited = backlogged_at.elapsed();
    eprintln!("slow consumer cut {waited:?} after the first peer_backlogged");
    assert!(
        waited < STALL + Duration::from_secs(3),
        "cut only after {waited:?}"
    );

    // ...and bob, reading again, gets what was already on its way, then a real 4002 close frame
    // (its queue was dropped to make room for it), not a bare TCP close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut frames = 0;
    let (code, reason) = loop {
        let m = tokio::time::timeout(Duration::from_secs(5), bob.ws.next())
            .await
            .expect("a frame within 5 s");
        match m {
            Some(Ok(Message::Text(_))) => frames += 1,
            Some(Ok(Message::Close(Some(f)))) => break (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("after {frames} frames: expected the close frame, got {other:?}"),
        }
    };
    eprintln!("bob read {frames} frames, then close {code} {reason}");
    assert_eq!((code, reason.as_str()), (4002, "slow_consumer"));
    assert_eq!(s.handle.session_count(), 1);
    // Alice was never affected.
    assert!(errors_until_pong(&mut alice, 7).await.is_empty());
}

#[tokio::test]
async fn binary_and_oversized_frames_count_against_the_rate_limit() {
    let s = server_with(|c| {
        *c = c.clone().with_max_frame_bytes(1024);
        c.rate_per_sec = 1;
        c.rate_burst = 5;
    })
    .await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000));
    let frames: [(&str, Message, ErrorCode); 2] = [
        (
            "binary",
            Message::binary(vec![1u8, 2, 3]),
            ErrorCode::BinaryFrame,
        ),
        ("oversized", Message::text(big), ErrorCode::FrameTooLarge),
    ];
    for (i, (what, frame, own_error)) in frames.into_iter().enumerate() {
        let mut c = s.login("alice", &format!("d{i}")).await;
        // The login took one token of the five; ten more frames of this kind in one write.
        for _ in 0..10 {
            c.ws.feed(frame.clone()).await.unwrap();
        }
        c.ws.flush().await.unwrap();
        let mut seen: HashMap<ErrorCode, usize> = HashMap::new();
        for _ in 0..10 {
            match c.recv().await {
                ServerMessage::Error { code, .. } => *seen.entry(code).or_default() += 1,
                other => panic!("{what}: unexpected {other:?}"),
            }
        }
        let own = seen.get(&own_error).copied().unwrap_or(0);
        let limited = seen.get(&ErrorCode::RateLimited).copied().unwrap_or(0);
        assert!(
            own <= 5 && limited >= 5 && own + limited == 10,
            "{what}: {seen:?}"
        );
        // The bucket is empty now: even a ping is refused.
        c.send(&ClientMessage::Ping { nonce: Some(1) }).await;
        c.expect_error(ErrorCode::RateLimited).await;
    }
}
