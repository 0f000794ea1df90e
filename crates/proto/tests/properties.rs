//! Property tests: random event sequences against the call state machine and the switchboard.
//!
//! Invariants checked after every step:
//! - an event from a non-party never changes a call;
//! - a terminal state never changes;
//! - no call survives its parties' disconnects;
//! - a user is in at most one connected call;
//! - each party hears at most one `call_ended` per call, and when everyone is gone no call is left;
//! - every session told of a call (`invited`, `ringing`, `accepted`) hears exactly one `call_ended`
//!   for it unless its connection dropped, leavers (logout, kick, replacement) included: no session
//!   is ever left believing in a call that is over, or signed in nowhere while it does;
//! - two users never ring each other at once (glare);
//! - the abuse limits: a caller's invites per minute and per callee, the re-invite cooldown (a
//!   callee's line is never held busy more than about half the time by one caller), and a blocked
//!   caller hears exactly what it hears for an offline callee.

use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
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
    Block(u8, u8),
    Unblock(u8, u8),
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
        1 => (any::<u8>(), 0u8..3).prop_map(|(s, u)| Op::Block(s, u)),
        1 => (any::<u8>(), 0u8..3).prop_map(|(s, u)| Op::Unblock(s, u)),
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
    /// Sessions told of a call that has not ended for them yet.
    told: HashSet<(SessionId, CallId)>,
}

