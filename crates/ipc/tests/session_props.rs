//! Property tests of [`ClientSession`]: random interleavings of UI commands, server frames, login
//! plans, connects, disconnects and the passing of time, against the invariants a user relies on:
//!
//! - the UI sees at most one active call at a time;
//! - every call the UI saw ends, exactly once (later updates of an ended call keep its reason);
//! - nothing but `login` and `ping` is sent on a connection before its `login_ok`, and nothing at all
//!   on a connection that is not open;
//! - every command is answered exactly once (none is lost without an error);
//! - the snapshot (`get_state`) agrees with the last events;
//! - a dropped connection (not a kick or a sign-out) never ends a connected call, and `resume_call`
//!   is only ever sent for a call the UI saw connected.

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use tincan_ipc::session::{Command, Output, PlanError};
use tincan_ipc::{AppEvent, CallPhase, ConnectionState, EndReason, ErrorCode, IpcError};
use tincan_proto::{
    CallType, ClientMessage, CloseReason, ErrorCode as WireCode, MediaSignal, ServerMessage,
};

const IDS: [&str; 4] = ["c0", "c1", "c2", "c3"];
const PEERS: [&str; 3] = ["bob", "carol", "alice"];

#[derive(Debug, Clone)]
enum Step {
    Cmd(Command),
    Frame(ServerMessage),
    PlanOk,
    PlanErr(bool),
    Connected,
    Disconnected(Option<CloseReason>),
    Advance(u64),
}

fn id() -> impl Strategy<Value = tincan_proto::CallId> {
    prop::sample::select(&IDS[..]).prop_map(call_id)
}

fn peer() -> impl Strategy<Value = tincan_proto::UserId> {
    prop::sample::select(&PEERS[..]).prop_map(user)
}

fn reason() -> impl Strategy<Value = EndReason> {
    prop::sample::select(vec![
        EndReason::Rejected,
        EndReason::LineBusy,
        EndReason::NoResponse,
        EndReason::Timeout,
        EndReason::Offline,
        EndReason::Cancelled,
        EndReason::Hangup,
        EndReason::AnsweredElsewhere,
        EndReason::DeclinedElsewhere,
        EndReason::ConnectionLost,
    ])
}

fn signal() -> impl Strategy<Value = MediaSignal> {
    prop_oneof![
        Just(offer("v=0")),
        Just(MediaSignal::Answer { sdp: "v=0".into() }),
        Just(MediaSignal::EndOfCandidates),
        any::<bool>().prop_map(|muted| MediaSignal::Mute { muted }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => Just(Command::SignIn),
        1 => Just(Command::SignOut),
        3 => (id(), peer()).prop_map(|(call_id, callee)| Command::StartCall {
            call_id,
            callee,
            call_type: CallType::Audio,
            timeout_secs: 30,
        }),
        2 => id().prop_map(|call_id| Command::Accept { call_id }),
        1 => id().prop_map(|call_id| Command::Reject { call_id }),
        2 => id().prop_map(|call_id| Command::Hangup { call_id }),
        1 => any::<bool>().prop_map(|muted| Command::SetMuted { muted }),
        2 => (id(), signal()).prop_map(|(call_id, signal)| Command::Signal { call_id, signal }),
    ]
}

fn frame() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        2 => Just(login_ok("alice")),
        3 => (id(), peer()).prop_map(|(c, p)| ServerMessage::Invited {
            call_id: c,
            caller: p,
            call_type: CallType::Audio,
            timeout_secs: 30,
        }),
        2 => id().prop_map(|call_id| ServerMessage::Ringing { call_id }),
        3 => (id(), peer()).prop_map(|(call_id, by)| ServerMessage::Accepted { call_id, by }),
        4 => (id(), reason(), prop::option::of(peer()), prop::option::of(0u64..100_000)).prop_map(
            |(call_id, reason, by, duration_ms)| ServerMessage::CallEnded {
                call_id,
                reason,
                by,
                duration_ms,
            }
        ),
        2 => (id(), peer(), signal()).prop_map(|(call_id, from, signal)| ServerMessage::Signal {
            call_id,
            from,
            signal,
        }),
        2 => (prop::sample::select(vec![
                WireCode::UnknownCall,
                WireCode::InvalidState,
                WireCode::RateLimited,
                WireCode::UserSigExpired,
                WireCode::NotConnected,
            ]), prop::option::of(id())).prop_map(|(code, call_id)| ServerMessage::Error {
            code,
            message: "no".into(),
            call_id,
        }),
        1 => prop::sample::select(vec![CloseReason::KickedOffline, CloseReason::Replaced])
            .prop_map(|reason| ServerMessage::KickedOffline { reason }),
        1 => Just(ServerMessage::LoggedOut),
        2 => (id(), peer()).prop_map(|(call_id, peer)| ServerMessage::CallResumed {
            call_id,
            peer,
            connected_at_ms: 0,
        }),
        1 => (id(), peer()).prop_map(|(call_id, peer)| ServerMessage::PeerReconnecting {
            call_id,
            peer,
            grace_secs: 30,
        }),
        1 => (id(), peer()).prop_map(|(call_id, peer)| ServerMessage::PeerReconnected {
            call_id,
            peer,
        }),
        1 => Just(ServerMessage::Pong { nonce: None }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => command().prop_map(Step::Cmd),
        8 => frame().prop_map(Step::Frame),
        2 => Just(Step::PlanOk),
        1 => any::<bool>().prop_map(Step::PlanErr),
        2 => Just(Step::Connected),
        1 => prop::option::of(prop::sample::select(vec![
            CloseReason::KickedOffline,
            CloseReason::Replaced,
            CloseReason::ServerShutdown,
            CloseReason::IdleTimeout,
        ]))
        .prop_map(Step::Disconnected),
        2 => prop_oneof![0u64..2_000, 0u64..40_000].prop_map(Step::Advance),
    ]
}

