//! Which GStreamer elements the engine needs, and which Debian package brings each.

use crate::MediaError;

/// An element the engine needs that this machine's GStreamer lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPlugin {
    pub element: &'static str,
    pub package: &'static str,
}

/// Every element the engine may use, with the Debian/Ubuntu package that provides it.
pub const REQUIRED: &[(&str, &str)] = &[
    ("webrtcbin", "gstreamer1.0-plugins-bad"),
    ("nicesrc", "gstreamer1.0-nice"),
    ("dtlssrtpenc", "gstreamer1.0-plugins-bad"),
    ("srtpenc", "gstreamer1.0-plugins-bad"),
    ("rtpbin", "gstreamer1.0-plugins-good"),
    ("opusenc", "gstreamer1.0-plugins-base"),
    ("opusdec", "gstreamer1.0-plugins-base"),
    ("rtpopuspay", "gstreamer1.0-plugins-good"),
    ("rtpopusdepay", "gstreamer1.0-plugins-good"),
    ("audioconvert", "gstreamer1.0-plugins-base"),
    ("audioresample", "gstreamer1.0-plugins-base"),
    ("audiomixer", "gstreamer1.0-plugins-base"),
    ("audiotestsrc", "gstreamer1.0-plugins-base"),
    ("volume", "gstreamer1.0-plugins-base"),
    ("level", "gstreamer1.0-plugins-good"),
    ("spectrum", "gstreamer1.0-plugins-good"),
    ("webrtcdsp", "gstreamer1.0-plugins-bad"),
    ("webrtcechoprobe", "gstreamer1.0-plugins-bad"),
    ("autoaudiosrc", "gstreamer1.0-plugins-good"),
    ("autoaudiosink", "gstreamer1.0-plugins-good"),
];

/// Checks that every element exists; the error names each missing one and its package.
pub fn check_plugins() -> Result<(), MediaError> {
    crate::init()?;
    let missing: Vec<MissingPlugin> = REQUIRED
        .iter()
        .filter(|(element, _)| gst::ElementFactory::find(element).is_none())
        .map(|&(element, package)| MissingPlugin { element, package })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MediaError::MissingPlugins(missing))
    }
}
