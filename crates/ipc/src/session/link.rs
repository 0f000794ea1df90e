//! The connection half of [`ClientSession`]: signing in, keepalive, losing the connection, backoff
//! and signing in again.
//!
//! One attempt is `PlanLogin` → `Connect` → (connected) `Send(login)` → `login_ok`. While the first
//! `sign_in` waits, any failure is final and answers it (the user is at the sign-in form and wants to
//! know now); after a successful login, a dropped connection is retried with backoff, and only a
//! failure a retry cannot fix (refused credentials, an expired pasted UserSig, a kick) stops.

use super::rules::{backoff_ms, close_is_final, keepalive_every_ms, login_error};
use super::{ClientSession, CommandId, LoginPlan, Millis, Output, PlanError, Reply};
use crate::{call_view, AppEvent, ConnectionState, ErrorCode, IpcError};
use tincan_proto::{ClientMessage, CloseReason, EndReason, ServerMessage};

#[derive(Debug)]
pub(super) enum Link {
    SignedOut,
    /// [`Output::PlanLogin`] is out; waiting for [`ClientSession::handle_login_plan`].
    Planning,
    /// [`Output::Connect`] is out.
    Connecting {
        url: String,
        login: ClientMessage,
        deadline: Millis,
    },
    /// `login` is sent; waiting for `login_ok`.
    LoggingIn {
        url: String,
        deadline: Millis,
    },
    Online {
        /// The keepalive interval the server asked for (see [`keepalive_every_ms`]).
        every: Millis,
        /// When the last `ping` went out (or the login was answered).
        last_ping: Millis,
        /// When the last frame came from the server.
        last_heard: Millis,
    },
    /// Waiting to try again.
    Backoff {
        until: Millis,
    },
}

/// How often to ping while a call is live, at most: a connection that died silently (a Wi-Fi
/// hand-over leaves the old TCP connection without a reset; nothing arrives, nothing fails) is noticed
/// within two of these, well inside the server's grace period for a connected call (30 s).
const IN_CALL_PING_MS: u64 = 5_000;

fn ping_every(every: Millis, in_call: bool) -> Millis {
    if in_call {
        every.min(IN_CALL_PING_MS)
    } else {
        every
    }
}

impl Link {
    /// `in_call`: a call is live (pings come faster, see [`IN_CALL_PING_MS`]).
    pub(super) fn deadline(&self, in_call: bool) -> Option<Millis> {
        match self {
            Link::SignedOut | Link::Planning => None,
            Link::Connecting { deadline, .. } | Link::LoggingIn { deadline, .. } => Some(*deadline),
            Link::Online {
                every, last_ping, ..
            } => Some(last_ping.saturating_add(ping_every(*every, in_call))),
            Link::Backoff { until } => Some(*until),
        }
    }

    /// A frame came from the server: the connection is alive.
    pub(super) fn heard(&mut self, now: Millis) {
        if let Link::Online { last_heard, .. } = self {
            *last_heard = now;
        }
    }

    fn url(&self) -> &str {
        match self {
            Link::Connecting { url, .. } | Link::LoggingIn { url, .. } => url,
            _ => "",
        }
    }
}

/// The longest reconnect delay while a connected call is held.
const HELD_BACKOFF_MAX_MS: u64 = 2_000;

fn unreachable_at(url: &str, detail: &str) -> IpcError {
    IpcError::new(
        ErrorCode::ServerUnreachable,
        format!("Cannot reach the server at {url}: {detail}"),
    )
}

impl ClientSession {
    /// The credentials for the attempt that [`Output::PlanLogin`] asked for. Ignored unless that
    /// attempt is still current.
    pub fn handle_login_plan(&mut self, now: Millis, plan: Result<LoginPlan, PlanError>) {
        if !matches!(self.link, Link::Planning) {
            return;
        }
        match plan {
            Ok(LoginPlan { url, login }) => {
                self.out.push_back(Output::Connect { url: url.clone() });
                self.link = Link::Connecting {
                    url,
                    login,
                    deadline: now.saturating_add(self.cfg.connect_timeout_ms),
                };
            }
            Err(PlanError { error, fatal }) => self.attempt_failed(now, error, fatal),
        }
    }

