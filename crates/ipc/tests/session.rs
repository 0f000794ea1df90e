//! [`ClientSession`] driven by a script: what the UI is told, in which order and when, for sign-in in
//! each credential mode, refused and expired credentials, keepalive, reconnect with backoff, being
//! replaced or kicked, every call outcome from either side, and media signals before and after
//! accept. No sockets, no sleeping: time is an input.

mod common;

use common::*;
use tincan_ipc::session::{Command, Config, LoginPlan, Output, PlanError, Reply};
use tincan_ipc::{AppEvent, CallPhase, ConnectionState, Direction, ErrorCode, IpcError};
use tincan_proto::{
    ClientMessage, CloseReason, EndReason, ErrorCode as WireCode, MediaSignal, SecretKey,
    ServerMessage, UserSigKey,
};

fn is_connection(e: &AppEvent, want: &ConnectionState) -> bool {
    matches!(e, AppEvent::Connection { state } if state == want)
}

// ---- signing in ----

#[test]
fn sign_in_tells_the_ui_connecting_then_online_then_who_then_answers() {
    let mut h = H::new();
    let id = h.cmd(Command::SignIn);
    assert_eq!(
        h.take(),
        vec![
            Output::Event(AppEvent::Connection {
                state: ConnectionState::Connecting
            }),
            Output::PlanLogin,
        ]
    );
    h.plan(Ok(plan("alice")));
    assert_eq!(h.take(), vec![Output::Connect { url: URL.into() }]);
    // Nothing is sent before the socket is open.
    h.connected();
    assert_eq!(h.sent(), vec![plan("alice").login]);
    h.frame(login_ok("alice"));
    assert_eq!(
        h.take(),
        vec![
            Output::Event(AppEvent::Connection {
                state: ConnectionState::Online
            }),
            Output::Event(AppEvent::User {
                user: Some(user("alice"))
            }),
            Output::Reply {
                id,
                result: Ok(Reply::SignedIn(user("alice")))
            },
        ]
    );
    assert_eq!(h.s.snapshot().user, Some(user("alice")));
}

#[test]
fn each_credential_mode_signs_in_with_the_frame_its_plan_made() {
    // SDKAppID + secret key: a UserSig made for this attempt.
    let key = UserSigKey::new(1_400_000_001, SecretKey::new("k".into()));
    let sig = key.gen(&user("alice"), 1_700_000_000, 300, None);
    // Embedded: the local server's SDKAppID and a sig from its key; pasted: the user's own sig.
    for (sdk, sig) in [
        (1_400_000_001, sig.as_str()),
        (1, "embedded-sig"),
        (7, "pasted-sig"),
    ] {
        let mut h = H::new();
        let id = h.cmd(Command::SignIn);
        h.take();
        let login = login_frame("alice", sdk, sig);
        h.plan(Ok(LoginPlan {
            url: URL.into(),
            login: login.clone(),
        }));
        h.connected();
        assert_eq!(h.sent(), vec![login]);
        h.frame(login_ok("alice"));
        assert_eq!(h.ok(id), Reply::SignedIn(user("alice")));
    }
}

#[test]
fn missing_credentials_fail_the_sign_in_at_once() {
    for fatal in [true, false] {
        let mut h = H::new();
        let id = h.cmd(Command::SignIn);
        h.take();
        let e = IpcError::new(ErrorCode::NoSavedCredentials, "No secret key is saved yet.");
        h.plan(Err(PlanError {
            error: e.clone(),
            fatal,
        }));
        assert_eq!(h.err(id), e);
        assert_eq!(h.connection(), ConnectionState::SignedOut);
        // The first sign-in is never retried in the background.
        assert_eq!(h.s.poll_timeout(), None);
    }
}

