//! The root component: holds the state, talks to the backend through [`Api`], routes to a view, and
//! handles the keyboard (Esc declines / cancels / hangs up / goes back, Enter accepts a ringing call).

use crate::ctx::Ctx;
use crate::state::{Action, Screen, UiState};
use crate::views;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use yew::prelude::*;

#[component]
pub fn App() -> Html {
    let state = use_reducer(UiState::default);
    let api = use_memo((), |()| {
        let api = crate::browser::select_api();
        crate::media::controller::install(&api);
        api
    });
    let ctx = Ctx {
        state: state.clone(),
        api: (*api).clone(),
    };

    // Subscribe first, then load, so no event between the two is lost.
    {
        let ctx = ctx.clone();
        use_effect_with((), move |()| {
            wasm_bindgen_futures::spawn_local(async move {
                let d = ctx.state.dispatcher();
                let on_event: Rc<dyn Fn(tincan_ipc::AppEvent)> = {
                    let (d, api) = (d.clone(), ctx.api.clone());
                    Rc::new(move |ev| {
                        // The sign-in at launch was refused and the backend dropped the saved
                        // credentials: read what is saved again.
                        if let tincan_ipc::AppEvent::Error { error } = &ev {
                            if views::rejected_saved(error) {
                                let (d, api) = (d.clone(), api.clone());
                                wasm_bindgen_futures::spawn_local(async move {
                                    if let Ok(st) = api.get_state().await {
                                        d.dispatch(Action::Saved(st.saved));
                                    }
                                });
                            }
                        }
                        d.dispatch(Action::Event(ev))
                    })
                };
                if let Err(e) = ctx.api.subscribe(on_event).await {
                    d.dispatch(Action::Failed(e));
                }
                match ctx.api.get_state().await {
                    Ok(s) => d.dispatch(Action::State(s)),
                    Err(e) => {
                        d.dispatch(Action::Failed(e));
                    }
                }
                if let Ok(h) = ctx.api.get_history().await {
                    d.dispatch(Action::History(h));
                }
                if let Ok(s) = ctx.api.get_settings().await {
                    d.dispatch(Action::Settings(s));
                }
                // Sign in at launch / start at login exist in the desktop app only.
                if crate::browser::in_tauri() {
                    let startup = ctx
                        .api
                        .invoke_typed::<tincan_ipc::Startup, ()>(tincan_ipc::cmd::GET_STARTUP, None)
                        .await;
                    if let Ok(s) = startup {
                        d.dispatch(Action::Startup(s));
                    }
                }
            });
        });
    }

    // Keyboard shortcuts, re-bound with the current state.
    {
        let ctx = ctx.clone();
        use_effect_with(state.clone(), move |_| {
            let document = web_sys::window().and_then(|w| w.document());
            let listener = document.map(|doc| {
                gloo_events::EventListener::new(&doc, "keydown", move |e| {
                    let Some(e) = e.dyn_ref::<web_sys::KeyboardEvent>() else {
                        return;
                    };
                    match (e.key().as_str(), ctx.state.screen()) {
                        ("Escape", Screen::Settings) => ctx.dispatch(Action::EscapeSettings),
                        ("Escape", Screen::Home) => ctx.dispatch(Action::DismissError),
                        ("Escape", _) => ctx.hang_up_or_decline(),
                        ("Enter", Screen::Incoming) => {
                            e.prevent_default();
                            ctx.accept();
                        }
                        ("Enter", Screen::CallEnded) => {
                            e.prevent_default();
                            ctx.dispatch(Action::DismissCall);
                        }
                        _ => {}
                    }
                })
            });
            move || drop(listener)
        });
    }

    let screen = state.screen();
    let body = match screen {
        Screen::Loading => html! { <div class="center muted" id="loading">{"Starting…"}</div> },
        Screen::SignIn => html! { <views::SignIn /> },
        Screen::Home => html! { <views::Home /> },
        Screen::Settings => html! { <views::SettingsView /> },
        Screen::Incoming => html! { <views::Incoming /> },
        Screen::Outgoing => html! { <views::Outgoing /> },
        Screen::InCall => html! { <views::InCall /> },
        Screen::CallEnded => html! { <views::CallEnded /> },
    };
    html! {
        <ContextProvider<Ctx> context={ctx}>
            <div class="app" data-screen={format!("{screen:?}").to_lowercase()}>
                <views::Header />
                // Kept in view (sticky) so a message about a button low on a long page, such as
                // Save in Settings, is seen without scrolling.
                <div class="banners">
                    <views::ErrorBanner />
                    <crate::media::view::MediaBanner />
                </div>
                <main>{ body }</main>
            </div>
        </ContextProvider<Ctx>>
    }
}
