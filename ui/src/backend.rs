//! The one door to the backend. Views call the typed methods of [`Api`]; how a command travels is a
//! [`Transport`]: [`TauriTransport`] (Tauri IPC `invoke` + `listen`) today, a direct-WebSocket
//! transport for the browser build later. No other module touches `window.__TAURI__`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use tincan_ipc::{
    cmd, AppEvent, AppState, CallArgs, CallView, ErrorCode, HistoryEntry, IpcError, MediaSignal,
    MuteArgs, SavedCredentials, Settings, SignInArgs, SignInCredentials, SignalArgs, StartCallArgs,
};
use tincan_proto::CallId;
use wasm_bindgen::prelude::*;

pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// How commands reach the backend and events come back.
pub trait Transport {
    /// Runs command `name` with `args` (a JSON object of named arguments).
    fn invoke(
        &self,
        name: &'static str,
        args: serde_json::Value,
    ) -> LocalFuture<Result<serde_json::Value, IpcError>>;
    /// Calls `on_event` for every backend event, from now on.
    fn subscribe(&self, on_event: Rc<dyn Fn(AppEvent)>) -> LocalFuture<Result<(), IpcError>>;
}

/// The typed commands.
#[derive(Clone)]
pub struct Api {
    transport: Rc<dyn Transport>,
}

impl PartialEq for Api {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.transport, &other.transport)
    }
}

fn decode<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, IpcError> {
    serde_json::from_value(v).map_err(|e| {
        IpcError::new(
            ErrorCode::Internal,
            format!("The app's backend answered something unexpected: {e}"),
        )
    })
}

fn encode<T: Serialize>(v: &T) -> Result<serde_json::Value, IpcError> {
    serde_json::to_value(v).map_err(|e| IpcError::new(ErrorCode::Internal, e.to_string()))
}

impl Api {
    pub fn new(transport: Rc<dyn Transport>) -> Self {
        Self { transport }
    }

    /// The Tauri transport.
    pub fn tauri() -> Self {
        Self::new(Rc::new(TauriTransport))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        name: &'static str,
        args: serde_json::Value,
    ) -> Result<T, IpcError> {
        decode(self.transport.invoke(name, args).await?)
    }

    /// A command whose arguments travel as `args` (the native media engine's commands).
    pub async fn invoke_typed<T: DeserializeOwned, A: Serialize>(
        &self,
        name: &'static str,
        args: Option<&A>,
    ) -> Result<T, IpcError> {
        let payload = match args {
            Some(a) => serde_json::json!({ "args": encode(a)? }),
            None => serde_json::json!({}),
        };
        let value = self.transport.invoke(name, payload).await?;
        // Commands returning `()` answer `null`.
        decode(value)
    }

    pub async fn subscribe(&self, on_event: Rc<dyn Fn(AppEvent)>) -> Result<(), IpcError> {
        self.transport.subscribe(on_event).await
    }