#[test]
fn refused_and_expired_credentials_are_typed() {
    for (code, want) in [
        (WireCode::UserSigInvalid, ErrorCode::UserSigInvalid),
        (WireCode::UserSigMismatch, ErrorCode::UserSigInvalid),
        (WireCode::UserSigExpired, ErrorCode::UserSigExpired),
        (WireCode::UnsupportedVersion, ErrorCode::ServerRefused),
    ] {
        let mut h = H::new();
        let id = h.cmd(Command::SignIn);
        h.plan(Ok(plan("alice")));
        h.connected();
        h.take();
        h.frame(ServerMessage::error(code, "no", None));
        let out = h.take();
        assert!(out.contains(&Output::Close), "{out:?}");
        assert_eq!(h.err(id).code, want);
        assert_eq!(h.connection(), ConnectionState::SignedOut);
        assert_eq!(h.s.poll_timeout(), None);
    }
}

#[test]
fn an_unreachable_server_fails_the_first_sign_in_in_words() {
    let mut h = H::new();
    let id = h.cmd(Command::SignIn);
    h.plan(Ok(plan("alice")));
    h.disconnected(None);
    let e = h.err(id);
    assert_eq!(e.code, ErrorCode::ServerUnreachable);
    assert!(e.message.contains(URL), "{}", e.message);
    // The UI heard "signed out" before the answer.
    let out = h.take();
    let reply_at = out
        .iter()
        .position(|o| matches!(o, Output::Reply { .. }))
        .unwrap();
    assert!(out[..reply_at]
        .iter()
        .any(|o| matches!(o, Output::Event(e) if is_connection(e, &ConnectionState::SignedOut))));
}

