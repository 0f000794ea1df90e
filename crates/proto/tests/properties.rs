//! Property tests: random event sequences against the call state machine and the switchboard.
//!
//! Invariants checked after every step:
//! - an event from a non-party never changes a call;
//! - a terminal state never changes;
//! - no call survives its parties' disconnects;
//! - a user is in at most one connected call;
//! - each party hears at most one `call_ended` per call, and when everyone is gone no call is left.

use proptest::prelude::*;
use std::collections::HashMap;
use tincan_proto::switchboard::{Action, Config, SessionId, Switchboard};
use tincan_proto::{
    Call, CallError, CallEvent, CallId, CallType, ClientMessage, DeviceId, MediaSignal, Party,
    Phase, ServerMessage, UserId,
};

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const DEVICES: [&str; 2] = ["d1", "d2"];

fn party(u: u8, d: u8) -> Party {
    Party::new(
        UserId::new(USERS[u as usize % USERS.len()]).unwrap(),
        DeviceId::new(DEVICES[d as usize % DEVICES.len()]).unwrap(),
    )
}

#[derive(Debug, Clone)]
enum Ev {
    Accept(u8, u8),
    Reject(u8, u8, bool),
    Cancel(u8, u8),
    Hangup(u8, u8),
    Disconnect(u8, u8),
    Tick,
}

fn ev_strategy() -> impl Strategy<Value = (Ev, u16)> {
    let e = prop_oneof![
        (0u8..4, 0u8..2).prop_map(|(u, d)| Ev::Accept(u, d)),
        (0u8..4, 0u8..2, any::<bool>()).prop_map(|(u, d, b)| Ev::Reject(u, d, b)),
        (0u8..4, 0u8..2).prop_map(|(u, d)| Ev::Cancel(u, d)),
        (0u8..4, 0u8..2).prop_map(|(u, d)| Ev::Hangup(u, d)),
        (0u8..4, 0u8..2).prop_map(|(u, d)| Ev::Disconnect(u, d)),
        Just(Ev::Tick),
    ];
    (e, 0u16..5000)
}

fn to_event(e: &Ev) -> CallEvent {
    // User index 3 wraps to alice in `party`; use a stranger for it instead.
    let p = |u: u8, d: u8| {
        if u == 3 {
            Party::new(UserId::new("mallory").unwrap(), DeviceId::new("m").unwrap())
        } else {
            party(u, d)
        }
    };
    match *e {
        Ev::Accept(u, d) => CallEvent::Accept { by: p(u, d) },
        Ev::Reject(u, d, busy) => CallEvent::Reject { by: p(u, d), busy },
        Ev::Cancel(u, d) => CallEvent::Cancel { by: p(u, d) },
        Ev::Hangup(u, d) => CallEvent::Hangup { by: p(u, d) },
        Ev::Disconnect(u, d) => CallEvent::Disconnect { party: p(u, d) },
        Ev::Tick => CallEvent::Tick,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn call_machine_invariants(events in prop::collection::vec(ev_strategy(), 0..40)) {
        let mut call = Call::new(
            CallId::new("c").unwrap(),
            CallType::Audio,
            party(0, 0),
            UserId::new("bob").unwrap(),
            vec![DeviceId::new("d1").unwrap(), DeviceId::new("d2").unwrap()],
            10_000,
            0,
        ).unwrap();
        let mut now = 0u64;
        let mut disconnected_caller = false;
        let mut disconnected_callee = 0;
        for (e, dt) in events {
            now += u64::from(dt);
            let before = call.clone();
            let event = to_event(&e);
            let stranger = match &event {
                CallEvent::Tick => false,
                CallEvent::Accept { by } | CallEvent::Reject { by, .. } | CallEvent::Cancel { by }
                | CallEvent::Hangup { by } | CallEvent::Disconnect { party: by } => !before.has_party(by),
            };
            let result = call.apply(event.clone(), now);
            if before.phase() == Phase::Ended {
                prop_assert_eq!(result, Err(CallError::Ended));
                prop_assert_eq!(&call, &before, "a terminal state changed");
                continue;
            }
            if stranger {
                prop_assert_eq!(result, Err(CallError::NotAParty));
                prop_assert_eq!(&call, &before, "a non-party changed the call");
                continue;
            }
            if result.is_err() {
                prop_assert_eq!(&call, &before, "a refused event changed the call");
            }
            if let CallEvent::Disconnect { party } = &event {
                if *party == *call.caller() { disconnected_caller = true; } else { disconnected_callee += 1; }
            }
            if disconnected_caller && call.phase() != Phase::Ended {
                prop_assert!(false, "call survived its caller's disconnect");
            }
            if disconnected_callee > 0 && call.phase() == Phase::Connected && call.answered_by().is_none() {
                prop_assert!(false, "connected without an answering device");
            }
        }
        if call.phase() == Phase::Ended {
            let end = call.end().unwrap();
            prop_assert!(end.duration_ms.is_some() == (end.reason == tincan_proto::EndReason::Hangup
                || (call.connected_at_ms().is_some())));
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Login(u8, u8),
    Disconnect(u8),
    Logout(u8),
    Invite(u8, u8),
    Accept(u8, u8),
    Reject(u8, u8, bool),
    Cancel(u8, u8),
    Hangup(u8, u8),
    Signal(u8, u8),
    Advance(u16),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..2).prop_map(|(u, d)| Op::Login(u, d)),
        1 => any::<u8>().prop_map(Op::Disconnect),
        1 => any::<u8>().prop_map(Op::Logout),
        4 => (any::<u8>(), 0u8..3).prop_map(|(s, u)| Op::Invite(s, u)),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Accept(s, c)),
        1 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(s, c, b)| Op::Reject(s, c, b)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Cancel(s, c)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Hangup(s, c)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Signal(s, c)),
        2 => (0u16..4000).prop_map(Op::Advance),
    ]
}

