//! The media parts of the screens: the media banner, the in-call panel (level meters, connection
//! quality, device choice) and the audio-processing switches in Settings. They read the
//! [`controller`](super::controller) a few times a second.

use super::controller::{self, Status};
use super::{stats, AudioDevice, AudioProcessing, MediaErrorCode};
use gloo_timers::callback::Interval;
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
            <select id="engine-preference" onchange={on_pref}>
                <option value="auto" selected={selected(controller::EnginePreference::Auto)}>{"Automatic: the window's WebRTC, else native"}</option>
                <option value="web" selected={selected(controller::EnginePreference::Web)}>{"The window's WebRTC"}</option>
                <option value="native" selected={selected(controller::EnginePreference::Native)}>{"Native (GStreamer)"}</option>
            </select>
        }
        </>
    }
}

fn meter(id: &'static str, label: &'static str, level: f64) -> Html {
    // RMS to a 0..100 scale that moves for speech: -50 dBFS → 0, 0 dBFS → 100.
    let db = 20.0 * level.max(1e-6).log10();
    let pct = ((db + 50.0) * 2.0).clamp(0.0, 100.0);
    html! {
        <div class="meter-row">
            <span class="meter-label">{ label }</span>
            <div class="meter" id={id} data-level={format!("{level:.4}")}>
                <div class="meter-fill" style={format!("width:{pct:.0}%")}></div>
            </div>
        </div>
    }
}

/// Levels, quality and device choice during a call.
#[component]
pub fn InCallMedia() -> Html {
    use_tick(200);
    let devices = use_state(Vec::<AudioDevice>::new);
    let input_sel = use_state(String::new);
    let output_sel = use_state(String::new);
    {
        let devices = devices.clone();
        use_effect_with((), move |()| {
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(c) = controller::get() {
                    if let Ok(list) = c.devices().await {
                        devices.set(list);
                    }
                }
            });
        });
    }
    let Some(c) = controller::get() else {
        return html! {};
    };
    if c.engine_name().is_none() {
        return html! { <EngineInfo /> };
    }
    let levels = c.levels();
    let (input_now, output_now) = ((*input_sel).clone(), (*output_sel).clone());
    let quality = c
        .stats()
        .filter(|s| s.packets_received > 0)
        .map(|s| stats::describe(&s))
        .unwrap_or_else(|| "connecting audio…".into());
    let on_input = Callback::from(move |e: Event| {
        let v = e
            .target_dyn_into::<HtmlSelectElement>()
            .map(|s| s.value())
            .unwrap_or_default();
        input_sel.set(v.clone());
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(c) = controller::get() {
                let _ = c
                    .switch_input(Some(v).filter(|v| !v.is_empty()))
                    .await
                    .map_err(|e| c.warn(e));
            }
        });
    });
    let on_output = Callback::from(move |e: Event| {
        let v = e
            .target_dyn_into::<HtmlSelectElement>()
            .map(|s| s.value())
            .unwrap_or_default();
        output_sel.set(v.clone());
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(c) = controller::get() {
                let _ = c
                    .set_output(Some(v).filter(|v| !v.is_empty()))
                    .await
                    .map_err(|e| c.warn(e));
            }
        });
    });
    let inputs: Vec<&AudioDevice> = devices.iter().filter(|d| d.input).collect();
    let outputs: Vec<&AudioDevice> = devices.iter().filter(|d| !d.input).collect();
    html! {
        <div class="media-panel" id="media-panel">
            { meter("mic-level", "You", levels.mic) }
            { meter("peer-level", "Them", levels.peer) }
            <p class="hint" id="quality">{ format!("Connection: {quality}") }</p>
            <div class="row devices">
                <select id="input-device" onchange={on_input} aria-label="Microphone">
                    <option value="" selected={input_now.is_empty()}>{"Default microphone"}</option>
                    { for inputs.iter().map(|d| html! { <option value={d.id.clone()} selected={d.id == input_now}>{ d.label.clone() }</option> }) }
                </select>
                if !outputs.is_empty() {
                    <select id="output-device" onchange={on_output} aria-label="Speaker">
                        <option value="" selected={output_now.is_empty()}>{"Default speaker"}</option>
                        { for outputs.iter().map(|d| html! { <option value={d.id.clone()} selected={d.id == output_now}>{ d.label.clone() }</option> }) }
                    </select>
                }
            </div>
        </div>
    }
}

/// `<datalist>`s of the microphones and speakers, for the device fields in Settings.
#[component]
pub fn DeviceLists() -> Html {
    let devices = use_state(Vec::<AudioDevice>::new);
    {
        let devices = devices.clone();
        use_effect_with((), move |()| {
            wasm_bindgen_futures::spawn_local(async move {
                if let Some(c) = controller::get() {
                    if let Ok(list) = c.devices().await {
                        devices.set(list);
                    }
                }
            });
        });
    }
    let options = |input: bool| {
        devices
            .iter()
            .filter(|d| d.input == input && !d.id.is_empty() && d.id != "default")
            .map(|d| html! { <option value={d.id.clone()}>{ d.label.clone() }</option> })
            .collect::<Html>()
    };
    html! {
        <>
            <datalist id="microphone-devices">{ options(true) }</datalist>
            <datalist id="speaker-devices">{ options(false) }</datalist>
        </>
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
