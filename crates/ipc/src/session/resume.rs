//! Keeping a connected call through a signaling outage: the resume half of [`ClientSession`].
//!
//! Media is peer-to-peer, so a dropped WebSocket (a Wi-Fi hand-over, a laptop waking up, a proxy's
//! idle cut, a server deploy) need not end a call whose audio is flowing. When the connection drops
//! during a *connected* call the machine keeps the call (the view stays `Connected`, marked
//! `reconnecting`, its timer running; the driver's media is untouched), reconnects with a short
//! backoff, signs in again and sends `resume_call`; the server answers `call_resumed` (the call goes
//! on), or the call's ending (`call_ended`), or `unknown_call` (it is over: the peer gave up, or the
//! grace period ran out). A call that had not connected yet still ends at the drop, as before: there
//! is no media to keep and the ring cannot be held.
//!
//! What the user does meanwhile is kept, never lost:
//! - a hang-up ends the call here at once (the UI shows it ended, the driver's media stops) and is
//!   sent once the server confirmed the resume (a `hangup` from a connection the call is not
//!   attached to would be refused);
//! - media signals (an ICE restart's offer after a network change, its candidates, an answer) and
//!   mute changes are queued in order and sent right after `call_resumed`; a newer offer replaces
//!   the negotiation queued before it, so the peer never gets a stale one.
//!
//! The other side of the same outage: while the server says the *peer* is reconnecting
//! (`peer_reconnecting`), it relays nothing to it (`peer_absent`), so this side's signals are queued
//! the same way and sent at `peer_reconnected` (or `call_resumed`).
//!
//! If the server cannot be reached again within [`super::Config::resume_window_ms`], the call ends
//! here as "connection lost": by then the server has ended it too.

use super::{ClientSession, Millis};
use crate::{call_view, CallPhase, CallView};
use std::collections::VecDeque;
use tincan_proto::{CallId, ClientMessage, EndReason, MediaSignal};

/// The most signals kept for the peer while away (an ICE restart's offer and its candidates fit
/// many times over; a runaway engine cannot grow the queue without bound).
const OUTBOX_MAX: usize = 64;

/// A connected call kept while the connection to the server is down.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) call_id: CallId,
    pub(super) peer: tincan_proto::UserId,
    /// When the call connected, on the server's clock (what `resume_call` says).
    pub(super) connected_at_server_ms: u64,
    /// `resume_call` went out on the current connection; its answer is awaited.
    pub(super) asked: bool,
    /// The user hung up while away: sent once the server confirms the resume.
    pub(super) hangup: bool,
    /// The call ends here if it is not resumed by then.
    pub(super) give_up_at: Millis,
}

/// Signals for the peer kept until the server relays again, in order.
#[derive(Debug, Default)]
pub(super) struct Kept {
    pub(super) call_id: Option<CallId>,
    pub(super) signals: VecDeque<MediaSignal>,
}

impl Kept {
    fn queue(&mut self, call_id: &CallId, signal: MediaSignal) {
        if self.call_id.as_ref() != Some(call_id) {
            self.call_id = Some(call_id.clone());
            self.signals.clear();
        }
        if matches!(signal, MediaSignal::Offer { .. }) {
            // A new offer starts a new negotiation: what was queued for the old one is stale.
            self.signals
                .retain(|s| matches!(s, MediaSignal::Mute { .. }));
        }
        if self.signals.len() == OUTBOX_MAX {
            self.signals.pop_front();
        }
        self.signals.push_back(signal);
    }
}

fn with_flags(c: &CallView, reconnecting: bool, peer_reconnecting: bool) -> Option<CallView> {
    (c.reconnecting != reconnecting || c.peer_reconnecting != peer_reconnecting).then(|| {
        let mut c = c.clone();
        c.reconnecting = reconnecting;
        c.peer_reconnecting = peer_reconnecting;
        c
    })
}

impl ClientSession {
    /// The connection dropped: keep a connected call (true), or end a call that had not connected
    /// yet as before (false).
    pub(super) fn hold_call(&mut self, now: Millis) -> bool {
        let Some(c) = self.call.clone() else {
            return false;
        };
        if let Some(h) = self.held.as_mut() {
            // Dropped again before the resume was answered: ask again on the next connection.
            h.asked = false;
            return true;
        }
        if c.phase != CallPhase::Connected {
            return false;
        }
        let local = c.connected_at_ms.unwrap_or(c.started_at_ms);
        self.held = Some(Held {
            call_id: c.call_id.clone(),
            peer: c.peer.clone(),
            connected_at_server_ms: local.saturating_add_signed(self.server_offset_ms),
            asked: false,
            hangup: false,
            give_up_at: now.saturating_add(self.cfg.resume_window_ms),
        });
        if let Some(v) = with_flags(&c, true, c.peer_reconnecting) {
            self.set_call(v);
        }
        true
    }