    pub async fn get_state(&self) -> Result<AppState, IpcError> {
        self.call(cmd::GET_STATE, serde_json::json!({})).await
    }
    pub async fn sign_in(
        &self,
        user_id: String,
        credentials: SignInCredentials,
    ) -> Result<AppState, IpcError> {
        let args = encode(&SignInArgs {
            user_id,
            credentials,
        })?;
        self.call(cmd::SIGN_IN, serde_json::json!({ "args": args }))
            .await
    }
    pub async fn sign_out(&self) -> Result<AppState, IpcError> {
        self.call(cmd::SIGN_OUT, serde_json::json!({})).await
    }
    pub async fn forget_credentials(&self) -> Result<SavedCredentials, IpcError> {
        self.call(cmd::FORGET_CREDENTIALS, serde_json::json!({}))
            .await
    }
    pub async fn start_call(&self, callee: String) -> Result<CallView, IpcError> {
        let args = encode(&StartCallArgs { callee })?;
        self.call(cmd::START_CALL, serde_json::json!({ "args": args }))
            .await
    }
    async fn call_cmd(&self, name: &'static str, call_id: CallId) -> Result<(), IpcError> {
        let args = encode(&CallArgs { call_id })?;
        self.call(name, serde_json::json!({ "args": args })).await
    }
    pub async fn accept(&self, call_id: CallId) -> Result<(), IpcError> {
        self.call_cmd(cmd::ACCEPT_CALL, call_id).await
    }
    pub async fn reject(&self, call_id: CallId) -> Result<(), IpcError> {
        self.call_cmd(cmd::REJECT_CALL, call_id).await
    }
    pub async fn hang_up(&self, call_id: CallId) -> Result<(), IpcError> {
        self.call_cmd(cmd::HANG_UP, call_id).await
    }
    pub async fn set_muted(&self, muted: bool) -> Result<(), IpcError> {
        let args = encode(&MuteArgs { muted })?;
        self.call(cmd::SET_MUTED, serde_json::json!({ "args": args }))
            .await
    }
    /// Relays WebRTC negotiation to the other party of `call_id`.
    pub async fn send_signal(&self, call_id: CallId, signal: MediaSignal) -> Result<(), IpcError> {
        let args = encode(&SignalArgs { call_id, signal })?;
        self.call(cmd::SEND_SIGNAL, serde_json::json!({ "args": args }))
            .await
    }
    pub async fn get_settings(&self) -> Result<Settings, IpcError> {
        self.call(cmd::GET_SETTINGS, serde_json::json!({})).await
    }
    pub async fn save_settings(&self, settings: Settings) -> Result<AppState, IpcError> {
        let s = encode(&settings)?;
        self.call(cmd::SAVE_SETTINGS, serde_json::json!({ "settings": s }))
            .await
    }
    pub async fn get_history(&self) -> Result<Vec<HistoryEntry>, IpcError> {
        self.call(cmd::GET_HISTORY, serde_json::json!({})).await
    }
    pub async fn clear_history(&self) -> Result<Vec<HistoryEntry>, IpcError> {
        self.call(cmd::CLEAR_HISTORY, serde_json::json!({})).await
    }
    pub async fn quit_app(&self) -> Result<(), IpcError> {
        self.call(cmd::QUIT_APP, serde_json::json!({})).await
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = ["window", "__TAURI__", "core"], js_name = invoke)]
    async fn tauri_invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["window", "__TAURI__", "event"], js_name = listen)]
    async fn tauri_listen(
        event: &str,
        handler: &Closure<dyn FnMut(JsValue)>,
    ) -> Result<JsValue, JsValue>;
}

/// JSON across the JS boundary: exact for every serde shape (no number / map surprises).
fn to_js(v: &serde_json::Value) -> Result<JsValue, IpcError> {
    js_sys::JSON::parse(&v.to_string())
        .map_err(|_| IpcError::new(ErrorCode::Internal, "could not pass arguments"))
}

fn from_js(v: &JsValue) -> serde_json::Value {
    if v.is_undefined() || v.is_null() {
        return serde_json::Value::Null;
    }
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn unavailable(detail: &JsValue) -> IpcError {
    IpcError::new(
        ErrorCode::Internal,
        format!(
            "The app's backend is not reachable ({}). Start tincan with `cargo tauri dev`, not in a plain browser.",
            js_sys::JSON::stringify(detail)
                .ok()
                .and_then(|s| s.as_string())
                .unwrap_or_default()
        ),
    )
}

/// Tauri IPC: `window.__TAURI__.core.invoke` and `window.__TAURI__.event.listen`.
pub struct TauriTransport;

impl Transport for TauriTransport {
    fn invoke(
        &self,
        name: &'static str,
        args: serde_json::Value,
    ) -> LocalFuture<Result<serde_json::Value, IpcError>> {
        Box::pin(async move {
            let js_args = to_js(&args)?;
            match tauri_invoke(name, js_args).await {
                Ok(v) => Ok(from_js(&v)),
                Err(e) => {
                    // Our commands reject with `{code, message}`; anything else is Tauri's own
                    // failure (a string) or a missing bridge (a TypeError).
                    let value = from_js(&e);
                    match serde_json::from_value::<IpcError>(value.clone()) {
                        Ok(err) => Err(err),
                        Err(_) => match value {
                            serde_json::Value::String(s) => {
                                Err(IpcError::new(ErrorCode::Internal, s))
                            }
                            _ => Err(unavailable(&e)),
                        },
                    }
                }
            }
        })
    }

    fn subscribe(&self, on_event: Rc<dyn Fn(AppEvent)>) -> LocalFuture<Result<(), IpcError>> {
        Box::pin(async move {
            let handler = Closure::<dyn FnMut(JsValue)>::new(move |msg: JsValue| {
                let payload = js_sys::Reflect::get(&msg, &JsValue::from_str("payload"))
                    .unwrap_or(JsValue::NULL);
                match serde_json::from_value::<AppEvent>(from_js(&payload)) {
                    Ok(ev) => on_event(ev),
                    Err(e) => web_sys::console::warn_1(&JsValue::from_str(&format!(
                        "tincan: unreadable event: {e}"
                    ))),
                }
            });
            let r = tauri_listen(tincan_ipc::EVENT, &handler).await;
            // The listener lives as long as the page.
            handler.forget();
            r.map(|_| ()).map_err(|e| unavailable(&e))
        })
    }
}
