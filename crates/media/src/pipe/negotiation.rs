//! Offers and answers: creating, setting and emitting them.

use super::*;

pub(super) fn parse_sdp(
    sdp: &str,
    kind: WebRTCSDPType,
) -> Result<WebRTCSessionDescription, MediaError> {
    let msg = gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes())
        .map_err(|e| MediaError::BadRemoteDescription(e.to_string()))?;
    Ok(WebRTCSessionDescription::new(kind, msg))
}

/// What to create.
#[derive(Clone, Copy)]
pub(super) enum Done {
    Offer { ice_restart: bool },
    Answer,
}

/// Creates an offer or answer, sets it locally and emits it. webrtcbin now and then answers a
/// create request without an SDP; that is retried, never passed on empty.
pub(super) fn create_sdp(
    webrtc: &gst::Element,
    kind: Done,
    emit: Emit,
    live: Arc<Liveness>,
    retries: u32,
) {
    let (signal, field) = match kind {
        Done::Offer { .. } => ("create-offer", "offer"),
        Done::Answer => ("create-answer", "answer"),
    };
    let w = webrtc.clone();
    let promise = gst::Promise::with_change_func(move |reply| {
        let desc = match reply {
            Ok(Some(s)) => s.get::<WebRTCSessionDescription>(field).ok(),
            _ => None,
        };
        let Some(desc) = desc else {
            warn!(signal, retries, "webrtcbin returned no SDP");
            if retries > 0 {
                create_sdp(&w, kind, emit, live, retries - 1);
            } else {
                emit(EngineEvent::Error(MediaError::Negotiation(format!(
                    "{signal} returned no session description"
                ))));
            }
            return;
        };
        w.emit_by_name::<()>("set-local-description", &[&desc, &None::<gst::Promise>]);
        let sdp = match desc.sdp().as_text() {
            Ok(t) => with_fingerprint(&t, &live.fingerprint),
            Err(e) => {
                emit(EngineEvent::Error(MediaError::Negotiation(e.to_string())));
                return;
            }
        };
        let signal = match kind {
            Done::Offer { ice_restart } => MediaSignal::Offer { sdp, ice_restart },
            Done::Answer => {
                live.negotiated.store(true, Ordering::Release);
                MediaSignal::Answer { sdp }
            }
        };
        emit(EngineEvent::Signal(signal));
    });
    webrtc.emit_by_name::<()>(signal, &[&None::<gst::Structure>, &promise]);
}
