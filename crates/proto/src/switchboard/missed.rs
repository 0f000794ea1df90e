//! Missed calls kept for users who are signed in nowhere, under quotas no single caller can game.
//!
//! The old store was one FIFO over every callee: a caller placing hundreds of calls a second to
//! offline users pushed everyone else's real missed calls out. Here the limits are per party:
//!
//! - **one entry per caller→callee pair**: calling an offline user again replaces the entry with
//!   the newer call, so redialling never takes more room;
//! - **per caller** ([`super::Config::max_missed_per_caller`]): a caller holds at most this many
//!   entries across all callees; past it, the caller's own oldest entry goes, never anyone else's;
//! - **per callee** ([`super::Config::max_missed_per_user`]): distinct callers kept for one user;
//!   past it the entry of the caller holding the most entries anywhere goes (the oldest among
//!   equals), so accounts that spray calls lose theirs before someone's single call;
//! - **in total** ([`super::Config::max_missed_total`]), the memory bound: past it, the oldest entry
//!   of whichever caller holds the most entries goes, so even many accounts acting together
//!   evict each other first;
//! - **a time to live** ([`super::Config::missed_ttl_ms`]): entries older than it are dropped and
//!   never delivered. Time is an input, as everywhere in the switchboard.
//!
//! Persistence is not here: every change is reported as an [`Action::Missed`] the server applies
//! to its database, and at start the server hands the saved entries back through
//! [`Switchboard::load_missed`].

use super::{Action, Switchboard};
use crate::ids::UserId;
use crate::message::MissedCall;
use std::collections::{BTreeSet, HashMap};

/// A kept missed call: who was called, and what they will be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissedEntry {
    pub callee: UserId,
    pub call: MissedCall,
}

/// A change to the kept missed calls, for the server to mirror in its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissedChange {
    /// Insert this entry, or replace the one for the same (callee, caller) pair.
    Recorded(MissedEntry),
    /// The (callee, caller) entry is gone: evicted by a quota or expired.
    Removed { callee: UserId, caller: UserId },
    /// Every entry of this callee was delivered to it and is gone.
    Delivered { callee: UserId },
}

/// The kept entries and the indexes the quotas need.
#[derive(Debug, Default)]
pub(super) struct MissedBook {
    /// Each callee's entries, oldest first; at most one per caller.
    by_callee: HashMap<UserId, Vec<MissedCall>>,
    /// The callees each caller holds an entry for, oldest first.
    by_caller: HashMap<UserId, Vec<UserId>>,
    /// (entries held, caller): the heaviest caller is the last.
    weight: BTreeSet<(usize, UserId)>,
    /// (placed at, callee, caller), for the time to live.
    expiry: BTreeSet<(u64, UserId, UserId)>,
    total: usize,
}

impl MissedBook {
    pub(super) fn len(&self) -> usize {
        self.total
    }

    fn set_weight(&mut self, caller: &UserId, old: usize, new: usize) {
        if old > 0 {
            self.weight.remove(&(old, caller.clone()));
        }
        if new > 0 {
            self.weight.insert((new, caller.clone()));
        }
    }

    /// Removes the (callee, caller) entry if there is one.
    fn remove(&mut self, callee: &UserId, caller: &UserId) -> Option<MissedCall> {
        let list = self.by_callee.get_mut(callee)?;
        let i = list.iter().position(|m| m.caller == *caller)?;
        let m = list.remove(i);
        if list.is_empty() {
            self.by_callee.remove(callee);
        }
        if let Some(callees) = self.by_caller.get_mut(caller) {
            let old = callees.len();
            callees.retain(|c| c != callee);
            let new = callees.len();
            if new == 0 {
                self.by_caller.remove(caller);
            }
            self.set_weight(caller, old, new);
        }
        self.expiry
            .remove(&(m.at_ms, callee.clone(), caller.clone()));
        self.total -= 1;
        Some(m)
    }

    fn insert(&mut self, callee: UserId, call: MissedCall) {
        let caller = call.caller.clone();
        self.expiry
            .insert((call.at_ms, callee.clone(), caller.clone()));
        self.by_callee.entry(callee.clone()).or_default().push(call);
        let callees = self.by_caller.entry(caller.clone()).or_default();
        callees.push(callee);
        let new = callees.len();
        self.set_weight(&caller, new - 1, new);
        self.total += 1;
    }
}

