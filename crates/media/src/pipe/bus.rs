//! The pipeline's bus: errors and meters become engine events.

use super::*;

pub(super) fn rms_db(s: &gst::StructureRef) -> Option<f64> {
    let rms = s.get::<glib::ValueArray>("rms").ok()?;
    rms.iter()
        .filter_map(|v| v.get::<f64>().ok())
        .max_by(|a, b| a.total_cmp(b))
}

/// Posts the pipeline's errors and meters as events. A DTLS decoder's error ("Fatal SSL error")
/// is not the end of the call but a broken connection, which the supervisor rebuilds like any
/// other (the caller restarts with a fresh pipe): GStreamer 1.22's DTLS elements fail a handshake
/// now and then when both ends live in one process with certificates of their own (the peer's
/// certificate reaches a connection without its decoder's handler, and OpenSSL reports "certificate
/// verify failed"); the verification of [`Liveness::judge`] still applies to the new pipe.
pub(super) fn watch_bus(bus: &gst::Bus, stopped: &AtomicBool, emit: &Emit, live: &Liveness) {
    while !stopped.load(Ordering::Acquire) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(err)
                if msg.src().is_some_and(|s| s.name().starts_with("dtlsdec")) =>
            {
                warn!(error = %err.error(), "the DTLS handshake failed; the connection counts as broken");
                live.dtls_failed.store(true, Ordering::Release);
            }
            // The failed handshake's flow error stops the transport's ICE source too
            // ("Internal data stream error" from its nicesrc): the same broken connection.
            gst::MessageView::Error(err)
                if live.dtls_failed.load(Ordering::Acquire)
                    && msg
                        .src()
                        .is_some_and(|s| s.path_string().contains("transportreceivebin")) =>
            {
                debug!(error = %err.error(), "after the failed DTLS handshake");
            }
            gst::MessageView::Error(err) => {
                let text = format!(
                    "{} ({})",
                    err.error(),
                    err.debug().map(|d| d.to_string()).unwrap_or_default()
                );
                emit(EngineEvent::Error(MediaError::Pipeline(text)));
            }
            gst::MessageView::Element(el) => {
                let Some(s) = el.structure() else { continue };
                let source = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                match s.name().as_str() {
                    "level" => {
                        if let Some(db) = rms_db(s) {
                            emit(if source == "local_level" {
                                EngineEvent::LocalLevel(db)
                            } else {
                                EngineEvent::RemoteLevel(db)
                            });
                        }
                    }
                    "spectrum" => {
                        if let Ok(list) = s.get::<gst::List>("magnitude") {
                            let mags: Vec<f32> =
                                list.iter().filter_map(|v| v.get::<f32>().ok()).collect();
                            if let Some((hz, db)) = crate::peak_frequency(&mags, RATE) {
                                emit(EngineEvent::RemotePeak { hz, db });
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}
