//! The server relays only negotiation that passes the SDP check (issue 9): through a real server on
//! loopback with real WebSocket clients, an oversized offer, an offer with two m-lines, one with no
//! fingerprint and a 65th candidate are each refused to the sender with `sdp_rejected`; the peer
//! receives nothing, and the call goes on.

mod common;

use common::*;
use tincan_proto::sdp::{MAX_CANDIDATES, MAX_SDP_BYTES};
use tincan_proto::{ClientMessage, ErrorCode, MediaSignal, ServerMessage};

const OFFER: &str = include_str!("../../proto/tests/data/sdp/chromium-156-offer-trickle.sdp");
const FIREFOX_OFFER: &str = include_str!("../../proto/tests/data/sdp/firefox-153-offer.sdp");
const ANSWER: &str = include_str!("../../proto/tests/data/sdp/firefox-153-answer.sdp");

fn offer(sdp: impl Into<String>) -> MediaSignal {
    MediaSignal::Offer {
        sdp: sdp.into(),
        ice_restart: false,
    }
}

fn candidate(n: u32) -> MediaSignal {
    MediaSignal::Candidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122194687 192.0.2.2 {} typ host generation 0",
            10000 + n
        ),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

fn signal(signal: MediaSignal) -> ClientMessage {
    ClientMessage::Signal {
        call_id: cid("c1"),
        signal,
    }
}

/// The sender hears `sdp_rejected` naming `detail`, about this call.
async fn refused(c: &mut Client, detail: &str) {
    match c.expect_error(ErrorCode::SdpRejected).await {
        ServerMessage::Error {
            message, call_id, ..
        } => {
            assert!(message.contains(detail), "{message}");
            assert_eq!(call_id, Some(cid("c1")));
        }
        _ => unreachable!(),
    }
}

async fn relayed(to: &mut Client, what: &MediaSignal) {
    match to.recv().await {
        ServerMessage::Signal { signal, .. } => assert_eq!(&signal, what),
        other => panic!("expected the signal, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_offers_are_refused_to_the_sender_and_never_relayed() {
    let s = server().await;
    let (mut alice, mut bob) = connected(&s, "c1").await;

    // Oversized: a real offer padded past 16 KiB (the frame itself is well under 64 KiB).
    let big = format!("{OFFER}a=x-pad:{}\r\n", "x".repeat(MAX_SDP_BYTES));
    alice.send(&signal(offer(big))).await;
    refused(&mut alice, "(sdp_too_large)").await;

    // Two m-lines: the audio and a video.
    let two = format!("{OFFER}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
    alice.send(&signal(offer(two))).await;
    refused(&mut alice, "(sdp_media_lines)").await;

    // No fingerprint (the Firefox offer has it at session level).
    let no_fp: String = FIREFOX_OFFER
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("a=fingerprint"))
        .collect();
    alice.send(&signal(offer(no_fp))).await;
    refused(&mut alice, "(sdp_no_fingerprint)").await;

    // The answerer is held to the same rules.
    let no_opus = ANSWER.replace("opus/48000", "speex/48000");
    bob.send(&signal(MediaSignal::Answer { sdp: no_opus }))
        .await;
    refused(&mut bob, "(sdp_no_opus)").await;

    // The peer received none of it.
    bob.expect_silence(200).await;

    // The call goes on: good signals still pass both ways.
    let good = offer(FIREFOX_OFFER);
    alice.send(&signal(good.clone())).await;
    relayed(&mut bob, &good).await;
    let answer = MediaSignal::Answer { sdp: ANSWER.into() };
    bob.send(&signal(answer.clone())).await;
    relayed(&mut alice, &answer).await;
    alice.expect_silence(100).await;
}

#[tokio::test]
async fn the_65th_candidate_is_refused_and_the_call_goes_on() {
    let s = server().await;
    let (mut alice, mut bob) = connected(&s, "c1").await;
    let o = offer(OFFER);
    alice.send(&signal(o.clone())).await;
    relayed(&mut bob, &o).await;
    for n in 0..MAX_CANDIDATES {
        alice.send(&signal(candidate(n))).await;
    }
    for n in 0..MAX_CANDIDATES {
        relayed(&mut bob, &candidate(n)).await;
    }
    alice.send(&signal(candidate(MAX_CANDIDATES))).await;
    refused(&mut alice, "(too_many_candidates)").await;
    // A malformed candidate is refused on its own merits.
    alice
        .send(&signal(MediaSignal::Candidate {
            candidate: "candidate:1 1 udp 1 192.0.2.1 99999 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        }))
        .await;
    refused(&mut alice, "(candidate_malformed)").await;
    bob.expect_silence(200).await;

    // Bob's budget is his own, mute and end-of-candidates still pass, and the call ends normally.
    bob.send(&signal(candidate(1))).await;
    relayed(&mut alice, &candidate(1)).await;
    alice.send(&signal(MediaSignal::EndOfCandidates)).await;
    relayed(&mut bob, &MediaSignal::EndOfCandidates).await;
    alice
        .send(&ClientMessage::Hangup { call_id: cid("c1") })
        .await;
    assert!(matches!(
        alice.recv().await,
        ServerMessage::CallEnded { .. }
    ));
    assert!(matches!(bob.recv().await, ServerMessage::CallEnded { .. }));
}

#[tokio::test]
async fn a_ringing_callee_is_protected_too() {
    // The early offer (sent while the callee rings) is where a hostile caller would aim.
    let s = server().await;
    let (mut alice, mut bob) = ringing(&s, "c1").await;
    let mut hundred = OFFER.to_owned();
    for _ in 0..100 {
        hundred.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n");
    }
    alice.send(&signal(offer(hundred))).await;
    refused(&mut alice, "(sdp_media_lines)").await;
    bob.expect_silence(200).await;
    // Still ringing: the callee can accept.
    bob.send(&ClientMessage::Accept { call_id: cid("c1") })
        .await;
    assert!(matches!(alice.recv().await, ServerMessage::Accepted { .. }));
}
