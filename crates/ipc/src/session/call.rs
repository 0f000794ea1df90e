//! The call half of [`ClientSession`]: the UI's call commands and the server frames of a signed-in
//! session, through the shared rules of [`crate::call_view`].
//!
//! There is at most one call; a second invitation while one is live is declined as busy, and a new
//! call only replaces one that has ended. Every command is answered: with the frame sent and the view
//! shown, or with a typed error and nothing changed.

use super::{ClientSession, Command, CommandId, Millis, Output, Reply};
use crate::{call_view, AppEvent, CallPhase, ErrorCode, IpcError};
use tincan_proto::{ClientMessage, ErrorCode as WireCode, ServerMessage};

fn signed_out_error() -> IpcError {
    IpcError::new(ErrorCode::NotSignedIn, "You are signed out.")
}

fn offline_error() -> IpcError {
    IpcError::new(
        ErrorCode::ServerUnreachable,
        "Not connected to the server right now; reconnecting.",
    )
}

impl ClientSession {
    pub(super) fn call_command(&mut self, now: Millis, id: CommandId, cmd: Command) {
        let result = self.run_call_command(now, cmd);
        self.reply(id, result);
    }

    fn run_call_command(&mut self, now: Millis, cmd: Command) -> Result<Reply, IpcError> {
        if self.user.is_none() {
            return Err(if self.pending_sign_in.is_some() {
                IpcError::new(ErrorCode::NotSignedIn, "Still signing in; wait a moment.")
            } else {
                signed_out_error()
            });
        }
        let online = self.is_online();
        let current = self.call.clone();
        let step = match cmd {
            Command::StartCall {
                call_id,
                callee,
                call_type,
                timeout_secs,
            } => {
                if !online {
                    return Err(offline_error());
                }
                if call_view::is_live(&current) {
                    return Err(IpcError::new(
                        ErrorCode::AlreadyInCall,
                        "You are already in a call.",
                    ));
                }
                if self.finished(&call_id) {
                    return Err(IpcError::new(
                        ErrorCode::Internal,
                        "That call ID was used already.",
                    ));
                }
                if self.user.as_ref() == Some(&callee) {
                    return Err(IpcError::new(
                        ErrorCode::CallSelf,
                        "You cannot call yourself.",
                    ));
                }
                let view = call_view::outgoing(
                    call_id.clone(),
                    callee.clone(),
                    call_type,
                    timeout_secs,
                    now,
                );
                self.send(ClientMessage::Invite {
                    call_id,
                    callee,
                    call_type,
                    timeout_secs: Some(timeout_secs),
                });
                self.set_call(view.clone());
                return Ok(Reply::Call(view));
            }
            Command::Accept { call_id } => call_view::accept(current.as_ref(), call_id),
            Command::Reject { call_id } => call_view::reject(current.as_ref(), call_id),
            Command::Hangup { call_id } => call_view::hang_up(current.as_ref(), call_id, now),
            Command::SetMuted { muted } => call_view::set_muted(current.as_ref(), muted),
            Command::Signal { call_id, signal } => {
                call_view::signal(current.as_ref(), call_id, signal)
            }
            Command::SignIn | Command::SignOut => {
                unreachable!("handled by handle_command")
            }
        }?;
        let call_view::Step { frame, update } = step;
        if let Some(frame) = frame {
            if self.holding() {
                // The call is kept through a lost connection: its hang-up, mute and media
                // signals go out once it is resumed (`resume`).
                self.keep_for_resume(frame);
            } else if !online {
                // Only a connected call is kept: any other ended when the connection went.
                return Err(offline_error());
            } else if !self.keep_for_peer(&frame) {
                // (A signal for a peer who is reconnecting waits for it: `resume`.)
                self.send(frame);
            }
        }
        if let Some(c) = update {
            self.set_call(c);
        }
        Ok(Reply::Done)
    }

