//! Any SDP or candidate a peer can relay: the checks never panic, and the candidate budget
//! stays within its cap whatever sequence of signals it is fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tincan_proto::sdp::{self, CandidateBudget, Limits};
use tincan_proto::MediaSignal;

fuzz_target!(|data: &[u8]| {
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
});
