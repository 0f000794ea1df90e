//! The media parts of the screens: the media banner, the in-call panel (level meters, connection
//! quality, device choice) and the audio-processing switches in Settings. They read the
//! [`controller`](super::controller) a few times a second.

use super::controller::{self, Status};
use super::{stats, AudioDevice, AudioProcessing, MediaErrorCode};
use crate::state::Action;
use gloo_timers::callback::Interval;
use std::rc::Rc;
use tincan_ipc::native_media::MEASURE_OUTPUT;
use tincan_ipc::Settings;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

/// Re-renders the component every `ms`.
#[hook]
fn use_tick(ms: u32) -> u64 {
    let tick = use_state(|| 0u64);
    {
        let tick = tick.clone();
        use_effect_with((), move |()| {
            let mut n = 0u64;
            let interval = Interval::new(ms, move || {
                n += 1;
                tick.set(n);
            });
            move || drop(interval)
        });
    }
    *tick
}

/// Media errors, and a notice when this window has no audio engine.
#[component]
pub fn MediaBanner() -> Html {
    use_tick(400);
    let Some(c) = controller::get() else {
        return html! {};
    };
    let Status { error, .. } = c.status();
    let dismiss = Callback::from(move |_| {
        if let Some(c) = controller::get() {
            c.dismiss_error();
        }
    });
    html! {
        <>
            if let Some(e) = error {
                <div class="banner error" id="media-error" role="alert" data-code={format!("{:?}", e.code)}>
                    <span>{ e.message }</span>
                    <button class="link" onclick={dismiss} aria-label="Dismiss">{"✕"}</button>
                </div>
            }
        </>
    }
}

/// Title and words for a call the media engine ended, if it did.
pub fn media_end() -> Option<(&'static str, String)> {
    let e = controller::get()?.status().error?;
    let title = match e.code {
        MediaErrorCode::ConnectionLost => "Connection lost",
        MediaErrorCode::PeerUnreachable => "Peer unreachable",
        MediaErrorCode::SdpRejected => "Call setup refused",
        MediaErrorCode::MediaNotVerified => "Call not secure",
        MediaErrorCode::RelayUnavailable => "No relay server",
        _ => return None,
    };
    Some((title, e.message))
}

/// Which engine carries the audio, for the header or settings.
#[component]
pub fn EngineInfo() -> Html {
    let name = controller::get().and_then(|c| c.engine_name());
    let kind = match name {
        Some(n) if n.starts_with("native") => "native",
        Some(_) => "webrtc",
        None => "none",
    };
    let pref = use_state(controller::EnginePreference::load);
    let on_pref = {
        let pref = pref.clone();
        Callback::from(move |e: Event| {
            let value = e
                .target_dyn_into::<web_sys::HtmlSelectElement>()
                .map(|s| s.value())
                .unwrap_or_default();
            let next = match value.as_str() {
                "web" => controller::EnginePreference::Web,
                "native" => controller::EnginePreference::Native,
                _ => controller::EnginePreference::Auto,
            };
            next.save();
            pref.set(next);
        })
    };
    let selected = |p: controller::EnginePreference| *pref == p;
    html! {
        <>
        <p class="hint" id="media-engine" data-engine={kind}>
            { match name {
                Some(n) => format!("Audio engine: {n}."),
                None => "Audio engine: none. This window has no WebRTC, so calls ring and connect but \
                         carry no sound here; join from a browser that has it (Chromium, Firefox, \
                         Safari) or use the desktop app.".to_owned(),
            } }
        </p>
        if crate::browser::in_tauri() {
            <label for="engine-preference">{"Audio engine (applies the next time the window opens)"}</label>
            // Short entries, so the closed menu is not cut off at 340 px; the hint says the rest.
            <select id="engine-preference" onchange={on_pref}>
                <option value="auto" selected={selected(controller::EnginePreference::Auto)}>{"Automatic"}</option>
                <option value="web" selected={selected(controller::EnginePreference::Web)}>{"Window's WebRTC"}</option>
                <option value="native" selected={selected(controller::EnginePreference::Native)}>{"Native (GStreamer)"}</option>
            </select>
            <p class="hint">{"Automatic: the window's WebRTC where it has one, else the native engine."}</p>
        }
        </>
    }
}

/// A level in 0..100 that moves for speech: RMS -50 dBFS → 0, 0 dBFS → 100.
pub fn meter_value(level: f64) -> f64 {
    let db = 20.0 * level.max(1e-6).log10();
    ((db + 50.0) * 2.0).clamp(0.0, 100.0).round()
}