    /// A frame on a signed-in connection.
    pub(super) fn on_server(&mut self, now: Millis, msg: ServerMessage) {
        match &msg {
            ServerMessage::Invited {
                call_id,
                caller,
                call_type,
                timeout_secs,
            } => {
                if call_view::is_live(&self.call) {
                    // Busy: say so, and keep the current call (a repeat of its own invitation is
                    // just ignored).
                    if self.call.as_ref().map(|c| &c.call_id) != Some(call_id) {
                        self.send(ClientMessage::Reject {
                            call_id: call_id.clone(),
                            busy: true,
                        });
                    }
                    return;
                }
                if self.finished(call_id) {
                    // A repeat invitation for a call that already ended here (a re-ring after a
                    // reconnect): the user saw it end, so it does not ring again; the caller's
                    // other devices and the ring timeout decide.
                    return;
                }
                let view = call_view::incoming(
                    call_id.clone(),
                    caller.clone(),
                    *call_type,
                    *timeout_secs,
                    now,
                );
                self.set_call(view);
                self.emit(AppEvent::Incoming {
                    call_id: call_id.clone(),
                    caller: caller.clone(),
                    call_type: *call_type,
                });
            }
            ServerMessage::MissedCalls { calls } => self.emit(AppEvent::MissedCalls {
                calls: calls.clone(),
            }),
            ServerMessage::Signal {
                call_id,
                from,
                signal,
            } => {
                self.apply(now, &msg);
                self.emit(AppEvent::RemoteSignal {
                    call_id: call_id.clone(),
                    from: from.clone(),
                    signal: signal.clone(),
                });
            }
            ServerMessage::KickedOffline { reason } => {
                self.emit(AppEvent::KickedOffline {
                    reason: *reason,
                    message: call_view::kicked_offline_message(*reason, &self.cfg.this),
                });
                self.out.push_back(Output::Close);
                self.signed_out(now);
            }
            ServerMessage::LoggedOut => {
                self.out.push_back(Output::Close);
                self.signed_out(now);
            }
            ServerMessage::Error {
                code,
                message,
                call_id,
            } => {
                // The server's "no" to `resume_call`: the held call is over.
                if let Some(id) = call_id {
                    if !matches!(code, WireCode::RateLimited) && self.resume_refused(now, id) {
                        return;
                    }
                }
                let about_our_call =
                    matches!((call_id, &self.call), (Some(id), Some(c)) if *id == c.call_id);
                if !about_our_call {
                    self.emit(AppEvent::Error {
                        error: IpcError::new(
                            ErrorCode::ServerRefused,
                            call_view::describe_error(*code, message),
                        ),
                    });
                }
                self.apply(now, &msg);
            }
            ServerMessage::IceServers {
                ice_servers,
                expires_at,
            } => self.set_ice_servers(ice_servers.clone(), Some(*expires_at)),
            ServerMessage::LoginOk { .. }
            | ServerMessage::Pong { .. }
            | ServerMessage::Blocked { .. }
            | ServerMessage::Unblocked { .. } => {}
            ServerMessage::CallEnded { call_id, .. } => {
                self.resume_ended(call_id);
                self.apply(now, &msg);
            }
            ServerMessage::CallResumed { call_id, .. } => self.on_call_resumed(call_id),
            ServerMessage::PeerReconnecting { call_id, .. } => self.on_peer_away(call_id, true),
            ServerMessage::PeerReconnected { call_id, .. } => self.on_peer_away(call_id, false),
            ServerMessage::Ringing { .. } | ServerMessage::Accepted { .. } => self.apply(now, &msg),
        }
    }

    /// Applies a frame to the call view; the UI hears of it when it changed.
    fn apply(&mut self, now: Millis, msg: &ServerMessage) {
        if let Some(mut c) = self.call.clone() {
            if call_view::apply(&mut c, msg, now) {
                debug_assert!(c.phase == CallPhase::Ended || c.ended.is_none());
                self.set_call(c);
            }
        }
    }
}
