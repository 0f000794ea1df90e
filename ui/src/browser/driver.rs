//! The browser's signaling driver: one `WebSocket` and one timer around [`ClientSession`].
//!
//! Every decision — what the UI is told and in which order, when to ping, when and how to
//! reconnect, what a command answers — is the machine's (`tincan_ipc::session`, shared with the
//! desktop). This glue only opens and closes the socket the machine asks for, passes its events in,
//! sends its frames, and arms a `setTimeout` for the machine's next deadline.

use futures_channel::oneshot;
use gloo_timers::callback::Timeout;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tincan_ipc::session::{
    self as machine, ClientSession, Command, Config, LoginPlan, Output, PlanError, Reply, Snapshot,
};
use tincan_ipc::{AppEvent, ErrorCode, IpcError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// Closes a socket whose handlers may be running right now: they are dropped on the next tick.
fn discard(s: Socket) {
    Timeout::new(0, move || drop(s)).forget();
}

type ReplyTx = oneshot::Sender<Result<Reply, IpcError>>;

struct State {
    session: ClientSession,
    socket: Option<Socket>,
    timer: Option<Timeout>,
    /// The login for every attempt of the current sign-in (a browser has one UserSig, no keyring).
    plan: Option<LoginPlan>,
    replies: HashMap<u64, ReplyTx>,
    next_id: u64,
    on_event: Rc<dyn Fn(AppEvent)>,
}

/// The driver. Cheap to clone; every clone drives the same session.
#[derive(Clone)]
pub struct Driver {
    state: Rc<RefCell<State>>,
}

impl Driver {
    /// `on_event` gets every event the machine emits, in order.
    pub fn new(on_event: Rc<dyn Fn(AppEvent)>) -> Self {
        let session = ClientSession::new(Config {
            this: "tab".into(),
            seed: (js_sys::Math::random() * 9.0e15) as u64,
            ..Config::default()
        });
        Self {
            state: Rc::new(RefCell::new(State {
                session,
                socket: None,
                timer: None,
                plan: None,
                replies: HashMap::new(),
                next_id: 0,
                on_event,
            })),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().session.snapshot()
    }

    /// The login every attempt of the next sign-in uses.
    pub fn set_plan(&self, plan: LoginPlan) {
        self.state.borrow_mut().plan = Some(plan);
    }

    /// Runs a command; the machine answers every one, now or (sign-in) later.
    pub async fn ask(&self, cmd: Command) -> Result<Reply, IpcError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut s = self.state.borrow_mut();
            s.next_id += 1;
            let id = s.next_id;
            s.replies.insert(id, tx);
            id
        };
        self.input(|m, now| m.handle_command(now, id, cmd));
        rx.await.unwrap_or_else(|_| {
            Err(IpcError::new(
                ErrorCode::Internal,
                "The command was dropped.",
            ))
        })
    }

    /// Feeds one input to the machine, then carries out what it asked for.
    fn input(&self, f: impl FnOnce(&mut ClientSession, u64)) {
        f(&mut self.state.borrow_mut().session, now_ms());
        loop {
            // The borrow ends before the output is carried out: carrying out feeds inputs back.
            let Some(out) = self.state.borrow_mut().session.poll_output() else {
                break;
            };
            self.carry_out(out);
        }
        self.arm_timer();
    }

    fn carry_out(&self, out: Output) {
        match out {
            Output::PlanLogin => {
                let plan = self.state.borrow().plan.clone().ok_or_else(|| PlanError {
                    error: IpcError::new(ErrorCode::NotSignedIn, "Sign in first."),
                    fatal: true,
                });
                self.state
                    .borrow_mut()
                    .session
                    .handle_login_plan(now_ms(), plan);
            }
            Output::Connect { url } => {
                if let Err(e) = self.open(&url) {
                    self.state
                        .borrow_mut()
                        .session
                        .handle_connect_failed(now_ms(), e, false);
                }
            }
            Output::Send(frame) => {
                if let Some(s) = &self.state.borrow().socket {
                    // A failed send shows up as a close, which the machine handles.
                    let _ = s.ws.send_with_str(&frame.encode());
                }
            }
            Output::Close => {
                if let Some(s) = self.state.borrow_mut().socket.take() {
                    discard(s);
                }
            }
            Output::Event(ev) => {
                let on_event = self.state.borrow().on_event.clone();
                on_event(ev);
            }
            Output::Reply { id, result } => {
                if let Some(tx) = self.state.borrow_mut().replies.remove(&id) {
                    let _ = tx.send(result);
                }
            }
        }
    }

    /// One `setTimeout` for the machine's next deadline (replacing the last one).
    fn arm_timer(&self) {
        let next = self.state.borrow().session.poll_timeout();
        let timer = next.map(|at| {
            let d = self.clone();
            let delay = at.saturating_sub(now_ms()).min(u64::from(u32::MAX)) as u32;
            Timeout::new(delay, move || d.input(|m, now| m.handle_timeout(now)))
        });
        // Dropping a timer from inside its own callback is safe: wasm-bindgen defers the free.
        self.state.borrow_mut().timer = timer;
    }

    fn open(&self, url: &str) -> Result<(), IpcError> {
        let ws = WebSocket::new(url).map_err(|_| {
            IpcError::new(
                ErrorCode::ServerUnreachable,
                format!("Cannot open a WebSocket to {url}."),
            )
        })?;
        let d = self.clone();
        let on_open =
            Closure::<dyn FnMut()>::new(move || d.input(|m, now| m.handle_connected(now)));
        let d = self.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else {
                return;
            };
            d.input(|m, now| {
                if let Err(e) = m.handle_text(now, &text) {
                    web_sys::console::warn_1(&JsValue::from_str(&format!(
                        "tincan: unreadable frame from the server: {e}"
                    )));
                }
            });
        });
        let d = self.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            // This socket's closures are running: detach them before dropping.
            if let Some(s) = d.state.borrow_mut().socket.take() {
                discard(s);
            }
            let reason = e.reason();
            let close = machine::close_reason(Some(e.code()), &reason);
            d.input(|m, now| m.handle_disconnected(now, close, &reason));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.state.borrow_mut().socket = Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        Ok(())
    }
}
