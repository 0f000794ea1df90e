//! The context every view gets: the UI state and the backend. Its own module so the arrows run one
//! way: [`crate::app`] provides it, [`crate::views`] read it, and neither imports the other for it.

use crate::backend::Api;
use crate::state::{Action, Screen, UiState};
use std::future::Future;
use tincan_ipc::IpcError;
use yew::prelude::*;

/// What every view gets.
#[derive(Clone, PartialEq)]
pub struct Ctx {
    pub state: UseReducerHandle<UiState>,
    pub api: Api,
}

impl Ctx {
    /// Runs a backend command: marks the UI busy, then turns the result into an action.
    pub fn run<T: 'static>(
        &self,
        fut: impl Future<Output = Result<T, IpcError>> + 'static,
        on_ok: impl FnOnce(T) -> Action + 'static,
    ) {
        let d = self.state.dispatcher();
        d.dispatch(Action::Busy);
        wasm_bindgen_futures::spawn_local(async move {
            match fut.await {
                Ok(v) => d.dispatch(on_ok(v)),
                Err(e) => d.dispatch(Action::Failed(e)),
            }
        });
    }

    pub fn dispatch(&self, a: Action) {
        self.state.dispatch(a);
    }

    pub fn hang_up_or_decline(&self) {
        let Some(call) = self.state.call.clone() else {
            return;
        };
        let api = self.api.clone();
        match self.state.screen() {
            Screen::Incoming => self.run(async move { api.reject(call.call_id).await }, |()| {
                Action::Done
            }),
            Screen::Outgoing | Screen::InCall => self
                .run(async move { api.hang_up(call.call_id).await }, |()| {
                    Action::Done
                }),
            Screen::CallEnded => self.dispatch(Action::DismissCall),
            _ => {}
        }
    }

    pub fn accept(&self) {
        if let Some(call) = self.state.call.clone() {
            let api = self.api.clone();
            self.run(async move { api.accept(call.call_id).await }, |()| {
                Action::Done
            });
        }
    }
}

/// The context, inside any view under [`crate::app::App`].
#[hook]
pub fn use_ctx() -> Ctx {
    use_context::<Ctx>().unwrap_or_else(|| unreachable!("App provides the context"))
}
