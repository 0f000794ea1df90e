//! Calls that survive a signaling drop (docs/PROTOCOL.md, "Resume").
//!
//! Media is peer to peer, so a connected call need not end when a party's WebSocket drops. Three
//! pieces of state, all bounded and all timed by the `now_ms` the server passes in:
//!
//! - **absences**: a connected call whose party dropped (or was replaced by the same device) is held
//!   for `Config::resume_secs`; the peer hears `peer_reconnecting`, signals to the absent party are
//!   refused (`peer_absent`), and the call ends `connection_lost` only when the grace runs out. The
//!   same user on the same device picks it up with `resume_call`.
//! - **claims**: after a server restart nothing is known, so a `resume_call` for an unknown call is
//!   held as a claim, and the call is re-created only when the peer claims the same call ID naming
//!   the claimant back. A claim never touches a live call or another claim: it pairs only with
//!   its exact mirror image, so knowing a call ID lets a stranger into nothing. An unmatched claim
//!   is answered exactly like a genuine one whose peer is slow, so a stranger also learns nothing.
//! - **endings**: how each party's connected calls ended, kept for a while, so a device that comes
//!   back after its call ended is told how (the resync) instead of `unknown_call`.

use super::{Action, Leave, SessionId, Switchboard};
use crate::call::{Call, CallEvent, Party, Phase};
use crate::ids::{CallId, UserId};
use crate::message::{CallType, EndReason, ErrorCode, ServerMessage};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// How long the endings of connected calls are remembered for the resync.
pub const ENDINGS_TTL_MS: u64 = 10 * 60 * 1000;
/// Endings of real calls remembered at most (two per call); the oldest go first. Only calls that
/// connected leave one, so filling this takes accepted calls, which the invite limits pace.
pub const MAX_ENDINGS: usize = 10_000;
/// Endings left by claims that never paired (withdrawn, expired, logged out) remembered at most.
/// Anyone can make those, so each user keeps only its latest: a flood of claims cannot push out
/// anyone else's.
pub const MAX_CLAIM_ENDINGS: usize = 10_000;
/// A claimed start further back than this is taken as this far back: a client's clock estimate may
/// be wrong, and a call's duration is shown to both users.
pub const MAX_CLAIMED_AGE_MS: u64 = 24 * 3600 * 1000;

/// A timer: a party's grace in a held call, or a claim's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Absent(CallId, UserId),
    Claim(UserId),
}

/// A `resume_call` for a call the server does not hold, waiting for the peer's mirror claim.
#[derive(Debug, Clone)]
struct Claim {
    party: Party,
    call_id: CallId,
    peer: UserId,
    connected_at_ms: u64,
    deadline_ms: u64,
}

/// How a call ended for one party, as that party would have been told.
#[derive(Debug, Clone)]
struct Ending {
    reason: EndReason,
    by: Option<UserId>,
    duration_ms: Option<u64>,
}

/// Keyed by (call, the user it is told to, that user's peer): an ending is only ever told to a
/// user who names the right peer, and a claim cannot overwrite another pair's ending.
type EndingKey = (CallId, UserId, UserId);

/// Endings by key, oldest first out, for `ENDINGS_TTL_MS` at most.
#[derive(Debug, Default)]
struct EndingBook {
    map: HashMap<EndingKey, (u64, Ending)>,
    order: VecDeque<(u64, EndingKey)>,
}

impl EndingBook {
    fn insert(&mut self, key: EndingKey, ending: Ending, now_ms: u64, cap: usize) {
        self.prune(now_ms);
        while self.map.len() >= cap {
            let Some((at, old)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(t, _)| *t == at) {
                self.map.remove(&old);
            }
        }
        self.order.push_back((now_ms, key.clone()));
        self.map.insert(key, (now_ms, ending));
    }

    fn remove(&mut self, key: &EndingKey) {
        // Its slot in `order` goes stale and is skipped when it comes up.
        self.map.remove(key);
    }

    fn get(&self, key: &EndingKey) -> Option<&Ending> {
        self.map.get(key).map(|(_, e)| e)
    }

