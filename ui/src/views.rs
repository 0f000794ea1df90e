//! The views. Each reads the shared [`crate::ctx::Ctx`] and calls the backend only through `ctx.api`.

use crate::ctx::{use_ctx, Ctx};
use crate::state::{ended_title, format_duration, Action, Page};
use tincan_ipc::{
    cmd, CallOutcome, CallPhase, ConnectionState, CredentialMode, Direction, IceServer, ServerInfo,
    Settings, SignInCredentials, Startup, StartupArgs,
};
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

/// The built-in local server's SDKAppID (`EMBEDDED_SDK_APP_ID` in src-tauri/src/embedded.rs), shown
/// when someone picks a secret-key or UserSig sign-in with no server address set.
pub const EMBEDDED_SDK_APP_ID: u64 = 1_400_000_001;

/// An example user ID for a placeholder that is not `own` (nobody is told "e.g. bob" as bob).
fn example_id(own: Option<&str>) -> &'static str {
    if own == Some("bob") {
        "alice"
    } else {
        "bob"
    }
}

/// A sign-in refused for its credentials: the backend removes saved ones the server refused.
pub fn rejected_saved(e: &tincan_ipc::IpcError) -> bool {
    matches!(
        e.code,
        tincan_ipc::ErrorCode::UserSigInvalid | tincan_ipc::ErrorCode::UserSigExpired
    )
}

