//! Whole calls through a real server on loopback, driven by real WebSocket clients.

mod common;

use common::*;
use tincan_proto::{ClientMessage, EndReason, ErrorCode, MediaSignal, ServerMessage};

fn offer() -> MediaSignal {
    MediaSignal::Offer {
        // A real offer: the server relays only what passes the SDP check.
        sdp: include_str!("../../proto/tests/data/sdp/chromium-156-offer-trickle.sdp").into(),
        ice_restart: false,
    }
}

fn candidate(n: u16) -> MediaSignal {
    MediaSignal::Candidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122260223 192.0.2.1 {} typ host",
            50000 + n
        ),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

#[tokio::test]
async fn full_call_relays_media_and_reports_duration() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut bob = s.login("bob", "b1").await;

    alice.send(&invite("c1", "bob", Some(20))).await;
    assert_eq!(
        bob.recv().await,
        ServerMessage::Invited {
            call_id: cid("c1"),
            caller: uid("alice"),
            call_type: Default::default(),
            timeout_secs: 20
        }
    );
    assert_eq!(
        alice.recv().await,
        ServerMessage::Ringing { call_id: cid("c1") }
    );

    // The caller's offer travels while the callee is still ringing.
    alice
        .send(&ClientMessage::Signal {
            call_id: cid("c1"),
            signal: offer(),
        })
        .await;
    assert_eq!(
        bob.recv().await,
        ServerMessage::Signal {
            call_id: cid("c1"),
            from: uid("alice"),
            signal: offer()
        }
    );

    bob.send(&ClientMessage::Accept { call_id: cid("c1") })
        .await;
    let accepted = ServerMessage::Accepted {
        call_id: cid("c1"),
        by: uid("bob"),
    };
    assert_eq!(alice.recv().await, accepted);
    assert_eq!(bob.recv().await, accepted);

    let answer = MediaSignal::Answer {
        sdp: include_str!("../../proto/tests/data/sdp/chromium-156-answer.sdp").into(),
    };
    bob.send(&ClientMessage::Signal {
        call_id: cid("c1"),
        signal: answer.clone(),
    })
    .await;
    assert_eq!(
        alice.recv().await,
        ServerMessage::Signal {
            call_id: cid("c1"),
            from: uid("bob"),
            signal: answer
        }
    );
    for n in 0..3 {
        alice
            .send(&ClientMessage::Signal {
                call_id: cid("c1"),
                signal: candidate(n),
            })
            .await;
        bob.send(&ClientMessage::Signal {
            call_id: cid("c1"),
            signal: candidate(n + 10),
        })
        .await;
    }
    for n in 0..3 {
        assert!(
            matches!(bob.recv().await, ServerMessage::Signal { signal, .. } if signal == candidate(n))
        );
        assert!(
            matches!(alice.recv().await, ServerMessage::Signal { signal, .. } if signal == candidate(n + 10))
        );
    }
    bob.send(&ClientMessage::Signal {
        call_id: cid("c1"),
        signal: MediaSignal::Mute { muted: true },
    })
    .await;
    assert!(matches!(
        alice.recv().await,
        ServerMessage::Signal {
            signal: MediaSignal::Mute { muted: true },
            ..
        }
    ));

    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    alice
        .send(&ClientMessage::Hangup { call_id: cid("c1") })
        .await;
    let (reason, by, duration) = ended(&bob.recv().await);
    assert_eq!(reason, EndReason::Hangup);
    assert_eq!(by.as_deref(), Some("alice"));
    assert!(duration.unwrap() >= 100, "duration {duration:?}");
    assert_eq!(ended(&alice.recv().await).0, EndReason::Hangup);

    // The call is gone: a second hang-up is answered, not obeyed.
    alice
        .send(&ClientMessage::Hangup { call_id: cid("c1") })
        .await;
    alice.expect_error(ErrorCode::UnknownCall).await;
    // Both are free to call again.
    bob.send(&invite("c2", "alice", None)).await;
    assert!(matches!(alice.recv().await, ServerMessage::Invited { .. }));
}

#[tokio::test]
async fn reject_reaches_the_caller() {
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "c1").await;
    bob.send(&ClientMessage::Reject {
        call_id: cid("c1"),
        busy: false,
    })
    .await;
    let (reason, by, duration) = ended(&alice.recv().await);
    assert_eq!(
        (reason, by.as_deref(), duration),
        (EndReason::Rejected, Some("bob"), None)
    );
    assert_eq!(ended(&bob.recv().await).0, EndReason::Rejected);
}

#[tokio::test]
async fn busy_callee_gives_line_busy_at_once() {
    let s = server().await;
    let (_alice, _bob) = connected(&s, "c1").await;
    let mut carol = s.login("carol", "c1").await;
    carol.send(&invite("c2", "bob", None)).await;
    let (reason, by, _) = ended(&carol.recv().await);
    assert_eq!((reason, by.as_deref()), (EndReason::LineBusy, Some("bob")));
}

