//! Microphones and speakers, as GStreamer's device monitor sees them (PulseAudio, PipeWire, ALSA).

use crate::MediaError;
use gst::prelude::*;

/// Input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Input,
    Output,
}

/// One audio device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDevice {
    /// What to pass back as [`crate::AudioInput::Pulse`] / [`crate::AudioOutput::Pulse`].
    pub id: String,
    /// A name for people.
    pub name: String,
    pub kind: DeviceKind,
}

/// Lists the machine's audio devices. A machine with no sound server lists none (not an error).
pub fn list_devices() -> Result<Vec<AudioDevice>, MediaError> {
    crate::init()?;
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Audio/Source"), None);
    monitor.add_filter(Some("Audio/Sink"), None);
    if monitor.start().is_err() {
        return Ok(Vec::new());
    }
    let devices = monitor
        .devices()
        .into_iter()
        .filter_map(|d| {
            let class = d.device_class();
            let kind = if class.contains("Source") {
                DeviceKind::Input
            } else if class.contains("Sink") {
                DeviceKind::Output
            } else {
                return None;
            };
            let name = d.display_name().to_string();
            let id = d
                .properties()
                .and_then(|p| {
                    p.get::<String>("node.name")
                        .or_else(|_| p.get::<String>("device.name"))
                        .ok()
                })
                .unwrap_or_else(|| name.clone());
            Some(AudioDevice { id, name, kind })
        })
        .collect();
    monitor.stop();
    Ok(devices)
}
