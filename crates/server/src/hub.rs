//! Shared state: the switchboard plus one byte-bounded outbox per connection.
//!
//! One mutex guards both. Every critical section is short and never awaits: signaling traffic is a
//! few frames per call, so a single lock is cheaper than sharding, and it keeps the switchboard's
//! view and the set of live outboxes consistent.
//!
//! Backpressure lands on the sender, never on the innocent: a `signal` relayed into an outbox
//! over its soft byte budget is refused to its *sender* (`peer_backlogged`), and the receiver stays
//! connected. Frames the server itself owes a client (`invited`, `accepted`, `call_ended`, replies)
//! have headroom up to the hard budget. A receiver is cut off only when it truly stops reading: its
//! writer made no progress for `send_stall` while data was queued (see `connection`), or the hard
//! budget was exceeded.

use crate::clock::Clock;
use crate::config::ServerConfig;
use axum::extract::ws::Utf8Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tincan_proto::sdp::Checked;
use tincan_proto::switchboard::{Action, LoginError, SessionId, Switchboard};
use tincan_proto::{
    CallId, ClientMessage, CloseReason, ErrorCode, MediaSignal, Party, ServerMessage, UserId,
    UserSigKey,
};
use tokio::sync::Notify;

/// What a connection's writer sends next.
#[derive(Debug)]
pub enum Outbound {
    Text(Utf8Bytes),
    Ping,
    Close(CloseReason),
}

/// Bookkeeping counted on top of each queued frame's bytes, so a flood of tiny frames is bounded
/// by the byte budget too.
const ITEM_OVERHEAD: usize = 64;

impl Outbound {
    /// What this item counts against the byte budget.
    fn cost(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len() + ITEM_OVERHEAD,
            Outbound::Ping => ITEM_OVERHEAD,
            // A close is never refused and never counted: it must always fit.
            Outbound::Close(_) => 0,
        }
    }
}

/// How a push into an [`Outbox`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// A relayed frame found the outbox over its soft budget; nothing was queued.
    Refused,
    /// The connection is closing (or just became a slow consumer); nothing was queued.
    Closing,
}

/// One connection's outgoing frames, bounded in bytes (queued plus the one being written).
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the writer: something was queued, or the connection is closing.
    ready: Notify,
    /// Wakes a reader that waits for room for its own replies.
    room: Notify,
    soft: usize,
    hard: usize,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// Bytes queued or in flight (an item's cost is returned by [`Outbox::sent`]).
    bytes: usize,
    /// Set once a close is queued: nothing else is accepted after it.
    closing: Option<CloseReason>,
}

