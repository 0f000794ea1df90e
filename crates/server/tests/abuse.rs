//! What one user can do to another through a real server: ring-bombing, holding a line busy,
//! blocked callers, what a stranger learns, every leaver hearing its call end, and glare.

mod common;

use common::*;
use std::time::Duration;
use tincan_proto::{ClientMessage, CloseReason, EndReason, ErrorCode, ServerMessage};

#[tokio::test]
async fn ring_bombing_is_throttled() {
    let s = server().await;
    let mut mallory = s.login("mallory", "m1").await;
    let mut bob = s.login("bob", "b1").await;
    // Invite and cancel as fast as possible, 50 times: the seed rang Bob 221 times in 10 s.
    let mut rang = 0;
    let mut refused = 0;
    for n in 0..50 {
        let call = format!("bomb{n}");
        mallory.send(&invite(&call, "bob", None)).await;
        match mallory.recv().await {
            ServerMessage::Ringing { .. } => {
                rang += 1;
                mallory
                    .send(&ClientMessage::Cancel {
                        call_id: cid(&call),
                    })
                    .await;
                assert_eq!(ended(&mallory.recv().await).0, EndReason::Cancelled);
            }
            ServerMessage::Error {
                code: ErrorCode::TooManyInvites,
                call_id,
                ..
            } => {
                assert_eq!(call_id, Some(cid(&call)));
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A ring and one redial, then the re-invite cooldown (at least 5 s) refuses every other.
    assert_eq!((rang, refused), (2, 48));
    for _ in 0..2 {
        assert!(matches!(bob.recv().await, ServerMessage::Invited { .. }));
        assert_eq!(ended(&bob.recv().await).0, EndReason::Cancelled);
    }
    bob.expect_silence(300).await;
}

#[tokio::test]
async fn invites_per_minute_are_capped_across_callees() {
    let s = server().await;
    let mut mallory = s.login("mallory", "m1").await;
    // 25 callees, all offline: the first 20 are answered `offline`, the rest refused.
    let mut answers = Vec::new();
    for n in 0..25 {
        mallory
            .send(&invite(&format!("c{n}"), &format!("user{n}"), None))
            .await;
        answers.push(match mallory.recv().await {
            ServerMessage::CallEnded {
                reason: EndReason::Offline,
                ..
            } => "offline",
            ServerMessage::Error {
                code: ErrorCode::TooManyInvites,
                ..
            } => "refused",
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(answers.iter().filter(|a| **a == "offline").count(), 20);
    assert!(answers[20..].iter().all(|a| *a == "refused"));
}

#[tokio::test]
async fn timeout_zero_cannot_lock_a_line() {
    let s = server_with(|c| {
        c.switchboard.default_ring_secs = 1;
        c.switchboard.min_recall_secs = 1;
    })
    .await;
    let mut mallory = s.login("mallory", "m1").await;
    let mut bob = s.login("bob", "b1").await;
    let mut carol = s.login("carol", "c1").await;
    // The ring and one redial: 0 rings the default time (here 1 s), never the server's maximum.
    for call in ["x1", "x2"] {
        mallory.send(&invite(call, "bob", Some(0))).await;
        match bob.recv().await {
            ServerMessage::Invited { timeout_secs, .. } => assert_eq!(timeout_secs, 1),
            other => panic!("expected invited, got {other:?}"),
        }
        assert!(matches!(
            mallory.recv().await,
            ServerMessage::Ringing { .. }
        ));
        assert_eq!(ended(&mallory.recv().await).0, EndReason::NoResponse);
        assert_eq!(ended(&bob.recv().await).0, EndReason::Timeout);
    }
    // Re-inviting again the moment the ring ends is refused, so the line is free for others.
    mallory.send(&invite("x3", "bob", Some(0))).await;
    mallory.expect_error(ErrorCode::TooManyInvites).await;
    carol.send(&invite("y1", "bob", None)).await;
    assert!(matches!(carol.recv().await, ServerMessage::Ringing { .. }));
    assert!(matches!(bob.recv().await, ServerMessage::Invited { .. }));
}

#[tokio::test]
async fn a_blocked_caller_hears_offline_and_rings_nothing() {
    let s = server().await;
    let mut bob1 = s.login("bob", "b1").await;
    let mut bob2 = s.login("bob", "b2").await;
    let mut mallory = s.login("mallory", "m1").await;
    bob1.send(&ClientMessage::Block {
        user_id: uid("mallory"),
    })
    .await;
    assert_eq!(
        bob1.recv().await,
        ServerMessage::Blocked {
            user_id: uid("mallory")
        }
    );
    // The answer to a blocked invite and to an invite to someone signed in nowhere, byte for byte
    // (the names aside).
    mallory.send(&invite("x1", "bob", None)).await;
    let blocked = raw(&mut mallory).await;
    mallory.send(&invite("x2", "nobody", None)).await;
    let offline = raw(&mut mallory).await;
    assert_eq!(
        blocked,
        serde_json::json!({"type":"call_ended","call_id":"x1","reason":"offline","by":"bob"})
    );
    assert_eq!(
        offline,
        serde_json::json!({"type":"call_ended","call_id":"x2","reason":"offline","by":"nobody"})
    );
    bob1.expect_silence(300).await;
    bob2.expect_silence(0).await;
    // The block holds on every device of Bob's and after he signs in again.
    drop(bob1);
    let _bob3 = s.login("bob", "b3").await;
    mallory.send(&invite("x3", "bob", None)).await;
    assert_eq!(ended(&mallory.recv().await).0, EndReason::Offline);
    bob2.send(&ClientMessage::Unblock {
        user_id: uid("mallory"),
    })
    .await;
    assert_eq!(
        bob2.recv().await,
        ServerMessage::Unblocked {
            user_id: uid("mallory")
        }
    );
    mallory.send(&invite("x4", "bob", None)).await;
    assert!(matches!(
        mallory.recv().await,
        ServerMessage::Ringing { .. }
    ));
    assert!(matches!(bob2.recv().await, ServerMessage::Invited { .. }));
}

#[tokio::test]
async fn a_stranger_learns_no_device_count() {
    let s = server().await;
    let mut stranger = s.login("stranger", "s1").await;
    let _bob1 = s.login("bob", "b1").await;
    let _bob2 = s.login("bob", "b2").await;
    stranger.send(&invite("x1", "bob", None)).await;
    assert_eq!(
        raw(&mut stranger).await,
        serde_json::json!({"type":"ringing","call_id":"x1"})
    );
}

#[tokio::test]
async fn a_party_that_logs_out_hears_its_call_end() {
    let s = server().await;
    let (mut alice, mut bob) = connected(&s, "c1").await;
    bob.send(&ClientMessage::Logout).await;
    let (reason, by, duration) = ended(&bob.recv().await);
    assert_eq!((reason, by.as_deref()), (EndReason::LoggedOut, Some("bob")));
    assert!(duration.is_some());
    assert_eq!(bob.recv().await, ServerMessage::LoggedOut);
    assert_eq!(bob.expect_close().await, (1000, "logged_out".into()));
    let (reason, by, _) = ended(&alice.recv().await);
    assert_eq!(
        (reason, by.as_deref()),
        (EndReason::ConnectionLost, Some("bob"))
    );
    alice.expect_silence(200).await;
}

#[tokio::test]
async fn a_caller_that_logs_out_while_ringing_hears_it_end() {
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "c1").await;
    alice.send(&ClientMessage::Logout).await;
    assert_eq!(ended(&alice.recv().await).0, EndReason::LoggedOut);
    assert_eq!(alice.recv().await, ServerMessage::LoggedOut);
    assert_eq!(ended(&bob.recv().await).0, EndReason::ConnectionLost);
}

#[tokio::test]
async fn a_kicked_party_hears_its_call_end() {
    let s = server_with(|c| c.switchboard.single_session = true).await;
    let (mut alice, mut bob) = connected(&s, "c1").await;
    let mut bob_elsewhere = s.login("bob", "desktop").await;
    let (reason, by, _) = ended(&bob.recv().await);
    assert_eq!(
        (reason, by.as_deref()),
        (EndReason::KickedOffline, Some("bob"))
    );
    assert_eq!(
        bob.recv().await,
        ServerMessage::KickedOffline {
            reason: CloseReason::KickedOffline
        }
    );
    assert_eq!(bob.expect_close().await, (4000, "kicked_offline".into()));
    assert_eq!(ended(&alice.recv().await).0, EndReason::ConnectionLost);
    bob_elsewhere.expect_silence(200).await;
}

#[tokio::test]
async fn a_replaced_ringing_device_hears_it_end_and_the_new_one_rings() {
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "c1").await;
    let mut bob_again = s.login("bob", "b1").await;
    let (reason, by, _) = ended(&bob.recv().await);
    assert_eq!((reason, by.as_deref()), (EndReason::Replaced, Some("bob")));
    assert!(matches!(
        bob.recv().await,
        ServerMessage::KickedOffline {
            reason: CloseReason::Replaced
        }
    ));
    assert_eq!(bob.expect_close().await, (4001, "replaced".into()));
    // The ring moved to the new connection; the caller noticed nothing.
    assert!(matches!(
        bob_again.recv().await,
        ServerMessage::Invited { call_id, .. } if call_id == cid("c1")
    ));
    alice.expect_silence(200).await;
    bob_again
        .send(&ClientMessage::Accept { call_id: cid("c1") })
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::Accepted { .. }));
}

#[tokio::test]
async fn a_replaced_caller_hears_its_ringing_call_end() {
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "c1").await;
    let _alice_again = s.login("alice", "a1").await;
    assert_eq!(ended(&alice.recv().await).0, EndReason::Replaced);
    assert!(matches!(
        alice.recv().await,
        ServerMessage::KickedOffline { .. }
    ));
    assert_eq!(alice.expect_close().await, (4001, "replaced".into()));
    assert_eq!(ended(&bob.recv().await).0, EndReason::ConnectionLost);
}

#[tokio::test]
async fn glare_declines_the_later_invite_and_keeps_the_first() {
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "a-to-b").await;
    // Bob calls Alice back at the same moment: his invite is declined at once, without ringing,
    // and Alice's call keeps ringing on his device.
    bob.send(&invite("b-to-a", "alice", None)).await;
    let (reason, by, _) = ended(&bob.recv().await);
    assert_eq!(
        (reason, by.as_deref()),
        (EndReason::LineBusy, Some("alice"))
    );
    alice.expect_silence(200).await;
    bob.send(&ClientMessage::Accept {
        call_id: cid("a-to-b"),
    })
    .await;
    assert!(matches!(alice.recv().await, ServerMessage::Accepted { .. }));
    assert!(matches!(bob.recv().await, ServerMessage::Accepted { .. }));
}