    fn prune(&mut self, now_ms: u64) {
        while let Some((at, key)) = self.order.front() {
            // A slot whose key was removed or remembered again since is stale: skip it.
            let live = self.map.get(key).is_some_and(|(t, _)| t == at);
            if live && now_ms.saturating_sub(*at) < ENDINGS_TTL_MS {
                break;
            }
            if live {
                self.map.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Resume {
    /// Held calls: their absent parties, each with the time its grace runs out.
    absent: HashMap<CallId, Vec<(Party, u64)>>,
    /// Pending claims, at most one per user.
    claims: HashMap<UserId, Claim>,
    /// How many pending claims name each call ID (an invite may not take one: see
    /// [`Switchboard::id_claimed`]).
    claimed_ids: HashMap<CallId, usize>,
    due: BTreeSet<(u64, Due)>,
    /// How connected calls ended, per party.
    endings: EndingBook,
    /// How unpaired claims ended, for the peer they named; one per claimant (`claim_ending_of`).
    claim_endings: EndingBook,
    claim_ending_of: HashMap<UserId, EndingKey>,
}

impl Resume {
    pub(super) fn next_due(&self) -> Option<u64> {
        self.due.first().map(|(t, _)| *t)
    }

    fn absent_deadline(&self, id: &CallId, p: &Party) -> Option<u64> {
        self.absent
            .get(id)?
            .iter()
            .find(|(a, _)| a == p)
            .map(|(_, t)| *t)
    }

    fn remove_absence(&mut self, id: &CallId, p: &Party) -> bool {
        let Some(list) = self.absent.get_mut(id) else {
            return false;
        };
        let Some(i) = list.iter().position(|(a, _)| a == p) else {
            return false;
        };
        let (_, t) = list.remove(i);
        if list.is_empty() {
            self.absent.remove(id);
        }
        self.due
            .remove(&(t, Due::Absent(id.clone(), p.user.clone())));
        true
    }

    fn take_claim(&mut self, user: &UserId) -> Option<Claim> {
        let c = self.claims.remove(user)?;
        self.due.remove(&(c.deadline_ms, Due::Claim(user.clone())));
        if let Some(n) = self.claimed_ids.get_mut(&c.call_id) {
            *n -= 1;
            if *n == 0 {
                self.claimed_ids.remove(&c.call_id);
            }
        }
        Some(c)
    }

    fn add_claim(&mut self, c: Claim) {
        *self.claimed_ids.entry(c.call_id.clone()).or_default() += 1;
        self.due
            .insert((c.deadline_ms, Due::Claim(c.party.user.clone())));
        self.claims.insert(c.party.user.clone(), c);
    }

    fn remember(&mut self, key: EndingKey, ending: Ending, now_ms: u64) {
        self.endings.insert(key, ending, now_ms, MAX_ENDINGS);
    }

    /// The ending of `claimant`'s claim that never paired, for the peer it named: it replaces
    /// the claimant's previous one.
    fn remember_claim(&mut self, claimant: &UserId, key: EndingKey, ending: Ending, now_ms: u64) {
        if let Some(old) = self.claim_ending_of.insert(claimant.clone(), key.clone()) {
            self.claim_endings.remove(&old);
        }
        self.claim_endings
            .insert(key, ending, now_ms, MAX_CLAIM_ENDINGS);
        if self.claim_ending_of.len() > 2 * MAX_CLAIM_ENDINGS {
            let book = &self.claim_endings;
            self.claim_ending_of.retain(|_, k| book.get(k).is_some());
        }
    }

    fn prune(&mut self, now_ms: u64) {
        self.endings.prune(now_ms);
        self.claim_endings.prune(now_ms);
    }

    /// What `user` is told about `call` with `peer`, if anything is remembered.
    fn ending(&self, key: &EndingKey) -> Option<&Ending> {
        self.endings
            .get(key)
            .or_else(|| self.claim_endings.get(key))
    }
}

/// The other party of a connected call, seen from `me`.
fn other_party(call: &Call, me: &Party) -> Option<Party> {
    if call.caller() == me {
        call.answered_by()
    } else {
        Some(call.caller().clone())
    }
}

impl Switchboard {
    fn grace_ms(&self) -> u64 {
        u64::from(self.config.resume_secs) * 1000
    }

    /// Is this party away from its held call (dropped and not yet resumed)?
    pub(super) fn is_absent(&self, id: &CallId, p: &Party) -> bool {
        self.resume.absent_deadline(id, p).is_some()
    }

    /// Has this user a claim waiting for its peer? (It believes it is in a call: it is busy.)
    pub(super) fn has_claim(&self, user: &UserId) -> bool {
        self.resume.claims.contains_key(user)
    }

    /// Does a claim waiting for its peer name this call ID? An invite may not take it, so nobody
    /// can keep a call from being re-created after a restart by placing a call with its ID once
    /// one party has claimed it. (Before the first claim arrives, an invite with that ID still
    /// wins: the claims then end as unconfirmed; see docs/PROTOCOL.md, "Resume".)
    pub(super) fn id_claimed(&self, id: &CallId) -> bool {
        self.resume.claimed_ids.contains_key(id)
    }

    /// The earliest resume timer, for [`Switchboard::next_deadline`].
    pub(super) fn next_resume_deadline(&self) -> Option<u64> {
        self.resume.next_due()
    }

    /// Called by `leave` for each live call of a leaving party, before it ends the call: a
    /// connected call whose party dropped, or was replaced by the same device, is held instead.
    /// Returns true when the call was held (the leaver hears nothing: its connection is gone or
    /// about to be taken over by the same device).
    pub(super) fn hold_on_leave(
        &mut self,
        id: &CallId,
        party: &Party,
        why: Leave,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> bool {
        if self.config.resume_secs == 0 || !matches!(why, Leave::Dropped | Leave::Replaced) {
            return false;
        }
        let Some(call) = self.calls.get(id) else {
            return false;
        };
        if call.phase() != Phase::Connected || !call.has_party(party) {
            return false;
        }
        if self.is_absent(id, party) {
            // A device that signed in again and dropped again before resuming: its first grace
            // period stands, so reconnecting without resuming cannot hold a call forever.
            return true;
        }
        let peer = other_party(call, party);
        let deadline = now_ms.saturating_add(self.grace_ms());
        self.resume
            .absent
            .entry(id.clone())
            .or_default()
            .push((party.clone(), deadline));
        self.resume
            .due
            .insert((deadline, Due::Absent(id.clone(), party.user.clone())));
        if let Some(peer) = peer.filter(|p| !self.is_absent(id, p)) {
            self.send_to(
                &peer,
                ServerMessage::PeerReconnecting {
                    call_id: id.clone(),
                    peer: party.user.clone(),
                    grace_secs: self.config.resume_secs,
                },
                out,
            );
        }
        true
    }

    /// Called by `login` before the new session joins: with `--single-session` the user's other
    /// devices are signed out, so a call held for one of them ends as for a kicked device
    /// (`connection_lost` to the peer, by the user).
    pub(super) fn end_held_elsewhere(&mut self, party: &Party, now_ms: u64, out: &mut Vec<Action>) {
        if !self.config.single_session {
            return;
        }
        let held: Vec<(CallId, Party)> = self
            .resume
            .absent
            .iter()
            .flat_map(|(id, list)| {
                list.iter()
                    .filter(|(p, _)| p.user == party.user && p.device != party.device)
                    .map(|(p, _)| (id.clone(), p.clone()))
            })
            .collect();
        for (id, p) in held {
            self.resume.remove_absence(&id, &p);
            let _ = self.apply(&id, CallEvent::Disconnect { party: p }, now_ms, out);
        }
    }

    /// Called by `leave` for the leaving session: its claim, if any, goes. A dropped or replaced
    /// device claims again when it is back; one that logged out or was kicked hears the call end
    /// with its own reason, and the peer is told so if it claims later.
    pub(super) fn leave_claim(
        &mut self,
        sid: SessionId,
        party: &Party,
        why: Leave,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if self
            .resume
            .claims
            .get(&party.user)
            .is_none_or(|c| c.party != *party)
        {
            return;
        }
        let Some(claim) = self.resume.take_claim(&party.user) else {
            return;
        };
        let Some(reason) = why.end_reason() else {
            return;
        };
        let duration_ms = Some(now_ms.saturating_sub(claim.connected_at_ms));
        out.push(Action::Send(
            sid,
            ServerMessage::CallEnded {
                call_id: claim.call_id.clone(),
                reason,
                by: Some(party.user.clone()),
                duration_ms,
            },
        ));
        self.resume.remember_claim(
            &party.user,
            (claim.call_id, claim.peer, party.user.clone()),
            Ending {
                reason: EndReason::ConnectionLost,
                by: Some(party.user.clone()),
                duration_ms,
            },
            now_ms,
        );
    }

    /// Called by `forget` when a live call ends: its holds go, and how it ended is remembered for
    /// each party of a connected call, for the resync.
    pub(super) fn resume_forget(&mut self, call: &Call) {
        let id = call.id();
        if let Some(list) = self.resume.absent.remove(id) {
            for (p, t) in list {
                self.resume
                    .due
                    .remove(&(t, Due::Absent(id.clone(), p.user)));
            }
        }
        let (Some(end), Some(callee)) = (call.end(), call.answered_by()) else {
            return;
        };
        let now_ms = end.at_ms;
        if call.connected_at_ms().is_none() {
            return;
        }
        let caller = call.caller().clone();
        for (p, peer) in [(&caller, &callee.user), (&callee, &caller.user)] {
            let reason = call.reason_for(p).unwrap_or(end.reason);
            self.resume.remember(
                (id.clone(), p.user.clone(), peer.clone()),
                Ending {
                    reason,
                    by: end.by.clone(),
                    duration_ms: end.duration_ms,
                },
                now_ms,
            );
        }
    }

    /// Ends held calls and claims whose grace ran out.
    pub(super) fn tick_resume(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        self.resume.prune(now_ms);
        while let Some((t, due)) = self.resume.due.first().cloned() {
            if t > now_ms {
                break;
            }
            self.resume.due.pop_first();
            match due {
                Due::Absent(id, user) => {
                    let Some(party) = self.resume.absent.get(&id).and_then(|l| {
                        l.iter()
                            .find(|(p, d)| p.user == user && *d == t)
                            .map(|(p, _)| p.clone())
                    }) else {
                        continue;
                    };
                    self.resume.remove_absence(&id, &party);
                    // Ends the call as `connection_lost` by the absent user, for both; `forget`
                    // remembers it for the absent one's resync.
                    let _ = self.apply(&id, CallEvent::Disconnect { party }, now_ms, out);
                }
                Due::Claim(user) => {
                    if self
                        .resume
                        .claims
                        .get(&user)
                        .is_none_or(|c| c.deadline_ms != t)
                    {
                        continue;
                    }
                    let Some(claim) = self.resume.take_claim(&user) else {
                        continue;
                    };
                    let duration_ms = Some(now_ms.saturating_sub(claim.connected_at_ms));
                    self.send_to(
                        &claim.party,
                        ServerMessage::CallEnded {
                            call_id: claim.call_id.clone(),
                            reason: EndReason::ConnectionLost,
                            by: Some(claim.peer.clone()),
                            duration_ms,
                        },
                        out,
                    );
                    self.resume.remember_claim(
                        &user,
                        (claim.call_id, claim.peer, user.clone()),
                        Ending {
                            reason: EndReason::ConnectionLost,
                            by: Some(user.clone()),
                            duration_ms,
                        },
                        now_ms,
                    );
                }
            }
        }
    }

    /// Refuses a `signal` the resume rules stop (returns true when it did, the error in `out`):
    /// from a claim still waiting, to an absent party, or from a device that signed in again but
    /// has not resumed. Checked before the call rules, so a stranger's claim on a live call is
    /// answered like any waiting claim.
    pub(super) fn signal_refused(
        &self,
        sid: SessionId,
        me: &Party,
        call_id: &CallId,
        out: &mut Vec<Action>,
    ) -> bool {
        let absent_peer = |out: &mut Vec<Action>| -> bool {
            Self::error(
                sid,
                ErrorCode::PeerAbsent,
                "the other party is reconnecting; nothing was relayed (send it again after peer_reconnected)",
                Some(call_id),
                out,
            );
            true
        };
        if self
            .resume
            .claims
            .get(&me.user)
            .is_some_and(|c| c.call_id == *call_id && c.party == *me)
        {
            return absent_peer(out);
        }
        let Some(call) = self.calls.get(call_id) else {
            return false;
        };
        if call.phase() != Phase::Connected || !call.has_party(me) {
            return false;
        }
        if self.is_absent(call_id, me) {
            Self::error(
                sid,
                ErrorCode::InvalidState,
                "send resume_call for this call first",
                Some(call_id),
                out,
            );
            return true;
        }
        if other_party(call, me).is_some_and(|p| self.is_absent(call_id, &p)) {
            return absent_peer(out);
        }
        false
    }

    /// A `hangup` of a claim still waiting: it ends for the claimant, and the peer is told if it
    /// claims later. Returns false when the sender has no such claim (the usual rules apply).
    pub(super) fn hangup_claim(
        &mut self,
        sid: SessionId,
        me: &Party,
        call_id: &CallId,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> bool {
        if self
            .resume
            .claims
            .get(&me.user)
            .is_none_or(|c| c.call_id != *call_id || c.party != *me)
        {
            return false;
        }
        let Some(claim) = self.resume.take_claim(&me.user) else {
            return false;
        };
        let duration_ms = Some(now_ms.saturating_sub(claim.connected_at_ms));
        let ending = Ending {
            reason: EndReason::Hangup,
            by: Some(me.user.clone()),
            duration_ms,
        };
        out.push(Action::Send(
            sid,
            ServerMessage::CallEnded {
                call_id: call_id.clone(),
                reason: ending.reason,
                by: ending.by.clone(),
                duration_ms,
            },
        ));
        self.resume.remember_claim(
            &me.user,
            (claim.call_id, claim.peer, me.user.clone()),
            ending,
            now_ms,
        );
        true
    }

    /// `resume_call` from a signed-in device: pick up a held call, answer with how it ended, or
    /// hold a claim (re-creating the call when it mirrors the peer's). See the module docs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resume_call(
        &mut self,
        sid: SessionId,
        me: &Party,
        call_id: CallId,
        peer: UserId,
        connected_at_ms: u64,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if peer == me.user {
            Self::error(
                sid,
                ErrorCode::CallSelf,
                "a call has two different users",
                Some(&call_id),
                out,
            );
            return;
        }
        // 1. A live call of this very device, with this peer.
        if let Some(call) = self.calls.get(&call_id) {
            let other = other_party(call, me);
            if call.has_party(me) && call.involves(&peer) && other.is_some() {
                if call.phase() != Phase::Connected {
                    Self::error(
                        sid,
                        ErrorCode::InvalidState,
                        "the call has not connected; only a connected call can be resumed",
                        Some(&call_id),
                        out,
                    );
                    return;
                }
                let connected_at = call.connected_at_ms().unwrap_or(now_ms);
                let other = other.unwrap_or_else(|| me.clone());
                let was_absent = self.resume.remove_absence(&call_id, me);
                // A peer still away is told first, so a client that sends what it kept the
                // moment it hears `call_resumed` already knows to keep it a little longer.
                let peer_away = self.resume.absent_deadline(&call_id, &other);
                if let Some(t) = peer_away {
                    out.push(Action::Send(
                        sid,
                        ServerMessage::PeerReconnecting {
                            call_id: call_id.clone(),
                            peer: peer.clone(),
                            grace_secs: t.saturating_sub(now_ms).div_ceil(1000) as u32,
                        },
                    ));
                }
                out.push(Action::Send(
                    sid,
                    ServerMessage::CallResumed {
                        call_id: call_id.clone(),
                        peer,
                        connected_at_ms: connected_at,
                    },
                ));
                if peer_away.is_none() && was_absent {
                    self.send_to(
                        &other,
                        ServerMessage::PeerReconnected {
                            call_id,
                            peer: me.user.clone(),
                        },
                        out,
                    );
                }
                return;
            }
        }
        // 2. It ended while this device was away: the resync.
        self.resume.prune(now_ms);
        if let Some(end) = self
            .resume
            .ending(&(call_id.clone(), me.user.clone(), peer.clone()))
        {
            out.push(Action::Send(
                sid,
                ServerMessage::CallEnded {
                    call_id,
                    reason: end.reason,
                    by: end.by.clone(),
                    duration_ms: end.duration_ms,
                },
            ));
            return;
        }
        // 3. Refusals about the claimant itself (never about anyone else: that would tell a
        //    stranger something about the user it names).
        if let Some(c) = self.resume.claims.get(&me.user) {
            if c.call_id == call_id && c.party == *me && c.peer == peer {
                // Said again (a retry): the same answer.
                let (at, left) = (c.connected_at_ms, c.deadline_ms.saturating_sub(now_ms));
                self.claim_held(sid, call_id, peer, at, left, out);
            } else {
                Self::error(
                    sid,
                    ErrorCode::AlreadyInCall,
                    "you already claimed another call (or this one from another device)",
                    Some(&call_id),
                    out,
                );
            }
            return;
        }
        // Placing a call on any device counts too: were it accepted, the user would be in two.
        let placing = self.calls_of_user.get(&me.user).is_some_and(|ids| {
            ids.iter()
                .filter_map(|id| self.calls.get(id))
                .any(|c| c.caller().user == me.user)
        });
        if placing || self.in_connected_call(&me.user) || self.device_busy(me) {
            Self::error(
                sid,
                ErrorCode::AlreadyInCall,
                "you are already in a call",
                Some(&call_id),
                out,
            );
            return;
        }
        if self.config.resume_secs == 0 {
            Self::error(
                sid,
                ErrorCode::UnknownCall,
                "no such call",
                Some(&call_id),
                out,
            );
            return;
        }
        let start = connected_at_ms
            .min(now_ms)
            .max(now_ms.saturating_sub(MAX_CLAIMED_AGE_MS));
        // 4. The peer's mirror claim: re-create the call.
        let mirrors = self.resume.claims.get(&peer).is_some_and(|c| {
            c.call_id == call_id && c.peer == me.user && !self.calls.contains_key(&call_id)
        });
        if mirrors {
            if let Some(theirs) = self.resume.take_claim(&peer) {
                self.recreate(theirs, me, start, now_ms, out);
                return;
            }
        }
        // 5. Hold the claim for the grace period.
        let deadline = now_ms.saturating_add(self.grace_ms());
        self.resume.add_claim(Claim {
            party: me.clone(),
            call_id: call_id.clone(),
            peer: peer.clone(),
            connected_at_ms: start,
            deadline_ms: deadline,
        });
        self.claim_held(sid, call_id, peer, start, self.grace_ms(), out);
    }

    fn claim_held(
        &self,
        sid: SessionId,
        call_id: CallId,
        peer: UserId,
        connected_at_ms: u64,
        left_ms: u64,
        out: &mut Vec<Action>,
    ) {
        // `peer_reconnecting` first, as for a held call whose peer is still away.
        out.push(Action::Send(
            sid,
            ServerMessage::PeerReconnecting {
                call_id: call_id.clone(),
                peer: peer.clone(),
                grace_secs: left_ms.div_ceil(1000) as u32,
            },
        ));
        out.push(Action::Send(
            sid,
            ServerMessage::CallResumed {
                call_id,
                peer,
                connected_at_ms,
            },
        ));
    }

    /// Both parties claimed the call naming each other: it is live again, connected since the
    /// earlier of the two claimed starts. The first claimant is the caller (the protocol does not
    /// say who called, and nothing after connecting depends on it).
    fn recreate(
        &mut self,
        theirs: Claim,
        me: &Party,
        my_start: u64,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let start = theirs.connected_at_ms.min(my_start);
        let call = match Call::resumed(
            theirs.call_id.clone(),
            CallType::Audio,
            theirs.party.clone(),
            me.clone(),
            start,
        ) {
            Ok(c) => c,
            Err(_) => return,
        };
        let id = theirs.call_id;
        for user in [&theirs.party.user, &me.user] {
            self.calls_of_user
                .entry(user.clone())
                .or_default()
                .push(id.clone());
        }
        self.calls.insert(id.clone(), call);
        self.send_to(
            me,
            ServerMessage::CallResumed {
                call_id: id.clone(),
                peer: theirs.party.user.clone(),
                connected_at_ms: start,
            },
            out,
        );
        self.send_to(
            &theirs.party,
            ServerMessage::PeerReconnected {
                call_id: id.clone(),
                peer: me.user.clone(),
            },
            out,
        );
        // One call at a time: anything still ringing for either user ends now, as on accept.
        for user in [theirs.party.user, me.user.clone()] {
            self.end_other_ringing_calls(&user, &id, now_ms, out);
        }
    }

    /// The resume state's own invariants (for [`Switchboard::check_invariants`]).
    pub(super) fn check_resume(&self) -> Result<(), String> {
        for (id, list) in &self.resume.absent {
            let Some(call) = self.calls.get(id) else {
                return Err(format!("ended call {id} is still held"));
            };
            if call.phase() != Phase::Connected {
                return Err(format!("call {id} is held but not connected"));
            }
            for (p, t) in list {
                if !call.has_party(p) {
                    return Err(format!("call {id} holds a stranger {}", p.user));
                }
                if !self
                    .resume
                    .due
                    .contains(&(*t, Due::Absent(id.clone(), p.user.clone())))
                {
                    return Err(format!("call {id}: an absence without a timer"));
                }
            }
        }
        let mut ids: HashMap<&CallId, usize> = HashMap::new();
        for c in self.resume.claims.values() {
            *ids.entry(&c.call_id).or_default() += 1;
        }
        if ids.len() != self.resume.claimed_ids.len()
            || ids
                .iter()
                .any(|(id, n)| self.resume.claimed_ids.get(*id) != Some(n))
        {
            return Err("the claimed call IDs are out of step with the claims".into());
        }
        for (user, c) in &self.resume.claims {
            if c.party.user != *user {
                return Err(format!("claim filed under the wrong user {user}"));
            }
            if self.session_of(&c.party).is_none() {
                return Err(format!("{user}'s claim outlives its session"));
            }
            if self.in_connected_call(user) {
                return Err(format!("{user} claims a call while in a connected call"));
            }
            if !self
                .resume
                .due
                .contains(&(c.deadline_ms, Due::Claim(user.clone())))
            {
                return Err(format!("{user}'s claim has no timer"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;
    use crate::ids::DeviceId;
    use crate::message::{ClientMessage, MediaSignal};

    fn p(u: &str, d: &str) -> Party {
        Party::new(UserId::new(u).unwrap(), DeviceId::new(d).unwrap())
    }
    fn id(s: &str) -> CallId {
        CallId::new(s).unwrap()
    }
    fn user(s: &str) -> UserId {
        UserId::new(s).unwrap()
    }

    struct Rig {
        sb: Switchboard,
        now: u64,
    }

    impl Rig {
        fn new() -> Self {
            Self {
                sb: Switchboard::new(Config::default()),
                now: 1_764_000_000_000,
            }
        }
        fn login(&mut self, sid: SessionId, party: Party) -> Vec<Action> {
            let mut out = Vec::new();
            self.sb.login(sid, party, self.now, &mut out).unwrap();
            self.sb.check_invariants().unwrap();
            out
        }
        fn send(&mut self, sid: SessionId, msg: ClientMessage) -> Vec<Action> {
            let mut out = Vec::new();
            self.sb.handle(sid, msg, self.now, &mut out);
            self.sb.check_invariants().unwrap();
            out
        }
        fn drop_(&mut self, sid: SessionId) -> Vec<Action> {
            let mut out = Vec::new();
            self.sb.disconnect(sid, self.now, &mut out);
            self.sb.check_invariants().unwrap();
            out
        }
        fn advance(&mut self, ms: u64) -> Vec<Action> {
            self.now += ms;
            let mut out = Vec::new();
            self.sb.tick(self.now, &mut out);
            self.sb.check_invariants().unwrap();
            out
        }
        /// alice (sid 1) calls bob (sid 2), who accepts: connected call "c".
        fn connected() -> Self {
            Self::connected_with(Config::default())
        }
        /// [`Rig::connected`] under another switchboard configuration.
        fn connected_with(config: Config) -> Self {
            let mut r = Self::new();
            r.sb = Switchboard::new(config);
            r.login(1, p("alice", "a1"));
            r.login(2, p("bob", "b1"));
            r.send(
                1,
                ClientMessage::Invite {
                    call_id: id("c"),
                    callee: user("bob"),
                    call_type: CallType::Audio,
                    timeout_secs: None,
                },
            );
            r.send(2, ClientMessage::Accept { call_id: id("c") });
            r
        }
    }

    fn to(out: &[Action], sid: SessionId) -> Vec<ServerMessage> {
        out.iter()
            .filter_map(|a| match a {
                Action::Send(s, m) if *s == sid => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
    fn ended(out: &[Action], sid: SessionId) -> Vec<(EndReason, Option<UserId>)> {
        to(out, sid)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::CallEnded { reason, by, .. } => Some((reason, by)),
                _ => None,
            })
            .collect()
    }
    fn resume(call: &str, peer: &str, at: u64) -> ClientMessage {
        ClientMessage::ResumeCall {
            call_id: id(call),
            peer: user(peer),
            connected_at_ms: at,
        }
    }
    fn mute(call: &str) -> ClientMessage {
        ClientMessage::Signal {
            call_id: id(call),
            signal: MediaSignal::Mute { muted: true },
        }
    }
    fn error_code(out: &[Action], sid: SessionId) -> Option<ErrorCode> {
        to(out, sid).into_iter().find_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(code),
            _ => None,
        })
    }

    #[test]
    fn a_drop_holds_the_call_and_the_same_device_resumes_it() {
        let mut r = Rig::connected();
        let start = r.sb.calls().next().unwrap().connected_at_ms().unwrap();
        let out = r.drop_(1);
        assert!(matches!(
            to(&out, 2)[..],
            [ServerMessage::PeerReconnecting { grace_secs: 30, .. }]
        ));
        assert_eq!(r.sb.calls().count(), 1);
        r.advance(5_000);
        // Signals to the absent party are refused to the sender.
        assert_eq!(
            error_code(&r.send(2, mute("c")), 2),
            Some(ErrorCode::PeerAbsent)
        );
        // The same device signs in again; until it resumes it is not back.
        r.login(3, p("alice", "a1"));
        assert_eq!(
            error_code(&r.send(3, mute("c")), 3),
            Some(ErrorCode::InvalidState)
        );
        let out = r.send(3, resume("c", "bob", 0));
        assert_eq!(
            to(&out, 3),
            vec![ServerMessage::CallResumed {
                call_id: id("c"),
                peer: user("bob"),
                connected_at_ms: start,
            }]
        );
        assert!(matches!(
            to(&out, 2)[..],
            [ServerMessage::PeerReconnected { .. }]
        ));
        // Signals flow again, both ways.
        assert!(matches!(
            to(&r.send(2, mute("c")), 3)[..],
            [ServerMessage::Signal { .. }]
        ));
        assert!(matches!(
            to(&r.send(3, mute("c")), 2)[..],
            [ServerMessage::Signal { .. }]
        ));
        // Long after the first grace period, the call is still up; hang-up works.
        assert!(r.advance(60_000).is_empty());
        let out = r.send(2, ClientMessage::Hangup { call_id: id("c") });
        assert_eq!(ended(&out, 3), vec![(EndReason::Hangup, Some(user("bob")))]);
        assert_eq!(ended(&out, 2), vec![(EndReason::Hangup, Some(user("bob")))]);
    }

    #[test]
    fn both_parties_away_each_resume_and_the_first_hears_the_other_come_back() {
        let mut r = Rig::connected();
        r.drop_(1);
        r.advance(4_000);
        // Bob drops too: nobody is left to tell.
        assert!(r.drop_(2).is_empty());
        r.advance(2_000);
        r.login(3, p("alice", "a1"));
        let out = r.send(3, resume("c", "bob", 0));
        assert!(
            matches!(
                to(&out, 3)[..],
                [
                    ServerMessage::PeerReconnecting { grace_secs: 28, .. },
                    ServerMessage::CallResumed { .. }
                ]
            ),
            "{out:?}"
        );
        // Alice's signals wait for bob.
        assert_eq!(
            error_code(&r.send(3, mute("c")), 3),
            Some(ErrorCode::PeerAbsent)
        );
        r.advance(20_000);
        r.login(4, p("bob", "b1"));
        let out = r.send(4, resume("c", "alice", 0));
        assert!(matches!(
            to(&out, 4)[..],
            [ServerMessage::CallResumed { .. }]
        ));
        assert!(matches!(
            to(&out, 3)[..],
            [ServerMessage::PeerReconnected { .. }]
        ));
        // Neither old grace period ends the call now.
        assert!(r.advance(60_000).is_empty());
        assert!(matches!(
            to(&r.send(3, mute("c")), 4)[..],
            [ServerMessage::Signal { .. }]
        ));
    }

    #[test]
    fn with_single_session_signing_in_elsewhere_ends_a_held_call() {
        let mut r = Rig::connected_with(Config {
            single_session: true,
            ..Config::default()
        });
        r.drop_(1);
        let out = r.login(3, p("alice", "a2"));
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
        assert_eq!(r.sb.calls().count(), 0);
        // The same device signing in again, though, still finds it held.
        let mut r = Rig::connected();
        r.sb.config.single_session = true;
        r.drop_(1);
        let out = r.login(3, p("alice", "a1"));
        assert!(ended(&out, 2).is_empty());
        assert!(matches!(
            to(&r.send(3, resume("c", "bob", 0)), 3)[..],
            [ServerMessage::CallResumed { .. }]
        ));
    }

    #[test]
    fn another_device_cannot_pick_the_call_up() {
        let mut r = Rig::connected();
        r.drop_(1);
        r.login(3, p("alice", "a2"));
        let out = r.send(3, resume("c", "bob", 0));
        assert_eq!(error_code(&out, 3), Some(ErrorCode::AlreadyInCall));
        assert!(to(&out, 2).is_empty());
    }

    #[test]
    fn grace_expiry_ends_the_call_once_for_both_and_the_absent_one_resyncs() {
        let mut r = Rig::connected();
        r.drop_(1);
        assert!(r.advance(29_000).is_empty());
        let out = r.advance(1_000);
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
        assert_eq!(r.sb.calls().count(), 0);
        assert!(r.advance(100_000).is_empty());
        // Alice comes back later and asks: the resync says how it ended.
        r.login(3, p("alice", "a1"));
        let out = r.send(3, resume("c", "bob", 0));
        assert_eq!(
            ended(&out, 3),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
        // Bob may call again: nobody is busy.
        let out = r.send(
            2,
            ClientMessage::Invite {
                call_id: id("d"),
                callee: user("alice"),
                call_type: CallType::Audio,
                timeout_secs: None,
            },
        );
        assert!(to(&out, 3)
            .iter()
            .any(|m| matches!(m, ServerMessage::Invited { .. })));
    }

    #[test]
    fn a_hangup_while_away_is_told_on_resume() {
        let mut r = Rig::connected();
        r.drop_(2);
        r.advance(3_000);
        let out = r.send(1, ClientMessage::Hangup { call_id: id("c") });
        assert_eq!(ended(&out, 1).len(), 1);
        r.login(4, p("bob", "b1"));
        let out = r.send(4, resume("c", "alice", 0));
        let msgs = to(&out, 4);
        assert!(
            matches!(
                &msgs[..],
                [ServerMessage::CallEnded { reason: EndReason::Hangup, by: Some(b), duration_ms: Some(d), .. }]
                    if *b == user("alice") && *d >= 3_000
            ),
            "{msgs:?}"
        );
        // A stranger naming the same call learns nothing from the remembered ending.
        r.login(5, p("mallory", "m"));
        let out = r.send(5, resume("c", "alice", 0));
        assert!(matches!(
            to(&out, 5)[..],
            [
                ServerMessage::PeerReconnecting { .. },
                ServerMessage::CallResumed { .. }
            ]
        ));
    }

    #[test]
    fn logout_and_ringing_calls_are_not_held() {
        let mut r = Rig::connected();
        let out = r.send(1, ClientMessage::Logout);
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
        let mut r = Rig::new();
        r.login(1, p("alice", "a1"));
        r.login(2, p("bob", "b1"));
        r.send(
            1,
            ClientMessage::Invite {
                call_id: id("c"),
                callee: user("bob"),
                call_type: CallType::Audio,
                timeout_secs: None,
            },
        );
        let out = r.drop_(1);
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
    }

    #[test]
    fn the_same_device_replacing_its_connection_holds_the_call() {
        let mut r = Rig::connected();
        let out = r.login(3, p("alice", "a1"));
        assert!(ended(&out, 1).is_empty(), "{out:?}");
        assert!(matches!(
            to(&out, 2)[..],
            [ServerMessage::PeerReconnecting { .. }]
        ));
        let out = r.send(3, resume("c", "bob", 0));
        assert!(matches!(
            to(&out, 3)[..],
            [ServerMessage::CallResumed { .. }]
        ));
        assert!(matches!(
            to(&out, 2)[..],
            [ServerMessage::PeerReconnected { .. }]
        ));
    }

    /// After a restart: both claims, a stranger's claim, an unconfirmed claim.
    #[test]
    fn mirror_claims_recreate_the_call_and_nothing_else_does() {
        let mut r = Rig::new();
        let start = r.now - 90_000;
        r.login(1, p("alice", "a1"));
        r.login(2, p("bob", "b1"));
        r.login(3, p("mallory", "m"));
        // Mallory claims first, naming bob.
        let m1 = r.send(3, resume("c", "bob", start - 1_000_000));
        let a1 = r.send(1, resume("c", "bob", start + 200));
        // Alice's answer and mallory's look alike (call_resumed, peer_reconnecting).
        let shape = |v: Vec<ServerMessage>| -> Vec<&'static str> {
            v.iter()
                .map(|m| match m {
                    ServerMessage::CallResumed { .. } => "resumed",
                    ServerMessage::PeerReconnecting { grace_secs: 30, .. } => "reconnecting",
                    _ => "other",
                })
                .collect()
        };
        assert_eq!(shape(to(&m1, 3)), vec!["reconnecting", "resumed"]);
        assert_eq!(shape(to(&a1, 1)), vec!["reconnecting", "resumed"]);
        assert!(to(&a1, 2).is_empty() && to(&m1, 2).is_empty());
        // A claimant is busy; the user it names is not.
        r.login(4, p("carol", "c1"));
        let out = r.send(
            4,
            ClientMessage::Invite {
                call_id: id("x"),
                callee: user("alice"),
                call_type: CallType::Audio,
                timeout_secs: None,
            },
        );
        assert_eq!(
            ended(&out, 4),
            vec![(EndReason::LineBusy, Some(user("alice")))]
        );
        // A second claim of alice's is refused.
        r.login(5, p("alice", "a2"));
        assert_eq!(
            error_code(&r.send(5, resume("c", "bob", start)), 5),
            Some(ErrorCode::AlreadyInCall)
        );
        // Bob's mirror claim re-creates alice's call, started at the earlier claim.
        r.advance(2_000);
        let out = r.send(2, resume("c", "alice", start));
        assert_eq!(
            to(&out, 2),
            vec![ServerMessage::CallResumed {
                call_id: id("c"),
                peer: user("alice"),
                connected_at_ms: start,
            }]
        );
        assert!(matches!(
            to(&out, 1)[..],
            [ServerMessage::PeerReconnected { .. }]
        ));
        assert!(to(&out, 3).is_empty());
        let call = r.sb.calls().next().unwrap();
        assert_eq!(call.phase(), Phase::Connected);
        assert!(call.involves(&user("alice")) && call.involves(&user("bob")));
        // Signals flow; mallory's go nowhere.
        assert!(matches!(
            to(&r.send(1, mute("c")), 2)[..],
            [ServerMessage::Signal { .. }]
        ));
        let out = r.send(3, mute("c"));
        assert_eq!(error_code(&out, 3), Some(ErrorCode::PeerAbsent));
        assert!(to(&out, 1).is_empty() && to(&out, 2).is_empty());
        // Mallory's claim runs out, touching nobody else.
        let out = r.advance(30_000);
        assert_eq!(
            ended(&out, 3),
            vec![(EndReason::ConnectionLost, Some(user("bob")))]
        );
        assert!(to(&out, 1).is_empty() && to(&out, 2).is_empty());
        // Hang-up works, with the original start.
        let out = r.send(2, ClientMessage::Hangup { call_id: id("c") });
        let msgs = to(&out, 1);
        assert!(
            matches!(
                &msgs[..],
                [ServerMessage::CallEnded { reason: EndReason::Hangup, duration_ms: Some(d), .. }]
                    if *d == r.now - start
            ),
            "{msgs:?}"
        );
    }

    #[test]
    fn an_unconfirmed_claim_ends_after_the_grace_and_a_hangup_withdraws_one() {
        let mut r = Rig::new();
        r.login(1, p("alice", "a1"));
        r.send(1, resume("c", "bob", r.now - 10_000));
        assert!(r.advance(29_999).is_empty());
        let out = r.advance(1);
        assert_eq!(
            ended(&out, 1),
            vec![(EndReason::ConnectionLost, Some(user("bob")))]
        );
        // Bob, late, hears that the call is over.
        r.login(2, p("bob", "b1"));
        let out = r.send(2, resume("c", "alice", 0));
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
        // A claim hung up before the peer came back ends for the claimant, and the peer learns it.
        r.send(1, resume("e", "bob", r.now));
        let out = r.send(1, ClientMessage::Hangup { call_id: id("e") });
        assert_eq!(
            ended(&out, 1),
            vec![(EndReason::Hangup, Some(user("alice")))]
        );
        let out = r.send(2, resume("e", "alice", r.now));
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::Hangup, Some(user("alice")))]
        );
        assert_eq!(r.sb.calls().count(), 0);
    }

    #[test]
    fn a_stranger_cannot_touch_a_live_call() {
        let mut r = Rig::connected();
        r.login(3, p("mallory", "m"));
        for peer in ["alice", "bob"] {
            let out = r.send(3, resume("c", peer, 0));
            assert!(to(&out, 1).is_empty() && to(&out, 2).is_empty());
            let out = r.send(3, mute("c"));
            assert_eq!(error_code(&out, 3), Some(ErrorCode::PeerAbsent));
            let out = r.send(3, ClientMessage::Hangup { call_id: id("c") });
            assert!(to(&out, 1).is_empty() && to(&out, 2).is_empty());
        }
        // The live call goes on untouched.
        assert!(matches!(
            to(&r.send(1, mute("c")), 2)[..],
            [ServerMessage::Signal { .. }]
        ));
        // A party dropping and a stranger claiming in its place changes nothing either.
        r.drop_(1);
        let out = r.send(3, resume("c", "bob", 0));
        assert!(to(&out, 2).is_empty());
        let out = r.advance(30_000);
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
    }

    #[test]
    fn a_flood_of_claims_keeps_one_ending_per_claimant_and_pushes_out_no_one_elses() {
        let mut r = Rig::connected();
        r.drop_(2);
        r.send(1, ClientMessage::Hangup { call_id: id("c") });
        r.login(3, p("mallory", "m"));
        for i in 0..(MAX_ENDINGS + MAX_CLAIM_ENDINGS + 100) {
            let call = format!("x{i}");
            r.send(3, resume(&call, "bob", r.now));
            let out = r.send(3, ClientMessage::Hangup { call_id: id(&call) });
            assert_eq!(ended(&out, 3).len(), 1);
        }
        assert_eq!(r.sb.resume.claim_endings.map.len(), 1);
        r.login(4, p("bob", "b1"));
        let out = r.send(4, resume("c", "alice", 0));
        assert_eq!(
            ended(&out, 4),
            vec![(EndReason::Hangup, Some(user("alice")))]
        );
    }

    #[test]
    fn an_invite_cannot_take_a_claimed_call_id() {
        let mut r = Rig::new();
        r.login(1, p("alice", "a1"));
        r.login(2, p("mallory", "m"));
        r.login(3, p("carol", "c1"));
        r.send(1, resume("c", "bob", r.now));
        let out = r.send(
            2,
            ClientMessage::Invite {
                call_id: id("c"),
                callee: user("carol"),
                call_type: CallType::Audio,
                timeout_secs: None,
            },
        );
        assert_eq!(error_code(&out, 2), Some(ErrorCode::CallIdInUse));
        assert!(to(&out, 3).is_empty());
        r.login(4, p("bob", "b1"));
        let out = r.send(4, resume("c", "alice", r.now));
        assert!(matches!(
            to(&out, 4)[..],
            [ServerMessage::CallResumed { .. }]
        ));
        assert!(matches!(
            to(&out, 1)[..],
            [ServerMessage::PeerReconnected { .. }]
        ));
    }

    #[test]
    fn resume_off_ends_calls_at_once() {
        let mut r = Rig::connected_with(Config {
            resume_secs: 0,
            ..Config::default()
        });
        let out = r.drop_(1);
        assert_eq!(
            ended(&out, 2),
            vec![(EndReason::ConnectionLost, Some(user("alice")))]
        );
        r.login(3, p("alice", "a1"));
        assert_eq!(
            error_code(&r.send(3, resume("z", "bob", 0)), 3),
            Some(ErrorCode::UnknownCall)
        );
    }
}