#[test]
fn a_connect_failure_the_driver_typed_keeps_its_code_and_a_fatal_one_stops() {
    let mut h = H::new();
    h.sign_in("alice");
    h.disconnected(None);
    h.advance(1_000);
    h.plan(Ok(plan("alice")));
    h.take();
    // Retryable (the network): back off again.
    let e = IpcError::new(
        ErrorCode::ServerUnreachable,
        "Cannot reach the server: refused",
    );
    h.connect_failed(e, false);
    assert_eq!(
        h.s.snapshot().connection,
        ConnectionState::Reconnecting {
            attempt: 2,
            retry_in_ms: h.s.poll_timeout().unwrap() - h.now
        }
    );
    h.advance(5_000);
    h.plan(Ok(plan("alice")));
    // Fatal (the certificate is not trusted): stop, and say why.
    let e = IpcError::new(
        ErrorCode::TlsCertificate,
        "The server's TLS certificate is not trusted.",
    );
    h.connect_failed(e, true);
    let ev = h.events();
    assert!(
        ev.iter().any(
            |e| matches!(e, AppEvent::Error { error } if error.code == ErrorCode::TlsCertificate)
        ),
        "{ev:?}"
    );
    assert_eq!(h.connection(), ConnectionState::SignedOut);
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn connect_and_login_have_deadlines() {
    let mut h = H::new();
    let id = h.cmd(Command::SignIn);
    h.plan(Ok(plan("alice")));
    h.take();
    assert_eq!(h.s.poll_timeout(), Some(h.now + 5_000));
    h.advance(4_999);
    assert!(h.reply(id).is_none());
    h.advance(1);
    assert!(h.take().contains(&Output::Close));
    assert!(h.err(id).message.contains("no answer"));

    let mut h = H::new();
    let id = h.cmd(Command::SignIn);
    h.plan(Ok(plan("alice")));
    h.connected();
    h.take();
    h.advance(10_000);
    assert!(h.take().contains(&Output::Close));
    assert!(h.err(id).message.contains("did not answer the sign-in"));
}

#[test]
fn nothing_but_login_answers_count_before_login_ok() {
    let mut h = H::new();
    let id = h.cmd(Command::SignIn);
    h.plan(Ok(plan("alice")));
    h.connected();
    h.take();
    h.frame(invited("early", "bob"));
    h.frame(ServerMessage::Pong { nonce: None });
    assert!(h.take().is_empty());
    // Commands wait for the sign-in, and say so.
    let c = h.start_call("c1", "bob");
    assert_eq!(h.err(c).code, ErrorCode::NotSignedIn);
    assert!(h.sent().is_empty());
    h.frame(login_ok("alice"));
    assert!(h.reply(id).unwrap().is_ok());
}

#[test]
fn keepalive_pings_a_bit_faster_than_the_heartbeat_and_only_when_online() {
    let mut h = H::new();
    h.sign_in("alice");
    // heartbeat_secs 25 → every 20 s.
    assert_eq!(h.s.poll_timeout(), Some(h.now + 20_000));
    h.advance(19_999);
    assert!(h.sent().is_empty());
    h.advance(1);
    assert_eq!(h.sent(), vec![ClientMessage::Ping { nonce: None }]);
    h.advance(60_000);
    assert_eq!(h.sent().len(), 3);
    h.cmd(Command::SignOut);
    h.take();
    h.advance(100_000);
    assert!(h.sent().is_empty());
    assert_eq!(h.s.poll_timeout(), None);
}

// ---- losing the connection ----

#[test]
fn a_drop_reconnects_with_doubling_backoff_and_signs_in_again() {
    let mut h = H::new();
    h.sign_in("alice");
    h.disconnected(None);
    let ev = h.events();
    let AppEvent::Connection {
        state:
            ConnectionState::Reconnecting {
                attempt: 1,
                retry_in_ms,
            },
    } = ev[0].clone()
    else {
        panic!("{ev:?}")
    };
    assert!((500..=600).contains(&retry_in_ms), "{retry_in_ms}");
    // The user stays signed in while reconnecting.
    assert_eq!(h.s.snapshot().user, Some(user("alice")));
    h.advance(retry_in_ms - 1);
    assert!(h.take().is_empty());
    h.advance(1);
    assert_eq!(
        h.take(),
        vec![
            Output::Event(AppEvent::Connection {
                state: ConnectionState::Connecting
            }),
            // A fresh plan (a fresh UserSig) for every attempt.
            Output::PlanLogin,
        ]
    );
    // Attempts fail: the delay doubles, up to the cap.
    let mut delays = vec![];
    for _ in 0..7 {
        h.plan(Ok(plan("alice")));
        h.disconnected(None);
        let ev = h.events();
        let Some(AppEvent::Connection {
            state: ConnectionState::Reconnecting { retry_in_ms, .. },
        }) = ev.last().cloned()
        else {
            panic!("{ev:?}")
        };
        delays.push(retry_in_ms);
        h.advance(retry_in_ms);
        h.take();
    }
    assert!((1_000..=1_200).contains(&delays[0]), "{delays:?}");
    assert!((2_000..=2_400).contains(&delays[1]), "{delays:?}");
    assert_eq!(*delays.last().unwrap(), 15_000, "{delays:?}");
    // A retryable plan failure (the local server not up yet) is retried too.
    h.plan(Err(PlanError {
        error: IpcError::new(ErrorCode::ServerUnreachable, "not yet"),
        fatal: false,
    }));
    assert!(matches!(
        h.events()[..],
        [AppEvent::Connection {
            state: ConnectionState::Reconnecting { attempt: 9, .. }
        }]
    ));
    h.advance(15_000);
    h.take();
    // Success: online again, attempts counted from zero.
    h.plan(Ok(plan("alice")));
    h.connected();
    h.frame(login_ok("alice"));
    let ev = h.events();
    assert!(is_connection(&ev[0], &ConnectionState::Online), "{ev:?}");
    h.disconnected(None);
    assert!(matches!(
        h.events()[..],
        [AppEvent::Connection {
            state: ConnectionState::Reconnecting { attempt: 1, .. }
        }]
    ));
}

#[test]
fn commands_while_reconnecting_are_refused_not_queued() {
    let mut h = H::new();
    h.sign_in("alice");
    h.disconnected(None);
    let c = h.start_call("c1", "bob");
    assert_eq!(h.err(c).code, ErrorCode::ServerUnreachable);
    let m = h.cmd(Command::SetMuted { muted: true });
    assert_eq!(h.err(m).code, ErrorCode::NoCall);
    assert!(h.sent().is_empty());
}

#[test]
fn a_drop_ends_a_ringing_call_in_words() {
    // (A connected call is kept and resumed instead: tests/session_resume.rs.)
    let mut h = H::new();
    h.sign_in("alice");
    h.start_call("c1", "bob");
    h.frame(ServerMessage::Ringing {
        call_id: call_id("c1"),
    });
    h.take();
    h.disconnected(Some(CloseReason::ServerShutdown));
    let ev = h.events();
    let AppEvent::Call { call: Some(c) } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(c.phase, CallPhase::Ended);
    assert_eq!(
        c.ended.as_ref().unwrap().message,
        "The connection to the server was lost."
    );
    assert_eq!(
        c.ended.as_ref().unwrap().reason,
        Some(EndReason::ConnectionLost)
    );
    assert!(matches!(
        ev[1],
        AppEvent::Connection {
            state: ConnectionState::Reconnecting { .. }
        }
    ));
    // Hanging up the ended call is a no-op, not an error.
    let hang = h.cmd(Command::Hangup {
        call_id: call_id("c1"),
    });
    assert_eq!(h.ok(hang), Reply::Done);
}

#[test]
fn an_expired_pasted_sig_stops_the_reconnects_with_a_typed_error() {
    let mut h = H::new();
    h.sign_in("alice");
    h.disconnected(None);
    h.advance(1_000);
    h.take();
    h.plan(Err(PlanError {
        error: IpcError::new(ErrorCode::UserSigExpired, "Your sign-in has expired."),
        fatal: true,
    }));
    let ev = h.events();
    assert!(
        matches!(&ev[0], AppEvent::Error { error } if error.code == ErrorCode::UserSigExpired),
        "{ev:?}"
    );
    assert!(is_connection(&ev[1], &ConnectionState::SignedOut));
    assert_eq!(ev[2], AppEvent::User { user: None });
    assert_eq!(h.s.poll_timeout(), None);

    // The server saying so at a reconnect is the same.
    let mut h = H::new();
    h.sign_in("alice");
    h.disconnected(None);
    h.advance(1_000);
    h.plan(Ok(plan("alice")));
    h.connected();
    h.take();
    h.frame(ServerMessage::error(
        WireCode::UserSigExpired,
        "expired",
        None,
    ));
    let ev = h.events();
    assert!(matches!(&ev[0], AppEvent::Error { error } if error.code == ErrorCode::UserSigExpired));
    assert_eq!(h.connection(), ConnectionState::SignedOut);
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn kicked_or_replaced_stops_without_reconnecting() {
    for reason in [CloseReason::KickedOffline, CloseReason::Replaced] {
        let mut h = H::with(Config {
            this: "tab".into(),
            ..Config::default()
        });
        h.sign_in("alice");
        h.cmd(Command::StartCall {
            call_id: call_id("c1"),
            callee: user("bob"),
            call_type: Default::default(),
            timeout_secs: 30,
        });
        h.take();
        h.frame(ServerMessage::KickedOffline { reason });
        let out = h.take();
        let Output::Event(AppEvent::KickedOffline { message, .. }) = &out[0] else {
            panic!("{out:?}")
        };
        if reason == CloseReason::Replaced {
            assert!(message.contains("This tab signed in again"), "{message}");
        } else {
            assert!(message.contains("signed in somewhere else"), "{message}");
        }
        assert_eq!(out[1], Output::Close);
        assert!(
            matches!(&out[2], Output::Event(AppEvent::Call { call: Some(c) })
            if c.phase == CallPhase::Ended)
        );
        assert_eq!(h.connection(), ConnectionState::SignedOut);
        assert_eq!(h.s.snapshot().user, None);
        // The close that follows changes nothing; no reconnect fights the other device.
        h.disconnected(Some(reason));
        h.advance(60_000);
        assert!(h.take().is_empty());
    }
    // A close frame that says so, without the message before it, is the same.
    for reason in [
        CloseReason::Replaced,
        CloseReason::KickedOffline,
        CloseReason::AuthFailed,
    ] {
        let mut h = H::new();
        h.sign_in("alice");
        h.disconnected(Some(reason));
        assert_eq!(h.connection(), ConnectionState::SignedOut);
        h.advance(60_000);
        assert!(!h.take().iter().any(|o| matches!(o, Output::PlanLogin)));
    }
}

#[test]
fn sign_out_tells_the_server_closes_and_ends_the_call() {
    let mut h = H::new();
    h.sign_in("alice");
    h.frame(invited("c9", "bob"));
    h.take();
    let id = h.cmd(Command::SignOut);
    let out = h.take();
    assert_eq!(out[0], Output::Send(ClientMessage::Logout));
    assert_eq!(out[1], Output::Close);
    assert!(
        matches!(&out[2], Output::Event(AppEvent::Call { call: Some(c) })
        if c.ended.as_ref().unwrap().message == "You signed out.")
    );
    assert!(
        matches!(out.last(), Some(Output::Reply { id: i, result: Ok(Reply::Done) }) if *i == id)
    );
    // Commands now say "signed out".
    let c = h.start_call("c1", "bob");
    assert_eq!(h.err(c).code, ErrorCode::NotSignedIn);
}

#[test]
fn a_second_sign_in_replaces_the_first() {
    let mut h = H::new();
    let first = h.cmd(Command::SignIn);
    let second = h.cmd(Command::SignIn);
    assert_eq!(h.err(first).code, ErrorCode::NotSignedIn);
    assert!(h.reply(second).is_none());
    h.take();
    h.plan(Ok(plan("alice")));
    h.connected();
    h.frame(login_ok("alice"));
    assert_eq!(h.ok(second), Reply::SignedIn(user("alice")));
    // Signing in again while online logs the old session out first.
    h.take();
    h.cmd(Command::SignIn);
    let out = h.take();
    assert_eq!(out[0], Output::Send(ClientMessage::Logout));
    assert_eq!(out[1], Output::Close);
    assert!(out.contains(&Output::PlanLogin));
}

// ---- calls ----

fn outgoing_ringing() -> H {
    let mut h = H::new();
    h.sign_in("alice");
    let id = h.start_call("c1", "bob");
    let out = h.take();
    assert_eq!(
        out[0],
        Output::Send(ClientMessage::Invite {
            call_id: call_id("c1"),
            callee: user("bob"),
            call_type: Default::default(),
            timeout_secs: Some(30),
        })
    );
    assert!(
        matches!(&out[1], Output::Event(AppEvent::Call { call: Some(c) })
        if c.phase == CallPhase::Dialing && c.direction == Direction::Outgoing)
    );
    let Reply::Call(view) = h.ok(id) else {
        panic!()
    };
    assert_eq!(view.started_at_ms, h.now);
    h.frame(ServerMessage::Ringing {
        call_id: call_id("c1"),
    });
    assert_eq!(h.phase(), Some(CallPhase::Ringing));
    h.take();
    h
}

fn incoming_ringing() -> H {
    let mut h = H::new();
    h.sign_in("alice");
    h.frame(invited("c2", "bob"));
    let ev = h.events();
    // The call view first (get_state and the tray read it), then the ring.
    assert!(matches!(&ev[0], AppEvent::Call { call: Some(c) }
        if c.phase == CallPhase::Incoming && c.peer == user("bob")));
    assert!(matches!(&ev[1], AppEvent::Incoming { caller, .. } if *caller == user("bob")));
    h
}

fn last_call_end(h: &mut H) -> (Option<EndReason>, String) {
    let c = h.call().expect("a call");
    assert_eq!(c.phase, CallPhase::Ended);
    let e = c.ended.unwrap();
    (e.reason, e.message)
}

#[test]
fn outgoing_call_outcomes_from_the_server() {
    for (reason, by, words) in [
        (EndReason::Rejected, Some("bob"), "The call was declined."),
        (EndReason::LineBusy, None, "The line is busy."),
        (EndReason::NoResponse, None, "No answer."),
        (
            EndReason::Offline,
            None,
            "The person you called is offline.",
        ),
        (EndReason::ConnectionLost, None, "The connection was lost."),
    ] {
        let mut h = outgoing_ringing();
        h.frame(ended("c1", reason, by, None));
        assert_eq!(last_call_end(&mut h), (Some(reason), words.to_owned()));
        // Ends once: a repeat changes nothing.
        h.take();
        h.frame(ended("c1", reason, by, None));
        assert!(h.take().is_empty());
    }
}

#[test]
fn outgoing_call_accepted_then_hung_up_by_either_side() {
    // The callee hangs up.
    let mut h = outgoing_ringing();
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c1"),
        by: user("bob"),
    });
    let c = h.call().unwrap();
    assert_eq!(
        (c.phase, c.connected_at_ms),
        (CallPhase::Connected, Some(h.now))
    );
    h.advance(65_000);
    h.frame(ended("c1", EndReason::Hangup, Some("bob"), Some(65_000)));
    assert_eq!(
        last_call_end(&mut h).1,
        "bob hung up. The call lasted 1:05."
    );

    // This side hangs up: ended at once, the server's duration wins when it comes.
    let mut h = outgoing_ringing();
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c1"),
        by: user("bob"),
    });
    h.advance(3_000);
    h.take();
    let id = h.cmd(Command::Hangup {
        call_id: call_id("c1"),
    });
    assert_eq!(h.ok(id), Reply::Done);
    assert!(h.sent().contains(&ClientMessage::Hangup {
        call_id: call_id("c1")
    }));
    assert_eq!(
        last_call_end(&mut h).1,
        "You hung up. The call lasted 0:03."
    );
    h.frame(ended("c1", EndReason::Hangup, Some("alice"), Some(2_900)));
    assert_eq!(
        last_call_end(&mut h).1,
        "You hung up. The call lasted 0:02."
    );

    // The peer's connection goes mid-call.
    let mut h = outgoing_ringing();
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c1"),
        by: user("bob"),
    });
    h.frame(ended(
        "c1",
        EndReason::ConnectionLost,
        Some("bob"),
        Some(1_000),
    ));
    assert_eq!(last_call_end(&mut h).0, Some(EndReason::ConnectionLost));
}

