//! Two native engines in one process negotiating as RFC 8829 / 8842 say, with offers changed on
//! the way as other stacks would send them: DTLS roles (an offer's `actpass`, `active` or `passive`
//! answered `active`, `passive`, `active`), BUNDLE and rtcp-mux; and an offer and an answer that
//! carry all their candidates in the SDP (no trickle). Few calls per test binary: GStreamer 1.22's
//! DTLS elements keep process-wide tables (see `common::ONE_CALL_AT_A_TIME`).

mod common;

use common::{attr, map_lines, sdp_of, the_answer, with_sdp, Pair};
use std::cell::RefCell;
use std::rc::Rc;
use tincan_proto::MediaSignal;

/// RFC 8842 (DTLS role): offers say `actpass`; an answer says `active` to `actpass` or `passive`,
/// `passive` to `active`; RFC 8829 / 8843: BUNDLE (max-bundle) and rtcp-mux offered and answered.
#[test]
fn dtls_roles_bundle_and_rtcp_mux_follow_the_rfcs() {
    for (offer_setup, answer_setup) in [
        ("actpass", "active"),
        ("active", "passive"),
        ("passive", "active"),
    ] {
        let mut p = Pair::start(false);
        p.tamper = Some(Box::new(move |who, s| {
            Some(if who == 'a' && matches!(s, MediaSignal::Offer { .. }) {
                with_sdp(s, |sdp| {
                    map_lines(sdp, |l| {
                        if l.starts_with("a=setup:") {
                            format!("a=setup:{offer_setup}")
                        } else {
                            l.to_owned()
                        }
                    })
                })
            } else {
                s
            })
        }));
        p.ring_then_accept();
        p.hear('a', 1000.0);
        p.hear('b', 440.0);
        let offer = p.offers.first().and_then(sdp_of).expect("offer").to_owned();
        let answer = the_answer(&p);
        // As delivered: the first round is our own offer unchanged (actpass), the others are
        // offers as other stacks might send them.
        assert_eq!(attr(&offer, "setup"), [offer_setup], "{offer}");
        assert_eq!(attr(&answer, "setup"), [answer_setup], "{answer}");
        for sdp in [&offer, &answer] {
            let mid = attr(sdp, "mid");
            assert_eq!(mid.len(), 1, "{sdp}");
            assert_eq!(attr(sdp, "group"), [format!("BUNDLE {}", mid[0])], "{sdp}");
            assert_eq!(attr(sdp, "rtcp-mux"), [""], "{sdp}");
            assert_eq!(sdp.matches("m=").count(), 1, "{sdp}");
            let fp = attr(sdp, "fingerprint");
            assert!(
                fp.len() == 1 && fp[0].starts_with("sha-256 "),
                "one sha-256 fingerprint: {sdp}"
            );
        }
        println!("offer setup:{offer_setup} answered setup:{answer_setup}: audio both ways");
        p.a.stop();
        p.b.stop();
    }
}

/// Candidates written into a description (after `a=mid`), with `a=end-of-candidates`.
fn with_candidates(sdp: &str, candidates: &[String]) -> String {
    let mut out = String::new();
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        out += line;
        out += "\r\n";
        if line.starts_with("a=mid:") {
            for c in candidates {
                out += &format!("a={}\r\n", c.trim_start_matches("a="));
            }
            out += "a=end-of-candidates\r\n";
        }
    }
    out
}

/// Neither side trickles: the offer and the answer reach the other side only once their
/// candidates are gathered, with all of them inside the SDP (as from a non-trickle peer), and
/// no candidate travels on its own. Each engine must use the candidates inside the remote SDP.
#[test]
fn descriptions_with_all_candidates_inside_and_no_trickle() {
    type Held = Rc<RefCell<(Option<MediaSignal>, Vec<String>)>>;
    let held: [Held; 2] = Default::default();
    let mut p = Pair::start(false);
    let h = held.clone();
    p.tamper = Some(Box::new(move |who, s| {
        let mut slot = h[usize::from(who == 'b')].borrow_mut();
        match s {
            MediaSignal::Candidate { candidate, .. } => slot.1.push(candidate),
            MediaSignal::Offer { .. } | MediaSignal::Answer { .. } => slot.0 = Some(s),
            other => return Some(other),
        }
        None
    }));
    let complete = |held: &Held| {
        let (desc, candidates) = &*held.borrow();
        let desc = desc.clone().expect("a description was made");
        assert!(!candidates.is_empty(), "candidates were gathered");
        with_sdp(desc, |sdp| with_candidates(sdp, candidates))
    };
    // The caller gathers; its offer goes out whole.
    p.pump_for(1.5, |_, _| {});
    let offer = complete(&held[0]);
    assert!(sdp_of(&offer).unwrap().contains("a=candidate:"));
    p.b.apply_remote(&offer).expect("the whole offer applies");
    p.ring_then_accept_offered();
    p.pump_for(1.5, |_, _| {});
    let answer = complete(&held[1]);
    p.a.apply_remote(&answer).expect("the whole answer applies");
    p.hear('a', 1000.0);
    p.hear('b', 440.0);
    println!("no trickle either way: audio both ways");
    p.a.stop();
    p.b.stop();
}
