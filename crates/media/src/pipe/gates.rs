//! The send gate on the link into webrtcbin (the receive gate is in [`super::chains::link_remote`]).

use super::*;

/// The send gate, on the link into webrtcbin: no buffer reaches webrtcbin before the peer's
/// certificate is verified (webrtcbin would encrypt and send it as soon as DTLS is up). Dropping
/// here, not inside webrtcbin, also keeps the send thread from ever waiting in webrtcbin's
/// pre-negotiation block, so caps and sources can change while the call rings.
///
/// The caps webrtcbin negotiates from are fixed here too, apart from the payload type on the wire
/// (the payloader's, which follows the peer's description): an offerer's always say
/// `payload=111`, the number our offers use, so the payloader switching to the answer's number
/// does not make webrtcbin ask for a new offer. An answerer's lose the field: webrtcbin 1.22
/// matches an offer's m-line to our transceiver by intersecting the offer's caps with the caps our
/// sink pad received, so `payload=111` there makes an offer with Opus at 109 or 96 find no
/// transceiver, and webrtcbin answers `recvonly` (one-way audio: "did not find compatible
/// transceiver"). Without the field the answer takes the offer's payload type.
pub(super) fn gate_sending(
    caps: &gst::Element,
    role: Role,
    live: Arc<Liveness>,
) -> Result<(), MediaError> {
    let src = caps
        .static_pad("src")
        .ok_or_else(|| MediaError::Pipeline("rtp_caps has no src pad".into()))?;
    let mask = gst::PadProbeType::BUFFER
        | gst::PadProbeType::BUFFER_LIST
        | gst::PadProbeType::EVENT_DOWNSTREAM;
    src.add_probe(mask, move |_, info| match &mut info.data {
        Some(gst::PadProbeData::Event(ev)) => {
            let fixed = match ev.view() {
                gst::EventView::Caps(c) => {
                    let mut caps = c.caps_owned();
                    for s in caps.make_mut().iter_mut() {
                        match role {
                            Role::Offerer => s.set("payload", i32::from(OUR_OPUS_PT)),
                            Role::Answerer => s.remove_field("payload"),
                        }
                    }
                    Some(gst::event::Caps::new(&caps))
                }
                _ => None,
            };
            if let Some(new) = fixed {
                *ev = new;
            }
            gst::PadProbeReturn::Ok
        }
        Some(_) if !live.verified() => gst::PadProbeReturn::Drop,
        _ => gst::PadProbeReturn::Ok,
    });
    Ok(())
}
