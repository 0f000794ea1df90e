//! The pipeline's chains as launch descriptions, the swappable source and sink bins, and the
//! receive chain linked when the peer's stream appears.

use super::*;

pub(super) fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The capture sub-chain, as a bin with a ghost `src` pad, so it can be swapped mid-call.
pub(super) fn source_bin(input: Option<&AudioInput>) -> Result<gst::Bin, MediaError> {
    let src = match input {
        None => "audiotestsrc is-live=true wave=silence".to_owned(),
        Some(AudioInput::Default) => "autoaudiosrc".to_owned(),
        Some(AudioInput::Pulse(dev)) => format!("pulsesrc device={}", quote(dev)),
        Some(AudioInput::Tone { hz }) => {
            format!("audiotestsrc is-live=true wave=sine volume=0.4 freq={hz}")
        }
    };
    let desc = format!(
        "{src} ! audioconvert ! audioresample ! capsfilter caps=audio/x-raw,rate={RATE},channels=1"
    );
    gst::parse::bin_from_description(&desc, true).map_err(pipeline_err)
}

/// A meter interval as `level` and `spectrum` take it, in nanoseconds.
pub(super) fn interval_ns(ms: u32) -> u64 {
    u64::from(ms) * 1_000_000
}

/// The playback end, as a bin with a ghost `sink` pad, so the speaker can be swapped mid-call.
pub(super) fn sink_bin(
    output: &AudioOutput,
    meter_interval_ms: u32,
) -> Result<gst::Bin, MediaError> {
    let interval = interval_ns(meter_interval_ms);
    let desc = match output {
        AudioOutput::Default => "autoaudiosink".to_owned(),
        AudioOutput::Pulse(dev) => format!("pulsesink device={}", quote(dev)),
        AudioOutput::Measure => format!(
            "spectrum bands=1024 threshold=-90 interval={interval} post-messages=true \
             message-magnitude=true ! fakesink sync=true"
        ),
    };
    gst::parse::bin_from_description(&desc, true).map_err(pipeline_err)
}

/// webrtcdsp finds its echo probe by name in a process-wide registry, so every pipe's probe gets a
/// name of its own.
pub(super) fn probe_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("tincan_echo_probe_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub(super) fn send_chain(cfg: &EngineConfig, probe: &str) -> String {
    let dsp = if cfg.echo_cancellation {
        format!("webrtcdsp name=dsp probe={probe} ! audioconvert ! ")
    } else {
        String::new()
    };
    let interval = interval_ns(cfg.meter_interval_ms);
    // The leaky queue keeps the source's thread from ever blocking: webrtcbin holds data back until
    // it is connected, and a source whose thread is stuck there cannot be stopped (a callee swaps its
    // silence for the microphone before that). It drops what is older than 60 ms, so nothing stale
    // is sent when the connection opens.
    format!(
        "queue name=src_queue leaky=downstream max-size-buffers=0 max-size-bytes=0 \
         max-size-time=60000000 ! audioconvert name=src_convert ! {dsp}\
         volume name=mute ! level name=local_level interval={interval} post-messages=true ! \
         audioconvert ! opusenc ! rtpopuspay name=pay pt={OUR_OPUS_PT} ! \
         capsfilter name=rtp_caps caps=application/x-rtp,media=audio,encoding-name=OPUS,clock-rate={RATE} ! \
         webrtcbin name=webrtc bundle-policy=max-bundle latency={latency}",
        latency = cfg.jitter_latency_ms
    )
}

pub(super) fn playback_chain(cfg: &EngineConfig, probe: &str) -> String {
    let probe = if cfg.echo_cancellation {
        format!("webrtcechoprobe name={probe} ! audioconvert ! ")
    } else {
        String::new()
    };
    let interval = interval_ns(cfg.meter_interval_ms);
    format!(
        "audiotestsrc is-live=true wave=silence ! audio/x-raw,rate={RATE},channels=1 ! \
         audiomixer name=mix ! audioconvert ! audioresample ! audio/x-raw,rate={RATE},channels=1 ! {probe}\
         level name=remote_level interval={interval} post-messages=true"
    )
}

pub(super) fn link_remote(
    pipeline: &gst::Pipeline,
    mixer: &gst::Element,
    pad: &gst::Pad,
    emit: Emit,
    live: Arc<Liveness>,
) -> Result<(), MediaError> {
    let bin = gst::parse::bin_from_description(
        "rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample",
        true,
    )
    .map_err(pipeline_err)?;
    pipeline.add(&bin).map_err(pipeline_err)?;
    let sink = bin
        .static_pad("sink")
        .ok_or_else(|| MediaError::Pipeline("decoder has no sink".into()))?;
    let src = bin
        .static_pad("src")
        .ok_or_else(|| MediaError::Pipeline("decoder has no src".into()))?;
    let mix_pad = mixer
        .request_pad_simple("sink_%u")
        .ok_or_else(|| MediaError::Pipeline("mixer refused a pad".into()))?;
    src.link(&mix_pad)
        .map_err(|e| MediaError::Pipeline(format!("{e:?}")))?;
    // The receive gate: nothing decrypted is played before the peer's certificate is verified.
    // Liveness counts RTP packets as they leave webrtcbin's jitter buffer (real packets only: the
    // decoder's loss concealment must not look like a live peer).
    let mask = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
    pad.add_probe(mask, move |_, _| {
        if !live.verified() {
            return gst::PadProbeReturn::Drop;
        }
        live.mark_rx();
        gst::PadProbeReturn::Ok
    });
    let first = AtomicBool::new(true);
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if first.swap(false, Ordering::AcqRel) {
            emit(EngineEvent::RemoteAudioStarted);
        }
        gst::PadProbeReturn::Ok
    });
    bin.sync_state_with_parent().map_err(pipeline_err)?;
    pad.link(&sink)
        .map_err(|e| MediaError::Pipeline(format!("{e:?}")))?;
    debug!("remote audio linked");
    Ok(())
}
