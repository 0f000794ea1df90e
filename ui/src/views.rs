//! The views. Each reads the shared [`crate::ctx::Ctx`] and calls the backend only through `ctx.api`.

use crate::ctx::use_ctx;
use crate::state::{ended_title, format_duration, Action, Page};
use tincan_ipc::{
    CallOutcome, CallPhase, ConnectionState, CredentialMode, Direction, IceServer, ServerInfo,
    Settings, SignInCredentials,
};
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Fills uncontrolled fields once, after they are mounted. (A `value=` attribute would make Yew put
/// the old value back over whatever the user typed at every re-render.)
#[hook]
fn use_initial_values<D: PartialEq + 'static>(deps: D, fields: Vec<(NodeRef, String)>) {
    use_effect_with(deps, move |_| {
        for (r, v) in &fields {
            if let Some(i) = r.cast::<HtmlInputElement>() {
                i.set_value(v);
            } else if let Some(t) = r.cast::<HtmlTextAreaElement>() {
                t.set_value(v);
            }
        }
    });
}

fn input_value(r: &NodeRef) -> String {
    r.cast::<HtmlInputElement>()
        .map(|i| i.value())
        .unwrap_or_default()
}

fn textarea_value(r: &NodeRef) -> String {
    r.cast::<HtmlTextAreaElement>()
        .map(|i| i.value())
        .unwrap_or_default()
}

fn connection_label(c: &Option<ConnectionState>) -> (&'static str, String) {
    match c {
        Some(ConnectionState::Online) => ("online", "Online".into()),
        Some(ConnectionState::Connecting) => ("connecting", "Connecting…".into()),
        Some(ConnectionState::Reconnecting { retry_in_ms, .. }) => (
            "offline",
            format!("Offline, retrying in {} s", retry_in_ms.div_ceil(1000)),
        ),
        Some(ConnectionState::SignedOut) | None => ("offline", "Signed out".into()),
    }
}

#[component]
pub fn Header() -> Html {
    let ctx = use_ctx();
    let s = &ctx.state;
    let (class, label) = connection_label(&s.connection);
    let sign_out = {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            let api = ctx.api.clone();
            ctx.run(async move { api.sign_out().await }, Action::State);
        })
    };
    let settings = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.dispatch(Action::ShowPage(Page::Settings)))
    };
    html! {
        <header class="top">
            <span class="brand">{"tincan"}</span>
            if s.profile != "default" && !s.profile.is_empty() {
                <span class="profile">{ &s.profile }</span>
            }
            <span class={classes!("pill", class)} id="connection">{ label }</span>
            if let Some(u) = &s.user {
                <span class="me" id="me">{ u.to_string() }</span>
                <button class="link" id="open-settings" onclick={settings} disabled={s.call.is_some()}>{"Settings"}</button>
                <button class="link" id="sign-out" onclick={sign_out} disabled={s.busy}>{"Sign out"}</button>
            }
        </header>
    }
}

#[component]
pub fn ErrorBanner() -> Html {
    let ctx = use_ctx();
    let dismiss = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.dispatch(Action::DismissError))
    };
    html! {
        <>
            if let Some(e) = &ctx.state.error {
                <div class="banner error" id="error" role="alert" data-code={format!("{:?}", e.code)}>
                    <span>{ &e.message }</span>
                    <button class="link" onclick={dismiss} aria-label="Dismiss">{"✕"}</button>
                </div>
            }
            if let Some(n) = &ctx.state.notice {
                <div class="banner notice" id="notice" role="status">{ n }</div>
            }
        </>
    }
}

