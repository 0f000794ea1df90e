//! The relay's fast path (issue 12) through a real server: a real browser offer is relayed as the
//! sender's own JSON (its whitespace and key order kept, the frame's shape unchanged), unknown
//! payload fields are still stripped, and a bad offer is still refused by the SDP check.

mod common;

use common::*;
use futures_util::StreamExt;
use tincan_proto::{ErrorCode, MediaSignal, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

const OFFER: &str = include_str!("../../proto/tests/data/sdp/chromium-156-offer-trickle.sdp");

async fn raw_text(c: &mut Client) -> String {
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), c.ws.next())
            .await
            .expect("a frame")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return t.to_string();
        }
    }
}

#[tokio::test]
async fn signals_are_relayed_as_sent_checked_and_stripped() {
    let s = server().await;
    let (mut alice, mut bob) = connected(&s, "c1").await;
    let sdp = serde_json::to_string(OFFER).unwrap();

    // The payload as alice wrote it (spaces, key order) arrives byte for byte inside the frame.
    let payload = format!("{{ \"sdp\": {sdp},  \"kind\": \"offer\" }}");
    alice
        .send_raw(&format!(
            r#"{{"type":"signal","call_id":"c1","signal":{payload}}}"#
        ))
        .await;
    let frame = raw_text(&mut bob).await;
    assert_eq!(
        frame,
        format!(r#"{{"type":"signal","call_id":"c1","from":"alice","signal":{payload}}}"#)
    );
    assert_eq!(
        ServerMessage::decode(&frame).unwrap(),
        ServerMessage::Signal {
            call_id: cid("c1"),
            from: uid("alice"),
            signal: MediaSignal::Offer {
                sdp: OFFER.into(),
                ice_restart: false
            },
        }
    );

    // Fields the protocol does not know are not passed on.
    bob.send_raw(
        r#"{"type":"signal","call_id":"c1","signal":{"kind":"mute","muted":true,"note":"x"}}"#,
    )
    .await;
    let frame = raw_text(&mut alice).await;
    assert_eq!(
        frame,
        r#"{"type":"signal","call_id":"c1","from":"bob","signal":{"kind":"mute","muted":true}}"#
    );

    // The SDP check still runs on the fast path: nothing reaches bob.
    alice
        .send_raw(r#"{"type":"signal","call_id":"c1","signal":{"kind":"offer","sdp":"v=0\r\n"}}"#)
        .await;
    alice.expect_error(ErrorCode::SdpRejected).await;
    bob.expect_silence(200).await;

    // A malformed signal gets the typed path's exact error.
    alice
        .send_raw(r#"{"type":"signal","call_id":"c1","signal":{"kind":"mute","muted":"yes"}}"#)
        .await;
    alice.expect_error(ErrorCode::MalformedFrame).await;
}
