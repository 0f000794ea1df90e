//! Missed calls in the switchboard: one entry per caller→callee pair, a per-caller quota (a
//! spammer evicts only its own entries), a per-callee cap, a total cap, a time to live, delivery
//! once at sign-in, and the store's mirror ([`Action::Missed`]) that lets them survive a restart.

use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use tincan_proto::switchboard::{
    Action, Config, MissedChange, MissedEntry, SessionId, Switchboard,
};
use tincan_proto::{
    CallId, CallType, ClientMessage, DeviceId, MissedCall, Party, ServerMessage, UserId,
};

const T0: u64 = 1_764_000_000_000;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

/// The abuse limits out of the way: these tests are about what is kept, not how fast one may
/// call (the invite limits have their own tests).
fn config() -> Config {
    Config {
        max_invites_per_minute: u32::MAX,
        max_pair_invites: u32::MAX,
        min_recall_secs: 0,
        max_missed_per_user: 5,
        max_missed_per_caller: 3,
        max_missed_total: 1000,
        missed_ttl_ms: 60_000,
        ..Config::default()
    }
}

struct Rig {
    board: Switchboard,
    next_sid: SessionId,
    next_call: u64,
    /// The store's view, built only from the `Action::Missed` it was told.
    store: BTreeMap<(UserId, UserId), MissedCall>,
}

impl Rig {
    fn new(config: Config) -> Self {
        Self {
            board: Switchboard::new(config),
            next_sid: 1,
            next_call: 1,
            store: BTreeMap::new(),
        }
    }

    fn absorb(&mut self, out: Vec<Action>) -> Vec<Action> {
        for a in &out {
            if let Action::Missed(c) = a {
                match c {
                    MissedChange::Recorded(e) => {
                        self.store
                            .insert((e.callee.clone(), e.call.caller.clone()), e.call.clone());
                    }
                    MissedChange::Removed { callee, caller } => {
                        self.store.remove(&(callee.clone(), caller.clone()));
                    }
                    MissedChange::Delivered { callee } => {
                        self.store.retain(|(c, _), _| c != callee);
                    }
                }
            }
        }
        out
    }

    fn login(&mut self, user: &str, now: u64) -> (SessionId, Vec<Action>) {
        let sid = self.next_sid;
        self.next_sid += 1;
        let mut out = Vec::new();
        self.board
            .login(
                sid,
                Party::new(uid(user), DeviceId::new(format!("d{sid}")).unwrap()),
                now,
                &mut out,
            )
            .unwrap();
        (sid, self.absorb(out))
    }

    fn logout(&mut self, sid: SessionId, now: u64) {
        let mut out = Vec::new();
        self.board.disconnect(sid, now, &mut out);
        self.absorb(out);
    }

    /// `caller` (signed in as `sid`) calls `callee`; returns the call ID.
    fn call(&mut self, sid: SessionId, callee: &str, now: u64) -> CallId {
        let id = CallId::new(format!("call-{}", self.next_call)).unwrap();
        self.next_call += 1;
        let mut out = Vec::new();
        self.board.handle(
            sid,
            ClientMessage::Invite {
                call_id: id.clone(),
                callee: uid(callee),
                call_type: CallType::Audio,
                timeout_secs: None,
            },
            now,
            &mut out,
        );
        self.absorb(out);
        id
    }

    fn tick(&mut self, now: u64) {
        let mut out = Vec::new();
        self.board.expire_missed(now, &mut out);
        self.absorb(out);
    }

    /// What the store holds for `callee`, as the switchboard would deliver it.
    fn stored_for(&self, callee: &str) -> Vec<MissedCall> {
        let v: Vec<MissedCall> = self
            .store
            .iter()
            .filter(|((c, _), _)| c.as_str() == callee)
            .map(|(_, m)| m.clone())
            .collect();
        sorted(v)
    }
}

fn missed_calls_in(out: &[Action], sid: SessionId) -> Vec<Vec<MissedCall>> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(s, ServerMessage::MissedCalls { calls }) if *s == sid => {
                Some(calls.clone())
            }
            _ => None,
        })
        .collect()
}

/// Sorted by time, then caller: entries placed in the same millisecond have no order the store
/// can keep.
fn sorted(mut v: Vec<MissedCall>) -> Vec<MissedCall> {
    v.sort_by(|a, b| (a.at_ms, &a.caller).cmp(&(b.at_ms, &b.caller)));
    v
}

fn callers(calls: &[MissedCall]) -> Vec<&str> {
    calls.iter().map(|m| m.caller.as_str()).collect()
}

