//! Property tests for resume (docs/PROTOCOL.md, "Resume"): random traffic with dropped sockets,
//! `resume_call`s (genuine and a stranger's), server restarts (a fresh switchboard, nothing kept)
//! and time passing, against the switchboard.
//!
//! Invariants checked after every step:
//! - the switchboard's own (`check_invariants`: holds and claims belong to live, connected calls
//!   or signed-in sessions, a user is in at most one connected call, ...);
//! - claims never join a third party: every live call with a given ID has exactly the two users
//!   of the invite that first created that ID, and the stranger (who only ever claims) is never
//!   in any call;
//! - each session hears at most one unsolicited `call_ended` per call and `call_resumed` (the
//!   answer to its own `resume_call` may repeat one: it is the resync);
//! - no one is busy forever: once everyone has left and the grace periods have run out no call,
//!   claim or session is left, and two users who were in calls can call each other again.

use proptest::prelude::*;
use std::collections::HashMap;
use tincan_proto::switchboard::{Action, Config, SessionId, Switchboard};
use tincan_proto::{
    CallId, CallType, ClientMessage, DeviceId, MediaSignal, Party, Phase, ServerMessage, UserId,
};

const USERS: [&str; 4] = ["alice", "bob", "carol", "mallory"];
const MALLORY: usize = 3;

fn uid(i: usize) -> UserId {
    UserId::new(USERS[i % USERS.len()]).unwrap()
}

fn party(u: u8, d: u8) -> Party {
    Party::new(
        uid(u as usize),
        DeviceId::new(["d1", "d2"][d as usize % 2]).unwrap(),
    )
}

#[derive(Debug, Clone)]
enum Op {
    Login(u8, u8),
    Drop(u8),
    Logout(u8),
    Invite(u8, u8),
    Accept(u8, u8),
    Hangup(u8, u8),
    Signal(u8, u8),
    /// The session claims the call its device believes in (or, with none, a random one).
    Resume(u8, u8),
    /// Mallory claims a call (by index) naming a user.
    Stranger(u8, u8),
    Advance(u16),
    Restart,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u8..2).prop_map(|(u, d)| Op::Login(u, d)),
        2 => any::<u8>().prop_map(Op::Drop),
        1 => any::<u8>().prop_map(Op::Logout),
        3 => (any::<u8>(), 0u8..3).prop_map(|(s, u)| Op::Invite(s, u)),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Accept(s, c)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Hangup(s, c)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Signal(s, c)),
        4 => (any::<u8>(), any::<u8>()).prop_map(|(s, c)| Op::Resume(s, c)),
        2 => (any::<u8>(), 0u8..3).prop_map(|(c, u)| Op::Stranger(c, u)),
        3 => (0u16..12_000).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

struct Sim {
    board: Switchboard,
    config: Config,
    /// Signed-in sessions and who they are.
    live: Vec<(SessionId, Party)>,
    next_sid: SessionId,
    now: u64,
    /// Each invite's call ID and its two users, in order.
    invites: Vec<(CallId, UserId, UserId)>,
    /// The connected call each device believes it is in (kept across drops and restarts, as a
    /// client keeps it), with the peer.
    belief: HashMap<Party, (CallId, UserId)>,
    ended: HashMap<(SessionId, CallId), u32>,
}

impl Sim {
    fn pick(&self, i: u8) -> Option<(SessionId, Party)> {
        (!self.live.is_empty()).then(|| self.live[i as usize % self.live.len()].clone())
    }

    fn call(&self, i: u8) -> CallId {
        self.invites
            .get(i as usize % self.invites.len().max(1))
            .map(|(c, _, _)| c.clone())
            .unwrap_or_else(|| CallId::new("none").unwrap())
    }

    fn party_of(&self, sid: SessionId) -> Option<Party> {
        self.live
            .iter()
            .find(|(s, _)| *s == sid)
            .map(|(_, p)| p.clone())
    }