/// A level meter. A `<meter>` element, not a bar sized by a `style` attribute: the app's CSP
/// (`style-src 'self'`) drops inline styles, which left such a bar always full.
fn meter(id: &'static str, label: &'static str, level: f64) -> Html {
    html! {
        <div class="meter-row">
            <span class="meter-label">{ label }</span>
            <meter class="meter" id={id} min="0" max="100" value={meter_value(level).to_string()}
                data-level={format!("{level:.4}")} aria-label={label}></meter>
        </div>
    }
}

/// One entry of a device menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChoice {
    /// The device ID; empty for the system default.
    pub id: String,
    pub label: String,
    pub selected: bool,
}

/// A name for people: the engine's test devices by what they are, others by their label.
pub fn device_label(id: &str, listed: Option<&str>) -> String {
    if let Some(hz) = id.strip_prefix("tone:") {
        return format!("Test tone {hz} Hz");
    }
    if id == MEASURE_OUTPUT {
        return "Measuring output (tests)".into();
    }
    listed.filter(|l| !l.is_empty()).unwrap_or(id).to_owned()
}

/// The entries of a microphone (`input`) or speaker menu: the system default, the listed devices,
/// and the device in use even when the list lacks it (unplugged), so the menu never shows another
/// one as selected.
pub fn device_choices(
    devices: &[AudioDevice],
    input: bool,
    current: Option<&str>,
) -> Vec<DeviceChoice> {
    // "default" is the browser's own alias of the system default (Chromium lists it).
    let current = current.filter(|c| !c.is_empty() && *c != "default");
    let mut out = vec![DeviceChoice {
        id: String::new(),
        label: if input {
            "System default microphone"
        } else {
            "System default speaker"
        }
        .into(),
        selected: current.is_none(),
    }];
    for d in devices
        .iter()
        .filter(|d| d.input == input && !d.id.is_empty() && d.id != "default")
    {
        if out.iter().any(|c| c.id == d.id) {
            continue;
        }
        out.push(DeviceChoice {
            id: d.id.clone(),
            label: device_label(&d.id, Some(&d.label)),
            selected: current == Some(d.id.as_str()),
        });
    }
    if let Some(id) = current.filter(|id| !out.iter().any(|c| c.id == *id)) {
        // The engine's test devices are not hardware: never "not connected".
        let special = id.starts_with("tone:") || id == MEASURE_OUTPUT;
        let name = device_label(id, None);
        out.push(DeviceChoice {
            id: id.to_owned(),
            label: if special {
                name
            } else {
                format!("{name} (not connected)")
            },
            selected: true,
        });
    }
    out
}

/// The engine's device list, loaded at mount and again whenever the controller saw devices come or
/// go (`device_generation`: the browser's `devicechange`, the native engine's `devices_changed`), so
/// a device plugged in while the menu is on screen appears in it.
#[hook]
fn use_devices() -> Rc<Vec<AudioDevice>> {
    let devices = use_state(|| Rc::new(Vec::<AudioDevice>::new()));
    {
        let devices = devices.clone();
        use_effect_with((), move |()| {
            let load = move || {
                let devices = devices.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(c) = controller::get() {
                        if let Ok(list) = c.devices().await {
                            if *devices.as_ref() != list {
                                devices.set(Rc::new(list));
                            }
                        }
                    }
                });
            };
            load();
            let mut seen = controller::get().map(|c| c.device_generation());
            let interval = Interval::new(500, move || {
                let now = controller::get().map(|c| c.device_generation());
                if now != seen {
                    seen = now;
                    load();
                }
            });
            move || drop(interval)
        });
    }
    (*devices).clone()
}

#[derive(Properties, PartialEq)]
pub struct DeviceSelectProps {
    pub id: AttrValue,
    /// Microphones (`true`) or speakers.
    pub input: bool,
    /// The device to show as selected (`None`: the system default).
    pub current: Option<String>,
    /// A pick (`None`: the system default).
    pub onchange: Callback<Option<String>>,
}