#[component]
pub fn SignIn() -> Html {
    let ctx = use_ctx();
    let s = &ctx.state;
    let embedded = matches!(s.server, Some(ServerInfo::Embedded { .. }) | None);
    let default_mode = match s.saved.last_mode {
        Some(CredentialMode::Embedded) if !embedded => CredentialMode::SecretKey,
        Some(m) => m,
        None if embedded => CredentialMode::Embedded,
        None => CredentialMode::SecretKey,
    };
    let mode = use_state(|| default_mode);
    let user_ref = NodeRef::default();
    let sdk_ref = NodeRef::default();
    let key_ref = NodeRef::default();
    let sig_ref = NodeRef::default();
    let on_mode = {
        let mode = mode.clone();
        Callback::from(move |e: Event| {
            let v = e
                .target_dyn_into::<HtmlSelectElement>()
                .map(|s| s.value())
                .unwrap_or_default();
            mode.set(match v.as_str() {
                "secret_key" => CredentialMode::SecretKey,
                "user_sig" => CredentialMode::UserSig,
                _ => CredentialMode::Embedded,
            });
        })
    };
    let onsubmit = {
        let ctx = ctx.clone();
        let mode = mode.clone();
        let (user_ref, sdk_ref, key_ref, sig_ref) = (
            user_ref.clone(),
            sdk_ref.clone(),
            key_ref.clone(),
            sig_ref.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let user = input_value(&user_ref);
            let sdk = input_value(&sdk_ref).trim().parse::<u64>().unwrap_or(0);
            let some = |v: String| Some(v).filter(|v| !v.trim().is_empty());
            let creds = match *mode {
                CredentialMode::Embedded => SignInCredentials::Embedded,
                CredentialMode::SecretKey => SignInCredentials::SecretKey {
                    sdk_app_id: sdk,
                    secret_key: some(input_value(&key_ref)),
                },
                CredentialMode::UserSig => SignInCredentials::UserSig {
                    sdk_app_id: sdk,
                    user_sig: some(textarea_value(&sig_ref)),
                },
            };
            // Clear the secret from the page as soon as it is handed over.
            if let Some(k) = key_ref.cast::<HtmlInputElement>() {
                k.set_value("");
            }
            let api = ctx.api.clone();
            ctx.run(async move { api.sign_in(user, creds).await }, Action::State);
        })
    };
    let forget = {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            let api = ctx.api.clone();
            let d = ctx.state.dispatcher();
            ctx.run(
                async move { api.forget_credentials().await },
                move |saved| {
                    d.dispatch(Action::Notice(
                        "Saved credentials removed from the keyring.".into(),
                    ));
                    Action::Saved(saved)
                },
            );
        })
    };
    let server = s
        .server
        .as_ref()
        .map(|sv| match sv {
            ServerInfo::Embedded { .. } => "the built-in local server".to_owned(),
            ServerInfo::Remote { url } => url.clone(),
        })
        .unwrap_or_default();
    let saved = &s.saved;
    let sdk_default = saved
        .last_sdk_app_id
        .map(|n| n.to_string())
        .unwrap_or_default();
    use_initial_values(
        (),
        vec![(
            user_ref.clone(),
            saved.last_user_id.clone().unwrap_or_default(),
        )],
    );
    use_initial_values(*mode, vec![(sdk_ref.clone(), sdk_default)]);
    html! {
        <section class="card" id="sign-in-view">
            <h1>{"Sign in"}</h1>
            <p class="muted">{ format!("Server: {server}") }</p>
            <form onsubmit={onsubmit} class="form">
                <label for="user-id">{"Your user ID"}</label>
                <input id="user-id" ref={user_ref} autofocus=true autocomplete="username"
                    placeholder="e.g. alice" maxlength="32" />
                <label for="mode">{"Credentials"}</label>
                <select id="mode" onchange={on_mode}>
                    <option value="embedded" selected={*mode == CredentialMode::Embedded} disabled={!embedded}>{"Local server (no setup)"}</option>
                    <option value="secret_key" selected={*mode == CredentialMode::SecretKey}>{"SDKAppID + secret key"}</option>
                    <option value="user_sig" selected={*mode == CredentialMode::UserSig}>{"UserSig from your server"}</option>
                </select>
                if *mode != CredentialMode::Embedded {
                    <label for="sdk-app-id">{"SDKAppID"}</label>
                    <input id="sdk-app-id" ref={sdk_ref} inputmode="numeric" />
                }
                if *mode == CredentialMode::SecretKey {
                    <label for="secret-key">{"Secret key"}</label>
                    <input id="secret-key" ref={key_ref} type="password" autocomplete="off"
                        placeholder={ if saved.has_secret_key { "saved in your keyring" } else { "" } } />
                    <p class="hint">{"Kept in your system keyring; it never leaves this app's backend."}</p>
                }
                if *mode == CredentialMode::UserSig {
                    <label for="user-sig">{"UserSig"}</label>
                    <textarea id="user-sig" ref={sig_ref} rows="3"
                        placeholder={ if saved.user_sig_expires_at.is_some() { "saved in your keyring" } else { "paste the UserSig your server issued" } } />
                    if !embedded && !crate::browser::in_tauri() {
                        <p class="hint" id="dev-sig-hint">{"Leave it empty to get a demo UserSig from this server, when it runs with --dev-issue-sigs."}</p>
                    }
                }
                <button id="sign-in" class="primary" type="submit" disabled={s.busy}>
                    { if s.busy { "Signing in…" } else { "Sign in" } }
                </button>
            </form>
            if saved.has_secret_key || saved.user_sig_expires_at.is_some() {
                <button class="link" id="forget" onclick={forget}>{"Forget saved credentials"}</button>
            }
        </section>
    }
}