#[test]
fn outgoing_call_cancelled_here() {
    let mut h = outgoing_ringing();
    let id = h.cmd(Command::Hangup {
        call_id: call_id("c1"),
    });
    assert_eq!(h.ok(id), Reply::Done);
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Cancel {
            call_id: call_id("c1")
        }]
    );
    assert_eq!(
        last_call_end(&mut h),
        (Some(EndReason::Cancelled), "You cancelled the call.".into())
    );
}

#[test]
fn a_refused_invite_ends_the_call_with_the_reason() {
    let mut h = H::new();
    h.sign_in("alice");
    h.start_call("c1", "bob");
    h.take();
    h.frame(ServerMessage::error(
        WireCode::AlreadyInCall,
        "busy",
        Some(call_id("c1")),
    ));
    // About our call: no separate error banner, the call screen says it.
    let ev = h.events();
    assert!(
        !ev.iter().any(|e| matches!(e, AppEvent::Error { .. })),
        "{ev:?}"
    );
    assert_eq!(
        last_call_end(&mut h),
        (None, "You are already in a call.".into())
    );
    // An error about nothing we know is shown as an error.
    h.frame(ServerMessage::error(
        WireCode::RateLimited,
        "slow down",
        None,
    ));
    assert!(
        matches!(&h.events()[..], [AppEvent::Error { error }] if error.code == ErrorCode::ServerRefused)
    );
}

