//! What the engine reads from a remote session description itself (webrtcbin reads the rest), and
//! the one thing it changes before webrtcbin sees one.

/// The payload type the first audio m-line gives Opus (`a=rtpmap:<pt> opus/48000[/2]`), in the
/// m-line's order of preference. Dynamic payload types are the offerer's choice: Chromium uses
/// 111, Firefox 109, other stacks 96; an answer must use the offer's number (RFC 3264 §6.1), and
/// what we send must carry the number the peer's description gave.
pub(crate) fn opus_payload_type(sdp: &str) -> Option<u8> {
    let mut formats: Option<Vec<&str>> = None;
    let mut opus: Vec<&str> = Vec::new();
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            if formats.is_some() {
                break; // only the first audio m-line counts
            }
            let mut fields = m.split_ascii_whitespace();
            if fields.next() == Some("audio") {
                formats = Some(fields.skip(2).collect());
            }
        } else if let (Some(_), Some(map)) = (&formats, line.strip_prefix("a=rtpmap:")) {
            let mut parts = map.splitn(2, ' ');
            let (Some(pt), Some(codec)) = (parts.next(), parts.next()) else {
                continue;
            };
            let codec = codec.trim().to_ascii_lowercase();
            if codec == "opus/48000/2" || codec == "opus/48000" {
                opus.push(pt);
            }
        }
    }
    formats?
        .into_iter()
        .find(|f| opus.contains(f))
        .and_then(|pt| pt.parse::<u8>().ok())
        // RTP payload types are 7 bits; 64-95 would collide with RTCP under rtcp-mux (RFC 5761).
        .filter(|pt| *pt <= 127 && !(64..=95).contains(pt))
}

/// The remote description as webrtcbin is given it. GStreamer 1.22's webrtcbin refuses an SDP
/// with `a=fingerprint` at both session and media level ("No fingerprint lines in sdp for media
/// 0": the test in its `_check_sdp_crypto` is inverted), which RFC 8122 allows; the media-level
/// lines decide then (as our own check, [`crate::verify`], reads them), so the session-level ones
/// are left out of webrtcbin's copy. webrtcbin uses remote fingerprints for nothing else.
pub(crate) fn for_webrtcbin(sdp: &str) -> std::borrow::Cow<'_, str> {
    let mut in_media = false;
    let mut media_has = false;
    let mut session_has = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_media = true;
        } else if line.starts_with("a=fingerprint:") {
            if in_media {
                media_has = true;
            } else {
                session_has = true;
            }
        }
    }
    if !(media_has && session_has) {
        return sdp.into();
    }
    let mut out = String::with_capacity(sdp.len());
    let mut in_media = false;
    for line in sdp.split_inclusive('\n') {
        in_media |= line.starts_with("m=");
        if !in_media && line.starts_with("a=fingerprint:") {
            continue;
        }
        out.push_str(line);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str =
        "v=0\r\no=mozilla...THIS_IS_SDPARTA-99.0 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=fingerprint:sha-256 AA:BB\r\na=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101\r\nc=IN IP4 0.0.0.0\r\n\
        a=rtpmap:109 opus/48000/2\r\na=rtpmap:9 G722/8000/1\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=setup:actpass\r\n";

    #[test]
    fn opus_is_found_at_whatever_payload_type_the_offer_uses() {
        assert_eq!(opus_payload_type(FIREFOX), Some(109));
        for pt in [96u8, 109, 111, 127] {
            let sdp = format!(
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 {pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:{pt} OPUS/48000/2\r\n"
            );
            assert_eq!(opus_payload_type(&sdp), Some(pt));
        }
        // Listed in rtpmap but not on the m-line; or no audio at all.
        assert_eq!(
            opus_payload_type("m=audio 9 RTP/SAVPF 0\r\na=rtpmap:96 opus/48000/2\r\n"),
            None
        );
        assert_eq!(
            opus_payload_type("m=video 9 RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\n"),
            None
        );
        // The m-line's order decides between two Opus entries.
        assert_eq!(
            opus_payload_type(
                "m=audio 9 RTP/SAVPF 120 96\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:120 opus/48000/2\r\n"
            ),
            Some(120)
        );
    }

    #[test]
    fn session_level_fingerprints_are_left_out_only_when_media_level_ones_exist() {
        assert_eq!(for_webrtcbin(FIREFOX), FIREFOX);
        let both = FIREFOX.replace(
            "a=setup:actpass\r\n",
            "a=setup:actpass\r\na=fingerprint:sha-256 AA:BB\r\n",
        );
        let out = for_webrtcbin(&both);
        assert_eq!(out.matches("a=fingerprint:").count(), 1);
        assert!(out.find("a=fingerprint:").unwrap() > out.find("m=audio").unwrap());
    }
}