#[component]
pub fn Home() -> Html {
    let ctx = use_ctx();
    let s = &ctx.state;
    let callee_ref = NodeRef::default();
    let onsubmit = {
        let ctx = ctx.clone();
        let callee_ref = callee_ref.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let callee = input_value(&callee_ref).trim().to_owned();
            if callee.is_empty() {
                return;
            }
            let api = ctx.api.clone();
            ctx.run(
                async move { api.start_call(callee).await },
                Action::CallStarted,
            );
        })
    };
    let recall = |peer: String| {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            let api = ctx.api.clone();
            let peer = peer.clone();
            ctx.run(
                async move { api.start_call(peer).await },
                Action::CallStarted,
            );
        })
    };
    let clear = {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            let api = ctx.api.clone();
            ctx.run(async move { api.clear_history().await }, Action::History);
        })
    };
    let now = now_ms();
    html! {
        <section id="home-view">
            <form class="card call-form" onsubmit={onsubmit}>
                <label for="callee">{"Call a user ID"}</label>
                <div class="row">
                    <input id="callee" ref={callee_ref} autofocus=true placeholder="e.g. bob" maxlength="32" autocomplete="off" />
                    <button id="call" class="primary" type="submit" disabled={s.busy || !s.online()}>{"Call"}</button>
                </div>
            </form>
            <div class="card">
                <div class="row spread">
                    <h2>{"Recent calls"}</h2>
                    if !s.history.is_empty() {
                        <button class="link" id="clear-history" onclick={clear}>{"Clear"}</button>
                    }
                </div>
                if s.history.is_empty() {
                    <p class="muted" id="no-history">{"No calls yet."}</p>
                } else {
                    <ul class="history" id="history">
                        { for s.history.iter().take(30).map(|h| {
                            let arrow = match h.direction { Direction::Outgoing => "↗", Direction::Incoming => "↙" };
                            let bad = matches!(h.outcome, CallOutcome::Missed | CallOutcome::Failed | CallOutcome::Declined | CallOutcome::Busy | CallOutcome::NoAnswer | CallOutcome::Offline);
                            html! {
                                <li>
                                    <span class="dir">{ arrow }</span>
                                    <span class="peer">{ h.peer.to_string() }</span>
                                    <span class={classes!("outcome", bad.then_some("bad"))}>
                                        { h.outcome.label() }
                                        { h.duration_ms.map(|d| format!(" · {}", format_duration(d))).unwrap_or_default() }
                                    </span>
                                    <span class="when muted">{ ago(now, h.started_at_ms) }</span>
                                    <button class="link" onclick={recall(h.peer.to_string())} disabled={s.busy || !s.online()} title="Call back">{"Call"}</button>
                                </li>
                            }
                        }) }
                    </ul>
                }
            </div>
        </section>
    }
}

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then) / 1000;
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