#[test]
fn incoming_call_outcomes() {
    // Accepted here, then hung up by the caller.
    let mut h = incoming_ringing();
    let id = h.cmd(Command::Accept {
        call_id: call_id("c2"),
    });
    assert_eq!(h.ok(id), Reply::Done);
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Accept {
            call_id: call_id("c2")
        }]
    );
    assert_eq!(h.phase(), Some(CallPhase::Answering));
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c2"),
        by: user("alice"),
    });
    assert_eq!(h.phase(), Some(CallPhase::Connected));
    h.frame(ended("c2", EndReason::Hangup, Some("bob"), Some(4_000)));
    assert_eq!(
        last_call_end(&mut h).1,
        "bob hung up. The call lasted 0:04."
    );

    // Declined here.
    let mut h = incoming_ringing();
    let id = h.cmd(Command::Reject {
        call_id: call_id("c2"),
    });
    assert_eq!(h.ok(id), Reply::Done);
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Reject {
            call_id: call_id("c2"),
            busy: false
        }]
    );
    assert_eq!(last_call_end(&mut h).0, Some(EndReason::Rejected));

    // Cancelled by the caller, timed out, answered or declined on another device, caller lost.
    for reason in [
        EndReason::Cancelled,
        EndReason::Timeout,
        EndReason::AnsweredElsewhere,
        EndReason::DeclinedElsewhere,
        EndReason::ConnectionLost,
    ] {
        let mut h = incoming_ringing();
        h.frame(ended("c2", reason, None, None));
        assert_eq!(
            last_call_end(&mut h),
            (Some(reason), reason.describe().into())
        );
        // Accepting it now says so in a typed error.
        let id = h.cmd(Command::Accept {
            call_id: call_id("c2"),
        });
        assert_eq!(h.err(id).code, ErrorCode::NoCall);
    }

    // Connected, hung up here.
    let mut h = incoming_ringing();
    h.cmd(Command::Accept {
        call_id: call_id("c2"),
    });
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c2"),
        by: user("alice"),
    });
    h.take();
    h.cmd(Command::Hangup {
        call_id: call_id("c2"),
    });
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Hangup {
            call_id: call_id("c2")
        }]
    );
    assert_eq!(last_call_end(&mut h).0, Some(EndReason::Hangup));
}