/// A microphone or speaker menu with names, never raw IDs, and the current device always in it.
#[component]
pub fn DeviceSelect(props: &DeviceSelectProps) -> Html {
    let devices = use_devices();
    let node = use_node_ref();
    let choices = device_choices(&devices, props.input, props.current.as_deref());
    let wanted = choices
        .iter()
        .find(|c| c.selected)
        .map(|c| c.id.clone())
        .unwrap_or_default();
    {
        // `selected` on an option is only the initial choice; the menu's value is what shows.
        let node = node.clone();
        use_effect(move || {
            if let Some(sel) = node.cast::<HtmlSelectElement>() {
                if sel.value() != wanted {
                    sel.set_value(&wanted);
                }
            }
        });
    }
    let onchange = {
        let cb = props.onchange.clone();
        Callback::from(move |e: Event| {
            let v = e
                .target_dyn_into::<HtmlSelectElement>()
                .map(|s| s.value())
                .unwrap_or_default();
            cb.emit(Some(v).filter(|v| !v.is_empty()));
        })
    };
    html! {
        <select id={props.id.clone()} ref={node} onchange={onchange}
            aria-label={ if props.input { "Microphone" } else { "Speaker" } }>
            { for choices.into_iter().map(|c| html! {
                <option value={c.id} selected={c.selected}>{ c.label }</option>
            }) }
        </select>
    }
}

/// A device picked in the call is also the one Settings shows and the next call uses.
fn keep_in_settings(ctx: &crate::ctx::Ctx, change: impl FnOnce(&mut Settings) + 'static) {
    let api = ctx.api.clone();
    let d = ctx.state.dispatcher();
    wasm_bindgen_futures::spawn_local(async move {
        let result = async {
            let mut s = api.get_settings().await?;
            change(&mut s);
            api.save_settings(s.clone()).await?;
            Ok::<_, tincan_ipc::IpcError>(s)
        }
        .await;
        match result {
            Ok(s) => {
                if let Some(c) = controller::get() {
                    c.set_settings(s.clone());
                }
                d.dispatch(Action::Settings(s));
            }
            Err(e) => d.dispatch(Action::Failed(e)),
        }
    });
}

/// How the call is connected (the selected ICE candidate pair): "Direct (UDP)", "Relayed
/// (TURN/TCP)", …; `data-*` carry the parts for tests (the words may change, these do not).
fn connection_kind(route: Option<stats::Route>) -> Html {
    let text = route.map_or_else(|| "Connecting…".to_owned(), |r| r.describe());
    html! {
        <p class="hint" title="How your audio reaches the other side: directly, or through a relay (TURN) server">
            {"Route: "}
            <span id="connection-kind"
                data-kind={route.map_or("", |r| r.kind())}
                data-local={route.map_or("", |r| r.local)}
                data-remote={route.map_or("", |r| r.remote)}
                data-protocol={route.map_or("", |r| r.protocol)}
                data-relay-protocol={route.and_then(|r| r.relay_protocol).unwrap_or("")}>
                { text }
            </span>
        </p>
    }
}

/// Levels, quality and device choice during a call.
#[component]
pub fn InCallMedia() -> Html {
    use_tick(200);
    let ctx = crate::ctx::use_ctx();
    // A pick being switched to: shown as selected until the engine says yes or no.
    let pending_in = use_state(|| None::<Option<String>>);
    let pending_out = use_state(|| None::<Option<String>>);
    let Some(c) = controller::get() else {
        return html! {};
    };
    if c.engine_name().is_none() {
        return html! { <EngineInfo /> };
    }
    let levels = c.levels();
    let (in_use, out_use) = c.devices_in_use();
    let shown_in = (*pending_in).clone().unwrap_or(in_use);
    let shown_out = (*pending_out).clone().unwrap_or(out_use);
    let quality = c
        .stats()
        .filter(|s| s.packets_received > 0)
        .map(|s| stats::describe(&s))
        .unwrap_or_else(|| "connecting audio…".into());
    let on_input = {
        let ctx = ctx.clone();
        Callback::from(move |id: Option<String>| {
            pending_in.set(Some(id.clone()));
            let (ctx, pending_in) = (ctx.clone(), pending_in.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(c) = controller::get() {
                    match c.switch_input(id.clone()).await {
                        Ok(()) => keep_in_settings(&ctx, move |s| s.microphone = id),
                        Err(e) => c.warn(e),
                    }
                }
                pending_in.set(None);
            });
        })
    };
    let on_output = Callback::from(move |id: Option<String>| {
        pending_out.set(Some(id.clone()));
        let (ctx, pending_out) = (ctx.clone(), pending_out.clone());
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(c) = controller::get() {
                match c.set_output(id.clone()).await {
                    Ok(()) => keep_in_settings(&ctx, move |s| s.speaker = id),
                    Err(e) => c.warn(e),
                }
            }
            pending_out.set(None);
        });
    });
    html! {
        <div class="media-panel" id="media-panel">
            { meter("mic-level", "You", levels.mic) }
            { meter("peer-level", "Them", levels.peer) }
            <p class="hint" id="quality">{ format!("Connection: {quality}") }</p>
            { connection_kind(c.stats().and_then(|s| s.route)) }
            <div class="row devices">
                <DeviceSelect id="input-device" input=true current={shown_in} onchange={on_input} />
                <DeviceSelect id="output-device" input=false current={shown_out} onchange={on_output} />
            </div>
        </div>
    }
}