#[component]
pub fn Incoming() -> Html {
    let ctx = use_ctx();
    let Some(call) = ctx.state.call.clone() else {
        return html! {};
    };
    let accept = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.accept())
    };
    let decline = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.hang_up_or_decline())
    };
    html! {
        <section class="card call ringing" id="incoming-view">
            <p class="muted">{"Incoming call"}</p>
            <h1 class="peer" id="peer">{ call.peer.to_string() }</h1>
            <p id="call-status">{"is calling you…"}</p>
            <div class="row actions">
                <button id="decline" class="danger" onclick={decline} disabled={ctx.state.busy}>{"Decline"}</button>
                <button id="accept" class="primary" onclick={accept} disabled={ctx.state.busy}>{"Accept"}</button>
            </div>
            <p class="hint">{"Enter to accept · Esc to decline"}</p>
        </section>
    }
}

#[component]
pub fn Outgoing() -> Html {
    let ctx = use_ctx();
    let Some(call) = ctx.state.call.clone() else {
        return html! {};
    };
    let cancel = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.hang_up_or_decline())
    };
    let status = match call.phase {
        CallPhase::Dialing => "Calling…",
        _ => "Ringing…",
    };
    html! {
        <section class="card call" id="outgoing-view">
            <p class="muted">{"Calling"}</p>
            <h1 class="peer" id="peer">{ call.peer.to_string() }</h1>
            <p id="call-status" class="pulse">{ status }</p>
            <div class="row actions">
                <button id="hang-up" class="danger" onclick={cancel}>{"Cancel"}</button>
            </div>
            <p class="hint">{"Esc to cancel"}</p>
        </section>
    }
}

#[component]
pub fn InCall() -> Html {
    let ctx = use_ctx();
    let now = use_state(now_ms);
    {
        let now = now.clone();
        use_effect_with((), move |()| {
            let interval = gloo_timers::callback::Interval::new(500, move || now.set(now_ms()));
            move || drop(interval)
        });
    }
    let Some(call) = ctx.state.call.clone() else {
        return html! {};
    };
    let hang_up = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.hang_up_or_decline())
    };
    let mute = {
        let ctx = ctx.clone();
        let muted = call.muted;
        Callback::from(move |_| {
            let api = ctx.api.clone();
            ctx.run(async move { api.set_muted(!muted).await }, |()| {
                Action::Done
            });
        })
    };
    let timer = match call.connected_at_ms {
        Some(at) => format_duration(now.saturating_sub(at)),
        None => "Connecting…".into(),
    };
    html! {
        <section class="card call connected" id="in-call-view">
            <p class="muted">{ if call.phase == CallPhase::Connected { "In call with" } else { "Answering" } }</p>
            <h1 class="peer" id="peer">{ call.peer.to_string() }</h1>
            <p class="timer" id="timer">{ timer }</p>
            // The call goes on through a lost connection to the server (the audio is direct):
            // the timer keeps running and this says why the status looks different.
            if call.reconnecting {
                <p class="muted pulse" id="call-reconnecting" role="status">{"Reconnecting… the call goes on; the connection to the server was lost."}</p>
            }
            if call.peer_reconnecting {
                <p class="muted pulse" id="peer-reconnecting" role="status">{ format!("{} is reconnecting…", call.peer) }</p>
            }
            if call.remote_muted {
                <p class="muted" id="remote-muted">{ format!("{} muted their microphone", call.peer) }</p>
            }
            <div class="row actions">
                <button id="mute" class={classes!(call.muted.then_some("on"))} onclick={mute} aria-pressed={call.muted.to_string()}>
                    { if call.muted { "Unmute" } else { "Mute" } }
                </button>
                <button id="hang-up" class="danger" onclick={hang_up}>{"Hang up"}</button>
            </div>
            <crate::media::view::InCallMedia />
            <p class="hint">{"Esc to hang up."}</p>
        </section>
    }
}

