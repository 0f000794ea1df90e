//! The fuzzed properties, shared by the cargo-fuzz targets (`fuzz_targets/*.rs`) and the stable
//! test suite (`crates/proto/tests/fuzz_regressions.rs`, which replays `fuzz/seeds/` and every
//! crash input kept in `fuzz/regressions/`). Each function takes any bytes and panics when a
//! property fails.
#![allow(dead_code)]

use tincan_proto::sdp::{self, CandidateBudget, Limits};
use tincan_proto::{
    usersig, wire, ClientMessage, MediaSignal, SecretKey, ServerMessage, UserId, UserSigKey,
};

/// Any text a client can send: `ClientMessage::decode` and the relay's fast path
/// (`wire::decode_signal`) never panic, and they agree. A frame the fast path takes must decode
/// on the typed path to the same `signal`; the frame relayed to the peer must read back as the
/// same `ServerMessage::Signal`; a decoded message survives encode → decode unchanged.
pub fn client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let typed = ClientMessage::decode(text);
    if let Err(e) = &typed {
        // Every refusal maps to a code the server can send.
        let _ = e.code();
    }
    if let Ok(m) = &typed {
        let again = ClientMessage::decode(&m.encode());
        assert_eq!(again.as_ref(), Ok(m), "encode/decode changed {text:?}");
    }
    if let Some(inbound) = wire::decode_signal(text) {
        match &typed {
            Ok(ClientMessage::Signal { call_id, signal }) => {
                assert_eq!(call_id, &inbound.call_id, "fast path read another call_id");
                assert_eq!(signal, &inbound.signal, "fast path read another signal");
            }
            other => panic!("fast path took {text:?}, the typed path says {other:?}"),
        }
        let from = UserId::new("fuzz").expect("valid id");
        let frame = wire::inbound_frame(&inbound.call_id, &from, &inbound);
        match ServerMessage::decode(&frame) {
            Ok(ServerMessage::Signal {
                call_id,
                from: f,
                signal,
            }) => {
                assert_eq!(call_id, inbound.call_id);
                assert_eq!(f, from);
                assert_eq!(signal, inbound.signal, "relayed frame {frame:?}");
            }
            other => panic!("relayed frame {frame:?} reads as {other:?}"),
        }
    }
}

const SDK_APP_ID: u64 = 1_400_000_001;

fn key() -> UserSigKey {
    UserSigKey::new(
        SDK_APP_ID,
        SecretKey::new("5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e".into()),
    )
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

/// Any UserSig a client can present: decoding and verifying never panic, refuse everything not
/// signed with the key, and a sig the key made (`try_gen`) for any identifier / time / lifetime /
/// userbuf verifies to exactly those claims; `try_gen` refuses only sigs `verify` would refuse
/// for their size.
pub fn usersig(data: &[u8]) {
    let key = key();
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = usersig::inflate(token);
        if let Ok(claims) = usersig::inspect(token) {
            let _ = claims.expires_at();
            if let Ok(c) = key.verify(token, &claims.identifier, claims.time) {
                assert_eq!(c, claims);
            }
        }
        let _ = key.verify(token, "alice", 1_700_000_000);
        let _ = key.verify(token, token, u64::MAX);
    }
    // Round trip: the first 17 bytes choose time, lifetime and whether there is a userbuf; the
    // rest is split into identifier and userbuf.
    if data.len() >= 17 {
        let (time, expire, with_buf) = (u64_at(data, 0), u64_at(data, 8), data[16] & 1 == 1);
        let rest = &data[17..];
        let cut = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let Ok(identifier) = std::str::from_utf8(&rest[..cut]) else {
            return;
        };
        let Ok(uid) = UserId::new(identifier) else {
            return;
        };
        let userbuf = with_buf.then(|| rest.get(cut + 1..).unwrap_or_default());
        // `try_gen` refuses only what is too large to verify; whatever it makes verifies.
        let sig = match key.try_gen(&uid, time, expire, userbuf) {
            Ok(sig) => sig,
            Err(e) => {
                let long = key.gen(&uid, time, expire, userbuf);
                assert!(
                    key.verify(&long, identifier, time).is_err(),
                    "try_gen refused ({e}) a {} byte sig that verifies",
                    long.len()
                );
                return;
            }
        };
        let claims = key
            .verify(&sig, identifier, time)
            .unwrap_or_else(|e| panic!("own sig for {identifier:?} refused: {e}"));
        assert_eq!(claims.identifier, identifier);
        assert_eq!((claims.time, claims.expire), (time, expire));
        assert_eq!(claims.userbuf.as_deref(), userbuf);
        let other = UserSigKey::new(SDK_APP_ID, SecretKey::new("another key".into()));
        assert!(other.verify(&sig, identifier, time).is_err());
    }
}

/// Any SDP or candidate a peer can relay: the checks never panic, and the candidate budget
/// stays within its cap whatever sequence of signals it is fed.
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    let _ = sdp::check_description(text, &limits);
    for line in text.lines() {
        let _ = sdp::check_candidate(line, Some("0"), Some(0), &limits);
        let _ = sdp::check_candidate(line, None, None, &limits);
    }
    // The same text as every kind of signal, through one budget.
    let mut budget = CandidateBudget::default();
    let signals = [
        MediaSignal::Offer {
            sdp: text.to_owned(),
            ice_restart: false,
        },
        MediaSignal::Candidate {
            candidate: text.lines().next().unwrap_or_default().to_owned(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        },
        MediaSignal::Answer {
            sdp: text.to_owned(),
        },
        MediaSignal::Offer {
            sdp: text.to_owned(),
            ice_restart: true,
        },
    ];
    for s in &signals {
        let before = budget.clone();
        let checked = sdp::check_signal(s, &limits);
        match budget.admit(s, &limits) {
            Ok(()) => assert!(checked.is_ok(), "admitted what the check refuses"),
            Err(_) => assert_eq!(budget, before, "a refused signal changed the budget"),
        }
        assert!(budget.used() <= limits.max_candidates);
    }
}
