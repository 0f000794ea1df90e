//! The browser's backend: a direct WebSocket to the tincan-server that served the page.
//!
//! It implements the same commands as the desktop backend ([`crate::backend::Transport`]) with the
//! same signaling client (`tincan_ipc::session::ClientSession`, driven by [`driver`]), so the views
//! cannot tell the two apart. A browser has no keyring: it signs in with a UserSig (pasted, or from the server's demo issuer
//! `GET /dev/usersig` when the server runs with `--dev-issue-sigs`). Settings and history stay in
//! the page's `localStorage`.

mod driver;

use crate::backend::{Api, LocalFuture, TauriTransport, Transport};
use driver::Driver;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::rc::Rc;
use tincan_ipc::session::{Command, LoginPlan, Reply};
use tincan_ipc::{
    cmd, AppEvent, AppState, CallArgs, CallOutcome, CallPhase, CallView, CredentialMode, ErrorCode,
    HistoryEntry, IpcError, MuteArgs, SavedCredentials, ServerInfo, Settings, SignInArgs,
    SignInCredentials, SignalArgs, StartCallArgs,
};
use tincan_proto::{CallId, CallType, ClientMessage, DeviceId, SigToken, UserId, PROTOCOL_VERSION};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

const SETTINGS_KEY: &str = "tincan.settings";
const HISTORY_KEY: &str = "tincan.history";
const LAST_USER_KEY: &str = "tincan.last_user";
const HISTORY_MAX: usize = 200;

/// Is this page inside the Tauri desktop app?
pub fn in_tauri() -> bool {
    web_sys::window()
        .map(|w| {
            js_sys::Reflect::has(&w, &JsValue::from_str("__TAURI_INTERNALS__")).unwrap_or(false)
        })
        .unwrap_or(false)
}