/// Changes "sign in automatically" / "start at login" and keeps the answer in the state.
pub fn set_startup(ctx: &Ctx, args: StartupArgs) {
    let api = ctx.api.clone();
    ctx.run(
        async move {
            api.invoke_typed::<Startup, _>(cmd::SET_STARTUP, Some(&args))
                .await
        },
        Action::Startup,
    );
}

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
            // The profile's name, unless it is the signed-in user's (no "bob bob" in the header).
            if s.profile != "default" && !s.profile.is_empty()
                && s.user.as_ref().map(|u| u.as_str()) != Some(s.profile.as_str()) {
                <span class="profile" id="profile">{ &s.profile }</span>
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
    let show_sig = use_state(|| false);
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
                    user_sig: some(input_value(&sig_ref)),
                },
            };
            // Clear the secret from the page as soon as it is handed over.
            if let Some(k) = key_ref.cast::<HtmlInputElement>() {
                k.set_value("");
            }
            let api = ctx.api.clone();
            let d = ctx.state.dispatcher();
            ctx.run(
                async move {
                    let r = api.sign_in(user, creds).await;
                    if r.is_ok() {
                        // A refusal of an earlier attempt no longer applies.
                        d.dispatch(Action::DismissError);
                    }
                    if r.as_ref().is_err_and(rejected_saved) {
                        // The backend dropped the refused credentials from the keyring: stop
                        // offering them as saved.
                        if let Ok(st) = api.get_state().await {
                            d.dispatch(Action::Saved(st.saved));
                        }
                    }
                    r
                },
                Action::State,
            );
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
    let toggle_sig = {
        let show_sig = show_sig.clone();
        Callback::from(move |_| show_sig.set(!*show_sig))
    };
    // Your own ID: the profile's name is the likeliest example ("bob" in bob's window).
    let user_placeholder = match s.profile.as_str() {
        "" | "default" => "e.g. alice".to_owned(),
        p => format!("e.g. {p}"),
    };
    html! {
        <section class="card" id="sign-in-view">
            <h1>{"Sign in"}</h1>
            <p class="muted">{ format!("Server: {server}") }</p>
            <form onsubmit={onsubmit} class="form">
                <label for="user-id">{"Your user ID"}</label>
                // No maxlength: a pasted ID that is too long is refused in words, not cut and used.
                <input id="user-id" ref={user_ref} autofocus=true autocomplete="username"
                    placeholder={user_placeholder} />
                <label for="mode">{"Credentials"}</label>
                <select id="mode" onchange={on_mode}>
                    <option value="embedded" selected={*mode == CredentialMode::Embedded} disabled={!embedded}>{"Local server (no setup)"}</option>
                    <option value="secret_key" selected={*mode == CredentialMode::SecretKey}>{"SDKAppID + secret key"}</option>
                    <option value="user_sig" selected={*mode == CredentialMode::UserSig}>{"UserSig from your server"}</option>
                </select>
                if *mode != CredentialMode::Embedded {
                    <label for="sdk-app-id">{"SDKAppID"}</label>
                    <input id="sdk-app-id" ref={sdk_ref} inputmode="numeric" />
                    if embedded {
                        <p class="hint" id="embedded-sdk-hint">{ format!(
                            "No server address is set, so tincan uses its built-in local server \
                             (SDKAppID {EMBEDDED_SDK_APP_ID}), which needs no secret key or UserSig: \
                             choose “Local server”, or set your server's address in Settings first."
                        ) }</p>
                    }
                }
                if *mode == CredentialMode::SecretKey {
                    <label for="secret-key">{"Secret key"}</label>
                    <input id="secret-key" ref={key_ref} type="password" autocomplete="off"
                        placeholder={ if saved.has_secret_key { "saved in your keyring" } else { "" } } />
                    <p class="hint">{"Kept in your system keyring; it never leaves this app's backend."}</p>
                }
                if *mode == CredentialMode::UserSig {
                    <label for="user-sig">{"UserSig"}</label>
                    // Masked like a password (it is one for as long as it lives), with a toggle.
                    <div class="row">
                        <input id="user-sig" ref={sig_ref} type={ if *show_sig { "text" } else { "password" } }
                            autocomplete="off" spellcheck="false"
                            placeholder={ if saved.user_sig_expires_at.is_some() { "saved in your keyring" } else { "paste the UserSig your server issued" } } />
                        <button type="button" id="show-user-sig" class="link nowrap" onclick={toggle_sig}
                            aria-pressed={show_sig.to_string()}>{ if *show_sig { "Hide" } else { "Show" } }</button>
                    </div>
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
    let callee_ref = use_node_ref();
    // Call stays disabled until there is an ID to call.
    let has_callee = use_state(|| false);
    // "N min ago" moves on while the window stays open.
    let now = use_state(now_ms);
    {
        let now = now.clone();
        use_effect_with((), move |()| {
            let interval = gloo_timers::callback::Interval::new(20_000, move || now.set(now_ms()));
            move || drop(interval)
        });
    }
    let on_callee_input = {
        let ctx = ctx.clone();
        let has_callee = has_callee.clone();
        Callback::from(move |e: InputEvent| {
            let v = e
                .target_dyn_into::<HtmlInputElement>()
                .map(|i| i.value())
                .unwrap_or_default();
            has_callee.set(!v.trim().is_empty());
            if ctx.state.error.is_some() {
                ctx.dispatch(Action::CalleeEdited);
            }
        })
    };
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
    let now = *now;
    let placeholder = format!("e.g. {}", example_id(s.user.as_ref().map(|u| u.as_str())));
    let ask_autostart =
        crate::browser::in_tauri() && s.startup.is_some_and(|st| !st.start_at_login_asked);
    let answer = |yes: bool| {
        let ctx = ctx.clone();
        Callback::from(move |_| {
            set_startup(
                &ctx,
                StartupArgs {
                    start_at_login: Some(yes),
                    ..StartupArgs::default()
                },
            )
        })
    };
    html! {
        <section id="home-view">
            // Asked once, after the first sign-in; not modal: calls work while it is unanswered.
            if ask_autostart {
                <div class="card prompt" id="autostart-prompt" role="status">
                    <p>{"Start tincan when you log in, so calls reach you without opening it first?"}</p>
                    <div class="row">
                        <button id="autostart-yes" class="primary" onclick={answer(true)} disabled={s.busy}>{"Start at login"}</button>
                        <button id="autostart-no" onclick={answer(false)} disabled={s.busy}>{"Not now"}</button>
                    </div>
                    <p class="hint">{"You can change this in Settings."}</p>
                </div>
            }
            <form class="card call-form" onsubmit={onsubmit}>
                <label for="callee">{"Call a user ID"}</label>
                <div class="row">
                    // No maxlength: a pasted ID that is too long is refused in words, not cut and called.
                    <input id="callee" ref={callee_ref} autofocus=true placeholder={placeholder}
                        autocomplete="off" oninput={on_callee_input} />
                    <button id="call" class="primary" type="submit"
                        disabled={s.busy || !s.online() || !*has_callee}>{"Call"}</button>
                </div>
                if !*has_callee && s.online() {
                    <p class="hint" id="callee-hint">{"Type the user ID of the person to call."}</p>
                }
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
    let title = media_end
        .as_ref()
        .map(|m| m.0)
        .unwrap_or(ended_title(reason));
    let message = media_end
        .map(|m| m.1)
        .or(info.map(|i| i.message))
        .unwrap_or_default();
    // "No answer" / "No answer." is said once.
    let message = if same_words(title, &message) {
        String::new()
    } else {
        message
    };
    html! {
        <section class="card call ended" id="ended-view">
            <p class="muted">{ match call.direction { Direction::Outgoing => "Call to", Direction::Incoming => "Call from" } }</p>
            <h1 class="peer" id="peer">{ call.peer.to_string() }</h1>
            <p id="call-status" class="status">{ title }</p>
            if !message.is_empty() {
                <p class="muted" id="call-message">{ message }</p>
            }
            <div class="row actions">
                <button id="dismiss" class="primary" onclick={back} autofocus=true>{"Back"}</button>
            </div>
        </section>
    }
}

/// Whether two texts say the same, ignoring case and end punctuation ("No answer" / "No answer.").
fn same_words(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches(['.', '!']).trim().to_lowercase();
    norm(a) == norm(b)
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

/// The Settings form's fields.
#[derive(Clone, Default)]
struct SettingsRefs {
    server: NodeRef,
    ice: NodeRef,
    relay_only: NodeRef,
    ring: NodeRef,
    life: NodeRef,
    ca: NodeRef,
}

impl SettingsRefs {
    /// The settings the form shows now. Fields the form has no control for keep `base`'s values.
    // `..base` keeps any setting added later without a field here (clippy sees none today).
    #[allow(clippy::needless_update)]
    fn read(&self, base: &Settings, mic: Option<String>, spk: Option<String>) -> Settings {
        let opt = |v: String| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        Settings {
            server_url: opt(input_value(&self.server)),
            ice_servers: parse_ice(&textarea_value(&self.ice)),
            relay_only: self
                .relay_only
                .cast::<HtmlInputElement>()
                .map_or(base.relay_only, |i| i.checked()),
            microphone: mic,
            speaker: spk,
            ring_timeout_secs: input_value(&self.ring).trim().parse().unwrap_or(0),
            usersig_lifetime_secs: input_value(&self.life)
                .trim()
                .parse::<u64>()
                .map(|m| m * 60)
                .unwrap_or(0),
            // Only the desktop app shows (and uses) it; the browser trusts what the browser trusts.
            ca_file: if crate::browser::in_tauri() {
                opt(input_value(&self.ca))
            } else {
                base.ca_file.clone()
            },
            ..base.clone()
        }
    }
}

#[component]
pub fn SettingsView() -> Html {
    let ctx = use_ctx();
    let current = ctx.state.settings.clone().unwrap_or_default();
    let refs = use_memo((), |()| SettingsRefs::default());
    // The devices chosen in the menus (None: the system default).
    let devices = {
        let current = current.clone();
        use_mut_ref(move || (current.microphone.clone(), current.speaker.clone()))
    };
    let redraw = use_force_update();
    // What the form showed when it opened (or was last saved): "unsaved" means different from it.
    let baseline = use_mut_ref(|| None::<Settings>);
    let check_dirty = {
        let (ctx, refs, devices, baseline, current) = (
            ctx.clone(),
            refs.clone(),
            devices.clone(),
            baseline.clone(),
            current.clone(),
        );
        Callback::from(move |()| {
            let (mic, spk) = devices.borrow().clone();
            let now = refs.read(&current, mic, spk);
            let dirty = baseline.borrow().as_ref().is_some_and(|b| *b != now);
            if dirty != ctx.state.settings_dirty {
                ctx.dispatch(Action::SettingsDirty(dirty));
            }
        })
    };
    let on_field = {
        let check_dirty = check_dirty.clone();
        Callback::from(move |_: InputEvent| check_dirty.emit(()))
    };
    let on_device = |input: bool| {
        let (devices, check_dirty, redraw) = (devices.clone(), check_dirty.clone(), redraw.clone());
        Callback::from(move |id: Option<String>| {
            {
                let mut d = devices.borrow_mut();
                if input {
                    d.0 = id;
                } else {
                    d.1 = id;
                }
            }
            redraw.force_update();
            check_dirty.emit(());
        })
    };
    let onsubmit = {
        let (ctx, refs, devices, baseline, current) = (
            ctx.clone(),
            refs.clone(),
            devices.clone(),
            baseline.clone(),
            current.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let (mic, spk) = devices.borrow().clone();
            let settings = refs.read(&current, mic, spk);
            let api = ctx.api.clone();
            let d = ctx.state.dispatcher();
            let saved = settings.clone();
            let baseline = baseline.clone();
            ctx.run(
                async move { api.save_settings(settings).await },
                move |st| {
                    // The media engine uses the new devices and ICE servers from the next call on.
                    if let Some(media) = crate::media::controller::get() {
                        media.set_settings(saved.clone());
                    }
                    // What the form shows now is what is saved.
                    *baseline.borrow_mut() = Some(saved.clone());
                    d.dispatch(Action::Settings(saved));
                    d.dispatch(Action::SettingsDirty(false));
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
        Callback::from(move |_| ctx.dispatch(Action::LeaveSettings))
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
                refs.server.clone(),
                current.server_url.clone().unwrap_or_default(),
            ),
            (refs.ice.clone(), format_ice(&current.ice_servers)),
            (refs.ring.clone(), current.ring_timeout_secs.to_string()),
            (
                refs.life.clone(),
                (current.minted_sig_lifetime_secs() / 60).to_string(),
            ),
            (refs.ca.clone(), current.ca_file.clone().unwrap_or_default()),
        ],
    );
    {
        // After the initial values are in (effects run in order): the form as opened.
        let (refs, devices, baseline, current) = (
            refs.clone(),
            devices.clone(),
            baseline.clone(),
            current.clone(),
        );
        use_effect_with((), move |()| {
            let (mic, spk) = devices.borrow().clone();
            *baseline.borrow_mut() = Some(refs.read(&current, mic, spk));
        });
    }
    let (mic, spk) = devices.borrow().clone();
    let startup = ctx.state.startup.filter(|_| crate::browser::in_tauri());
    let toggle_startup = |f: fn(&mut StartupArgs, bool)| {
        let ctx = ctx.clone();
        Callback::from(move |e: Event| {
            let on = e
                .target_dyn_into::<HtmlInputElement>()
                .map(|i| i.checked())
                .unwrap_or(false);
            let mut args = StartupArgs::default();
            f(&mut args, on);
            set_startup(&ctx, args);
        })
    };
    html! {
        <section class="card" id="settings-view">
            <h1>{"Settings"}</h1>
            <form class="form" onsubmit={onsubmit} oninput={on_field}>
                <label for="server-url">{"Server address"}</label>
                <input id="server-url" ref={refs.server.clone()} placeholder="empty: the built-in local server" />
                <p class="hint">{"wss:// address of a shared tincan-server, e.g. wss://calls.example.com/ws (ws:// only to this machine)"}</p>
                if crate::browser::in_tauri() {
                    <label for="ca-file">{"CA certificate file (optional)"}</label>
                    <input id="ca-file" ref={refs.ca.clone()} placeholder="none: the system's trusted CAs" />
                    <p class="hint">{"A PEM file, for a server whose certificate comes from your own CA. Applies at the next sign-in."}</p>
                }
                <label for="ice-servers">{"ICE servers (STUN / TURN)"}</label>
                <textarea id="ice-servers" ref={refs.ice.clone()} rows="3"
                    placeholder="one per line: turn:turn.example.com:3478 username password" />
                <label class="check"><input type="checkbox" id="relay-only" ref={refs.relay_only.clone()}
                    checked={current.relay_only} />{" Relay only (hide my IP address)"}</label>
                <p class="hint" id="relay-only-hint">{"Hides your IP address from the person you call; calls go through the relay server and may sound slightly later. Needs a TURN server (from your tincan server or listed above)."}</p>
                <label for="microphone">{"Microphone"}</label>
                <crate::media::view::DeviceSelect id="microphone" input=true current={mic} onchange={on_device(true)} />
                <label for="speaker">{"Speaker"}</label>
                <crate::media::view::DeviceSelect id="speaker" input=false current={spk} onchange={on_device(false)} />
                <label for="ring-timeout">{"Ring for (seconds)"}</label>
                <input id="ring-timeout" ref={refs.ring.clone()} type="number" min="1" max="120" />
                <label for="usersig-lifetime">{"Sign-in lifetime with a secret key (minutes)"}</label>
                <input id="usersig-lifetime" ref={refs.life.clone()} type="number" min="1" max="60" />
                <p class="hint">{"A new sign-in is made at every connection, so a few minutes is plenty (1 to 60)."}</p>
                <crate::media::view::AudioSettings />
                <div class="row actions settings-actions">
                    <button id="back" type="button" onclick={back}>{"Back"}</button>
                    <button id="save-settings" class="primary" type="submit" disabled={ctx.state.busy}>{"Save"}</button>
                </div>
            </form>
            // Applied at once (not with Save): each is a question to the OS or the app's startup.
            if let Some(st) = startup {
                <fieldset class="checks" id="startup">
                    <legend>{"Startup"}</legend>
                    <label><input type="checkbox" id="sign-in-automatically" checked={st.sign_in_automatically}
                        disabled={ctx.state.busy}
                        onchange={toggle_startup(|a, on| a.sign_in_automatically = Some(on))} />
                        {" Sign in automatically when tincan starts"}</label>
                    <label><input type="checkbox" id="start-at-login" checked={st.start_at_login}
                        disabled={ctx.state.busy}
                        onchange={toggle_startup(|a, on| a.start_at_login = Some(on))} />
                        {" Start tincan when I log in"}</label>
                </fieldset>
            }
            if crate::browser::in_tauri() {
                <div class="quit" id="quit-row">
                    <button id="quit" type="button" class="nowrap" onclick={quit}>{"Quit tincan"}</button>
                    <p class="hint">{"Closing the window keeps tincan in the tray, so calls still reach you."}</p>
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
    fn ended_message_is_not_the_title_again() {
        assert!(same_words("No answer", "No answer."));
        assert!(!same_words("Declined", "The call was declined."));
    }

    #[test]
    fn placeholders_never_suggest_your_own_id() {
        assert_eq!(example_id(Some("bob")), "alice");
        assert_eq!(example_id(Some("alice")), "bob");
        assert_eq!(example_id(None), "bob");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(ago(120_000, 0), "2 min ago");
        assert_eq!(ago(1000, 0), "just now");
    }
}