#[tokio::test]
async fn a_callee_may_decline_as_busy() {
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "c1").await;
    bob.send(&ClientMessage::Reject {
        call_id: cid("c1"),
        busy: true,
    })
    .await;
    assert_eq!(ended(&alice.recv().await).0, EndReason::LineBusy);
}

#[tokio::test]
async fn a_ringing_caller_is_not_busy() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut bob = s.login("bob", "b1").await;
    let mut carol = s.login("carol", "c1").await;
    alice.send(&invite("c1", "bob", None)).await;
    bob.recv().await;
    alice.recv().await;
    carol.send(&invite("c2", "alice", None)).await;
    assert!(
        matches!(alice.recv().await, ServerMessage::Invited { call_id, .. } if call_id == cid("c2"))
    );
    assert!(matches!(carol.recv().await, ServerMessage::Ringing { .. }));
    // Once Alice takes Carol's call, her own ringing call to Bob is withdrawn.
    alice
        .send(&ClientMessage::Accept { call_id: cid("c2") })
        .await;
    let mut saw_cancel = false;
    for _ in 0..2 {
        match alice.recv().await {
            ServerMessage::Accepted { .. } => {}
            m => {
                assert_eq!(ended(&m).0, EndReason::Cancelled);
                saw_cancel = true;
            }
        }
    }
    assert!(saw_cancel);
    assert_eq!(ended(&bob.recv().await).0, EndReason::Cancelled);
}

#[tokio::test]
async fn cancel_stops_the_ringing() {
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "c1").await;
    alice
        .send(&ClientMessage::Cancel { call_id: cid("c1") })
        .await;
    let (reason, by, _) = ended(&bob.recv().await);
    assert_eq!(
        (reason, by.as_deref()),
        (EndReason::Cancelled, Some("alice"))
    );
    assert_eq!(ended(&alice.recv().await).0, EndReason::Cancelled);
}

#[tokio::test]
async fn the_server_enforces_the_ring_timeout() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut bob = s.login("bob", "b1").await;
    let started = std::time::Instant::now();
    alice.send(&invite("c1", "bob", Some(1))).await;
    assert!(matches!(
        bob.recv().await,
        ServerMessage::Invited {
            timeout_secs: 1,
            ..
        }
    ));
    alice.recv().await;
    assert_eq!(ended(&alice.recv().await).0, EndReason::NoResponse);
    assert_eq!(ended(&bob.recv().await).0, EndReason::Timeout);
    assert!(started.elapsed() >= std::time::Duration::from_millis(950));
    // An accept after the timeout finds no call.
    bob.send(&ClientMessage::Accept { call_id: cid("c1") })
        .await;
    bob.expect_error(ErrorCode::UnknownCall).await;
}

#[tokio::test]
async fn ring_timeouts_are_clamped_to_the_server_maximum() {
    let s = server_with(|c| c.switchboard.max_ring_secs = 1).await;
    let mut alice = s.login("alice", "a1").await;
    let mut bob = s.login("bob", "b1").await;
    alice.send(&invite("c1", "bob", Some(3600))).await;
    assert!(matches!(
        bob.recv().await,
        ServerMessage::Invited {
            timeout_secs: 1,
            ..
        }
    ));
    alice.recv().await;
    assert_eq!(ended(&alice.recv().await).0, EndReason::NoResponse);
}

#[tokio::test]
async fn offline_callee_hears_of_the_missed_call_at_sign_in() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    alice.send(&invite("c1", "bob", None)).await;
    let (reason, by, _) = ended(&alice.recv().await);
    assert_eq!((reason, by.as_deref()), (EndReason::Offline, Some("bob")));
    let bob = s.login("bob", "b1").await;
    let mut bob = bob;
    match bob.recv().await {
        ServerMessage::MissedCalls { calls } => {
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].caller, uid("alice"));
            assert_eq!(calls[0].call_id, cid("c1"));
        }
        other => panic!("expected missed_calls, got {other:?}"),
    }
}

#[tokio::test]
async fn every_device_rings_and_the_first_answer_wins() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut b1 = s.login("bob", "laptop").await;
    let mut b2 = s.login("bob", "desktop").await;
    alice.send(&invite("c1", "bob", None)).await;
    assert!(matches!(b1.recv().await, ServerMessage::Invited { .. }));
    assert!(matches!(b2.recv().await, ServerMessage::Invited { .. }));
    assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));
    // The early offer reaches both ringing devices.
    alice
        .send(&ClientMessage::Signal {
            call_id: cid("c1"),
            signal: offer(),
        })
        .await;
    assert!(matches!(b1.recv().await, ServerMessage::Signal { .. }));
    assert!(matches!(b2.recv().await, ServerMessage::Signal { .. }));

    b2.send(&ClientMessage::Accept { call_id: cid("c1") }).await;
    assert!(matches!(alice.recv().await, ServerMessage::Accepted { .. }));
    assert!(matches!(b2.recv().await, ServerMessage::Accepted { .. }));
    assert_eq!(ended(&b1.recv().await).0, EndReason::AnsweredElsewhere);

    // The loser's late accept is refused, and media goes to the winner only.
    b1.send(&ClientMessage::Accept { call_id: cid("c1") }).await;
    b1.expect_error(ErrorCode::NotCallParty).await;
    alice
        .send(&ClientMessage::Signal {
            call_id: cid("c1"),
            signal: candidate(1),
        })
        .await;
    assert!(matches!(b2.recv().await, ServerMessage::Signal { .. }));
    b1.expect_silence(200).await;
}