#[component]
pub fn CallEnded() -> Html {
    let ctx = use_ctx();
    let Some(call) = ctx.state.call.clone() else {
        return html! {};
    };
    let back = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.dispatch(Action::DismissCall))
    };
    let info = call.ended.clone();
    let reason = info.as_ref().and_then(|i| i.reason);
    // A call the media engine had to end (connection lost, peer unreachable) says so.
    let media_end = crate::media::view::media_end();
    html! {
        <section class="card call ended" id="ended-view">
            <p class="muted">{ match call.direction { Direction::Outgoing => "Call to", Direction::Incoming => "Call from" } }</p>
            <h1 class="peer" id="peer">{ call.peer.to_string() }</h1>
            <p id="call-status" class="status">{ media_end.as_ref().map(|m| m.0).unwrap_or(ended_title(reason)) }</p>
            <p class="muted" id="call-message">{ media_end.map(|m| m.1).or(info.map(|i| i.message)).unwrap_or_default() }</p>
            <div class="row actions">
                <button id="dismiss" class="primary" onclick={back} autofocus=true>{"Back"}</button>
            </div>
        </section>
    }
}

/// "stun:host:3478" or "turn:host:3478 user pass", one per line.
fn parse_ice(text: &str) -> Vec<IceServer> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            IceServer {
                urls: parts.next().map(|u| vec![u.to_owned()]).unwrap_or_default(),
                username: parts.next().map(str::to_owned),
                credential: parts.next().map(str::to_owned),
            }
        })
        .collect()
}