impl Switchboard {
    /// Keeps a call to an offline user for its next sign-in, within the quotas (see the module
    /// docs), and reports every change.
    pub(super) fn remember_missed(
        &mut self,
        callee: &UserId,
        call: &crate::call::Call,
        out: &mut Vec<Action>,
    ) {
        let entry = MissedCall {
            call_id: call.id().clone(),
            caller: call.caller().user.clone(),
            call_type: call.call_type(),
            at_ms: call.created_at_ms(),
        };
        self.keep_missed(callee.clone(), entry, true, out);
    }

    fn keep_missed(
        &mut self,
        callee: UserId,
        call: MissedCall,
        report_recorded: bool,
        out: &mut Vec<Action>,
    ) {
        let cfg = &self.config;
        if cfg.max_missed_per_caller == 0
            || cfg.max_missed_per_user == 0
            || cfg.max_missed_total == 0
        {
            return;
        }
        let (per_caller, per_user, total) = (
            cfg.max_missed_per_caller,
            cfg.max_missed_per_user,
            cfg.max_missed_total,
        );
        let caller = call.caller.clone();
        // A newer call from the same caller takes the old one's place (and moves to the back).
        if self.missed.remove(&callee, &caller).is_none() {
            let book = &mut self.missed;
            let mut evicted = Vec::new();
            // The caller pays for its own calls first.
            if book.by_caller.get(&caller).map_or(0, Vec::len) >= per_caller {
                if let Some(oldest) = book.by_caller.get(&caller).and_then(|v| v.first()).cloned() {
                    book.remove(&oldest, &caller);
                    evicted.push((oldest, caller.clone()));
                }
            }
            if book.by_callee.get(&callee).map_or(0, Vec::len) >= per_user {
                // The entry of the caller holding the most entries anywhere goes (a flood from
                // several accounts is pushed out before anyone's one call); the oldest on a tie.
                let victim = book.by_callee.get(&callee).and_then(|v| {
                    v.iter()
                        .enumerate()
                        .max_by_key(|(i, m)| {
                            let held = book.by_caller.get(&m.caller).map_or(0, Vec::len);
                            (held, std::cmp::Reverse(*i))
                        })
                        .map(|(_, m)| m.caller.clone())
                });
                if let Some(victim) = victim {
                    book.remove(&callee, &victim);
                    evicted.push((callee.clone(), victim));
                }
            }
            while book.total >= total {
                let Some((_, heaviest)) = book.weight.last().cloned() else {
                    break;
                };
                let Some(oldest) = book
                    .by_caller
                    .get(&heaviest)
                    .and_then(|v| v.first())
                    .cloned()
                else {
                    break;
                };
                book.remove(&oldest, &heaviest);
                evicted.push((oldest, heaviest));
            }
            for (callee, caller) in evicted {
                out.push(Action::Missed(MissedChange::Removed { callee, caller }));
            }
        }
        if report_recorded {
            out.push(Action::Missed(MissedChange::Recorded(MissedEntry {
                callee: callee.clone(),
                call: call.clone(),
            })));
        }
        self.missed.insert(callee, call);
    }

