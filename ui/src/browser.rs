//! The browser's backend: a direct WebSocket to the tincan-server that served the page.
//!
//! It implements the same commands as the desktop backend ([`crate::backend::Transport`]), with the
//! same client-side call rules (`tincan_ipc::call_view`), so the views cannot tell the two apart.
//! A browser has no keyring: it signs in with a UserSig (pasted, or from the server's demo issuer
//! `GET /dev/usersig` when the server runs with `--dev-issue-sigs`). Settings and history stay in
//! the page's `localStorage`.

use crate::backend::{Api, LocalFuture, TauriTransport, Transport};
use futures_channel::oneshot;
use gloo_timers::callback::{Interval, Timeout};
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::rc::Rc;
use tincan_ipc::call_view::{self, Step};
use tincan_ipc::session::{backoff_ms, login_error};
use tincan_ipc::{
    cmd, AppEvent, AppState, CallArgs, CallOutcome, CallPhase, CallView, ConnectionState,
    CredentialMode, ErrorCode, HistoryEntry, IpcError, MuteArgs, SavedCredentials, ServerInfo,
    Settings, SignInArgs, SignInCredentials, SignalArgs, StartCallArgs,
};
use tincan_proto::{
    CallId, CallType, ClientMessage, DeviceId, ServerMessage, SigToken, UserId, PROTOCOL_VERSION,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

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

fn lost() -> IpcError {
    IpcError::new(
        ErrorCode::ServerUnreachable,
        "The connection to the server was lost.",
    )
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

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

/// Closes a socket whose handlers may be running right now: they are dropped on the next tick.
fn discard(s: Socket) {
    Timeout::new(0, move || drop(s)).forget();
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

struct Inner {
    url: String,
    device_id: DeviceId,
    socket: Option<Socket>,
    /// The login frame of the signed-in (or signing-in) user, kept for reconnects.
    login: Option<ClientMessage>,
    waiting_login: Option<oneshot::Sender<Result<UserId, IpcError>>>,
    user: Option<UserId>,
    connection: ConnectionState,
    call: Option<CallView>,
    listeners: Vec<Rc<dyn Fn(AppEvent)>>,
    heartbeat: Option<Interval>,
    retry: Option<Timeout>,
    attempt: u32,
    settings: Settings,
    history: Vec<HistoryEntry>,
    last_user: Option<String>,
}

/// The WebSocket transport. Cheap to clone; every clone is the same connection.
#[derive(Clone)]
pub struct BrowserTransport {
    inner: Rc<RefCell<Inner>>,
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
        Self {
            inner: Rc::new(RefCell::new(Inner {
                url: page_ws_url(),
                device_id,
                socket: None,
                login: None,
                waiting_login: None,
                user: None,
                connection: ConnectionState::SignedOut,
                call: None,
                listeners: Vec::new(),
                heartbeat: None,
                retry: None,
                attempt: 0,
                settings: load(SETTINGS_KEY).unwrap_or_default(),
                history: load(HISTORY_KEY).unwrap_or_default(),
                last_user: load(LAST_USER_KEY),
            })),
        }
    }

    fn emit(&self, ev: AppEvent) {
        let listeners = self.inner.borrow().listeners.clone();
        for l in listeners {
            l(ev.clone());
        }
    }

    fn state(&self) -> AppState {
        let i = self.inner.borrow();
        AppState {
            profile: "browser".into(),
            server: ServerInfo::Remote { url: i.url.clone() },
            connection: i.connection.clone(),
            user: i.user.clone(),
            // An ended call was already shown through its event; the reducer keeps it on screen.
            call: i.call.clone().filter(|c| c.phase != CallPhase::Ended),
            saved: SavedCredentials {
                last_user_id: i.last_user.clone(),
                last_mode: Some(CredentialMode::UserSig),
                ..SavedCredentials::default()
            },
        }
    }

    fn set_connection(&self, c: ConnectionState) {
        self.inner.borrow_mut().connection = c.clone();
        self.emit(AppEvent::Connection { state: c });
    }

    /// Replaces the call view; a call that just ended goes into the history.
    fn set_call(&self, call: Option<CallView>) {
        let ended_now = {
            let mut i = self.inner.borrow_mut();
            let was_live = call_view::is_live(&i.call);
            i.call = call.clone();
            was_live
                && matches!(&call, Some(c) if c.phase == CallPhase::Ended)
                && i.call.as_ref().map(|c| &c.call_id) == call.as_ref().map(|c| &c.call_id)
        };
        self.emit(AppEvent::Call { call: call.clone() });
        if let (true, Some(c)) = (ended_now, call) {
            self.record(&c);
        }
    }

    fn record(&self, c: &CallView) {
        let now = now_ms();
        let reason = c.ended.as_ref().and_then(|e| e.reason);
        let entry = HistoryEntry {
            call_id: c.call_id.clone(),
            peer: c.peer.clone(),
            direction: c.direction,
            started_at_ms: c.started_at_ms,
            duration_ms: c.connected_at_ms.map(|at| now.saturating_sub(at)),
            outcome: CallOutcome::from_end(c.direction, c.connected_at_ms.is_some(), reason),
        };
        let entries = {
            let mut i = self.inner.borrow_mut();
            i.history.insert(0, entry);
            i.history.truncate(HISTORY_MAX);
            store(HISTORY_KEY, &i.history);
            i.history.clone()
        };
        self.emit(AppEvent::History { entries });
    }

    fn send(&self, frame: &ClientMessage) -> Result<(), IpcError> {
        let i = self.inner.borrow();
        let Some(s) = &i.socket else {
            return Err(lost());
        };
        if s.ws.ready_state() != WebSocket::OPEN {
            return Err(lost());
        }
        s.ws.send_with_str(&frame.encode()).map_err(|_| lost())
    }

    /// Runs a call command: sends its frame, then shows its view.
    fn step(&self, step: Result<Step, IpcError>) -> Result<serde_json::Value, IpcError> {
        let step = step?;
        if let Some(frame) = &step.frame {
            self.send(frame)?;
        }
        if let Some(c) = step.update {
            self.set_call(Some(c));
        }
        Ok(serde_json::Value::Null)
    }

    fn open(&self) -> Result<(), IpcError> {
        let url = self.inner.borrow().url.clone();
        let ws = WebSocket::new(&url).map_err(|_| {
            IpcError::new(
                ErrorCode::ServerUnreachable,
                format!("Cannot open a WebSocket to {url}."),
            )
        })?;
        let on_open = {
            let t = self.clone();
            Closure::<dyn FnMut()>::new(move || {
                let login = t.inner.borrow().login.clone();
                if let Some(login) = login {
                    // A failed send shows up as a close, which retries.
                    let _ = t.send(&login);
                }
            })
        };
        let on_message = {
            let t = self.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let Some(text) = e.data().as_string() else {
                    return;
                };
                match ServerMessage::decode(&text) {
                    Ok(msg) => t.on_server(msg),
                    Err(e) => web_sys::console::warn_1(&JsValue::from_str(&format!(
                        "tincan: unreadable frame from the server: {e}"
                    ))),
                }
            })
        };
        let on_close = {
            let t = self.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
                t.on_close(e.code(), e.reason());
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.inner.borrow_mut().socket = Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        Ok(())
    }

    fn drop_call(&self, message: &str) {
        let call = self.inner.borrow().call.clone();
        if let Some(mut c) = call {
            if c.phase != CallPhase::Ended {
                call_view::end(&mut c, None, message.to_owned());
                self.set_call(Some(c));
            }
        }
    }

    fn on_close(&self, code: u16, reason: String) {
        let waiting = {
            let mut i = self.inner.borrow_mut();
            i.heartbeat = None;
            // The closures of this socket are running: detach them before dropping.
            if let Some(s) = i.socket.take() {
                discard(s);
            }
            i.waiting_login.take()
        };
        if let Some(w) = waiting {
            self.inner.borrow_mut().login = None;
            self.set_connection(ConnectionState::SignedOut);
            let _ = w.send(Err(IpcError::new(
                ErrorCode::ServerUnreachable,
                format!(
                    "The server at {} cannot be reached{}.",
                    self.inner.borrow().url,
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({reason})")
                    }
                ),
            )));
            return;
        }
        if self.inner.borrow().login.is_none() {
            return;
        }
        self.drop_call("The connection to the server was lost.");
        // Kicked or replaced: a reconnect must not undo it.
        if code == 4000 || code == 4001 || code == 4005 {
            self.signed_out();
            return;
        }
        let attempt = {
            let mut i = self.inner.borrow_mut();
            i.attempt += 1;
            i.attempt
        };
        let delay = backoff_ms(500, 15_000, attempt, js_sys::Math::random());
        self.set_connection(ConnectionState::Reconnecting {
            attempt,
            retry_in_ms: delay,
        });
        let t = self.clone();
        let timer = Timeout::new(delay as u32, move || {
            t.inner.borrow_mut().retry = None;
            t.set_connection(ConnectionState::Connecting);
            if t.open().is_err() {
                t.on_close(1006, String::new());
            }
        });
        self.inner.borrow_mut().retry = Some(timer);
    }

    fn signed_out(&self) {
        self.drop_call("You signed out.");
        {
            let mut i = self.inner.borrow_mut();
            i.login = None;
            i.user = None;
            i.retry = None;
            i.heartbeat = None;
            if let Some(s) = i.socket.take() {
                discard(s);
            }
        }
        self.set_connection(ConnectionState::SignedOut);
        self.emit(AppEvent::User { user: None });
    }

    fn on_server(&self, msg: ServerMessage) {
        let now = now_ms();
        match &msg {
            ServerMessage::LoginOk {
                user_id,
                heartbeat_secs,
                ..
            } => {
                let waiting = {
                    let mut i = self.inner.borrow_mut();
                    i.user = Some(user_id.clone());
                    i.attempt = 0;
                    i.last_user = Some(user_id.to_string());
                    store(LAST_USER_KEY, &i.last_user);
                    let t = self.clone();
                    let every = heartbeat_secs.clamp(&5, &60) * 1000;
                    i.heartbeat = Some(Interval::new(every, move || {
                        let _ = t.send(&ClientMessage::Ping { nonce: None });
                    }));
                    i.waiting_login.take()
                };
                self.set_connection(ConnectionState::Online);
                self.emit(AppEvent::User {
                    user: Some(user_id.clone()),
                });
                if let Some(w) = waiting {
                    let _ = w.send(Ok(user_id.clone()));
                }
            }
            ServerMessage::Invited {
                call_id,
                caller,
                call_type,
                timeout_secs,
            } => {
                let live = call_view::is_live(&self.inner.borrow().call);
                if live {
                    let _ = self.send(&ClientMessage::Reject {
                        call_id: call_id.clone(),
                        busy: true,
                    });
                    return;
                }
                let view = call_view::incoming(
                    call_id.clone(),
                    caller.clone(),
                    *call_type,
                    *timeout_secs,
                    now,
                );
                self.emit(AppEvent::Incoming {
                    call_id: call_id.clone(),
                    caller: caller.clone(),
                    call_type: *call_type,
                });
                self.set_call(Some(view));
            }
            ServerMessage::MissedCalls { calls } => self.emit(AppEvent::MissedCalls {
                calls: calls.clone(),
            }),
            ServerMessage::Signal {
                call_id,
                from,
                signal,
            } => {
                self.apply(&msg, now);
                self.emit(AppEvent::RemoteSignal {
                    call_id: call_id.clone(),
                    from: from.clone(),
                    signal: signal.clone(),
                });
            }
            ServerMessage::KickedOffline { reason } => {
                self.emit(AppEvent::KickedOffline {
                    reason: *reason,
                    message: tincan_ipc::call_view::kicked_offline_message(*reason, "tab"),
                });
                self.signed_out();
            }
            ServerMessage::LoggedOut => self.signed_out(),
            ServerMessage::Error {
                code,
                message,
                call_id,
            } => {
                let waiting = self.inner.borrow_mut().waiting_login.take();
                if let Some(w) = waiting {
                    // A refused login: stop here, the user must fix the credentials.
                    {
                        let mut i = self.inner.borrow_mut();
                        i.login = None;
                        if let Some(s) = i.socket.take() {
                            discard(s);
                        }
                    }
                    self.set_connection(ConnectionState::SignedOut);
                    let _ = w.send(Err(login_error(*code, message)));
                    return;
                }
                let ours = {
                    let i = self.inner.borrow();
                    matches!((call_id, &i.call), (Some(id), Some(c)) if *id == c.call_id)
                };
                if !ours {
                    self.emit(AppEvent::Error {
                        error: IpcError::new(
                            ErrorCode::ServerRefused,
                            call_view::describe_error(*code, message),
                        ),
                    });
                }
                self.apply(&msg, now);
            }
            _ => self.apply(&msg, now),
        }
    }

    fn apply(&self, msg: &ServerMessage, now: u64) {
        let call = self.inner.borrow().call.clone();
        if let Some(mut c) = call {
            if call_view::apply(&mut c, msg, now) {
                self.set_call(Some(c));
            }
        }
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
        if self.inner.borrow().user.is_some() {
            self.sign_out_now();
        }
        let login = ClientMessage::Login {
            version: PROTOCOL_VERSION,
            sdk_app_id,
            user_id: user,
            user_sig: SigToken(sig),
            device_id: self.inner.borrow().device_id.clone(),
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut i = self.inner.borrow_mut();
            i.login = Some(login);
            i.waiting_login = Some(tx);
            i.retry = None;
        }
        self.set_connection(ConnectionState::Connecting);
        if let Err(e) = self.open() {
            let mut i = self.inner.borrow_mut();
            i.login = None;
            i.waiting_login = None;
            return Err(e);
        }
        rx.await.map_err(|_| lost())??;
        Ok(self.state())
    }

    fn sign_out_now(&self) {
        let _ = self.send(&ClientMessage::Logout);
        self.signed_out();
    }

    fn start_call(&self, args: StartCallArgs) -> Result<CallView, IpcError> {
        let callee = UserId::new(args.callee.trim()).map_err(|_| {
            IpcError::new(
                ErrorCode::InvalidUserId,
                "A user ID is 1 to 32 letters, digits, '_' or '-'.",
            )
        })?;
        let (me, live, timeout) = {
            let i = self.inner.borrow();
            (
                i.user.clone(),
                call_view::is_live(&i.call),
                i.settings.ring_timeout_secs,
            )
        };
        if me.is_none() {
            return Err(IpcError::new(ErrorCode::NotSignedIn, "You are signed out."));
        }
        if live {
            return Err(IpcError::new(
                ErrorCode::AlreadyInCall,
                "You are already in a call.",
            ));
        }
        if me.as_ref() == Some(&callee) {
            return Err(IpcError::new(
                ErrorCode::CallSelf,
                "You cannot call yourself.",
            ));
        }
        let call_id = CallId::new(random_hex(16))
            .map_err(|e| IpcError::new(ErrorCode::Internal, e.to_string()))?;
        let view = call_view::outgoing(
            call_id.clone(),
            callee.clone(),
            CallType::Audio,
            timeout,
            now_ms(),
        );
        self.send(&ClientMessage::Invite {
            call_id,
            callee,
            call_type: CallType::Audio,
            timeout_secs: Some(timeout),
        })?;
        self.set_call(Some(view.clone()));
        Ok(view)
    }

    async fn run(
        &self,
        name: &'static str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, IpcError> {
        let current = self.inner.borrow().call.clone();
        match name {
            cmd::GET_STATE => to_value(&self.state()),
            cmd::SIGN_IN => {
                let a: SignInArgs = arg(&args, "args")?;
                to_value(&self.sign_in(a).await?)
            }
            cmd::SIGN_OUT => {
                self.sign_out_now();
                to_value(&self.state())
            }
            cmd::FORGET_CREDENTIALS => {
                self.inner.borrow_mut().last_user = None;
                if let Some(s) = storage() {
                    let _ = s.remove_item(LAST_USER_KEY);
                }
                to_value(&self.state().saved)
            }
            cmd::START_CALL => {
                let a: StartCallArgs = arg(&args, "args")?;
                to_value(&self.start_call(a)?)
            }
            cmd::ACCEPT_CALL => {
                let a: CallArgs = arg(&args, "args")?;
                self.step(call_view::accept(current.as_ref(), a.call_id))
            }
            cmd::REJECT_CALL => {
                let a: CallArgs = arg(&args, "args")?;
                self.step(call_view::reject(current.as_ref(), a.call_id))
            }
            cmd::HANG_UP => {
                let a: CallArgs = arg(&args, "args")?;
                self.step(call_view::hang_up(current.as_ref(), a.call_id, now_ms()))
            }
            cmd::SET_MUTED => {
                let a: MuteArgs = arg(&args, "args")?;
                self.step(call_view::set_muted(current.as_ref(), a.muted))
            }
            cmd::SEND_SIGNAL => {
                let a: SignalArgs = arg(&args, "args")?;
                self.step(call_view::signal(current.as_ref(), a.call_id, a.signal))
            }
            cmd::GET_SETTINGS => to_value(&self.inner.borrow().settings),
            cmd::SAVE_SETTINGS => {
                let s: Settings = arg(&args, "settings")?;
                s.validate()?;
                store(SETTINGS_KEY, &s);
                self.inner.borrow_mut().settings = s;
                to_value(&self.state())
            }
            cmd::GET_HISTORY => to_value(&self.inner.borrow().history),
            cmd::CLEAR_HISTORY => {
                self.inner.borrow_mut().history.clear();
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
        self.inner.borrow_mut().listeners.push(on_event);
        Box::pin(async { Ok(()) })
    }
}
