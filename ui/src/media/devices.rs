//! Microphones and speakers: opening the microphone with the chosen processing, listing devices,
//! and turning browser failures into errors a user understands.

use super::{AudioDevice, AudioProcessing, MediaError, MediaErrorCode};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaDeviceInfo, MediaDeviceKind, MediaDevices, MediaStream};

/// Is `RTCPeerConnection` present in this page?
pub fn webrtc_available() -> bool {
    web_sys::window()
        .map(|w| js_sys::Reflect::has(&w, &JsValue::from_str("RTCPeerConnection")).unwrap_or(false))
        .unwrap_or(false)
}

pub fn webrtc_unavailable() -> MediaError {
    MediaError::new(
        MediaErrorCode::WebRtcUnavailable,
        "This window has no WebRTC, so calls are signalled but carry no audio. Linux builds of \
         WebKitGTK from Debian and Ubuntu are compiled without it: use tincan from a browser \
         (open the server's address in Chromium or Firefox), or a tincan build with the native \
         audio engine.",
    )
}

fn media_devices() -> Result<MediaDevices, MediaError> {
    let nav = web_sys::window()
        .map(|w| w.navigator())
        .ok_or_else(no_media_devices)?;
    // `mediaDevices` is missing on insecure pages; check before web-sys assumes it is there.
    let md = js_sys::Reflect::get(&nav, &JsValue::from_str("mediaDevices"))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
        .ok_or_else(no_media_devices)?;
    Ok(md.unchecked_into())
}

fn no_media_devices() -> MediaError {
    MediaError::new(
        MediaErrorCode::PermissionDenied,
        "This page may not use a microphone: browsers allow it only on https:// pages and on \
         http://localhost or http://127.0.0.1. Open tincan through one of those.",
    )
}

/// Turns a `getUserMedia` rejection into plain words.
pub fn mic_error(e: &JsValue) -> MediaError {
    let name = js_sys::Reflect::get(e, &JsValue::from_str("name"))
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    match name.as_str() {
        "NotFoundError" | "OverconstrainedError" | "DevicesNotFoundError" => MediaError::new(
            MediaErrorCode::NoMicrophone,
            "No microphone was found. Plug one in (or pick another in Settings) and call again.",
        ),
        "NotAllowedError" | "SecurityError" | "PermissionDeniedError" => MediaError::new(
            MediaErrorCode::PermissionDenied,
            "Microphone access was denied. Allow the microphone for this page (or for tincan in \
             your system's privacy settings) and call again.",
        ),
        _ => {
            MediaError::new(
                MediaErrorCode::MicrophoneBusy,
                format!(
                "The microphone could not be opened ({}). Close other apps that use it and try \
                 again.",
                if name.is_empty() { "unknown error" } else { &name }
            ),
            )
        }
    }
}

/// The constraints object for `getUserMedia`.
pub fn constraints(device: Option<&str>, p: AudioProcessing) -> JsValue {
    let mut audio = serde_json::json!({
        "echoCancellation": p.echo_cancellation,
        "noiseSuppression": p.noise_suppression,
        "autoGainControl": p.auto_gain_control,
    });
    if let Some(id) = device.filter(|d| !d.is_empty()) {
        audio["deviceId"] = serde_json::json!({ "exact": id });
    }
    let c = serde_json::json!({ "audio": audio, "video": false });
    js_sys::JSON::parse(&c.to_string()).unwrap_or(JsValue::NULL)
}

/// Opens the microphone.
pub async fn open_microphone(
    device: Option<&str>,
    p: AudioProcessing,
) -> Result<MediaStream, MediaError> {
    let md = media_devices()?;
    let c: web_sys::MediaStreamConstraints = constraints(device, p).unchecked_into();
    let promise = md
        .get_user_media_with_constraints(&c)
        .map_err(|e| mic_error(&e))?;
    let stream = JsFuture::from(promise).await.map_err(|e| mic_error(&e))?;
    stream.dyn_into::<MediaStream>().map_err(|e| mic_error(&e))
}

/// Microphones and speakers.
pub async fn list() -> Result<Vec<AudioDevice>, MediaError> {
    let md = media_devices()?;
    let promise = md
        .enumerate_devices()
        .map_err(|e| MediaError::new(MediaErrorCode::NoMicrophone, format!("{e:?}")))?;
    let list = JsFuture::from(promise)
        .await
        .map_err(|e| MediaError::new(MediaErrorCode::NoMicrophone, format!("{e:?}")))?;
    let arr: js_sys::Array = list.unchecked_into();
    let mut out = Vec::new();
    for v in arr.iter() {
        let d: MediaDeviceInfo = v.unchecked_into();
        let input = match d.kind() {
            MediaDeviceKind::Audioinput => true,
            MediaDeviceKind::Audiooutput => false,
            _ => continue,
        };
        let label = if d.label().is_empty() {
            format!(
                "{} {}",
                if input { "Microphone" } else { "Speaker" },
                out.len() + 1
            )
        } else {
            d.label()
        };
        out.push(AudioDevice {
            id: d.device_id(),
            label,
            input,
        });
    }
    Ok(out)
}

/// Calls `f` whenever devices are plugged in or out. Returns the closure to keep alive.
pub fn on_device_change(
    f: impl FnMut() + 'static,
) -> Option<wasm_bindgen::closure::Closure<dyn FnMut()>> {
    let md = media_devices().ok()?;
    let c = wasm_bindgen::closure::Closure::<dyn FnMut()>::new(f);
    md.set_ondevicechange(Some(c.as_ref().unchecked_ref()));
    Some(c)
}