    /// Hands `callee` its unexpired missed calls (oldest first) and forgets them.
    pub(super) fn take_missed(
        &mut self,
        callee: &UserId,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Vec<MissedCall> {
        self.expire_missed(now_ms, out);
        let callers: Vec<UserId> = self
            .missed
            .by_callee
            .get(callee)
            .map(|v| v.iter().map(|m| m.caller.clone()).collect())
            .unwrap_or_default();
        let calls: Vec<MissedCall> = callers
            .iter()
            .filter_map(|c| self.missed.remove(callee, c))
            .collect();
        if !calls.is_empty() {
            out.push(Action::Missed(MissedChange::Delivered {
                callee: callee.clone(),
            }));
        }
        calls
    }

    /// Drops the missed calls whose time to live has passed; call it when
    /// [`Switchboard::next_missed_expiry`] is due (sign-in does it too).
    pub fn expire_missed(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while let Some(at) = self.next_missed_expiry() {
            if at > now_ms {
                break;
            }
            let Some((_, callee, caller)) = self.missed.expiry.first().cloned() else {
                break;
            };
            self.missed.remove(&callee, &caller);
            out.push(Action::Missed(MissedChange::Removed { callee, caller }));
        }
    }

    /// When the oldest kept missed call expires (unix ms), if any is kept.
    pub fn next_missed_expiry(&self) -> Option<u64> {
        self.missed
            .expiry
            .first()
            .map(|(at, _, _)| at.saturating_add(self.config.missed_ttl_ms))
    }

    /// Takes back the entries a server saved before it restarted. They pass the same quotas and
    /// time to live as new ones (the limits may have changed since); whatever does not fit or has
    /// expired is reported as [`MissedChange::Removed`], so the store forgets it too. Entries
    /// for a user who is signed in already are delivered at its next sign-in.
    pub fn load_missed(
        &mut self,
        entries: impl IntoIterator<Item = MissedEntry>,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let mut entries: Vec<MissedEntry> = entries.into_iter().collect();
        entries.sort_by_key(|e| e.call.at_ms);
        for e in entries {
            if e.call.at_ms.saturating_add(self.config.missed_ttl_ms) <= now_ms {
                out.push(Action::Missed(MissedChange::Removed {
                    callee: e.callee,
                    caller: e.call.caller,
                }));
                continue;
            }
            let (callee, caller) = (e.callee.clone(), e.call.caller.clone());
            // A duplicate pair in the input replaces the older entry, which the store keeps
            // under the same key anyway.
            let mut changes = Vec::new();
            self.keep_missed(e.callee, e.call, false, &mut changes);
            let kept = self
                .missed
                .by_callee
                .get(&callee)
                .is_some_and(|v| v.iter().any(|m| m.caller == caller));
            if !kept {
                changes.push(Action::Missed(MissedChange::Removed { callee, caller }));
            }
            out.append(&mut changes);
        }
    }

    /// The missed calls kept for `callee`, oldest first (for tests and diagnostics).
    pub fn missed_for(&self, callee: &UserId) -> Vec<MissedCall> {
        self.missed
            .by_callee
            .get(callee)
            .cloned()
            .unwrap_or_default()
    }

    /// Missed calls kept in all.
    pub fn missed_count(&self) -> usize {
        self.missed.len()
    }

    /// The missed-call book's own invariants (part of [`Switchboard::check_invariants`]).
    pub(super) fn check_missed(&self) -> Result<(), String> {
        let book = &self.missed;
        let cfg = &self.config;
        let mut total = 0;
        let mut held: HashMap<&UserId, usize> = HashMap::new();
        for (callee, list) in &book.by_callee {
            if list.is_empty() {
                return Err(format!("empty missed list kept for {callee}"));
            }
            if list.len() > cfg.max_missed_per_user {
                return Err(format!("{callee} has {} missed calls", list.len()));
            }
            for (i, m) in list.iter().enumerate() {
                if list[..i].iter().any(|o| o.caller == m.caller) {
                    return Err(format!("two missed calls from {} for {callee}", m.caller));
                }
                if !book
                    .expiry
                    .contains(&(m.at_ms, callee.clone(), m.caller.clone()))
                {
                    return Err(format!("missed call {} has no expiry", m.call_id));
                }
                *held.entry(&m.caller).or_default() += 1;
            }
            total += list.len();
        }
        if total != book.total || book.expiry.len() != total {
            return Err(format!(
                "missed-call count {} / expiry {} / real {total}",
                book.total,
                book.expiry.len()
            ));
        }
        if total > cfg.max_missed_total {
            return Err(format!("{total} missed calls kept in all"));
        }
        for (caller, callees) in &book.by_caller {
            if held.get(caller).copied() != Some(callees.len()) {
                return Err(format!("caller index of {caller} is off"));
            }
            if callees.len() > cfg.max_missed_per_caller {
                return Err(format!("{caller} holds {} missed calls", callees.len()));
            }
            if !book.weight.contains(&(callees.len(), caller.clone())) {
                return Err(format!("weight of {caller} is off"));
            }
        }
        if held.len() != book.by_caller.len() || book.weight.len() != book.by_caller.len() {
            return Err("caller index and entries disagree".into());
        }
        Ok(())
    }
}