#[test]
fn delivered_once_at_sign_in_and_mirrored() {
    let mut r = Rig::new(config());
    let (alice, _) = r.login("alice", T0);
    let id = r.call(alice, "bob", T0 + 10);
    assert_eq!(r.stored_for("bob").len(), 1);
    let (bob, out) = r.login("bob", T0 + 20);
    let got = missed_calls_in(&out, bob);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), 1);
    assert_eq!(got[0][0].call_id, id);
    assert_eq!(got[0][0].caller, uid("alice"));
    assert_eq!(got[0][0].at_ms, T0 + 10);
    assert!(r.store.is_empty(), "delivered calls stay in the store");
    // Signing in again (another device, or after a logout) delivers nothing twice.
    r.logout(bob, T0 + 30);
    let (bob2, out) = r.login("bob", T0 + 40);
    assert!(missed_calls_in(&out, bob2).is_empty());
    r.board.check_invariants().unwrap();
}

#[test]
fn a_caller_redialling_keeps_one_entry_the_latest() {
    let mut r = Rig::new(config());
    let (alice, _) = r.login("alice", T0);
    for i in 0..50 {
        r.call(alice, "bob", T0 + i);
    }
    let kept = r.board.missed_for(&uid("bob"));
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].at_ms, T0 + 49);
    assert_eq!(r.stored_for("bob"), kept);
}

/// The failure from the issue: one account calling at a high rate pushed everyone else's
/// missed calls out of a single global FIFO.
#[test]
fn a_spammer_cannot_evict_another_callers_entry() {
    let mut cfg = config();
    // Even with a small total cap.
    cfg.max_missed_total = 10;
    let mut r = Rig::new(cfg);
    let (carol, _) = r.login("carol", T0);
    let real = r.call(carol, "bob", T0 + 1);
    let (mallory, _) = r.login("mallory", T0);
    for i in 0..2_000u64 {
        // Bob over and over, and a thousand other offline users.
        r.call(mallory, "bob", T0 + 2 + i);
        r.call(mallory, &format!("victim{i}"), T0 + 2 + i);
    }
    r.board.check_invariants().unwrap();
    let bob = r.board.missed_for(&uid("bob"));
    assert!(
        bob.iter().any(|m| m.call_id == real),
        "carol's missed call was evicted: {bob:?}"
    );
    let from_mallory = r
        .store
        .keys()
        .filter(|(_, caller)| caller.as_str() == "mallory")
        .count();
    assert!(from_mallory <= 3, "mallory holds {from_mallory} entries");
    let (bob_sid, out) = r.login("bob", T0 + 10_000);
    let got = missed_calls_in(&out, bob_sid);
    assert_eq!(got.len(), 1);
    assert!(callers(&got[0]).contains(&"carol"));
}

#[test]
fn per_caller_quota_drops_the_callers_own_oldest() {
    let mut r = Rig::new(config());
    let (alice, _) = r.login("alice", T0);
    for (i, callee) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        r.call(alice, callee, T0 + i as u64);
    }
    assert!(r.board.missed_for(&uid("u1")).is_empty());
    for callee in ["u2", "u3", "u4"] {
        assert_eq!(r.board.missed_for(&uid(callee)).len(), 1);
    }
    assert_eq!(r.store.len(), 3);
}

#[test]
fn per_callee_cap_drops_the_oldest_caller() {
    let mut r = Rig::new(config());
    let mut sids = Vec::new();
    for i in 0..6 {
        sids.push(r.login(&format!("c{i}"), T0).0);
    }
    for (i, sid) in sids.iter().enumerate() {
        r.call(*sid, "bob", T0 + i as u64);
    }
    let kept = r.board.missed_for(&uid("bob"));
    assert_eq!(callers(&kept), ["c1", "c2", "c3", "c4", "c5"]);
    assert_eq!(r.stored_for("bob"), kept);
}

/// A full callee drops the entry of whoever holds the most entries elsewhere, not the oldest
/// real caller: accounts that spray calls at many users lose their entries first.
#[test]
fn full_callee_drops_the_sprayers_entry_first() {
    let mut r = Rig::new(config());
    let mut sids = Vec::new();
    for i in 0..5 {
        sids.push(r.login(&format!("real{i}"), T0).0);
    }
    let (spray, _) = r.login("spray", T0);
    r.call(sids[0], "bob", T0);
    r.call(spray, "bob", T0 + 1);
    r.call(spray, "x1", T0 + 2);
    r.call(spray, "x2", T0 + 3);
    for (i, sid) in sids.iter().enumerate().skip(1) {
        r.call(*sid, "bob", T0 + 10 + i as u64);
    }
    let kept = r.board.missed_for(&uid("bob"));
    assert_eq!(
        callers(&kept),
        ["real0", "real1", "real2", "real3", "real4"]
    );
    assert_eq!(r.stored_for("bob"), kept);
    r.board.check_invariants().unwrap();
}