#[tokio::test]
async fn the_idle_timeout_counts_from_the_last_frame_not_the_next_heartbeat() {
    // The seed checked silence only at heartbeat ticks: with these settings a silent client was
    // closed after 30 s, not 1 s.
    let s = server_with(|c| {
        c.heartbeat = Duration::from_secs(30);
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut quiet = s.login("quiet", "q1").await;
    let started = std::time::Instant::now();
    assert_eq!(quiet.expect_close().await, (4003, "idle_timeout".into()));
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
}

#[tokio::test]
async fn a_replaced_party_hears_its_connected_call_end_when_calls_are_not_held() {
    // With resume on (the default) the call is held for the new connection instead
    // (tests/resume.rs); without it the replacement ends the call, once for each side.
    let s = server_with(|c| c.switchboard.resume_secs = 0).await;
    let (mut alice, mut bob) = connected(&s, "c1").await;
    let mut bob_again = s.login("bob", "b1").await;
    let (reason, by, duration) = ended(&bob.recv().await);
    assert_eq!((reason, by.as_deref()), (EndReason::Replaced, Some("bob")));
    assert!(duration.is_some());
    assert!(matches!(
        bob.recv().await,
        ServerMessage::KickedOffline {
            reason: CloseReason::Replaced
        }
    ));
    let (reason, by, _) = ended(&alice.recv().await);
    assert_eq!(
        (reason, by.as_deref()),
        (EndReason::ConnectionLost, Some("bob"))
    );
    bob_again.expect_silence(200).await;
    alice.expect_silence(0).await;
}
