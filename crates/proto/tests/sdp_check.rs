//! The SDP check against real descriptions from Chromium, Firefox and GStreamer (tests/data/sdp,
//! captured unedited; see its README), the ways a hostile peer would bend them, and a property test
//! that no input makes the checker panic.

use proptest::prelude::*;
use tincan_proto::sdp::{
    check_candidate, check_description, check_signal, CandidateBudget, Limits, SdpError,
    MAX_CANDIDATES, MAX_SDP_BYTES,
};
use tincan_proto::MediaSignal;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("data/sdp/", $name))
    };
}

const CHROMIUM_OFFER: &str = fixture!("chromium-156-offer.sdp");
const CHROMIUM_OFFER_TRICKLE: &str = fixture!("chromium-156-offer-trickle.sdp");
const CHROMIUM_RESTART: &str = fixture!("chromium-156-offer-restart.sdp");
const CHROMIUM_ANSWER: &str = fixture!("chromium-156-answer.sdp");
const CHROMIUM_CANDIDATES: &str = fixture!("chromium-156-candidates.txt");
const FIREFOX_OFFER: &str = fixture!("firefox-153-offer.sdp");
const FIREFOX_OFFER_TRICKLE: &str = fixture!("firefox-153-offer-trickle.sdp");
const FIREFOX_ANSWER: &str = fixture!("firefox-153-answer.sdp");
const FIREFOX_CANDIDATES: &str = fixture!("firefox-153-candidates.txt");
const GST_OFFER: &str = fixture!("gstreamer-1.22-offer.sdp");
const GST_OFFER_TRICKLE: &str = fixture!("gstreamer-1.22-offer-trickle.sdp");
const GST_CANDIDATES: &str = fixture!("gstreamer-1.22-candidates.txt");

fn limits() -> Limits {
    Limits::default()
}

fn check(sdp: &str) -> Result<tincan_proto::sdp::Description, SdpError> {
    check_description(sdp, &limits())
}

#[test]
fn real_descriptions_pass() {
    let cases = [
        ("chromium offer", CHROMIUM_OFFER, 111, 4),
        ("chromium trickle offer", CHROMIUM_OFFER_TRICKLE, 111, 0),
        ("chromium restart offer", CHROMIUM_RESTART, 111, 0),
        ("chromium answer", CHROMIUM_ANSWER, 111, 2),
        ("firefox offer", FIREFOX_OFFER, 109, 8),
        ("firefox trickle offer", FIREFOX_OFFER_TRICKLE, 109, 0),
        ("firefox answer", FIREFOX_ANSWER, 109, 4),
        ("gstreamer offer", GST_OFFER, 111, 9),
        ("gstreamer trickle offer", GST_OFFER_TRICKLE, 111, 0),
    ];
    for (what, sdp, pt, candidates) in cases {
        let d = check(sdp).unwrap_or_else(|e| panic!("{what}: {e} ({})", e.code()));
        assert_eq!(d.opus_payload_type, pt, "{what}");
        assert_eq!(d.candidates, candidates, "{what}");
        assert!(d.ice_ufrag.len() >= 4, "{what}");
    }
    // An ICE restart is new credentials.
    assert_ne!(
        check(CHROMIUM_OFFER_TRICKLE).unwrap().ice_ufrag,
        check(CHROMIUM_RESTART).unwrap().ice_ufrag
    );
}

#[test]
fn real_trickled_candidates_pass() {
    for (what, list, mid) in [
        ("chromium", CHROMIUM_CANDIDATES, "0"),
        ("firefox", FIREFOX_CANDIDATES, "0"),
        ("gstreamer", GST_CANDIDATES, "audio0"),
    ] {
        let mut n = 0;
        for c in list.lines().filter(|l| !l.is_empty()) {
            check_candidate(c, Some(mid), Some(0), &limits())
                .unwrap_or_else(|e| panic!("{what}: {c}: {e}"));
            n += 1;
        }
        assert!(n >= 4, "{what}: {n} candidates");
    }
}

fn without(sdp: &str, prefix: &str) -> String {
    let out: String = sdp
        .split_inclusive('\n')
        .filter(|l| !l.starts_with(prefix))
        .collect();
    assert_ne!(out, sdp, "no {prefix} line");
    out
}