#[test]
fn a_second_invitation_while_in_a_call_is_declined_as_busy() {
    let mut h = incoming_ringing();
    h.frame(invited("c3", "carol"));
    assert_eq!(
        h.take(),
        vec![Output::Send(ClientMessage::Reject {
            call_id: call_id("c3"),
            busy: true
        })]
    );
    assert_eq!(h.call().unwrap().call_id, call_id("c2"));
    // A repeat of the current call's own invitation is ignored.
    h.frame(invited("c2", "bob"));
    assert!(h.take().is_empty());
    // Once the call ended, the next one rings.
    h.frame(ended("c2", EndReason::Cancelled, None, None));
    h.frame(invited("c4", "carol"));
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, AppEvent::Incoming { call_id: c, .. } if *c == call_id("c4"))));
}

#[test]
fn call_commands_are_answered_with_typed_errors() {
    let mut h = incoming_ringing();
    let a = h.start_call("c1", "carol");
    assert_eq!(h.err(a).code, ErrorCode::AlreadyInCall);
    let b = h.cmd(Command::Accept {
        call_id: call_id("other"),
    });
    assert_eq!(h.err(b).code, ErrorCode::NoCall);
    let mut h = outgoing_ringing();
    let c = h.cmd(Command::Accept {
        call_id: call_id("c1"),
    });
    assert_eq!(h.err(c).code, ErrorCode::InvalidState);
    let mut h = H::new();
    h.sign_in("alice");
    let d = h.start_call("c1", "alice");
    assert_eq!(h.err(d).code, ErrorCode::CallSelf);
    let e = h.cmd(Command::Signal {
        call_id: call_id("c1"),
        signal: MediaSignal::EndOfCandidates,
    });
    assert_eq!(h.err(e).code, ErrorCode::NoCall);
    assert!(h.sent().is_empty());
    // Before any sign-in.
    let mut h = H::new();
    let f = h.cmd(Command::SetMuted { muted: true });
    assert_eq!(h.err(f).code, ErrorCode::NotSignedIn);
}