    /// The connect [`Output::Connect`] asked for failed before a socket opened, for a reason the
    /// driver could tell (a refused certificate, an address it will not use); `fatal` when a retry
    /// cannot help. (A socket that just closed is [`ClientSession::handle_disconnected`].)
    pub fn handle_connect_failed(&mut self, now: Millis, error: IpcError, fatal: bool) {
        if matches!(self.link, Link::Connecting { .. }) {
            self.attempt_failed(now, error, fatal);
        }
    }

    /// The socket [`Output::Connect`] asked for is open: sign in on it.
    pub fn handle_connected(&mut self, now: Millis) {
        match std::mem::replace(&mut self.link, Link::SignedOut) {
            Link::Connecting { url, login, .. } => {
                self.send(login);
                self.link = Link::LoggingIn {
                    url,
                    deadline: now.saturating_add(self.cfg.login_timeout_ms),
                };
            }
            // No connect is pending: the one this reports was given up with an `Output::Close`
            // already (a driver drops it then); stale.
            other => self.link = other,
        }
    }

    /// Runs whatever [`ClientSession::poll_timeout`] named, if its time has come.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.resume_timeout(now);
        let in_call = self.in_call();
        match &mut self.link {
            Link::Connecting { deadline, .. } if *deadline <= now => {
                let e = unreachable_at(self.link.url(), "no answer");
                self.out.push_back(Output::Close);
                self.attempt_failed(now, e, false);
            }
            Link::LoggingIn { deadline, .. } if *deadline <= now => {
                let e = unreachable_at(self.link.url(), "the server did not answer the sign-in");
                self.out.push_back(Output::Close);
                self.attempt_failed(now, e, false);
            }
            Link::Online {
                every,
                last_ping,
                last_heard,
            } if last_ping.saturating_add(ping_every(*every, in_call)) <= now => {
                if *last_heard < *last_ping {
                    // The last ping was never answered (the server answers every one, and any
                    // frame counts): the connection is dead though no socket said so. Drop it and
                    // reconnect as after any drop (a connected call is kept: `resume`).
                    self.out.push_back(Output::Close);
                    self.on_disconnected(now, None, "the server stopped answering");
                } else {
                    *last_ping = now;
                    self.send(ClientMessage::Ping { nonce: None });
                }
            }
            Link::Backoff { until } if *until <= now => {
                self.set_connection(ConnectionState::Connecting);
                self.begin_attempt();
            }
            _ => {}
        }
    }

    pub(super) fn sign_in(&mut self, now: Millis, id: CommandId) {
        if let Some(old) = self.pending_sign_in.take() {
            self.reply(
                old,
                Err(IpcError::new(
                    ErrorCode::NotSignedIn,
                    "A newer sign-in replaced this one.",
                )),
            );
        }
        self.sign_out(now);
        self.call = None;
        self.held = None;
        self.kept = Default::default();
        self.pending_sign_in = Some(id);
        self.attempt = 0;
        self.set_connection(ConnectionState::Connecting);
        self.begin_attempt();
    }

    /// Signs out on purpose: the server is told when it is listening; a pending `sign_in` is
    /// answered.
    pub(super) fn sign_out(&mut self, now: Millis) {
        if let Some(id) = self.pending_sign_in.take() {
            self.reply(
                id,
                Err(IpcError::new(ErrorCode::NotSignedIn, "You signed out.")),
            );
        }
        match self.link {
            Link::SignedOut => return,
            Link::Online { .. } => self.send(ClientMessage::Logout),
            _ => {}
        }
        self.out.push_back(Output::Close);
        self.signed_out(now);
    }

    /// The state after any ending: the call (if live) ends, the UI hears "signed out".
    pub(super) fn signed_out(&mut self, _now: Millis) {
        // Nothing is resumed after a sign-out: the held call ends with the rest.
        self.held = None;
        self.kept = Default::default();
        self.drop_call(None, "You signed out.");
        self.link = Link::SignedOut;
        self.user = None;
        // The credentials were this user's: nothing keeps them past the sign-out.
        self.set_ice_servers(Vec::new(), None);
        self.set_connection(ConnectionState::SignedOut);
        self.emit(AppEvent::User { user: None });
    }

    fn begin_attempt(&mut self) {
        self.link = Link::Planning;
        self.out.push_back(Output::PlanLogin);
    }

    /// One attempt failed: final while the first `sign_in` waits or when a retry cannot help;
    /// otherwise try again after the backoff.
    fn attempt_failed(&mut self, now: Millis, error: IpcError, fatal: bool) {
        if fatal || self.pending_sign_in.is_some() {
            self.fail(now, error);
        } else {
            self.back_off(now);
        }
    }

    /// Stops for good: the waiting `sign_in` gets the error, or (later) the UI is told.
    fn fail(&mut self, now: Millis, error: IpcError) {
        let waiting = self.pending_sign_in.take();
        if waiting.is_none() {
            self.emit(AppEvent::Error {
                error: error.clone(),
            });
        }
        self.signed_out(now);
        if let Some(id) = waiting {
            self.reply(id, Err(error));
        }
    }

    fn back_off(&mut self, now: Millis) {
        self.attempt = self.attempt.saturating_add(1);
        let jitter = self.random_unit();
        // A held call has a grace period on the server (30 s by default): retry often enough to
        // make it back within it.
        let max = if self.holding() {
            self.cfg.backoff_max_ms.min(HELD_BACKOFF_MAX_MS)
        } else {
            self.cfg.backoff_max_ms
        };
        let delay = backoff_ms(self.cfg.backoff_start_ms, max, self.attempt, jitter);
        self.link = Link::Backoff {
            until: now.saturating_add(delay),
        };
        self.set_connection(ConnectionState::Reconnecting {
            attempt: self.attempt,
            retry_in_ms: delay,
        });
    }

    /// A frame while `login` waits for its answer.
    pub(super) fn on_login_answer(&mut self, now: Millis, msg: ServerMessage) {
        match msg {
            ServerMessage::LoginOk {
                user_id,
                heartbeat_secs,
                server_time_ms,
                ice_servers,
                ice_servers_expire_at,
                ..
            } => {
                let every = keepalive_every_ms(heartbeat_secs);
                self.server_offset_ms = (server_time_ms as i64).saturating_sub(now as i64);
                self.attempt = 0;
                self.link = Link::Online {
                    every,
                    last_ping: now,
                    last_heard: now,
                };
                self.user = Some(user_id.clone());
                // Before "online": whoever starts a call once online finds the servers there.
                self.set_ice_servers(ice_servers, ice_servers_expire_at);
                // State first, then the reply: whoever awaits the sign-in reads "online".
                self.set_connection(ConnectionState::Online);
                self.emit(AppEvent::User {
                    user: Some(user_id.clone()),
                });
                if let Some(id) = self.pending_sign_in.take() {
                    self.reply(id, Ok(Reply::SignedIn(user_id)));
                }
                // Back after a drop during a connected call: pick it up again.
                self.ask_resume();
            }
            ServerMessage::Error { code, message, .. } => {
                // The credentials were refused: retrying the same ones cannot help.
                self.out.push_back(Output::Close);
                self.fail(now, login_error(code, &message));
            }
            // Nothing else is meant for a connection that is not signed in yet.
            _ => {}
        }
    }

    pub(super) fn on_disconnected(
        &mut self,
        now: Millis,
        close: Option<CloseReason>,
        detail: &str,
    ) {
        match &self.link {
            Link::Connecting { url, .. } | Link::LoggingIn { url, .. } => {
                let detail = match close {
                    Some(r) => format!("the server closed the connection ({})", r.as_str()),
                    None if detail.is_empty() => "connection closed".to_owned(),
                    None => detail.to_owned(),
                };
                let e = unreachable_at(url, &detail);
                self.attempt_failed(now, e, false);
            }
            Link::Online { .. } if close_is_final(close) => {
                // Kicked, replaced, logged out elsewhere, or refused: a reconnect must not undo it.
                self.signed_out(now);
            }
            Link::Online { .. } => {
                // A connected call is kept and resumed (its media is peer-to-peer); one that had
                // not connected yet ends.
                if !self.hold_call(now) {
                    // (Titled "Connection lost", as the server tells the peer.)
                    self.drop_call(
                        Some(EndReason::ConnectionLost),
                        "The connection to the server was lost.",
                    );
                }
                self.back_off(now);
            }
            // Planning or waiting: nothing was open. Signed out: a socket we already closed.
            _ => {}
        }
    }

    /// Ends a live call locally when the connection goes (the server ends it too).
    pub(super) fn drop_call(&mut self, reason: Option<EndReason>, message: &str) {
        if let Some(mut c) = self.call.clone() {
            if call_view::is_live(&Some(c.clone())) {
                call_view::end(&mut c, reason, message.to_owned());
                self.set_call(c);
            }
        }
    }
}