impl Sim {
    fn absorb(&mut self, out: &mut Vec<Action>) -> Result<(), TestCaseError> {
        for a in out.drain(..) {
            match a {
                Action::Send(sid, ServerMessage::CallEnded { call_id, .. }) => {
                    let n = self.ended_count.entry((sid, call_id.clone())).or_default();
                    *n += 1;
                    prop_assert!(*n == 1, "session {} heard call {} end twice", sid, call_id);
                    self.told.remove(&(sid, call_id));
                }
                Action::Send(sid, ServerMessage::Invited { call_id, .. })
                | Action::Send(sid, ServerMessage::Ringing { call_id })
                | Action::Send(sid, ServerMessage::Accepted { call_id, .. }) => {
                    prop_assert!(
                        !self.ended_count.contains_key(&(sid, call_id.clone())),
                        "session {} heard of call {} after it ended",
                        sid,
                        call_id
                    );
                    self.told.insert((sid, call_id));
                }
                Action::Close(sid, reason) => {
                    self.live.retain(|s| *s != sid);
                    // A replaced connection's device carries on in its new session: a connected
                    // call may be held for it (`resume`) rather than ended. Every call that did
                    // end was told to it before the close (checked by `check_told`).
                    if reason == tincan_proto::CloseReason::Replaced {
                        let live: HashSet<CallId> =
                            self.board.calls().map(|c| c.id().clone()).collect();
                        self.told.retain(|(s, c)| *s != sid || !live.contains(c));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Everyone told of a call is still signed in and the call is still live.
    fn check_told(&self) -> Result<(), TestCaseError> {
        for (sid, call_id) in &self.told {
            prop_assert!(
                self.board.party(*sid).is_some(),
                "session {} left without hearing call {} end",
                sid,
                call_id
            );
            prop_assert!(
                self.board.calls().any(|c| c.id() == call_id),
                "call {} is over but session {} never heard",
                call_id,
                sid
            );
        }
        Ok(())
    }

    /// A session's connection dropped: it can hear nothing more.
    fn dropped(&mut self, sid: SessionId) {
        self.live.retain(|s| *s != sid);
        self.told.retain(|(s, _)| *s != sid);
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
    fn switchboard_invariants(
        ops in prop::collection::vec(op_strategy(), 0..80),
        single in any::<bool>(),
        tight_limits in any::<bool>(),
        logout_at_end in any::<bool>(),
    ) {
        let mut config = Config { single_session: single, default_ring_secs: 5, ..Config::default() };
        if tight_limits {
            config.max_invites_per_minute = 3;
            config.max_pair_invites = 2;
        }
        let mut sim = Sim {
            board: Switchboard::new(config),
            live: Vec::new(),
            next_sid: 1,
            call_ids: Vec::new(),
            now: 1_000_000,
            ended_count: HashMap::new(),
            told: HashSet::new(),
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
                    sim.dropped(sid);
                    sim.board.disconnect(sid, sim.now, &mut out);
                },
                Op::Logout(i) => if let Some(sid) = sim.pick(i) {
                    sim.board.handle(sid, ClientMessage::Logout, sim.now, &mut out);
                },
                Op::Invite(i, callee) => if let Some(sid) = sim.pick(i) {
                    let id = CallId::new(format!("call{}", sim.call_ids.len())).unwrap();
                    sim.call_ids.push(id.clone());
                    let callee = UserId::new(USERS[callee as usize]).unwrap();
                    let timeout_secs = [None, Some(0), Some(3)][i as usize % 3];
                    sim.board.handle(sid, ClientMessage::Invite { call_id: id, callee, call_type: CallType::Audio, timeout_secs }, sim.now, &mut out);
                },
                Op::Block(i, u) | Op::Unblock(i, u) => if let Some(sid) = sim.pick(i) {
                    let user_id = UserId::new(USERS[u as usize]).unwrap();
                    let msg = if matches!(op, Op::Block(..)) {
                        ClientMessage::Block { user_id }
                    } else {
                        ClientMessage::Unblock { user_id }
                    };
                    sim.board.handle(sid, msg, sim.now, &mut out);
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
            sim.check_told()?;
            // Glare never leaves two users ringing each other.
            let ringing: Vec<(UserId, UserId)> = sim.board.calls()
                .filter(|c| c.phase() == Phase::Ringing)
                .map(|c| (c.caller().user.clone(), c.callee().clone()))
                .collect();
            for (a, b) in &ringing {
                prop_assert!(!ringing.contains(&(b.clone(), a.clone())), "{} and {} ring each other", a, b);
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
        // Everyone leaves: nothing may be left behind, and whoever logs out hears every call end.
        for sid in sim.live.clone() {
            if logout_at_end {
                sim.board.handle(sid, ClientMessage::Logout, sim.now, &mut out);
            } else {
                sim.dropped(sid);
                sim.board.disconnect(sid, sim.now, &mut out);
            }
            sim.absorb(&mut out)?;
            sim.check_told()?;
        }
        prop_assert!(sim.told.is_empty(), "left believing in calls: {:?}", sim.told);
        // Calls held for a dropped party (`resume`) end when their grace runs out.
        let c = sim.board.config();
        sim.now += u64::from(c.resume_secs.max(c.max_ring_secs)) * 1000 + 1;
        sim.board.tick(sim.now, &mut out);
        sim.absorb(&mut out)?;
        prop_assert_eq!(sim.board.calls().count(), 0);
        prop_assert_eq!(sim.board.session_count(), 0);
    }
}

/// The answer a caller gets to one invite: everything sent to its session in that step.
fn answer_to(out: &[Action], sid: SessionId) -> Vec<ServerMessage> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(s, m) if *s == sid => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// One caller tries, as fast as it likes, to ring one callee for ten minutes: invites at random
    /// moments with random timeouts (0 included), sometimes cancelling at once. Whatever it does:
    /// at most `max_invites_per_minute` invites are answered in any minute, at most
    /// `max_pair_invites` in any `pair_window_secs`, and the callee's line is busy (ringing) at
    /// most about half the time, so others can reach it.
    #[test]
    fn a_caller_cannot_ring_bomb_or_hold_a_line(
        steps in prop::collection::vec((0u16..3000, 0u8..4, any::<bool>()), 50..400),
    ) {
        let config = Config::default();
        let mut board = Switchboard::new(config.clone());
        let mut out = Vec::new();
        let mut now = 1_000_000u64;
        board.login(1, Party::new(uid("mallory"), dev("m")), now, &mut out).unwrap();
        board.login(2, Party::new(uid("victim"), dev("v")), now, &mut out).unwrap();
        out.clear();
        let start = now;
        let mut admitted: Vec<u64> = Vec::new();
        let mut busy_ms = 0u64;
        let mut n = 0;
        for (dt, timeout, cancel) in steps {
            // Time passes in small slices so the busy time is measured finely.
            let mut left = u64::from(dt);
            while left > 0 {
                let slice = left.min(100);
                if board.calls().any(|c| c.phase() == Phase::Ringing) {
                    busy_ms += slice;
                }
                now += slice;
                left -= slice;
                board.tick(now, &mut out);
            }
            out.clear();
            n += 1;
            let call_id = CallId::new(format!("bomb{n}")).unwrap();
            let timeout_secs = [None, Some(0), Some(120), Some(u32::MAX)][timeout as usize];
            board.handle(1, ClientMessage::Invite { call_id: call_id.clone(), callee: uid("victim"), call_type: CallType::Audio, timeout_secs }, now, &mut out);
            let answer = answer_to(&out, 1);
            let refused = answer.iter().any(|m| matches!(m, ServerMessage::Error { code: tincan_proto::ErrorCode::TooManyInvites, .. }));
            let already = answer.iter().any(|m| matches!(m, ServerMessage::Error { code: tincan_proto::ErrorCode::AlreadyInCall, .. }));
            if !refused && !already {
                admitted.push(now);
            }
            if let Some(ServerMessage::Invited { timeout_secs, .. }) = answer_to(&out, 2).first() {
                prop_assert!(*timeout_secs >= 1 && *timeout_secs <= config.max_ring_secs);
                if timeout == 1 {
                    prop_assert_eq!(*timeout_secs, config.default_ring_secs, "timeout 0 rings the default time");
                }
            }
            if cancel {
                board.handle(1, ClientMessage::Cancel { call_id }, now, &mut out);
            }
            out.clear();
        }
        for (i, t) in admitted.iter().enumerate() {
            let in_minute = admitted[i..].iter().take_while(|u| **u < t + 60_000).count();
            prop_assert!(in_minute <= config.max_invites_per_minute as usize);
            let window = u64::from(config.pair_window_secs) * 1000;
            let in_window = admitted[i..].iter().take_while(|u| **u < t + window).count();
            prop_assert!(in_window <= config.max_pair_invites as usize, "{} invites in one pair window", in_window);
        }
        let total = now - start;
        // From the second unanswered ring in a row, each buys an equally long quiet time; the
        // first redial is free and the last ring may still be going.
        let bound = total / 2 + 2 * u64::from(config.max_ring_secs) * 1000;
        prop_assert!(busy_ms <= bound, "line busy {} of {} ms", busy_ms, total);
    }

    /// A blocked caller hears exactly what it hears when the callee is signed in nowhere, whatever
    /// the callee is doing (idle, ringing for someone, in a call, or offline), and the callee's
    /// devices hear nothing.
    #[test]
    fn a_blocked_caller_hears_offline(state in 0u8..4, devices in 1usize..3) {
        let mut board = Switchboard::new(Config::default());
        let mut out = Vec::new();
        let now = 5_000_000u64;
        board.login(1, Party::new(uid("mallory"), dev("m")), now, &mut out).unwrap();
        let mut bob_sids = Vec::new();
        if state != 3 {
            for d in 0..devices {
                let sid = 10 + d as u64;
                board.login(sid, Party::new(uid("bob"), dev(&format!("b{d}"))), now, &mut out).unwrap();
                bob_sids.push(sid);
            }
            board.handle(10, ClientMessage::Block { user_id: uid("mallory") }, now, &mut out);
            let blocked = ServerMessage::Blocked { user_id: uid("mallory") };
            prop_assert!(answer_to(&out, 10).contains(&blocked), "block answered");
        }
        board.login(3, Party::new(uid("carol"), dev("c")), now, &mut out).unwrap();
        if state == 1 || state == 2 {
            board.handle(3, ClientMessage::Invite { call_id: CallId::new("other").unwrap(), callee: uid("bob"), call_type: CallType::Audio, timeout_secs: None }, now, &mut out);
        }
        if state == 2 {
            board.handle(10, ClientMessage::Accept { call_id: CallId::new("other").unwrap() }, now, &mut out);
        }
        out.clear();
        board.handle(1, ClientMessage::Invite { call_id: CallId::new("x").unwrap(), callee: uid("bob"), call_type: CallType::Audio, timeout_secs: None }, now, &mut out);
        let offline = vec![ServerMessage::CallEnded {
            call_id: CallId::new("x").unwrap(),
            reason: tincan_proto::EndReason::Offline,
            by: Some(uid("bob")),
            duration_ms: None,
        }];
        prop_assert_eq!(answer_to(&out, 1), offline);
        for sid in bob_sids {
            prop_assert!(answer_to(&out, sid).is_empty(), "a blocked caller reached bob");
        }
    }
}

/// The cooldown in steps: one redial at once is fine, the third ring waits, and
/// `min_recall_secs: 0` turns the cooldown off.
#[test]
fn the_re_invite_cooldown_starts_at_the_second_unanswered_ring() {
    for min_recall_secs in [5, 0] {
        let mut board = Switchboard::new(Config {
            min_recall_secs,
            ..Config::default()
        });
        let mut out = Vec::new();
        let now = 1_000_000u64;
        board
            .login(1, Party::new(uid("alice"), dev("a")), now, &mut out)
            .unwrap();
        board
            .login(2, Party::new(uid("bob"), dev("b")), now, &mut out)
            .unwrap();
        let mut rang = 0;
        for n in 0..3 {
            out.clear();
            let call_id = CallId::new(format!("c{n}")).unwrap();
            let invite = ClientMessage::Invite {
                call_id: call_id.clone(),
                callee: uid("bob"),
                call_type: CallType::Audio,
                timeout_secs: None,
            };
            board.handle(1, invite, now, &mut out);
            if answer_to(&out, 1).contains(&ServerMessage::Ringing {
                call_id: call_id.clone(),
            }) {
                rang += 1;
                board.handle(
                    2,
                    ClientMessage::Reject {
                        call_id,
                        busy: false,
                    },
                    now,
                    &mut out,
                );
            }
        }
        assert_eq!(rang, if min_recall_secs == 0 { 3 } else { 2 });
    }
}