#[test]
fn total_cap_takes_from_the_heaviest_caller() {
    let mut cfg = config();
    cfg.max_missed_total = 4;
    let mut r = Rig::new(cfg);
    let (heavy, _) = r.login("heavy", T0);
    let (light, _) = r.login("light", T0);
    r.call(light, "x", T0);
    r.call(heavy, "a", T0 + 1);
    r.call(heavy, "b", T0 + 2);
    r.call(heavy, "c", T0 + 3);
    // Full. A new entry from `light` evicts heavy's oldest, not light's own older one.
    r.call(light, "y", T0 + 4);
    assert_eq!(r.board.missed_count(), 4);
    assert_eq!(r.board.missed_for(&uid("x")).len(), 1);
    assert!(r.board.missed_for(&uid("a")).is_empty());
    assert_eq!(r.store.len(), 4);
    r.board.check_invariants().unwrap();
}

#[test]
fn expired_entries_are_dropped_and_never_delivered() {
    let mut r = Rig::new(config());
    let (alice, _) = r.login("alice", T0);
    r.call(alice, "bob", T0);
    let (carol, _) = r.login("carol", T0);
    r.call(carol, "bob", T0 + 30_000);
    assert_eq!(r.board.next_missed_expiry(), Some(T0 + 60_000));
    r.tick(T0 + 59_999);
    assert_eq!(r.board.missed_for(&uid("bob")).len(), 2);
    r.tick(T0 + 60_000);
    assert_eq!(callers(&r.board.missed_for(&uid("bob"))), ["carol"]);
    assert_eq!(r.stored_for("bob").len(), 1);
    // No tick in between: sign-in itself leaves out what has expired.
    let (bob, out) = r.login("bob", T0 + 90_000);
    assert!(missed_calls_in(&out, bob).is_empty());
    assert!(r.store.is_empty());
    assert_eq!(r.board.missed_count(), 0);
}

#[test]
fn a_restart_loads_what_the_store_kept() {
    let mut r = Rig::new(config());
    let (alice, _) = r.login("alice", T0);
    let (carol, _) = r.login("carol", T0);
    let a = r.call(alice, "bob", T0 + 1);
    let c = r.call(carol, "bob", T0 + 2);
    r.call(carol, "dave", T0 + 3);
    let saved: Vec<MissedEntry> = r
        .store
        .iter()
        .map(|((callee, _), call)| MissedEntry {
            callee: callee.clone(),
            call: call.clone(),
        })
        .collect();
    // A new process: same rules, the store's rows.
    let mut r2 = Rig::new(config());
    r2.store = r.store.clone();
    let mut out = Vec::new();
    r2.board.load_missed(saved, T0 + 100, &mut out);
    assert!(
        r2.absorb(out).is_empty(),
        "loading what fits changes nothing in the store"
    );
    r2.board.check_invariants().unwrap();
    let (bob, out) = r2.login("bob", T0 + 200);
    let got = missed_calls_in(&out, bob);
    assert_eq!(got.len(), 1);
    let ids: Vec<&CallId> = got[0].iter().map(|m| &m.call_id).collect();
    assert_eq!(ids, [&a, &c]);
    assert_eq!(r2.stored_for("dave").len(), 1);
    assert_eq!(r2.store.len(), 1);
}

#[test]
fn loading_applies_todays_limits_and_ttl() {
    let e = |callee: &str, caller: &str, at: u64| MissedEntry {
        callee: uid(callee),
        call: MissedCall {
            call_id: CallId::new(format!("{caller}-{callee}-{at}")).unwrap(),
            caller: uid(caller),
            call_type: CallType::Audio,
            at_ms: at,
        },
    };
    let mut board = Switchboard::new(config());
    let rows = vec![
        e("bob", "old", T0 - 60_000),
        e("u1", "spam", T0 + 1),
        e("u2", "spam", T0 + 2),
        e("u3", "spam", T0 + 3),
        e("u4", "spam", T0 + 4),
        e("bob", "carol", T0 + 5),
    ];
    let mut out = Vec::new();
    board.load_missed(rows, T0 + 10, &mut out);
    board.check_invariants().unwrap();
    let removed: Vec<(String, String)> = out
        .iter()
        .filter_map(|a| match a {
            Action::Missed(MissedChange::Removed { callee, caller }) => {
                Some((callee.to_string(), caller.to_string()))
            }
            Action::Missed(other) => panic!("unexpected {other:?} on load"),
            _ => None,
        })
        .collect();
    assert_eq!(
        removed,
        [
            ("bob".to_string(), "old".to_string()),
            ("u1".to_string(), "spam".to_string())
        ]
    );
    assert_eq!(board.missed_count(), 4);
}