struct Sim {
    board: Switchboard,
    live: Vec<SessionId>,
    next_sid: SessionId,
    call_ids: Vec<CallId>,
    now: u64,
    ended_count: HashMap<(SessionId, CallId), u32>,
}

impl Sim {
    fn absorb(&mut self, out: &mut Vec<Action>) -> Result<(), TestCaseError> {
        for a in out.drain(..) {
            match a {
                Action::Send(sid, ServerMessage::CallEnded { call_id, .. }) => {
                    let n = self.ended_count.entry((sid, call_id.clone())).or_default();
                    *n += 1;
                    prop_assert!(*n == 1, "session {} heard call {} end twice", sid, call_id);
                }
                Action::Close(sid, _) => self.live.retain(|s| *s != sid),
                Action::Send(..) => {}
            }
        }
        Ok(())
    }

    fn pick(&self, i: u8) -> Option<SessionId> {
        (!self.live.is_empty()).then(|| self.live[i as usize % self.live.len()])
    }

    fn call(&self, i: u8) -> CallId {
        if self.call_ids.is_empty() {
            CallId::new("none").unwrap()
        } else {
            self.call_ids[i as usize % self.call_ids.len()].clone()
        }
    }
}

fn snapshot(board: &Switchboard) -> Vec<Call> {
    let mut v: Vec<Call> = board.calls().cloned().collect();
    v.sort_by(|a, b| a.id().cmp(b.id()));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn switchboard_invariants(ops in prop::collection::vec(op_strategy(), 0..80), single in any::<bool>()) {
        let mut sim = Sim {
            board: Switchboard::new(Config { single_session: single, default_ring_secs: 5, ..Config::default() }),
            live: Vec::new(),
            next_sid: 1,
            call_ids: Vec::new(),
            now: 1_000_000,
            ended_count: HashMap::new(),
        };
        let mut out = Vec::new();
        for op in ops {
            let mut about: Option<(SessionId, CallId)> = None;
            let before = snapshot(&sim.board);
            match op {
                Op::Login(u, d) => {
                    let sid = sim.next_sid;
                    sim.next_sid += 1;
                    if sim.board.login(sid, party(u, d), sim.now, &mut out).is_ok() {
                        sim.live.push(sid);
                    }
                }
                Op::Disconnect(i) => if let Some(sid) = sim.pick(i) {
                    sim.live.retain(|s| *s != sid);
                    sim.board.disconnect(sid, sim.now, &mut out);
                },
                Op::Logout(i) => if let Some(sid) = sim.pick(i) {
                    sim.board.handle(sid, ClientMessage::Logout, sim.now, &mut out);
                },
                Op::Invite(i, callee) => if let Some(sid) = sim.pick(i) {
                    let id = CallId::new(format!("call{}", sim.call_ids.len())).unwrap();
                    sim.call_ids.push(id.clone());
                    let callee = UserId::new(USERS[callee as usize]).unwrap();
                    sim.board.handle(sid, ClientMessage::Invite { call_id: id, callee, call_type: CallType::Audio, timeout_secs: None }, sim.now, &mut out);
                },
                Op::Accept(i, c) | Op::Cancel(i, c) | Op::Hangup(i, c) | Op::Signal(i, c) | Op::Reject(i, c, _) => {
                    if let Some(sid) = sim.pick(i) {
                        let call_id = sim.call(c);
                        about = Some((sid, call_id.clone()));
                        let msg = match op {
                            Op::Accept(..) => ClientMessage::Accept { call_id },
                            Op::Cancel(..) => ClientMessage::Cancel { call_id },
                            Op::Hangup(..) => ClientMessage::Hangup { call_id },
                            Op::Reject(_, _, busy) => ClientMessage::Reject { call_id, busy },
                            // Candidates too, so the per-call candidate budgets come and go with calls.
                            _ if c % 2 == 0 => ClientMessage::Signal { call_id, signal: MediaSignal::EndOfCandidates },
                            _ => ClientMessage::Signal { call_id, signal: MediaSignal::Candidate {
                                candidate: format!("candidate:{c} 1 udp 1 192.0.2.1 {} typ host", 5000 + u16::from(c)),
                                sdp_mid: None,
                                sdp_m_line_index: None,
                            } },
                        };
                        sim.board.handle(sid, msg, sim.now, &mut out);
                    }
                }
                Op::Advance(ms) => {
                    sim.now += u64::from(ms);
                    sim.board.tick(sim.now, &mut out);
                }
            }
            sim.absorb(&mut out)?;
            if let Err(e) = sim.board.check_invariants() {
                prop_assert!(false, "{}", e);
            }
            // A message about a call from someone who is not its party changes no call at all.
            if let Some((sid, call_id)) = about {
                let me = sim.board.party(sid).cloned();
                let was_party = before.iter().any(|c| c.id() == &call_id && me.as_ref().is_some_and(|p| c.has_party(p)));
                if !was_party {
                    prop_assert_eq!(snapshot(&sim.board), before, "a non-party changed a call");
                }
            }
        }
        // Everyone leaves: nothing may be left behind.
        for sid in sim.live.clone() {
            sim.board.disconnect(sid, sim.now, &mut out);
        }
        sim.absorb(&mut out)?;
        prop_assert_eq!(sim.board.calls().count(), 0);
        prop_assert_eq!(sim.board.session_count(), 0);
    }
}
