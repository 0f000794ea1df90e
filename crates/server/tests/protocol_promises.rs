//! What docs/PROTOCOL.md promises a client writer, checked against a real server: the details an
//! outside client got wrong when written from the document alone (issue 11, item 10).

mod common;

use common::*;
use std::time::Duration;
use tincan_proto::{ClientMessage, EndReason, ErrorCode, MediaSignal, ServerMessage};

#[tokio::test]
async fn an_unknown_type_before_login_is_unknown_message_and_not_a_failed_login() {
    let s = server().await;
    let mut c = s.connect().await;
    for _ in 0..4 {
        c.send_raw(r#"{"type":"hello"}"#).await;
        c.expect_error(ErrorCode::UnknownMessage).await;
    }
    // Still open, and a login still works (three failed logins would have closed it).
    c.send(&login_msg("alice", "a1", s.sig("alice"))).await;
    assert!(matches!(c.recv().await, ServerMessage::LoginOk { .. }));
}

#[tokio::test]
async fn user_ids_are_case_sensitive() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut other = s.login("Alice", "a2").await;
    alice.send(&invite("c1", "ALICE", None)).await;
    match alice.recv().await {
        ServerMessage::CallEnded { reason, .. } => assert_eq!(reason, EndReason::Offline),
        m => panic!("expected offline, got {m:?}"),
    }
    // `Alice` is another user, so calling her is not calling yourself.
    alice.send(&invite("c2", "Alice", None)).await;
    assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));
    assert!(
        matches!(other.recv().await, ServerMessage::Invited { caller, .. } if caller == uid("alice"))
    );
}

#[tokio::test]
async fn invited_carries_the_clamped_timeout_and_ringing_precedes_nothing_for_offline_or_busy() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let mut bob = s.login("bob", "b1").await;
    let mut carol = s.login("carol", "c1").await;
    alice.send(&invite("c1", "bob", Some(9999))).await;
    match bob.recv().await {
        ServerMessage::Invited { timeout_secs, .. } => assert_eq!(timeout_secs, 120),
        m => panic!("expected invited, got {m:?}"),
    }
    assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));
    // Bob is being rung: Carol's invite ends at once, with no `ringing` first.
    carol.send(&invite("c2", "bob", None)).await;
    assert_eq!(
        raw(&mut carol).await,
        serde_json::json!({"type":"call_ended","call_id":"c2","reason":"line_busy","by":"bob"})
    );
    carol.send(&invite("c3", "dave", None)).await;
    assert_eq!(
        raw(&mut carol).await,
        serde_json::json!({"type":"call_ended","call_id":"c3","reason":"offline","by":"dave"})
    );
    carol.expect_silence(200).await;
}

#[tokio::test]
async fn missed_calls_go_once_to_the_first_device_to_sign_in() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    alice.send(&invite("c1", "bob", None)).await;
    alice.recv().await;
    let mut first = s.login("bob", "b1").await;
    assert!(matches!(first.recv().await, ServerMessage::MissedCalls { calls } if calls.len() == 1));
    let mut second = s.login("bob", "b2").await;
    second.send(&ClientMessage::Ping { nonce: Some(7) }).await;
    assert_eq!(second.recv().await, ServerMessage::Pong { nonce: Some(7) });
    first.expect_silence(100).await;
}

#[tokio::test]
async fn a_device_signing_in_while_a_call_rings_is_rung_with_the_time_left() {
    let s = server().await;
    let mut alice = s.login("alice", "a1").await;
    let _bob1 = s.login("bob", "b1").await;
    alice.send(&invite("c1", "bob", Some(20))).await;
    assert!(matches!(alice.recv().await, ServerMessage::Ringing { .. }));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut bob2 = s.login("bob", "b2").await;
    match bob2.recv().await {
        ServerMessage::Invited {
            call_id,
            timeout_secs,
            ..
        } => {
            assert_eq!(call_id, cid("c1"));
            // 20 s less the 1.1 s waited, rounded up (a loaded machine may take longer to sign in).
            assert!((12..=19).contains(&timeout_secs), "{timeout_secs}");
        }
        m => panic!("expected invited, got {m:?}"),
    }
}

#[tokio::test]
async fn signal_strips_unknown_fields_and_refuses_unknown_kinds() {
    let s = server().await;
    let (mut alice, mut bob) = connected(&s, "c1").await;
    alice
        .send_raw(r#"{"type":"signal","call_id":"c1","extra":1,"signal":{"kind":"mute","muted":true,"secret":"x"}}"#)
        .await;
    assert_eq!(
        raw(&mut bob).await,
        serde_json::json!({"type":"signal","call_id":"c1","from":"alice","signal":{"kind":"mute","muted":true}})
    );
    alice
        .send_raw(r#"{"type":"signal","call_id":"c1","signal":{"kind":"video_offer","sdp":"v=0"}}"#)
        .await;
    alice.expect_error(ErrorCode::MalformedFrame).await;
    bob.expect_silence(200).await;
    // Both optional candidate fields may be left out.
    alice
        .send(&ClientMessage::Signal {
            call_id: cid("c1"),
            signal: MediaSignal::Candidate {
                candidate: "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host".into(),
                sdp_mid: None,
                sdp_m_line_index: None,
            },
        })
        .await;
    assert!(matches!(bob.recv().await, ServerMessage::Signal { .. }));
}

#[tokio::test]
async fn ping_nonce_is_optional_and_echoed() {
    let s = server().await;
    let mut c = s.connect().await;
    c.send_raw(r#"{"type":"ping"}"#).await;
    assert_eq!(raw(&mut c).await, serde_json::json!({"type":"pong"}));
    c.send_raw(r#"{"type":"ping","nonce":18446744073709551615}"#)
        .await;
    assert_eq!(
        c.recv().await,
        ServerMessage::Pong {
            nonce: Some(u64::MAX)
        }
    );
}