/// Watches the outputs as a driver and a UI would, and checks the invariants as they go.
#[derive(Default)]
struct Watch {
    /// What the UI shows as the call, from `Call` events.
    ui_call: Option<tincan_ipc::CallView>,
    /// Calls seen, and how each ended (its first end reason and message's presence).
    ended: HashMap<tincan_proto::CallId, Option<EndReason>>,
    seen: HashSet<tincan_proto::CallId>,
    /// Between Connect and Close/disconnect; `logged_in` after a `login_ok` on it.
    open: bool,
    connecting: bool,
    logged_in: bool,
    replies: HashMap<u64, usize>,
    connection: Option<ConnectionState>,
    /// Calls the UI saw connected.
    connected: HashSet<tincan_proto::CallId>,
}

impl Watch {
    fn output(&mut self, o: &Output) -> Result<(), TestCaseError> {
        match o {
            Output::Connect { .. } => {
                prop_assert!(
                    !self.open && !self.connecting,
                    "connect while a connection is open"
                );
                self.connecting = true;
                self.logged_in = false;
            }
            Output::Close => {
                self.open = false;
                self.connecting = false;
                self.logged_in = false;
            }
            Output::Send(m) => {
                prop_assert!(self.open, "sent {m:?} on no open connection");
                if !self.logged_in {
                    prop_assert!(
                        matches!(m, ClientMessage::Login { .. } | ClientMessage::Ping { .. }),
                        "sent {m:?} before login_ok"
                    );
                }
                if let ClientMessage::ResumeCall { call_id, .. } = m {
                    prop_assert!(
                        self.connected.contains(call_id),
                        "resumed {call_id}, never connected"
                    );
                }
            }
            Output::Reply { id, .. } => *self.replies.entry(*id).or_default() += 1,
            Output::Event(AppEvent::Connection { state }) => self.connection = Some(state.clone()),
            Output::Event(AppEvent::Call { call: Some(c) }) => {
                if let Some(old) = &self.ui_call {
                    prop_assert!(
                        old.call_id == c.call_id || old.phase == CallPhase::Ended,
                        "a second active call: {old:?} then {c:?}"
                    );
                }
                if c.phase != CallPhase::Ended {
                    prop_assert!(
                        !self.ended.contains_key(&c.call_id),
                        "an ended call came back: {c:?}"
                    );
                    prop_assert!(c.ended.is_none());
                } else {
                    let reason = c.ended.as_ref().map(|e| e.reason);
                    prop_assert!(reason.is_some(), "ended without words: {c:?}");
                    match self.ended.get(&c.call_id) {
                        Some(first) => prop_assert_eq!(*first, reason.unwrap(), "ended twice"),
                        None => {
                            self.ended.insert(c.call_id.clone(), reason.unwrap());
                        }
                    }
                }
                self.seen.insert(c.call_id.clone());
                if c.phase == CallPhase::Connected {
                    self.connected.insert(c.call_id.clone());
                }
                self.ui_call = Some(c.clone());
            }
            Output::Event(AppEvent::Call { call: None }) => {
                prop_assert!(false, "the machine never clears the call");
            }
            Output::Event(AppEvent::Incoming { call_id, .. }) => {
                prop_assert_eq!(
                    self.ui_call.as_ref().map(|c| (&c.call_id, c.phase)),
                    Some((call_id, CallPhase::Incoming))
                );
            }
            _ => {}
        }
        Ok(())
    }
}