/// Echo cancellation, noise suppression and auto gain switches (kept in this window's storage).
#[component]
pub fn AudioSettings() -> Html {
    let p = use_state(|| {
        controller::get()
            .map(|c| c.processing())
            .unwrap_or_default()
    });
    let toggle = |f: fn(&mut AudioProcessing, bool)| {
        let p = p.clone();
        Callback::from(move |e: Event| {
            let on = e
                .target_dyn_into::<HtmlInputElement>()
                .map(|i| i.checked())
                .unwrap_or(true);
            let mut next = *p;
            f(&mut next, on);
            if let Some(c) = controller::get() {
                c.set_processing(next);
            }
            p.set(next);
        })
    };
    html! {
        <fieldset class="audio-processing" id="audio-processing">
            <legend>{"Audio processing (applies to the next call)"}</legend>
            <label><input type="checkbox" id="echo-cancellation" checked={p.echo_cancellation}
                onchange={toggle(|p, on| p.echo_cancellation = on)} />{" Echo cancellation"}</label>
            <label><input type="checkbox" id="noise-suppression" checked={p.noise_suppression}
                onchange={toggle(|p, on| p.noise_suppression = on)} />{" Noise suppression"}</label>
            <label><input type="checkbox" id="auto-gain" checked={p.auto_gain_control}
                onchange={toggle(|p, on| p.auto_gain_control = on)} />{" Automatic gain"}</label>
            <EngineInfo />
        </fieldset>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, label: &str, input: bool) -> AudioDevice {
        AudioDevice {
            id: id.into(),
            label: label.into(),
            input,
        }
    }

    fn selected(c: &[DeviceChoice]) -> Vec<&str> {
        c.iter()
            .filter(|c| c.selected)
            .map(|c| c.label.as_str())
            .collect()
    }

    #[test]
    fn the_configured_device_is_the_selected_one_by_name() {
        let list = [
            dev("alsa_input.usb", "USB Headset", true),
            dev("tone:440", "Test tone (440 Hz, no microphone)", true),
            dev("measure", "Silent (measure only, no speakers)", false),
        ];
        let c = device_choices(&list, true, Some("tone:440"));
        assert_eq!(selected(&c), ["Test tone 440 Hz"]);
        assert_eq!(c[0].label, "System default microphone");
        assert!(c.iter().all(|c| !c.label.contains("tone:")), "{c:?}");
        let c = device_choices(&list, false, Some("measure"));
        assert_eq!(selected(&c), ["Measuring output (tests)"]);
        let c = device_choices(&list, true, None);
        assert_eq!(selected(&c), ["System default microphone"]);
    }

    #[test]
    fn a_configured_device_missing_from_the_list_is_still_shown() {
        let list = [dev("alsa_input.usb", "USB Headset", true)];
        let c = device_choices(&list, true, Some("alsa_input.gone"));
        assert_eq!(selected(&c), ["alsa_input.gone (not connected)"]);
        assert_eq!(c.len(), 3);
        // A test tone of another pitch is no hardware: named, never "not connected".
        let c = device_choices(&list, true, Some("tone:660"));
        assert_eq!(selected(&c), ["Test tone 660 Hz"]);
        // The browser's "default" alias is the system default entry, listed once.
        let c = device_choices(
            &[dev("default", "Default - Mic", true)],
            true,
            Some("default"),
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].selected);
    }

    #[test]
    fn meter_moves_with_the_level() {
        assert_eq!(meter_value(0.0), 0.0);
        assert_eq!(meter_value(1.0), 100.0);
        assert!(meter_value(0.05) > 30.0 && meter_value(0.05) < 70.0);
    }
}
