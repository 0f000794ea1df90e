//! Opus at whatever dynamic payload type the offer gives it (Chromium 111, Firefox 109, other
//! stacks 96): the native callee answers with that number, sends with it, and audio crosses both
//! ways. The native caller's offer is changed on the way, as if another stack had made it.

mod common;

use common::{map_lines, the_answer, with_sdp, Pair};
use tincan_media::EngineEvent;
use tincan_proto::MediaSignal;

/// The offer's Opus payload type rewritten from 111 to `pt` (as a Firefox or another stack offers).
fn with_opus_pt(sdp: &str, pt: u8) -> String {
    map_lines(sdp, |l| {
        if l.starts_with("m=audio ") {
            l.split(' ')
                .map(|f| {
                    if f == "111" {
                        pt.to_string()
                    } else {
                        f.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            for attr in ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"] {
                if let Some(rest) = l.strip_prefix(&format!("{attr}111 ")) {
                    return format!("{attr}{pt} {rest}");
                }
            }
            l.to_owned()
        }
    })
}

#[test]
fn opus_at_any_dynamic_payload_type_carries_audio_both_ways() {
    for pt in [96u8, 109, 111] {
        let mut p = Pair::start(false);
        p.tamper = Some(Box::new(move |who, s| {
            Some(if who == 'a' && matches!(s, MediaSignal::Offer { .. }) {
                with_sdp(s, |sdp| with_opus_pt(sdp, pt))
            } else {
                s
            })
        }));
        p.ring_then_accept();
        p.pump(5, "the answer", |w, e| {
            w == 'b' && matches!(e, EngineEvent::Signal(MediaSignal::Answer { .. }))
        });
        let answer = the_answer(&p);
        println!("answer to Opus at {pt}:\n{answer}");
        p.hear('a', 1000.0);
        p.hear('b', 440.0);
        assert!(
            answer.contains(&format!("a=rtpmap:{pt} OPUS/48000/2")),
            "{answer}"
        );
        assert!(answer.contains("a=sendrecv"), "{answer}");
        println!("Opus at payload type {pt}: audio both ways");
        p.a.stop();
        p.b.stop();
    }
}