#[test]
fn no_quota_no_entry() {
    let mut cfg = config();
    cfg.max_missed_per_caller = 0;
    let mut r = Rig::new(cfg);
    let (alice, _) = r.login("alice", T0);
    r.call(alice, "bob", T0);
    assert_eq!(r.board.missed_count(), 0);
    assert!(r.store.is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    /// Caller index calls callee index (both from a small pool, so pairs repeat).
    Call(u8, u8),
    /// A user signs in (and out again at once).
    Visit(u8),
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u8..8).prop_map(|(a, b)| Op::Call(a, b)),
        2 => (0u8..8).prop_map(Op::Visit),
        2 => (0u32..40_000).prop_map(Op::Advance),
    ]
}

proptest! {
    /// Whatever the traffic: the quotas and caps hold, the store's mirror equals the
    /// switchboard's book, nothing older than the TTL is delivered, every delivered entry was
    /// placed and is delivered once, and loading the store into a fresh switchboard gives the
    /// same book.
    #[test]
    fn quotas_ttl_and_mirror_hold(ops in proptest::collection::vec(op(), 1..150),
                                  per_user in 1usize..4, per_caller in 1usize..4, total in 1usize..8) {
        let mut cfg = config();
        cfg.max_missed_per_user = per_user;
        cfg.max_missed_per_caller = per_caller;
        cfg.max_missed_total = total;
        let ttl = cfg.missed_ttl_ms;
        let mut r = Rig::new(cfg.clone());
        let users: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
        // Callers stay signed in (index 0..6 are callers, 6 and 7 only ever callees).
        let mut caller_sid = HashMap::new();
        let mut now = T0;
        let mut placed: HashMap<CallId, u64> = HashMap::new();
        let mut delivered: HashMap<CallId, u32> = HashMap::new();
        for o in ops {
            match o {
                Op::Call(a, b) => {
                    let a = a as usize;
                    let sid = *caller_sid.entry(a).or_insert_with(|| r.login(&users[a], now).0);
                    // Callers 0..6 are signed in, so only calls to 6 and 7 are missed; the
                    // others are rung and are cancelled right away.
                    let id = r.call(sid, &users[b as usize], now);
                    placed.insert(id.clone(), now);
                    let mut out = Vec::new();
                    r.board.handle(sid, ClientMessage::Cancel { call_id: id }, now, &mut out);
                    r.absorb(out);
                }
                Op::Visit(u) => {
                    let u = u as usize;
                    if u < 6 && caller_sid.contains_key(&u) {
                        continue;
                    }
                    let (sid, out) = r.login(&users[u], now);
                    for calls in missed_calls_in(&out, sid) {
                        for m in calls {
                            prop_assert!(m.at_ms + ttl > now, "expired call delivered");
                            prop_assert_eq!(placed.get(&m.call_id), Some(&m.at_ms));
                            *delivered.entry(m.call_id.clone()).or_default() += 1;
                        }
                    }
                    r.logout(sid, now);
                }
                Op::Advance(ms) => {
                    now += u64::from(ms);
                    if r.board.next_missed_expiry().is_some_and(|d| d <= now) {
                        r.tick(now);
                    }
                }
            }
            r.board.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert!(r.board.missed_count() <= total);
            // The mirror holds exactly the book.
            let mut book = 0;
            for u in &users {
                let kept = r.board.missed_for(&uid(u));
                prop_assert!(kept.len() <= per_user);
                prop_assert_eq!(r.stored_for(u), sorted(kept.clone()));
                book += kept.len();
            }
            prop_assert_eq!(book, r.store.len());
            for u in &users[..6] {
                let held = r.store.keys().filter(|(_, c)| *c == uid(u)).count();
                prop_assert!(held <= per_caller);
            }
        }
        prop_assert!(delivered.values().all(|n| *n == 1), "a call was delivered twice");
        // A restart: the store's rows into a fresh switchboard give the same book.
        let rows: Vec<MissedEntry> = r.store.iter().map(|((callee, _), call)| MissedEntry {
            callee: callee.clone(), call: call.clone() }).collect();
        let mut fresh = Switchboard::new(cfg);
        let mut out = Vec::new();
        fresh.load_missed(rows, now, &mut out);
        let only_removals = out
            .iter()
            .all(|a| matches!(a, Action::Missed(MissedChange::Removed { .. })));
        prop_assert!(only_removals, "loading recorded or delivered something");
        fresh.check_invariants().map_err(TestCaseError::fail)?;
        for u in &users {
            let before: Vec<MissedCall> = r.board.missed_for(&uid(u))
                .into_iter().filter(|m| m.at_ms + ttl > now).collect();
            prop_assert_eq!(sorted(fresh.missed_for(&uid(u))), sorted(before));
        }
    }
}
