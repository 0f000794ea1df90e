//! The root component: holds the state, talks to the backend through [`Api`], routes to a view, and
//! handles the keyboard (Esc declines / cancels / hangs up / goes back, Enter accepts a ringing call).

use crate::ctx::Ctx;
use crate::state::{Action, Page, Screen, UiState};
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
                    let d = d.clone();
                    Rc::new(move |ev| d.dispatch(Action::Event(ev)))
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
                        ("Escape", Screen::Settings) => ctx.dispatch(Action::ShowPage(Page::Home)),
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
                <views::ErrorBanner />
                <crate::media::view::MediaBanner />
                <main>{ body }</main>
            </div>
        </ContextProvider<Ctx>>
    }
}