    /// Signed in again: announce the held call.
    pub(super) fn ask_resume(&mut self) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        h.asked = true;
        let frame = ClientMessage::ResumeCall {
            call_id: h.call_id.clone(),
            peer: h.peer.clone(),
            connected_at_ms: h.connected_at_server_ms,
        };
        self.send(frame);
    }

    /// Is a call held (not yet resumed)? Its frames are kept instead of sent.
    pub(super) fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// A frame a command made for the held call: kept for after the resume.
    pub(super) fn keep_for_resume(&mut self, frame: ClientMessage) {
        let Some(h) = self.held.as_mut() else {
            return;
        };
        match frame {
            ClientMessage::Hangup { call_id }
            | ClientMessage::Cancel { call_id }
            | ClientMessage::Reject { call_id, .. }
                if call_id == h.call_id =>
            {
                h.hangup = true;
                self.kept = Kept::default();
            }
            ClientMessage::Signal { call_id, signal } if call_id == h.call_id && !h.hangup => {
                self.kept.queue(&call_id, signal)
            }
            _ => {}
        }
    }

    /// A signal for a peer the server says is away: kept (true), or sent as usual (false).
    pub(super) fn keep_for_peer(&mut self, frame: &ClientMessage) -> bool {
        let ClientMessage::Signal { call_id, signal } = frame else {
            return false;
        };
        let away = self
            .call
            .as_ref()
            .is_some_and(|c| c.call_id == *call_id && c.peer_reconnecting);
        if away {
            self.kept.queue(call_id, signal.clone());
        }
        away
    }

    /// Sends what was kept for the call, once the server relays both ways again.
    fn flush_kept(&mut self, call_id: &CallId) {
        let kept = std::mem::take(&mut self.kept);
        if kept.call_id.as_ref() != Some(call_id) {
            return;
        }
        for signal in kept.signals {
            self.send(ClientMessage::Signal {
                call_id: call_id.clone(),
                signal,
            });
        }
    }

    /// `call_resumed`: the held call goes on (and a hang-up made while away is sent now), or the
    /// peer came back to a call this side never left.
    pub(super) fn on_call_resumed(&mut self, call_id: &CallId) {
        match self.held.take() {
            Some(h) if h.call_id == *call_id => {
                if h.hangup {
                    self.send(ClientMessage::Hangup { call_id: h.call_id });
                    return;
                }
            }
            other => self.held = other,
        }
        let peer_away = self
            .call
            .as_ref()
            .is_some_and(|c| c.call_id == *call_id && c.peer_reconnecting);
        self.set_flags(call_id, false, peer_away);
        if !peer_away {
            self.flush_kept(call_id);
        }
    }

    /// `peer_reconnecting` / `peer_reconnected`.
    pub(super) fn on_peer_away(&mut self, call_id: &CallId, away: bool) {
        let mine = self.held.as_ref().is_some_and(|h| h.call_id == *call_id);
        self.set_flags(call_id, mine, away);
        if !away && !mine {
            self.flush_kept(call_id);
        }
    }

    fn set_flags(&mut self, call_id: &CallId, reconnecting: bool, peer_reconnecting: bool) {
        let Some(c) = self.call.as_ref() else {
            return;
        };
        if c.call_id != *call_id || c.phase == CallPhase::Ended {
            return;
        }
        if let Some(v) = with_flags(c, reconnecting, peer_reconnecting) {
            self.set_call(v);
        }
    }

    /// The server's word on the held call that is not `call_resumed`: its ending, or "no such
    /// call" (it ended while this side was away). Returns whether it was about the held call.
    pub(super) fn resume_refused(&mut self, now: Millis, call_id: &CallId) -> bool {
        if self.held.as_ref().is_none_or(|h| h.call_id != *call_id) {
            return false;
        }
        self.held = None;
        self.kept = Kept::default();
        self.end_held(
            now,
            "The call ended while the connection to the server was lost.",
        );
        true
    }

    /// The call-ending frame for a call arrived: nothing more to resume or send for it.
    pub(super) fn resume_ended(&mut self, call_id: &CallId) {
        if self.held.as_ref().is_some_and(|h| h.call_id == *call_id) {
            self.held = None;
        }
        if self.kept.call_id.as_ref() == Some(call_id) {
            self.kept = Kept::default();
        }
    }

    /// Not resumed in time: end the call here.
    pub(super) fn resume_timeout(&mut self, now: Millis) {
        if self.held.as_ref().is_some_and(|h| h.give_up_at <= now) {
            self.held = None;
            self.kept = Kept::default();
            self.end_held(
                now,
                "The connection to the server was lost and the call could not be resumed.",
            );
        }
    }

    pub(super) fn resume_deadline(&self) -> Option<Millis> {
        self.held.as_ref().map(|h| h.give_up_at)
    }

    fn end_held(&mut self, _now: Millis, message: &str) {
        if let Some(mut c) = self.call.clone() {
            if c.phase != CallPhase::Ended {
                call_view::end(&mut c, Some(EndReason::ConnectionLost), message.to_owned());
                self.set_call(c);
            }
        }
    }
}
