//! Shared state: the switchboard plus one bounded outbox per connection.
//!
//! One mutex guards both. Every critical section is short and never awaits: signaling traffic is a
//! few frames per call, so a single lock is cheaper than sharding, and it keeps the switchboard's
//! view and the set of live outboxes consistent.

use crate::clock::Clock;
use crate::config::ServerConfig;
use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tincan_proto::switchboard::{Action, LoginError, SessionId, Switchboard};
use tincan_proto::{CallId, ClientMessage, CloseReason, MediaSignal, Party, UserId, UserSigKey};
use tokio::sync::{mpsc, Notify};

/// What a connection's writer sends next.
#[derive(Debug)]
pub enum Outbound {
    Text(Utf8Bytes),
    Ping,
    Close(CloseReason),
}

/// Ends a connection from outside when its queue is full (a close cannot be queued then).
#[derive(Debug, Default)]
pub struct Kill {
    pub notify: Notify,
    pub reason: Mutex<Option<CloseReason>>,
}

impl Kill {
    pub fn fire(&self, reason: CloseReason) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.notify.notify_one();
    }
}

#[derive(Debug)]
struct Outbox {
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Kill>,
}

#[derive(Debug)]
struct State {
    board: Switchboard,
    outboxes: HashMap<SessionId, Outbox>,
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
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot { hub: self.clone() })
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn session_count(&self) -> usize {
        self.lock().board.session_count()
    }

    /// Registers a connection's outbox and returns its session ID.
    pub fn attach(&self, tx: mpsc::Sender<Outbound>, kill: Arc<Kill>) -> SessionId {
        let sid = self.next_sid.fetch_add(1, Ordering::Relaxed);
        self.lock().outboxes.insert(sid, Outbox { tx, kill });
        sid
    }

    /// Signs a verified user in.
    pub fn login(&self, sid: SessionId, party: Party) -> Result<(), LoginError> {
        let now = self.clock.now_ms();
        self.with_board(|board, out| board.login(sid, party, now, out))
    }

    /// Routes a frame from a signed-in session.
    pub fn handle(&self, sid: SessionId, msg: ClientMessage) {
        let now = self.clock.now_ms();
        self.with_board(|board, out| board.handle(sid, msg, now, out));
    }

    /// Relays a `signal` on the fast path: `frame` was built once by the caller, outside this
    /// lock, from the sender's own JSON (`tincan_proto::wire`); every target gets a clone of the
    /// same bytes (a reference count, no copy). The switchboard's rules and the SDP check run as
    /// for any frame.
    pub fn forward(
        &self,
        sid: SessionId,
        from: &UserId,
        call_id: &CallId,
        signal: &MediaSignal,
        frame: Utf8Bytes,
    ) {
        let mut st = self.lock();
        let st = &mut *st;
        let mut targets = std::mem::take(&mut st.targets);
        st.board
            .forward_signal(sid, from, call_id, signal, &mut st.actions, &mut targets);
        Self::dispatch(st);
        for t in targets.drain(..) {
            if let Some(ob) = st.outboxes.get(&t) {
                Self::push(ob, Outbound::Text(frame.clone()));
            }
        }
        st.targets = targets;
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
        Self::dispatch(st);
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
            Self::dispatch(st);
        }
        if st.board.next_deadline().is_some_and(|d| d <= now) {
            let st = &mut *st;
            st.board.tick(now, &mut st.actions);
            Self::dispatch(st);
        }
    }

    /// The connection is gone: end its calls and drop its outbox.
    pub fn detach(&self, sid: SessionId) {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        st.outboxes.remove(&sid);
        let st = &mut *st;
        st.board.disconnect(sid, now, &mut st.actions);
        Self::dispatch(st);
    }

    /// Tells every connection the server is going away.
    pub fn shutdown(&self) {
        let st = self.lock();
        for ob in st.outboxes.values() {
            if ob
                .tx
                .try_send(Outbound::Close(CloseReason::ServerShutdown))
                .is_err()
            {
                ob.kill.fire(CloseReason::ServerShutdown);
            }
        }
    }

    fn with_board<R>(&self, f: impl FnOnce(&mut Switchboard, &mut Vec<Action>) -> R) -> R {
        let mut st = self.lock();
        let st = &mut *st;
        let r = f(&mut st.board, &mut st.actions);
        Self::dispatch(st);
        r
    }

    fn push(ob: &Outbox, item: Outbound) {
        if let Err(mpsc::error::TrySendError::Full(_)) = ob.tx.try_send(item) {
            // The reader is too slow; we do not buffer without bound.
            ob.kill.fire(CloseReason::SlowConsumer);
        }
    }

    fn dispatch(st: &mut State) {
        for action in st.actions.drain(..) {
            match action {
                Action::Send(sid, msg) => {
                    if let Some(ob) = st.outboxes.get(&sid) {
                        Self::push(ob, Outbound::Text(msg.encode().into()));
                    }
                }
                Action::Close(sid, reason) => {
                    if let Some(ob) = st.outboxes.get(&sid) {
                        Self::push(ob, Outbound::Close(reason));
                    }
                }
                Action::Missed(change) => {
                    if let Some(store) = &st.store {
                        store.apply(change);
                    }
                }
            }
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
        self.hub.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