fn format_ice(servers: &[IceServer]) -> String {
    servers
        .iter()
        .map(|s| {
            let mut line = s.urls.join(" ");
            if let Some(u) = &s.username {
                line.push(' ');
                line.push_str(u);
            }
            if let Some(c) = &s.credential {
                line.push(' ');
                line.push_str(c);
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[component]
pub fn SettingsView() -> Html {
    let ctx = use_ctx();
    let current = ctx.state.settings.clone().unwrap_or_default();
    let server_ref = NodeRef::default();
    let ice_ref = NodeRef::default();
    let mic_ref = NodeRef::default();
    let spk_ref = NodeRef::default();
    let ring_ref = NodeRef::default();
    let life_ref = NodeRef::default();
    let ca_ref = NodeRef::default();
    let onsubmit = {
        let ctx = ctx.clone();
        let refs = (
            server_ref.clone(),
            ice_ref.clone(),
            mic_ref.clone(),
            spk_ref.clone(),
            ring_ref.clone(),
            life_ref.clone(),
            ca_ref.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let (server, ice, mic, spk, ring, life, ca) = &refs;
            let opt = |v: String| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
            let settings = Settings {
                server_url: opt(input_value(server)),
                ice_servers: parse_ice(&textarea_value(ice)),
                microphone: opt(input_value(mic)),
                speaker: opt(input_value(spk)),
                ring_timeout_secs: input_value(ring).trim().parse().unwrap_or(0),
                usersig_lifetime_secs: input_value(life)
                    .trim()
                    .parse::<u64>()
                    .map(|m| m * 60)
                    .unwrap_or(0),
                // Only the desktop app shows (and uses) it; the browser trusts what the browser trusts.
                ca_file: opt(input_value(ca)),
            };
            let api = ctx.api.clone();
            let d = ctx.state.dispatcher();
            let saved = settings.clone();
            ctx.run(
                async move { api.save_settings(settings).await },
                move |st| {
                    // The media engine uses the new devices and ICE servers from the next call on.
                    if let Some(media) = crate::media::controller::get() {
                        media.set_settings(saved.clone());
                    }
                    d.dispatch(Action::Settings(saved));
                    d.dispatch(Action::Notice(
                        "Settings saved. A new server address applies at the next sign-in.".into(),
                    ));
                    Action::State(st)
                },
            );
        })
    };
    let back = {
        let ctx = ctx.clone();
        Callback::from(move |_| ctx.dispatch(Action::ShowPage(Page::Home)))
    };
    let quit = {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            let api = ctx.api.clone();
            ctx.run(async move { api.quit_app().await }, |()| Action::Done);
        })
    };
    use_initial_values(
        (),
        vec![
            (
                server_ref.clone(),
                current.server_url.clone().unwrap_or_default(),
            ),
            (ice_ref.clone(), format_ice(&current.ice_servers)),
            (
                mic_ref.clone(),
                current.microphone.clone().unwrap_or_default(),
            ),
            (spk_ref.clone(), current.speaker.clone().unwrap_or_default()),
            (ring_ref.clone(), current.ring_timeout_secs.to_string()),
            (
                life_ref.clone(),
                (current.minted_sig_lifetime_secs() / 60).to_string(),
            ),
            (ca_ref.clone(), current.ca_file.clone().unwrap_or_default()),
        ],
    );
    html! {
        <section class="card" id="settings-view">
            <h1>{"Settings"}</h1>
            <form class="form" onsubmit={onsubmit}>
                <label for="server-url">{"Server address"}</label>
                <input id="server-url" ref={server_ref} placeholder="empty: the built-in local server" />
                <p class="hint">{"wss:// address of a shared tincan-server, e.g. wss://calls.example.com/ws (ws:// only to this machine)"}</p>
                if crate::browser::in_tauri() {
                    <label for="ca-file">{"CA certificate file (optional)"}</label>
                    <input id="ca-file" ref={ca_ref} placeholder="none: the system's trusted CAs" />
                    <p class="hint">{"A PEM file, for a server whose certificate comes from your own CA. Applies at the next sign-in."}</p>
                }
                <label for="ice-servers">{"ICE servers (STUN / TURN)"}</label>
                <textarea id="ice-servers" ref={ice_ref} rows="3"
                    placeholder="one per line: turn:turn.example.com:3478 username password" />
                <label for="microphone">{"Microphone"}</label>
                <input id="microphone" ref={mic_ref} placeholder="system default" list="microphone-devices" />
                <label for="speaker">{"Speaker"}</label>
                <input id="speaker" ref={spk_ref} placeholder="system default" list="speaker-devices" />
                <crate::media::view::DeviceLists />
                <label for="ring-timeout">{"Ring for (seconds)"}</label>
                <input id="ring-timeout" ref={ring_ref} type="number" min="1" max="120" />
                <label for="usersig-lifetime">{"Sign-in lifetime with a secret key (minutes)"}</label>
                <input id="usersig-lifetime" ref={life_ref} type="number" min="1" max="60" />
                <p class="hint">{"A new sign-in is made at every connection, so a few minutes is plenty (1 to 60)."}</p>
                <crate::media::view::AudioSettings />
                <div class="row actions">
                    <button id="back" type="button" onclick={back}>{"Back"}</button>
                    <button id="save-settings" class="primary" type="submit" disabled={ctx.state.busy}>{"Save"}</button>
                </div>
            </form>
            if crate::browser::in_tauri() {
                <div class="row spread quit">
                    <p class="hint">{"Closing the window keeps tincan in the tray, so calls still reach you."}</p>
                    <button id="quit" class="link" onclick={quit}>{"Quit tincan"}</button>
                </div>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_lines_round_trip() {
        let text = "stun:stun.example.com:3478\nturn:t.example.com:3478 user pass";
        let servers = parse_ice(text);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].username.as_deref(), Some("user"));
        assert_eq!(format_ice(&servers), text);
        assert!(parse_ice("\n  \n").is_empty());
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(ago(120_000, 0), "2 min ago");
        assert_eq!(ago(1000, 0), "just now");
    }
}