impl Outbox {
    /// An outbox that refuses relayed frames past `soft` bytes and gives up on the connection past
    /// `hard` bytes.
    pub fn new(soft: usize, hard: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            room: Notify::new(),
            soft: soft.max(1),
            hard: hard.max(soft).max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A frame relayed from another client: refused when this outbox is over its soft budget, so
    /// the sender is throttled and this connection keeps its headroom for the server's own frames.
    pub fn relay(&self, text: Utf8Bytes) -> Push {
        let item = Outbound::Text(text);
        let mut q = self.lock();
        if q.closing.is_some() {
            return Push::Closing;
        }
        if q.bytes + item.cost() > self.soft {
            return Push::Refused;
        }
        q.bytes += item.cost();
        q.items.push_back(item);
        drop(q);
        self.ready.notify_one();
        Push::Queued
    }

    /// A frame the server owes this client (its own messages, replies, keepalive pings): queued up
    /// to the hard budget. Past it the client is not reading: its queue is dropped and it is
    /// closed as a slow consumer.
    pub fn deliver(&self, item: Outbound) -> Push {
        let mut q = self.lock();
        if q.closing.is_some() {
            return Push::Closing;
        }
        if q.bytes + item.cost() > self.hard {
            Self::close_locked(&mut q, CloseReason::SlowConsumer, true);
            drop(q);
            self.wake_all();
            return Push::Closing;
        }
        q.bytes += item.cost();
        q.items.push_back(item);
        drop(q);
        self.ready.notify_one();
        Push::Queued
    }

    /// Closes with `reason` after everything already queued (the first close wins).
    pub fn close(&self, reason: CloseReason) {
        let mut q = self.lock();
        if q.closing.is_none() {
            Self::close_locked(&mut q, reason, false);
        }
        drop(q);
        self.wake_all();
    }

    /// Drops everything queued to make room and closes at once: with `reason`, or with the close
    /// already queued (a shutdown's 1001 stays 1001).
    pub fn close_now(&self, reason: CloseReason) {
        let mut q = self.lock();
        let reason = q.closing.unwrap_or(reason);
        Self::close_locked(&mut q, reason, true);
        drop(q);
        self.wake_all();
    }

    fn close_locked(q: &mut Queue, reason: CloseReason, drop_queue: bool) {
        if drop_queue {
            let dropped: usize = q.items.iter().map(Outbound::cost).sum();
            q.bytes = q.bytes.saturating_sub(dropped);
            q.items.clear();
        }
        if q.closing.is_none() || drop_queue {
            q.items.push_back(Outbound::Close(reason));
        }
        q.closing = Some(reason);
    }

    fn wake_all(&self) {
        self.ready.notify_one();
        self.room.notify_waiters();
    }

    /// The next item for the writer. Cancel-safe: an item is taken only when this returns. Its
    /// bytes stay counted until [`Outbox::sent`].
    pub async fn next(&self) -> Outbound {
        loop {
            if let Some(item) = self.lock().items.pop_front() {
                return item;
            }
            self.ready.notified().await;
        }
    }

    /// The writer finished writing an item of this cost.
    pub fn sent(&self, item_cost: usize) {
        let mut q = self.lock();
        let was_full = q.bytes >= self.soft;
        q.bytes = q.bytes.saturating_sub(item_cost);
        // A reader waits for room only while the outbox is at or over its soft budget, so only
        // the crossing back under it wakes (not every frame written: the waiter list takes a
        // lock of its own).
        let crossed = was_full && q.bytes < self.soft;
        drop(q);
        if crossed {
            self.room.notify_waiters();
        }
    }

    /// The cost [`Outbox::sent`] expects for an item.
    pub fn cost_of(item: &Outbound) -> usize {
        item.cost()
    }

    /// Bytes queued or in flight.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether anything waits for the writer.
    pub fn has_queued(&self) -> bool {
        !self.lock().items.is_empty()
    }

    /// Why this connection is closing, once it is.
    pub fn closing(&self) -> Option<CloseReason> {
        self.lock().closing
    }

    /// Waits until the outbox is under its soft budget (or closing): a reader calls this before
    /// taking the next frame, so a client's own replies push back on the client (TCP), never
    /// past the budget.
    pub async fn room(&self) {
        loop {
            // The usual case first, without joining the waiter list (a lock and an unlink).
            {
                let q = self.lock();
                if q.bytes < self.soft || q.closing.is_some() {
                    return;
                }
            }
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let q = self.lock();
                if q.bytes < self.soft || q.closing.is_some() {
                    return;
                }
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct State {
    board: Switchboard,
    outboxes: HashMap<SessionId, Arc<Outbox>>,
    /// Reused for every batch of actions, so routing a frame does not allocate a fresh vector.
    actions: Vec<Action>,
    /// Reused for the targets of a forwarded signal, likewise.
    targets: Vec<SessionId>,
    /// Where missed calls are mirrored on disk (`--data-dir`); `None` keeps them in memory only.
    store: Option<crate::store::Store>,
}

/// The server's shared state.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    pub config: ServerConfig,
    pub key: UserSigKey,
    pub clock: Clock,
    next_sid: AtomicU64,
    connections: AtomicUsize,
    /// Woken when the last connection slot is released (shutdown waits on it).
    idle: Notify,
    /// Set by [`Hub::shutdown`]: a connection that attaches later is closed at once.
    shutting_down: AtomicBool,
    /// "Server full" is logged once per interval, not once per refused client.
    pub full_log: crate::fds::LogLimiter,
}

impl Hub {
    pub fn new(config: ServerConfig) -> Arc<Self> {
        let key = UserSigKey::new(config.sdk_app_id, config.secret.clone());
        Arc::new(Self {
            state: Mutex::new(State {
                board: Switchboard::new(config.switchboard.clone()),
                outboxes: HashMap::new(),
                actions: Vec::with_capacity(16),
                targets: Vec::with_capacity(4),
                store: None,
            }),
            config,
            key,
            clock: Clock::new(),
            next_sid: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            idle: Notify::new(),
            shutting_down: AtomicBool::new(false),
            full_log: crate::fds::LogLimiter::new(std::time::Duration::from_secs(10)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; keep serving rather than poisoning every
        // later connection.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a connection slot; `None` when the server is full.
    pub fn open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let n = self.connections.fetch_add(1, Ordering::AcqRel);
        if n >= self.config.max_connections {
            self.release_slot();
            return None;
        }
        Some(ConnectionSlot { hub: self.clone() })
    }

    fn release_slot(&self) {
        if self.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Waits until every connection slot is released: each upgraded connection has finished its
    /// closing handshake (or given up on it) and gone.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.connection_count() == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn session_count(&self) -> usize {
        self.lock().board.session_count()
    }

    /// A fresh outbox with the configured byte budgets.
    pub fn new_outbox(&self) -> Arc<Outbox> {
        Arc::new(Outbox::new(
            self.config.send_queue_bytes,
            self.config.send_queue_hard_bytes(),
        ))
    }

    /// Registers a connection's outbox and returns its session ID. During a shutdown the
    /// connection is told so at once.
    pub fn attach(&self, outbox: Arc<Outbox>) -> SessionId {
        let sid = self.next_sid.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        // Checked under the lock that `shutdown` takes, so no connection slips between.
        if self.shutting_down.load(Ordering::Acquire) {
            outbox.close(CloseReason::ServerShutdown);
        }
        st.outboxes.insert(sid, outbox);
        sid
    }

    /// Signs a verified user in.
    pub fn login(&self, sid: SessionId, party: Party) -> Result<(), LoginError> {
        let now = self.clock.now_ms();
        self.with_board(sid, |board, out| board.login(sid, party, now, out))
    }

    /// Routes a frame from a signed-in session.
    pub fn handle(&self, sid: SessionId, msg: ClientMessage) {
        let now = self.clock.now_ms();
        self.with_board(sid, |board, out| board.handle(sid, msg, now, out));
    }

    /// Relays a `signal` on the fast path: `frame` was built once by the caller, outside this
    /// lock, from the sender's own JSON (`tincan_proto::wire`), and so was the SDP check
    /// (`checked`, [`Checked::new`] with the switchboard's limits); every target gets a clone of
    /// the same bytes (a reference count, no copy). Under the lock only the switchboard's rules
    /// and the candidate count run, as for any frame. A target whose outbox is over budget does
    /// not get it, and the sender is told (`peer_backlogged`).
    pub fn forward(
        &self,
        sid: SessionId,
        from: &UserId,
        call_id: &CallId,
        signal: &MediaSignal,
        checked: Checked,
        frame: Utf8Bytes,
    ) {
        let mut st = self.lock();
        let st = &mut *st;
        let mut targets = std::mem::take(&mut st.targets);
        st.board.forward_signal(
            sid,
            from,
            call_id,
            signal,
            checked,
            &mut st.actions,
            &mut targets,
        );
        Self::dispatch(st, Some(sid));
        let mut refused = false;
        for t in targets.drain(..) {
            if let Some(ob) = st.outboxes.get(&t) {
                refused |= ob.relay(frame.clone()) == Push::Refused;
            }
        }
        st.targets = targets;
        if refused {
            Self::backlogged(st, sid, Some(call_id.clone()));
        }
    }

    /// Puts the missed calls a store saved back into the switchboard, and mirrors every later
    /// change into that store.
    pub fn install_store(
        &self,
        store: crate::store::Store,
        saved: Vec<tincan_proto::switchboard::MissedEntry>,
    ) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let st = &mut *st;
        st.store = Some(store);
        st.board.load_missed(saved, now, &mut st.actions);
        Self::dispatch(st, None);
    }

    /// Takes the store out (at shutdown, to close it off the lock); later changes stay in memory.
    pub fn take_store(&self) -> Option<crate::store::Store> {
        self.lock().store.take()
    }

    /// Fires due ring timeouts and drops expired missed calls.
    pub fn tick(&self) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st.board.next_missed_expiry().is_some_and(|d| d <= now) {
            let st = &mut *st;
            st.board.expire_missed(now, &mut st.actions);
            Self::dispatch(st, None);
        }
        if st.board.next_deadline().is_some_and(|d| d <= now) {
            let st = &mut *st;
            st.board.tick(now, &mut st.actions);
            Self::dispatch(st, None);
        }
    }

    /// The connection is gone (or closing): end its calls and drop its outbox.
    pub fn detach(&self, sid: SessionId) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if st.outboxes.remove(&sid).is_none() {
            return;
        }
        let st = &mut *st;
        st.board.disconnect(sid, now, &mut st.actions);
        Self::dispatch(st, None);
    }

    /// Tells every connection the server is going away: each closes with `server_shutdown` after
    /// what is already queued for it. Connections that attach later are closed at once.
    pub fn shutdown(&self) {
        let st = self.lock();
        self.shutting_down.store(true, Ordering::Release);
        for ob in st.outboxes.values() {
            ob.close(CloseReason::ServerShutdown);
        }
    }

    /// Closes every connection that is still open with no further wait: what is queued is
    /// dropped so the close frame goes out first (the end of a shutdown's grace period).
    pub fn shutdown_now(&self) {
        let st = self.lock();
        for ob in st.outboxes.values() {
            ob.close_now(CloseReason::ServerShutdown);
        }
    }

    fn with_board<R>(
        &self,
        origin: SessionId,
        f: impl FnOnce(&mut Switchboard, &mut Vec<Action>) -> R,
    ) -> R {
        let mut st = self.lock();
        let st = &mut *st;
        let r = f(&mut st.board, &mut st.actions);
        Self::dispatch(st, Some(origin));
        r
    }

    /// The sender of a refused relay learns it, with the call it was for.
    fn backlogged(st: &State, sender: SessionId, call_id: Option<CallId>) {
        if let Some(ob) = st.outboxes.get(&sender) {
            let msg = ServerMessage::error(
                ErrorCode::PeerBacklogged,
                "the peer is not reading fast enough: this signal was not delivered",
                call_id,
            );
            ob.deliver(Outbound::Text(msg.encode().into()));
        }
    }

    /// Carries out the switchboard's actions. `origin` is the session whose frame caused them:
    /// a `signal` it relayed is refused back to it when the target's outbox is over budget;
    /// every other frame is the server's own and has the headroom up to the hard budget.
    fn dispatch(st: &mut State, origin: Option<SessionId>) {
        let mut refused: Option<Option<CallId>> = None;
        for action in st.actions.drain(..) {
            match action {
                Action::Send(sid, msg) => {
                    let Some(ob) = st.outboxes.get(&sid) else {
                        continue;
                    };
                    match &msg {
                        ServerMessage::Signal { call_id, .. }
                            if origin.is_some_and(|o| o != sid) =>
                        {
                            if ob.relay(msg.encode().into()) == Push::Refused {
                                refused = Some(Some(call_id.clone()));
                            }
                        }
                        _ => {
                            ob.deliver(Outbound::Text(msg.encode().into()));
                        }
                    }
                }
                Action::Close(sid, reason) => {
                    if let Some(ob) = st.outboxes.get(&sid) {
                        ob.close(reason);
                    }
                }
                Action::Missed(change) => {
                    if let Some(store) = &st.store {
                        store.apply(change);
                    }
                }
            }
        }
        if let (Some(sender), Some(call_id)) = (origin, refused) {
            Self::backlogged(st, sender, call_id);
        }
    }
}

/// A reserved connection slot, released when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    hub: Arc<Hub>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.hub.release_slot();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Utf8Bytes {
        "x".repeat(n).into()
    }

    fn drain(ob: &Outbox) -> Vec<Outbound> {
        let mut q = ob.lock();
        q.bytes = 0;
        q.items.drain(..).collect()
    }

    #[test]
    fn relays_are_refused_past_the_soft_budget_the_servers_own_frames_are_not() {
        let ob = Outbox::new(1000, 2000);
        // 400 + 64 bytes each: two fit under 1000, the third does not.
        assert_eq!(ob.relay(text(400)), Push::Queued);
        assert_eq!(ob.relay(text(400)), Push::Queued);
        assert_eq!(ob.relay(text(400)), Push::Refused);
        // The server's own frames have the headroom up to the hard budget.
        assert_eq!(ob.deliver(Outbound::Text(text(400))), Push::Queued);
        assert_eq!(ob.deliver(Outbound::Text(text(400))), Push::Queued);
        assert_eq!(ob.closing(), None);
        assert_eq!(ob.queued_bytes(), 4 * 464);
        // Past the hard budget: a slow consumer, its queue dropped, the close frame next.
        assert_eq!(ob.deliver(Outbound::Text(text(400))), Push::Closing);
        assert_eq!(ob.closing(), Some(CloseReason::SlowConsumer));
        let left = drain(&ob);
        assert!(
            matches!(&left[..], [Outbound::Close(CloseReason::SlowConsumer)]),
            "{left:?}"
        );
        assert_eq!(ob.relay(text(1)), Push::Closing);
        assert_eq!(ob.deliver(Outbound::Ping), Push::Closing);
    }

    #[test]
    fn a_close_goes_after_what_is_queued_and_the_first_reason_wins() {
        let ob = Outbox::new(1000, 2000);
        ob.deliver(Outbound::Text(text(10)));
        ob.close(CloseReason::Replaced);
        ob.close(CloseReason::ServerShutdown);
        let items = drain(&ob);
        assert!(
            matches!(
                &items[..],
                [Outbound::Text(_), Outbound::Close(CloseReason::Replaced)]
            ),
            "{items:?}"
        );
        // Dropping the queue later keeps the reason already sent on its way.
        let ob = Outbox::new(1000, 2000);
        ob.deliver(Outbound::Text(text(10)));
        ob.close(CloseReason::ServerShutdown);
        ob.close_now(CloseReason::SlowConsumer);
        let items = drain(&ob);
        assert!(
            matches!(&items[..], [Outbound::Close(CloseReason::ServerShutdown)]),
            "{items:?}"
        );
    }

    #[tokio::test]
    async fn room_waits_until_the_writer_has_sent_enough() {
        let ob = Arc::new(Outbox::new(1000, 2000));
        ob.deliver(Outbound::Text(text(600)));
        ob.deliver(Outbound::Text(text(600)));
        let waiter = tokio::spawn({
            let ob = ob.clone();
            async move { ob.room().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "over budget: the reader waits");
        let first = ob.next().await;
        ob.sent(Outbox::cost_of(&first));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("room once under budget")
            .unwrap();
    }
}