    /// Reads what the switchboard did; `answering` is the session whose `resume_call` this was.
    fn absorb(
        &mut self,
        out: &mut Vec<Action>,
        answering: Option<SessionId>,
    ) -> Result<(), TestCaseError> {
        for a in out.drain(..) {
            match a {
                Action::Send(sid, ServerMessage::CallEnded { call_id, .. }) => {
                    if let Some(p) = self.party_of(sid) {
                        if self.belief.get(&p).is_some_and(|(c, _)| *c == call_id) {
                            self.belief.remove(&p);
                        }
                    }
                    if answering == Some(sid) {
                        continue;
                    }
                    let n = self.ended.entry((sid, call_id.clone())).or_default();
                    *n += 1;
                    prop_assert!(*n == 1, "session {} heard call {} end twice", sid, call_id);
                }
                Action::Send(sid, ServerMessage::Accepted { call_id, .. }) => {
                    let (Some(p), Some(call)) = (
                        self.party_of(sid),
                        self.board.calls().find(|c| *c.id() == call_id),
                    ) else {
                        continue;
                    };
                    let peer = if call.caller().user == p.user {
                        call.callee().clone()
                    } else {
                        call.caller().user.clone()
                    };
                    self.belief.insert(p, (call_id, peer));
                }
                // The call is live again for this session: it will hear its (one) ending anew.
                Action::Send(sid, ServerMessage::CallResumed { call_id, peer, .. }) => {
                    self.ended.remove(&(sid, call_id.clone()));
                    if let Some(p) = self.party_of(sid) {
                        self.belief.insert(p, (call_id, peer));
                    }
                }
                Action::Close(sid, _) => self.live.retain(|(s, _)| *s != sid),
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        if let Err(e) = self.board.check_invariants() {
            prop_assert!(false, "{}", e);
        }
        let mallory = uid(MALLORY);
        for call in self.board.calls() {
            prop_assert!(
                !call.involves(&mallory),
                "the stranger is in call {}",
                call.id()
            );
            let (_, a, b) = self
                .invites
                .iter()
                .find(|(c, _, _)| c == call.id())
                .expect("every live call comes from an invite");
            prop_assert!(
                call.caller().user != *call.callee() && call.involves(a) && call.involves(b),
                "call {} is between {} and {}, not {} and {}",
                call.id(),
                call.caller().user,
                call.callee(),
                a,
                b
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resume_invariants(ops in prop::collection::vec(op_strategy(), 0..100), grace in 1u32..20) {
        let config = Config { resume_secs: grace, default_ring_secs: 5, ..Config::default() };
        let mut sim = Sim {
            board: Switchboard::new(config.clone()),
            config,
            live: Vec::new(),
            next_sid: 1,
            now: 1_764_000_000_000,
            invites: Vec::new(),
            belief: HashMap::new(),
            ended: HashMap::new(),
        };
        let mut out = Vec::new();
        for op in ops {
            let mut answering = None;
            match op {
                Op::Login(u, d) => {
                    let sid = sim.next_sid;
                    sim.next_sid += 1;
                    let p = party(u, d);
                    if sim.board.login(sid, p.clone(), sim.now, &mut out).is_ok() {
                        sim.live.push((sid, p));
                    }
                }
                Op::Drop(i) => if let Some((sid, _)) = sim.pick(i) {
                    sim.live.retain(|(s, _)| *s != sid);
                    sim.board.disconnect(sid, sim.now, &mut out);
                },
                Op::Logout(i) => if let Some((sid, _)) = sim.pick(i) {
                    sim.board.handle(sid, ClientMessage::Logout, sim.now, &mut out);
                },
                Op::Invite(i, callee) => if let Some((sid, p)) = sim.pick(i) {
                    let callee = uid(callee as usize);
                    if p.user != uid(MALLORY) {
                        let id = CallId::new(format!("call{}", sim.invites.len())).unwrap();
                        sim.invites.push((id.clone(), p.user.clone(), callee.clone()));
                        sim.board.handle(sid, ClientMessage::Invite { call_id: id, callee, call_type: CallType::Audio, timeout_secs: None }, sim.now, &mut out);
                    }
                },
                Op::Accept(i, c) | Op::Hangup(i, c) | Op::Signal(i, c) => if let Some((sid, p)) = sim.pick(i) {
                    let call_id = sim.call(c);
                    let msg = match op {
                        Op::Accept(..) if p.user == uid(MALLORY) => None,
                        Op::Accept(..) => Some(ClientMessage::Accept { call_id }),
                        Op::Hangup(..) => Some(ClientMessage::Hangup { call_id }),
                        _ => Some(ClientMessage::Signal { call_id, signal: MediaSignal::Mute { muted: c % 2 == 0 } }),
                    };
                    if let Some(msg) = msg {
                        sim.board.handle(sid, msg, sim.now, &mut out);
                    }
                },
                Op::Resume(i, c) => if let (Some((sid, p)), false) = (sim.pick(i), sim.invites.is_empty()) {
                    let (call_id, peer) = match sim.belief.get(&p) {
                        Some(b) => b.clone(),
                        // A device with nothing to resume names a call of its own user's, or
                        // nothing real (mallory never has a belief).
                        None => {
                            let id = sim.call(c);
                            let peer = sim.invites.iter().find(|(x, _, _)| *x == id)
                                .map(|(_, a, b)| if *a == p.user { b.clone() } else { a.clone() })
                                .unwrap_or_else(|| uid(c as usize));
                            (id, peer)
                        }
                    };
                    let at = sim.now.saturating_sub(u64::from(c) * 1000);
                    answering = Some(sid);
                    sim.board.handle(sid, ClientMessage::ResumeCall { call_id, peer, connected_at_ms: at }, sim.now, &mut out);
                },
                Op::Stranger(c, u) => {
                    if let Some((sid, _)) = sim.live.iter().find(|(_, p)| p.user == uid(MALLORY)).cloned() {
                        answering = Some(sid);
                        let msg = ClientMessage::ResumeCall { call_id: sim.call(c), peer: uid(u as usize), connected_at_ms: 0 };
                        sim.board.handle(sid, msg, sim.now, &mut out);
                    }
                }
                Op::Advance(ms) => {
                    sim.now += u64::from(ms);
                    sim.board.tick(sim.now, &mut out);
                }
                Op::Restart => {
                    // Nothing is kept; every connection is gone; clients keep their beliefs.
                    sim.board = Switchboard::new(sim.config.clone());
                    sim.live.clear();
                }
            }
            sim.absorb(&mut out, answering)?;
            sim.check()?;
        }
        // Everyone leaves, the grace periods run out: nothing is left, nobody is busy.
        for (sid, _) in sim.live.clone() {
            sim.board.disconnect(sid, sim.now, &mut out);
        }
        sim.live.clear();
        sim.absorb(&mut out, None)?;
        sim.now += u64::from(sim.config.resume_secs.max(sim.config.max_ring_secs)) * 1000 + 1;
        sim.board.tick(sim.now, &mut out);
        sim.absorb(&mut out, None)?;
        sim.check()?;
        prop_assert_eq!(sim.board.calls().count(), 0);
        prop_assert_eq!(sim.board.session_count(), 0);
        prop_assert!(sim.board.next_deadline().is_none(), "a timer outlived everything");
        // Two users can call each other again (after the abuse limits' windows).
        sim.now += 3_600_000;
        let (a, b) = (Party::new(uid(0), DeviceId::new("x").unwrap()), Party::new(uid(1), DeviceId::new("y").unwrap()));
        sim.board.login(1_000, a, sim.now, &mut out).unwrap();
        sim.board.login(1_001, b, sim.now, &mut out).unwrap();
        out.clear();
        let id = CallId::new("final").unwrap();
        sim.board.handle(1_000, ClientMessage::Invite { call_id: id.clone(), callee: uid(1), call_type: CallType::Audio, timeout_secs: None }, sim.now, &mut out);
        let rang = out.iter().any(|a| matches!(a, Action::Send(1_001, ServerMessage::Invited { .. })));
        prop_assert!(rang, "alice cannot reach bob: {:?}", out);
        sim.board.handle(1_001, ClientMessage::Accept { call_id: id }, sim.now, &mut out);
        prop_assert!(sim.board.calls().any(|c| c.phase() == Phase::Connected));
    }
}