#[test]
fn media_signals_flow_before_and_after_accept() {
    // Caller: an early offer while ringing, the answer and candidates after accept.
    let mut h = outgoing_ringing();
    let id = h.cmd(Command::Signal {
        call_id: call_id("c1"),
        signal: offer("v=0 early"),
    });
    assert_eq!(h.ok(id), Reply::Done);
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Signal {
            call_id: call_id("c1"),
            signal: offer("v=0 early")
        }]
    );
    // Muting before connect changes the view and tells nobody yet.
    h.cmd(Command::SetMuted { muted: true });
    assert!(h.sent().is_empty());
    assert!(h.call().unwrap().muted);
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c1"),
        by: user("bob"),
    });
    h.take();
    let answer = MediaSignal::Answer {
        sdp: "v=0 a".into(),
    };
    h.frame(ServerMessage::Signal {
        call_id: call_id("c1"),
        from: user("bob"),
        signal: answer.clone(),
    });
    assert_eq!(
        h.events(),
        vec![AppEvent::RemoteSignal {
            call_id: call_id("c1"),
            from: user("bob"),
            signal: answer
        }]
    );
    // The peer mutes: the view shows it, and the media layer hears it too.
    h.frame(ServerMessage::Signal {
        call_id: call_id("c1"),
        from: user("bob"),
        signal: MediaSignal::Mute { muted: true },
    });
    let ev = h.events();
    assert!(matches!(&ev[0], AppEvent::Call { call: Some(c) } if c.remote_muted));
    assert!(matches!(&ev[1], AppEvent::RemoteSignal { .. }));
    // Muting once connected tells the peer.
    h.cmd(Command::SetMuted { muted: false });
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Signal {
            call_id: call_id("c1"),
            signal: MediaSignal::Mute { muted: false }
        }]
    );

    // Callee: the early offer arrives while ringing; its answer goes after accept.
    let mut h = incoming_ringing();
    h.frame(ServerMessage::Signal {
        call_id: call_id("c2"),
        from: user("bob"),
        signal: offer("v=0 early"),
    });
    assert!(
        matches!(&h.events()[..], [AppEvent::RemoteSignal { signal, .. }] if *signal == offer("v=0 early"))
    );
    assert_eq!(h.phase(), Some(CallPhase::Incoming));
    h.cmd(Command::Accept {
        call_id: call_id("c2"),
    });
    let id = h.cmd(Command::Signal {
        call_id: call_id("c2"),
        signal: MediaSignal::Answer {
            sdp: "v=0 b".into(),
        },
    });
    assert_eq!(h.ok(id), Reply::Done);
    assert_eq!(h.sent().len(), 2);
    // After the call ended, a late signal is refused here, not sent.
    h.frame(ended("c2", EndReason::Hangup, Some("bob"), Some(1)));
    let late = h.cmd(Command::Signal {
        call_id: call_id("c2"),
        signal: MediaSignal::EndOfCandidates,
    });
    assert_eq!(h.err(late).code, ErrorCode::NoCall);
    assert!(h.sent().is_empty());
}

