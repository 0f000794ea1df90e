//! Microphones and speakers, as GStreamer's device monitor sees them (PulseAudio, PipeWire, ALSA),
//! and a watch that reports devices plugged in or out while the app runs (so a headset plugged in
//! mid-call shows up in the in-call menus without a restart).

use crate::MediaError;
use gst::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// The process's one device monitor, started at first use and never stopped. One, because GStreamer
/// shares each device provider between monitors and stopping a second monitor stops PulseAudio's
/// provider for the first too: a device list taken while the watch ran left the watch deaf to
/// devices plugged in after it (crates/media/tests/devices_pulse.rs checks it does not any more).
/// Not kept when it could not start (no sound server yet): the next use tries again.
static MONITOR: Mutex<Option<gst::DeviceMonitor>> = Mutex::new(None);

fn shared_monitor() -> Option<gst::DeviceMonitor> {
    let mut slot = MONITOR.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        let monitor = gst::DeviceMonitor::new();
        monitor.add_filter(Some("Audio/Source"), None);
        monitor.add_filter(Some("Audio/Sink"), None);
        match monitor.start() {
            Ok(()) => *slot = Some(monitor),
            Err(e) => tracing::info!(%e, "no audio device monitor (no sound server?)"),
        }
    }
    slot.clone()
}

/// The ID `pulsesrc device=` / `pulsesink device=` takes: PulseAudio's own name of the device (its
/// `internal-name`, e.g. `alsa_output.pci-0000_00_1f.3.analog-stereo`), PipeWire's `node.name`, else
/// the display name.
fn device_id(d: &gst::Device, name: &str) -> String {
    if d.has_property("internal-name") {
        if let Some(id) = d
            .property::<Option<String>>("internal-name")
            .filter(|s| !s.is_empty())
        {
            return id;
        }
    }
    d.properties()
        .and_then(|p| {
            p.get::<String>("node.name")
                .or_else(|_| p.get::<String>("device.name"))
                .ok()
        })
        .unwrap_or_else(|| name.to_owned())
}

/// A device as tincan lists it; `None` for what is not a microphone or speaker. A sound server's
/// monitor sources ("Monitor of Built-in Audio", what a speaker plays) are not microphones: listing
/// them offers the user the echo of their own speakers as input.
fn to_device(d: &gst::Device) -> Option<AudioDevice> {
    let class = d.device_class();
    let kind = if class.contains("Source") {
        DeviceKind::Input
    } else if class.contains("Sink") {
        DeviceKind::Output
    } else {
        return None;
    };
    let props = d.properties();
    let monitor = props.as_ref().is_some_and(|p| {
        p.get::<String>("device.class").ok().as_deref() == Some("monitor")
            || p.get::<String>("media.class").ok().as_deref() == Some("Audio/Sink/Monitor")
    });
    if kind == DeviceKind::Input && monitor {
        return None;
    }
    let name = d.display_name().to_string();
    let id = device_id(d, &name);
    Some(AudioDevice { id, name, kind })
}

/// Lists the machine's audio devices. A machine with no sound server lists none (not an error).
pub fn list_devices() -> Result<Vec<AudioDevice>, MediaError> {
    crate::init()?;
    Ok(shared_monitor()
        .map(|m| m.devices().iter().filter_map(to_device).collect())
        .unwrap_or_default())
}

/// Devices plugged in or out: the microphones and speakers after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicesChanged {
    pub devices: Vec<AudioDevice>,
}

/// A running device watch (see [`watch_devices`]); dropping it stops the watch. One at a time per
/// process: watches would take each other's news from the shared monitor's bus.
pub struct DeviceWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for DeviceWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long the watch thread waits on the monitor's bus before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Changes that come together are reported once: loading one PulseAudio sink adds the sink and its
/// monitor, a USB headset adds a sink and a source.
const SETTLE: Duration = Duration::from_millis(150);

/// Watches for microphones and speakers plugged in or out (GStreamer's device monitor: PulseAudio's
/// and PipeWire's own notifications, no polling of the sound server) and calls `on_change` with
/// the list after each change, on a thread of its own, until the returned [`DeviceWatch`] is
/// dropped. Changes of a device's state alone (a stream starts on it) are not reported. A machine
/// with no sound server gets a watch that never reports.
pub fn watch_devices(
    on_change: impl Fn(DevicesChanged) + Send + 'static,
) -> Result<DeviceWatch, MediaError> {
    crate::init()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("tincan-media-devices".into())
        .spawn(move || watch_loop(&flag, &on_change))
        .map_err(|e| MediaError::Init(format!("no device watch thread: {e}")))?;
    Ok(DeviceWatch {
        stop,
        thread: Some(thread),
    })
}

/// The monitor lists devices in no fixed order: compare lists sorted.
fn sorted(list: Vec<AudioDevice>) -> Vec<(bool, String, String)> {
    let mut v: Vec<_> = list
        .into_iter()
        .map(|d| (d.kind == DeviceKind::Input, d.id, d.name))
        .collect();
    v.sort();
    v
}

fn watch_loop(stop: &AtomicBool, on_change: &dyn Fn(DevicesChanged)) {
    let Some(monitor) = shared_monitor() else {
        tracing::info!("hot-plug not reported: no audio device monitor");
        return;
    };
    let bus = monitor.bus();
    let mut known = sorted(monitor.devices().iter().filter_map(to_device).collect());
    tracing::debug!(devices = known.len(), "watching audio devices");
    let types = [
        gst::MessageType::DeviceAdded,
        gst::MessageType::DeviceRemoved,
        gst::MessageType::DeviceChanged,
    ];
    while !stop.load(Ordering::Acquire) {
        let Some(_first) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(POLL.as_millis() as u64),
            &types,
        ) else {
            continue;
        };
        // Let the rest of a burst arrive, then compare the whole list: a change of state only
        // (DeviceChanged with the same name and ID) is not news for the menus.
        while bus
            .timed_pop_filtered(
                gst::ClockTime::from_mseconds(SETTLE.as_millis() as u64),
                &types,
            )
            .is_some()
        {}
        let now: Vec<AudioDevice> = monitor.devices().iter().filter_map(to_device).collect();
        let key = sorted(now.clone());
        if key != known {
            tracing::info!(devices = now.len(), "audio devices changed");
            known = key;
            on_change(DevicesChanged { devices: now });
        }
    }
    // The monitor stays started: it is the process's (see MONITOR).
}
