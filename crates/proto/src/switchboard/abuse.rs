//! What one user may do to another: invite rate limits, the re-invite cooldown that keeps a
//! caller from holding a callee's line busy, and the per-user block list.
//!
//! Every check here is made before the callee's state is looked at, so its answer is the same
//! whether the callee is online, busy, offline or has blocked the caller: the limits tell a
//! caller nothing about the callee.

use super::{Action, SessionId, Switchboard};
use crate::call::Call;
use crate::ids::UserId;
use crate::message::{ErrorCode, ServerMessage};
use std::collections::{HashMap, VecDeque};

const MINUTE_MS: u64 = 60_000;

/// One caller's recent invites.
#[derive(Debug, Default)]
pub(super) struct CallerLog {
    /// When each invite of the last minute was placed.
    recent: VecDeque<u64>,
    pairs: HashMap<UserId, PairLog>,
}

/// One caller→callee pair.
#[derive(Debug, Default)]
struct PairLog {
    /// When each invite of the last `pair_window_secs` was placed.
    recent: VecDeque<u64>,
    /// No invite to this callee before this time (after unanswered rings).
    quiet_until_ms: u64,
    /// Unanswered rings in a row (an answered call starts the count again).
    unanswered: u32,
}

impl PairLog {
    fn idle(&self, now_ms: u64) -> bool {
        self.recent.is_empty() && self.quiet_until_ms <= now_ms
    }
}

fn prune(q: &mut VecDeque<u64>, now_ms: u64, window_ms: u64) {
    while q
        .front()
        .is_some_and(|t| t.saturating_add(window_ms) <= now_ms)
    {
        q.pop_front();
    }
}

/// Why an invite was refused by the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    PerMinute,
    Pair,
    Recall { wait_ms: u64 },
}

impl Refusal {
    fn message(self) -> String {
        match self {
            Refusal::PerMinute => "too many invites in the last minute; nothing rang".into(),
            Refusal::Pair => "too many invites to this user lately; nothing rang".into(),
            Refusal::Recall { wait_ms } => format!(
                "this user was rung by you moments ago; try again in {} s; nothing rang",
                wait_ms.div_ceil(1000)
            ),
        }
    }
}

impl Switchboard {
    /// Admits an invite from `caller` to `callee` under the limits and records it, or tells the
    /// caller's session `too_many_invites` and returns false. Refused invites are not recorded, so
    /// a limit counts invites that rang (or were answered `offline` / `line_busy`).
    pub(super) fn admit_invite(
        &mut self,
        sid: SessionId,
        caller: &UserId,
        callee: &UserId,
        call_id: &crate::ids::CallId,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> bool {
        self.sweep_invite_log(now_ms);
        let per_minute = self.config.max_invites_per_minute as usize;
        let pair_max = self.config.max_pair_invites as usize;
        let pair_window = u64::from(self.config.pair_window_secs) * 1000;
        let log = self.invite_log.entry(caller.clone()).or_default();
        prune(&mut log.recent, now_ms, MINUTE_MS);
        let pair = log.pairs.entry(callee.clone()).or_default();
        prune(&mut pair.recent, now_ms, pair_window);
        let refusal = if pair.quiet_until_ms > now_ms {
            Some(Refusal::Recall {
                wait_ms: pair.quiet_until_ms - now_ms,
            })
        } else if log.recent.len() >= per_minute {
            Some(Refusal::PerMinute)
        } else if pair.recent.len() >= pair_max {
            Some(Refusal::Pair)
        } else {
            None
        };
        if let Some(r) = refusal {
            Self::error(
                sid,
                ErrorCode::TooManyInvites,
                r.message(),
                Some(call_id),
                out,
            );
            return false;
        }
        pair.recent.push_back(now_ms);
        log.recent.push_back(now_ms);
        true
    }

    /// A call that rang ended unanswered. From the second such ring in a row, its caller may not
    /// ring the callee again until as long as it rang has passed (at least `min_recall_secs`).
    /// Without this a caller could re-invite the moment each ring ends and keep the callee
    /// `line_busy` to everyone else; with it the callee's line is free about half the time, and
    /// the pair limit caps the rest. One redial right away stays possible, as on a phone.
    /// `min_recall_secs: 0` turns the cooldown off (for test rigs that redial at once).
    pub(super) fn note_unanswered(&mut self, call: &Call, ended_at_ms: u64) {
        if self.config.min_recall_secs == 0 {
            return;
        }
        let rang = ended_at_ms.saturating_sub(call.created_at_ms());
        let quiet = rang.max(u64::from(self.config.min_recall_secs) * 1000);
        let log = self
            .invite_log
            .entry(call.caller().user.clone())
            .or_default();
        let pair = log.pairs.entry(call.callee().clone()).or_default();
        pair.unanswered = pair.unanswered.saturating_add(1);
        if pair.unanswered >= 2 {
            pair.quiet_until_ms = pair.quiet_until_ms.max(ended_at_ms.saturating_add(quiet));
        }
    }

    /// A call connected: the pair's unanswered streak starts again.
    pub(super) fn note_answered(&mut self, call: &Call) {
        if let Some(pair) = self
            .invite_log
            .get_mut(&call.caller().user)
            .and_then(|log| log.pairs.get_mut(call.callee()))
        {
            pair.unanswered = 0;
        }
    }

    /// Forgets callers with nothing recent, once a minute at most, so the log stays the size of
    /// the recent traffic (a caller cannot reset its limits by signing out: the log is by user).
    fn sweep_invite_log(&mut self, now_ms: u64) {
        if now_ms < self.last_sweep_ms.saturating_add(MINUTE_MS) {
            return;
        }
        self.last_sweep_ms = now_ms;
        let pair_window = u64::from(self.config.pair_window_secs) * 1000;
        self.invite_log.retain(|_, log| {
            prune(&mut log.recent, now_ms, MINUTE_MS);
            log.pairs.retain(|_, p| {
                prune(&mut p.recent, now_ms, pair_window);
                !p.idle(now_ms)
            });
            !log.recent.is_empty() || !log.pairs.is_empty()
        });
    }

    /// Has `callee` blocked `caller`?
    pub(super) fn is_blocked(&self, callee: &UserId, caller: &UserId) -> bool {
        self.blocks.get(callee).is_some_and(|b| b.contains(caller))
    }

    /// `block`: kept by user (every device of `me`), for as long as the server runs.
    pub(super) fn block(
        &mut self,
        sid: SessionId,
        me: &UserId,
        user_id: UserId,
        out: &mut Vec<Action>,
    ) {
        let max = self.config.max_blocked_per_user;
        let list = self.blocks.entry(me.clone()).or_default();
        if !list.contains(&user_id) && list.len() >= max {
            Self::error(
                sid,
                ErrorCode::BlockListFull,
                format!("at most {max} users can be blocked"),
                None,
                out,
            );
            return;
        }
        list.insert(user_id.clone());
        out.push(Action::Send(sid, ServerMessage::Blocked { user_id }));
    }

    /// `unblock`; idempotent.
    pub(super) fn unblock(
        &mut self,
        sid: SessionId,
        me: &UserId,
        user_id: UserId,
        out: &mut Vec<Action>,
    ) {
        if let Some(list) = self.blocks.get_mut(me) {
            list.remove(&user_id);
            if list.is_empty() {
                self.blocks.remove(me);
            }
        }
        out.push(Action::Send(sid, ServerMessage::Unblocked { user_id }));
    }
}