#[test]
fn missed_calls_are_passed_on() {
    let mut h = H::new();
    h.sign_in("alice");
    let calls = vec![tincan_proto::MissedCall {
        call_id: call_id("m1"),
        caller: user("bob"),
        call_type: Default::default(),
        at_ms: 5,
    }];
    h.frame(ServerMessage::MissedCalls {
        calls: calls.clone(),
    });
    assert_eq!(h.events(), vec![AppEvent::MissedCalls { calls }]);
}

#[test]
fn stale_inputs_change_nothing() {
    let mut h = H::new();
    // Nobody asked for these.
    h.connected();
    h.disconnected(None);
    h.plan(Ok(plan("alice")));
    h.frame(login_ok("alice"));
    assert!(h.take().is_empty());
    assert_eq!(h.connection(), ConnectionState::SignedOut);
}

#[test]
fn a_backlogged_peer_does_not_end_a_dialing_call() {
    // The server held back one of our signals because the callee is not reading fast enough
    // (`peer_backlogged`, issue 11): the call goes on.
    let mut h = H::new();
    h.sign_in("alice");
    h.start_call("c1", "bob");
    h.take();
    h.frame(ServerMessage::error(
        WireCode::PeerBacklogged,
        "the peer is not reading fast enough",
        Some(call_id("c1")),
    ));
    assert_eq!(h.phase(), Some(CallPhase::Dialing));
}