fn drain(h: &mut H, w: &mut Watch) -> Result<(), TestCaseError> {
    for o in h.take() {
        w.output(&o)?;
    }
    Ok(())
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    run_with(steps, true)
}

/// `pongs`: the server answers pings (false: every connection dies silently after its last frame).
fn run_with(steps: Vec<Step>, pongs: bool) -> Result<(), TestCaseError> {
    let mut h = H::new();
    h.auto_pong = pongs;
    let mut w = Watch::default();
    let mut issued = Vec::new();
    for s in steps {
        match s {
            Step::Cmd(c) => issued.push(h.cmd(c)),
            Step::Frame(m) => {
                // A server frame arrives only on an open connection.
                if w.open {
                    if matches!(m, ServerMessage::LoginOk { .. }) && h.s.is_online() {
                        continue;
                    }
                    let was_online = h.s.is_online();
                    h.frame(m);
                    if !was_online && h.s.is_online() {
                        w.logged_in = true;
                    }
                }
            }
            Step::PlanOk => h.plan(Ok(plan("alice"))),
            Step::PlanErr(fatal) => h.plan(Err(PlanError {
                error: IpcError::new(ErrorCode::ServerUnreachable, "no"),
                fatal,
            })),
            Step::Connected => {
                // Only a connect the machine asked for (and still waits for) opens.
                if w.connecting {
                    w.connecting = false;
                    w.open = true;
                    h.connected();
                }
            }
            Step::Disconnected(close) => {
                if w.open || w.connecting {
                    let kept = h.s.is_online()
                        && !tincan_ipc::session::close_is_final(close)
                        && h.phase() == Some(CallPhase::Connected);
                    w.open = false;
                    w.connecting = false;
                    w.logged_in = false;
                    h.disconnected(close);
                    if kept {
                        drain(&mut h, &mut w)?;
                        prop_assert_eq!(h.phase(), Some(CallPhase::Connected));
                        prop_assert!(h.call().is_some_and(|c| c.reconnecting));
                    }
                }
            }
            // (A silent connection the machine gives up is closed by its own `Output::Close`.)
            Step::Advance(ms) => h.advance(ms),
        }
        drain(&mut h, &mut w)?;
        // get_state agrees with what the UI was told.
        let snap = h.s.snapshot();
        if let Some(c) = &w.connection {
            prop_assert_eq!(&snap.connection, c);
        }
        if let (Some(ui), Some(s)) = (&w.ui_call, &snap.call) {
            prop_assert_eq!(ui, s);
        }
    }
    // At the end the user signs out: every call the UI saw has ended, every command is answered
    // exactly once.
    issued.push(h.cmd(Command::SignOut));
    drain(&mut h, &mut w)?;
    for id in &w.seen {
        prop_assert!(w.ended.contains_key(id), "call {id} never ended");
    }
    for id in issued {
        prop_assert_eq!(
            w.replies.get(&id).copied(),
            Some(1),
            "command {} answered",
            id
        );
    }
    prop_assert_eq!(h.s.poll_timeout(), None);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_interleaving(steps in prop::collection::vec(step(), 1..80)) {
        run(steps)?;
    }

    /// Servers that never answer a ping: dead connections are noticed and given up, and the same
    /// invariants hold.
    #[test]
    fn invariants_hold_when_connections_die_silently(steps in prop::collection::vec(step(), 1..80)) {
        let mut all = vec![
            Step::Cmd(Command::SignIn),
            Step::PlanOk,
            Step::Connected,
            Step::Frame(login_ok("alice")),
        ];
        all.extend(steps);
        run_with(all, false)?;
    }

    /// Mostly online: a signed-in start, then calls and frames, so deep call states are reached.
    #[test]
    fn invariants_hold_when_signed_in_first(steps in prop::collection::vec(step(), 1..80)) {
        let mut all = vec![
            Step::Cmd(Command::SignIn),
            Step::PlanOk,
            Step::Connected,
            Step::Frame(login_ok("alice")),
        ];
        all.extend(steps);
        run(all)?;
    }
}