/// The backend for this page: Tauri IPC inside the app, the WebSocket client in a browser.
pub fn select_api() -> Api {
    if in_tauri() {
        Api::new(Rc::new(TauriTransport))
    } else {
        Api::new(Rc::new(BrowserTransport::new()))
    }
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", (js_sys::Math::random() * 256.0) as u8))
        .collect()
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

fn load<T: DeserializeOwned>(key: &str) -> Option<T> {
    let text = storage()?.get_item(key).ok().flatten()?;
    serde_json::from_str(&text).ok()
}

fn store<T: serde::Serialize>(key: &str, value: &T) {
    if let (Some(s), Ok(text)) = (storage(), serde_json::to_string(value)) {
        // A full or disabled storage only loses the convenience, never the call.
        let _ = s.set_item(key, &text);
    }
}

fn bad_args(e: serde_json::Error) -> IpcError {
    IpcError::new(ErrorCode::InvalidInput, format!("bad arguments: {e}"))
}

fn arg<T: DeserializeOwned>(args: &serde_json::Value, name: &str) -> Result<T, IpcError> {
    serde_json::from_value(args.get(name).cloned().unwrap_or(serde_json::Value::Null))
        .map_err(bad_args)
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, IpcError> {
    serde_json::to_value(v).map_err(|e| IpcError::new(ErrorCode::Internal, e.to_string()))
}

/// `ws(s)://<page host>/ws`.
fn page_ws_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let host = loc
        .as_ref()
        .and_then(|l| l.host().ok())
        .unwrap_or_else(|| "127.0.0.1:7480".into());
    let secure = loc
        .as_ref()
        .and_then(|l| l.protocol().ok())
        .is_some_and(|p| p == "https:");
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

/// The page's part of the browser backend: settings, history and the last user in `localStorage`.
struct Page {
    url: String,
    device_id: DeviceId,
    listeners: Vec<Rc<dyn Fn(AppEvent)>>,
    settings: Settings,
    history: Vec<HistoryEntry>,
    last_user: Option<String>,
    /// The last call written to the history (an ended call's later updates are not new calls).
    recorded: Option<CallId>,
}

/// The WebSocket transport. Cheap to clone; every clone is the same connection.
#[derive(Clone)]
pub struct BrowserTransport {
    page: Rc<RefCell<Page>>,
    driver: Driver,
}

impl Default for BrowserTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl BrowserTransport {
    pub fn new() -> Self {
        let device_id = DeviceId::new(format!("web-{}", random_hex(8)))
            .unwrap_or_else(|_| unreachable!("hex is a valid device ID"));
        let page = Rc::new(RefCell::new(Page {
            url: page_ws_url(),
            device_id,
            listeners: Vec::new(),
            settings: load(SETTINGS_KEY).unwrap_or_default(),
            history: load(HISTORY_KEY).unwrap_or_default(),
            last_user: load(LAST_USER_KEY),
            recorded: None,
        }));
        let p = page.clone();
        let driver = Driver::new(Rc::new(move |ev: AppEvent| on_event(&p, ev)));
        Self { page, driver }
    }

    fn state(&self) -> AppState {
        let snap = self.driver.snapshot();
        let p = self.page.borrow();
        AppState {
            profile: "browser".into(),
            server: ServerInfo::Remote { url: p.url.clone() },
            connection: snap.connection,
            user: snap.user,
            // An ended call was already shown through its event; the reducer keeps it on screen.
            call: snap.call.filter(|c| c.phase != CallPhase::Ended),
            saved: SavedCredentials {
                last_user_id: p.last_user.clone(),
                last_mode: Some(CredentialMode::UserSig),
                ..SavedCredentials::default()
            },
        }
    }

    async fn ask(&self, cmd: Command) -> Result<serde_json::Value, IpcError> {
        self.driver.ask(cmd).await.map(|_| serde_json::Value::Null)
    }

    /// A UserSig from the server's demo issuer (`--dev-issue-sigs`).
    async fn dev_usersig(user: &UserId) -> Result<(u64, String), IpcError> {
        let refuse = || {
            IpcError::new(
                ErrorCode::InvalidInput,
                "Paste a UserSig: this server does not hand out demo sign-ins (it runs without \
                 --dev-issue-sigs). Make one with `tincan-server usersig gen`.",
            )
        };
        let window = web_sys::window().ok_or_else(refuse)?;
        let url = format!("/dev/usersig?user={user}");
        let resp = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(&url))
            .await
            .map_err(|_| {
                IpcError::new(
                    ErrorCode::ServerUnreachable,
                    "The server cannot be reached.",
                )
            })?;
        let resp: web_sys::Response = resp.dyn_into().map_err(|_| refuse())?;
        if !resp.ok() {
            return Err(refuse());
        }
        let json = wasm_bindgen_futures::JsFuture::from(resp.json().map_err(|_| refuse())?)
            .await
            .map_err(|_| refuse())?;
        let sdk = js_sys::Reflect::get(&json, &JsValue::from_str("sdk_app_id"))
            .ok()
            .and_then(|v| v.as_f64())
            .ok_or_else(refuse)?;
        let sig = js_sys::Reflect::get(&json, &JsValue::from_str("user_sig"))
            .ok()
            .and_then(|v| v.as_string())
            .ok_or_else(refuse)?;
        Ok((sdk as u64, sig))
    }

    async fn sign_in(&self, args: SignInArgs) -> Result<AppState, IpcError> {
        let user = UserId::new(args.user_id.trim()).map_err(|_| {
            IpcError::new(
                ErrorCode::InvalidUserId,
                "A user ID is 1 to 32 letters, digits, '_' or '-'.",
            )
        })?;
        let (sdk_app_id, sig) = match args.credentials {
            SignInCredentials::UserSig {
                sdk_app_id,
                user_sig: Some(sig),
            } if !sig.trim().is_empty() => (sdk_app_id, sig.trim().to_owned()),
            SignInCredentials::UserSig { .. } => Self::dev_usersig(&user).await?,
            SignInCredentials::Embedded | SignInCredentials::SecretKey { .. } => {
                return Err(IpcError::new(
                    ErrorCode::InvalidInput,
                    "In a browser, sign in with a UserSig: a secret key never belongs in a web \
                     page, and the built-in server is part of the desktop app.",
                ))
            }
        };
        let (url, device_id) = {
            let p = self.page.borrow();
            (p.url.clone(), p.device_id.clone())
        };
        let login = ClientMessage::Login {
            version: PROTOCOL_VERSION,
            sdk_app_id,
            user_id: user,
            user_sig: SigToken(sig),
            device_id,
        };
        self.driver.set_plan(LoginPlan { url, login });
        if let Reply::SignedIn(me) = self.driver.ask(Command::SignIn).await? {
            let mut p = self.page.borrow_mut();
            p.last_user = Some(me.to_string());
            store(LAST_USER_KEY, &p.last_user);
        }
        Ok(self.state())
    }

    async fn start_call(&self, args: StartCallArgs) -> Result<CallView, IpcError> {
        let callee = UserId::new(args.callee.trim()).map_err(|_| {
            IpcError::new(
                ErrorCode::InvalidUserId,
                "A user ID is 1 to 32 letters, digits, '_' or '-'.",
            )
        })?;
        let call_id = CallId::new(random_hex(16))
            .map_err(|e| IpcError::new(ErrorCode::Internal, e.to_string()))?;
        let timeout_secs = self.page.borrow().settings.ring_timeout_secs;
        let cmd = Command::StartCall {
            call_id,
            callee,
            call_type: CallType::Audio,
            timeout_secs,
        };
        match self.driver.ask(cmd).await? {
            Reply::Call(view) => Ok(view),
            _ => Err(IpcError::new(ErrorCode::Internal, "unexpected answer")),
        }
    }

    async fn run(
        &self,
        name: &'static str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, IpcError> {
        match name {
            cmd::GET_STATE => to_value(&self.state()),
            cmd::SIGN_IN => {
                let a: SignInArgs = arg(&args, "args")?;
                to_value(&self.sign_in(a).await?)
            }
            cmd::SIGN_OUT => {
                self.driver.ask(Command::SignOut).await?;
                to_value(&self.state())
            }
            cmd::FORGET_CREDENTIALS => {
                self.page.borrow_mut().last_user = None;
                if let Some(s) = storage() {
                    let _ = s.remove_item(LAST_USER_KEY);
                }
                to_value(&self.state().saved)
            }
            cmd::START_CALL => {
                let a: StartCallArgs = arg(&args, "args")?;
                to_value(&self.start_call(a).await?)
            }
            cmd::ACCEPT_CALL => {
                let a: CallArgs = arg(&args, "args")?;
                self.ask(Command::Accept { call_id: a.call_id }).await
            }
            cmd::REJECT_CALL => {
                let a: CallArgs = arg(&args, "args")?;
                self.ask(Command::Reject { call_id: a.call_id }).await
            }
            cmd::HANG_UP => {
                let a: CallArgs = arg(&args, "args")?;
                self.ask(Command::Hangup { call_id: a.call_id }).await
            }
            cmd::SET_MUTED => {
                let a: MuteArgs = arg(&args, "args")?;
                self.ask(Command::SetMuted { muted: a.muted }).await
            }
            cmd::SEND_SIGNAL => {
                let a: SignalArgs = arg(&args, "args")?;
                self.ask(Command::Signal {
                    call_id: a.call_id,
                    signal: a.signal,
                })
                .await
            }
            cmd::GET_SETTINGS => to_value(&self.page.borrow().settings),
            cmd::SAVE_SETTINGS => {
                let s: Settings = arg(&args, "settings")?;
                s.validate()?;
                store(SETTINGS_KEY, &s);
                self.page.borrow_mut().settings = s;
                to_value(&self.state())
            }
            cmd::GET_HISTORY => to_value(&self.page.borrow().history),
            cmd::CLEAR_HISTORY => {
                self.page.borrow_mut().history.clear();
                store(HISTORY_KEY, &Vec::<HistoryEntry>::new());
                to_value(&Vec::<HistoryEntry>::new())
            }
            other => Err(IpcError::new(
                ErrorCode::Internal,
                format!("unknown command {other}"),
            )),
        }
    }
}

/// Every event reaches the listeners (the server-issued STUN / TURN servers among them:
/// `AppEvent::IceServers`, which the media controller keeps for the web engine, exactly as on the
/// desktop); a call that ended goes into the history once.
fn on_event(page: &Rc<RefCell<Page>>, ev: AppEvent) {
    let listeners = page.borrow().listeners.clone();
    for l in &listeners {
        l(ev.clone());
    }
    let AppEvent::Call { call: Some(c) } = &ev else {
        return;
    };
    if c.phase != CallPhase::Ended || page.borrow().recorded.as_ref() == Some(&c.call_id) {
        return;
    }
    let reason = c.ended.as_ref().and_then(|e| e.reason);
    let entry = HistoryEntry {
        call_id: c.call_id.clone(),
        peer: c.peer.clone(),
        direction: c.direction,
        started_at_ms: c.started_at_ms,
        duration_ms: c.connected_at_ms.map(|at| now_ms().saturating_sub(at)),
        outcome: CallOutcome::from_end(c.direction, c.connected_at_ms.is_some(), reason),
    };
    let entries = {
        let mut p = page.borrow_mut();
        p.recorded = Some(c.call_id.clone());
        p.history.insert(0, entry);
        p.history.truncate(HISTORY_MAX);
        store(HISTORY_KEY, &p.history);
        p.history.clone()
    };
    let history = AppEvent::History { entries };
    for l in &listeners {
        l(history.clone());
    }
}

impl Transport for BrowserTransport {
    fn invoke(
        &self,
        name: &'static str,
        args: serde_json::Value,
    ) -> LocalFuture<Result<serde_json::Value, IpcError>> {
        let t = self.clone();
        Box::pin(async move { t.run(name, args).await })
    }

    fn subscribe(&self, on_event: Rc<dyn Fn(AppEvent)>) -> LocalFuture<Result<(), IpcError>> {
        self.page.borrow_mut().listeners.push(on_event);
        Box::pin(async { Ok(()) })
    }
}