#[tokio::test]
async fn a_decline_on_one_device_stops_the_others() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut b1 = s.login("bob", "laptop").await;
    let mut b2 = s.login("bob", "desktop").await;
    alice.send(&invite("c1", "bob", None)).await;
    b1.recv().await;
    b2.recv().await;
    alice.recv().await;
    b1.send(&ClientMessage::Reject {
        call_id: cid("c1"),
        busy: false,
    })
    .await;
    assert_eq!(ended(&alice.recv().await).0, EndReason::Rejected);
    assert_eq!(ended(&b1.recv().await).0, EndReason::Rejected);
    assert_eq!(ended(&b2.recv().await).0, EndReason::DeclinedElsewhere);
}

#[tokio::test]
async fn a_device_that_signs_in_while_ringing_rings_too() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut b1 = s.login("bob", "laptop").await;
    alice.send(&invite("c1", "bob", None)).await;
    b1.recv().await;
    alice.recv().await;
    let mut b2 = s.login("bob", "phone").await;
    assert!(
        matches!(b2.recv().await, ServerMessage::Invited { caller, .. } if caller == uid("alice"))
    );
    b2.send(&ClientMessage::Accept { call_id: cid("c1") }).await;
    assert!(matches!(alice.recv().await, ServerMessage::Accepted { .. }));
    assert_eq!(ended(&b1.recv().await).0, EndReason::AnsweredElsewhere);
}

#[tokio::test]
async fn single_session_kicks_the_older_sign_in() {
    let s = server_with(|c| c.switchboard.single_session = true).await;
    let mut old = s.login("bob", "laptop").await;
    let _new = s.login("bob", "desktop").await;
    assert_eq!(
        old.recv().await,
        ServerMessage::KickedOffline {
            reason: tincan_proto::CloseReason::KickedOffline
        }
    );
    assert_eq!(old.expect_close().await, (4000, "kicked_offline".into()));
}

#[tokio::test]
async fn the_same_device_signing_in_again_replaces_its_old_connection() {
    let s = server().await;
    let mut old = s.login("bob", "laptop").await;
    let _new = s.login("bob", "laptop").await;
    assert!(matches!(
        old.recv().await,
        ServerMessage::KickedOffline { .. }
    ));
    assert_eq!(old.expect_close().await, (4001, "replaced".into()));
}

#[tokio::test]
async fn a_peer_vanishing_mid_call_ends_it() {
    // With resume off: by default the call is held for the peer (tests/resume.rs).
    let s = server_with(|c| c.switchboard.resume_secs = 0).await;
    let (mut alice, bob) = connected(&s, "c1").await;
    drop(bob);
    let (reason, by, duration) = ended(&alice.recv().await);
    assert_eq!(
        (reason, by.as_deref()),
        (EndReason::ConnectionLost, Some("bob"))
    );
    assert!(duration.is_some());
}

#[tokio::test]
async fn a_ringing_callee_vanishing_ends_the_call() {
    let s = server().await;
    let (mut alice, bob) = ringing(&s, "c1").await;
    drop(bob);
    assert_eq!(ended(&alice.recv().await).0, EndReason::ConnectionLost);
}

#[tokio::test]
async fn logout_closes_cleanly() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    alice.send(&ClientMessage::Logout).await;
    assert_eq!(alice.recv().await, ServerMessage::LoggedOut);
    assert_eq!(alice.expect_close().await, (1000, "logged_out".into()));
}

#[tokio::test]
async fn healthz_counts_sessions() {
    let s = server().await;
    let _alice = s.login("alice", "a1").await;
    let body = http_get(s.handle.local_addr(), "/healthz").await;
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(body.contains("\"sessions\":1"), "{body}");
}

#[tokio::test]
async fn serves_the_browser_ui_and_dev_sigs_only_when_asked() {
    let dir = std::env::temp_dir().join(format!("tincan-ui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<title>tincan</title>").unwrap();
    let s = server_with(|c| {
        c.ui_dir = Some(dir.clone());
        c.dev_issue_sigs = true;
    })
    .await;
    let page = http_get(s.handle.local_addr(), "/").await;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("<title>tincan</title>"),
        "{page}"
    );
    let sig = http_get(s.handle.local_addr(), "/dev/usersig?user=dave").await;
    let body = sig.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let token = v["user_sig"].as_str().unwrap();
    s.key
        .verify(token, "dave", now_secs())
        .expect("a valid sig for dave");
    let bad = http_get(s.handle.local_addr(), "/dev/usersig?user=no%20spaces").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");

    let plain = server().await;
    let off = http_get(plain.handle.local_addr(), "/dev/usersig?user=dave").await;
    assert!(off.starts_with("HTTP/1.1 404"), "{off}");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        // The server's own address as Host: /dev/usersig answers only a loopback Host with its port.
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}