#[test]
fn bent_real_descriptions_are_refused() {
    for (what, sdp) in [
        ("chromium", CHROMIUM_OFFER),
        ("firefox", FIREFOX_OFFER),
        ("gstreamer", GST_OFFER),
    ] {
        let code = |s: &str| check(s).map(|_| ()).map_err(|e| e.code());
        assert_eq!(
            code(&without(sdp, "a=fingerprint")),
            Err("sdp_no_fingerprint"),
            "{what}"
        );
        assert_eq!(
            code(&without(sdp, "a=ice-ufrag")),
            Err("sdp_no_ice_credentials"),
            "{what}"
        );
        assert_eq!(
            code(&without(sdp, "a=ice-pwd")),
            Err("sdp_no_ice_credentials"),
            "{what}"
        );
        let no_opus: String = sdp
            .split_inclusive('\n')
            .filter(|l| !l.to_ascii_lowercase().contains("opus/48000"))
            .collect();
        assert_eq!(code(&no_opus), Err("sdp_no_opus"), "{what}");
        // A second m-line: the audio again, a video line, a data channel.
        let audio = &sdp[sdp.find("m=audio").unwrap()..];
        assert_eq!(
            code(&format!("{sdp}{audio}")),
            Err("sdp_media_lines"),
            "{what}: two audio m-lines"
        );
        for extra in [
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
        ] {
            assert_eq!(
                code(&format!("{sdp}{extra}")),
                Err("sdp_media_lines"),
                "{what}"
            );
        }
        // A weak or mangled fingerprint.
        let fp = sdp
            .lines()
            .find(|l| l.starts_with("a=fingerprint"))
            .unwrap();
        let sha1 = fp.replace("sha-256", "sha-1");
        assert_eq!(
            code(&sdp.replace(fp, &sha1)),
            Err("sdp_bad_fingerprint"),
            "{what}"
        );
        let short = &fp[..fp.len() - 3];
        assert_eq!(
            code(&sdp.replace(fp, short)),
            Err("sdp_bad_fingerprint"),
            "{what}"
        );
        let not_hex = fp.replace("sha-256 ", "sha-256 ZZ").replacen(':', "", 1);
        assert!(code(&sdp.replace(fp, &not_hex)).is_err(), "{what}");
        // Plain RTP, no DTLS.
        let plain = sdp.replacen("UDP/TLS/RTP/SAVPF", "RTP/AVP", 1);
        assert_eq!(code(&plain), Err("sdp_not_dtls_srtp"), "{what}");
        // Oversized.
        let padded = format!("{sdp}a=x-pad:{}\r\n", "x".repeat(MAX_SDP_BYTES));
        assert_eq!(code(&padded), Err("sdp_too_large"), "{what}");
        // A bad candidate line inside.
        let bad = format!("{sdp}a=candidate:1 1 udp 1 192.0.2.1 99999 typ host\r\n");
        assert_eq!(code(&bad), Err("candidate_malformed"), "{what}");
    }
}

#[test]
fn too_many_candidates_in_one_description() {
    let mut sdp = CHROMIUM_OFFER_TRICKLE.to_owned();
    for n in 0..MAX_CANDIDATES {
        sdp.push_str(&format!(
            "a=candidate:{n} 1 udp 2122194687 192.0.2.2 {} typ host\r\n",
            10000 + n
        ));
    }
    assert_eq!(check(&sdp).unwrap().candidates, MAX_CANDIDATES);
    sdp.push_str("a=candidate:x 1 udp 2122194687 192.0.2.2 9999 typ host\r\n");
    assert_eq!(
        check(&sdp).unwrap_err(),
        SdpError::TooManyCandidates {
            max: MAX_CANDIDATES
        }
    );
}

#[test]
fn a_budget_follows_a_real_call() {
    let l = limits();
    let mut b = CandidateBudget::default();
    b.admit(
        &MediaSignal::Offer {
            sdp: CHROMIUM_OFFER_TRICKLE.into(),
            ice_restart: false,
        },
        &l,
    )
    .unwrap();
    let trickled: Vec<MediaSignal> = CHROMIUM_CANDIDATES
        .lines()
        .map(|c| MediaSignal::Candidate {
            candidate: c.into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        })
        .collect();
    // The same candidates over and over, as a hostile peer would, until the cap.
    let mut sent = 0;
    let refused = loop {
        match b.admit(&trickled[sent % trickled.len()], &l) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(sent as u32, MAX_CANDIDATES);
    assert_eq!(refused.code(), "too_many_candidates");
    // The ICE restart offer starts a new count.
    b.admit(
        &MediaSignal::Offer {
            sdp: CHROMIUM_RESTART.into(),
            ice_restart: true,
        },
        &l,
    )
    .unwrap();
    assert_eq!(b.used(), 0);
    assert!(b.admit(&trickled[0], &l).is_ok());
    assert!(check_signal(&MediaSignal::EndOfCandidates, &l).is_ok());
}

fn mutate(base: &str, cut: usize, insert: &str) -> String {
    let mut s: Vec<char> = base.chars().collect();
    let at = cut % (s.len() + 1);
    s.splice(at..at, insert.chars());
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn never_panics_on_arbitrary_text(s in ".{0,600}") {
        let _ = check(&s);
        let _ = check_candidate(&s, Some(&s), Some(0), &limits());
    }

    #[test]
    fn never_panics_on_sdp_like_lines(lines in prop::collection::vec(
        "(v|o|s|t|c|m|a)=[ -~]{0,80}", 0..40)) {
        let sdp = lines.join("\r\n");
        let _ = check(&sdp);
    }

    #[test]
    fn never_panics_on_bent_real_sdp(which in 0usize..3, cut in any::<usize>(), insert in "[\\PC\r\n:/ ]{0,40}",
                                      drop in any::<usize>()) {
        let base = [CHROMIUM_OFFER, FIREFOX_OFFER, GST_OFFER][which];
        let bent = mutate(base, cut, &insert);
        let _ = check(&bent);
        // Dropping one line keeps the check total too.
        let lines: Vec<&str> = bent.split('\n').collect();
        let skip = drop % lines.len().max(1);
        let fewer: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, l)| *l).collect();
        let _ = check(&fewer.join("\n"));
        let mut b = CandidateBudget::default();
        let _ = b.admit(&MediaSignal::Offer { sdp: bent, ice_restart: false }, &limits());
        prop_assert!(b.used() <= MAX_CANDIDATES);
    }

    #[test]
    fn never_panics_on_arbitrary_candidates(c in "(a=)?candidate:[ -~]{0,200}", mid in proptest::option::of("[ -~]{0,70}"),
                                            idx in proptest::option::of(any::<u16>())) {
        let _ = check_candidate(&c, mid.as_deref(), idx, &limits());
    }
}
