//! The switchboard relays only signals that pass the SDP check, and counts candidates per call and
//! sender (sans-I/O; the same rules through a real server are in crates/server/tests/sdp_relay.rs).

use tincan_proto::switchboard::{Action, Config, SessionId, Switchboard};
use tincan_proto::{
    CallId, CallType, ClientMessage, DeviceId, ErrorCode, MediaSignal, Party, ServerMessage, UserId,
};

const OFFER: &str = include_str!("data/sdp/chromium-156-offer-trickle.sdp");
const RESTART: &str = include_str!("data/sdp/chromium-156-offer-restart.sdp");
const ANSWER: &str = include_str!("data/sdp/firefox-153-answer.sdp");

fn party(u: &str) -> Party {
    Party::new(UserId::new(u).unwrap(), DeviceId::new("d").unwrap())
}

fn cid() -> CallId {
    CallId::new("c1").unwrap()
}

fn candidate(n: u32) -> MediaSignal {
    MediaSignal::Candidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122194687 192.0.2.2 {} typ host",
            10000 + n
        ),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

struct Rig {
    board: Switchboard,
    out: Vec<Action>,
}

const ALICE: SessionId = 1;
const BOB: SessionId = 2;

impl Rig {
    /// Alice calls Bob, Bob accepts.
    fn connected() -> Self {
        let mut r = Rig {
            board: Switchboard::new(Config::default()),
            out: Vec::new(),
        };
        r.board.login(ALICE, party("alice"), 0, &mut r.out).unwrap();
        r.board.login(BOB, party("bob"), 0, &mut r.out).unwrap();
        let invite = ClientMessage::Invite {
            call_id: cid(),
            callee: UserId::new("bob").unwrap(),
            call_type: CallType::Audio,
            timeout_secs: None,
        };
        r.board.handle(ALICE, invite, 0, &mut r.out);
        r.board
            .handle(BOB, ClientMessage::Accept { call_id: cid() }, 0, &mut r.out);
        r.out.clear();
        r
    }

    fn signal(&mut self, from: SessionId, signal: MediaSignal) -> Vec<Action> {
        let msg = ClientMessage::Signal {
            call_id: cid(),
            signal,
        };
        self.board.handle(from, msg, 0, &mut self.out);
        self.board.check_invariants().unwrap();
        std::mem::take(&mut self.out)
    }
}

fn relayed_to(actions: &[Action], to: SessionId) -> bool {
    matches!(actions, [Action::Send(sid, ServerMessage::Signal { .. })] if *sid == to)
}

fn refused(actions: &[Action], to: SessionId, detail: &str) -> bool {
    matches!(actions, [Action::Send(sid, ServerMessage::Error { code: ErrorCode::SdpRejected, message, call_id: Some(c) })]
        if *sid == to && message.contains(detail) && *c == cid())
}

#[test]
fn good_signals_are_relayed_bad_ones_refused_to_the_sender() {
    let mut r = Rig::connected();
    let offer = |sdp: &str| MediaSignal::Offer {
        sdp: sdp.into(),
        ice_restart: false,
    };
    assert!(relayed_to(&r.signal(ALICE, offer(OFFER)), BOB));
    let two_m_lines = format!("{OFFER}m=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
    let out = r.signal(ALICE, offer(&two_m_lines));
    assert!(refused(&out, ALICE, "(sdp_media_lines)"), "{out:?}");
    let big = format!("{OFFER}a=x:{}\r\n", "x".repeat(20_000));
    assert!(refused(
        &r.signal(ALICE, offer(&big)),
        ALICE,
        "(sdp_too_large)"
    ));
    let out = r.signal(
        BOB,
        MediaSignal::Answer {
            sdp: ANSWER.replace("a=fingerprint", "a=x-fingerprint"),
        },
    );
    assert!(refused(&out, BOB, "(sdp_no_fingerprint)"), "{out:?}");
    assert!(relayed_to(
        &r.signal(BOB, MediaSignal::Answer { sdp: ANSWER.into() }),
        ALICE
    ));
    let out = r.signal(
        BOB,
        MediaSignal::Candidate {
            candidate: "candidate:garbage".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
        },
    );
    assert!(refused(&out, BOB, "(candidate_malformed)"), "{out:?}");
    // Signals without SDP pass untouched.
    assert!(relayed_to(
        &r.signal(BOB, MediaSignal::Mute { muted: true }),
        ALICE
    ));
    assert!(relayed_to(
        &r.signal(ALICE, MediaSignal::EndOfCandidates),
        BOB
    ));
}

#[test]
fn candidates_are_capped_per_sender_and_negotiation() {
    let mut r = Rig::connected();
    r.signal(
        ALICE,
        MediaSignal::Offer {
            sdp: OFFER.into(),
            ice_restart: false,
        },
    );
    for n in 0..64 {
        assert!(relayed_to(&r.signal(ALICE, candidate(n)), BOB), "{n}");
    }
    let out = r.signal(ALICE, candidate(64));
    assert!(refused(&out, ALICE, "(too_many_candidates)"), "{out:?}");
    // Bob's own budget is untouched by Alice's.
    for n in 0..3 {
        assert!(relayed_to(&r.signal(BOB, candidate(n)), ALICE));
    }
    // An ICE restart (new credentials) gives Alice a fresh budget.
    assert!(relayed_to(
        &r.signal(
            ALICE,
            MediaSignal::Offer {
                sdp: RESTART.into(),
                ice_restart: true
            }
        ),
        BOB
    ));
    assert!(relayed_to(&r.signal(ALICE, candidate(64)), BOB));
    // The budgets go with the call.
    r.board.handle(
        ALICE,
        ClientMessage::Hangup { call_id: cid() },
        0,
        &mut r.out,
    );
    r.board.check_invariants().unwrap();
}
