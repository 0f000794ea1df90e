//! Missed calls on disk, so they survive a restart: one SQLite file in `--data-dir`.
//!
//! The switchboard decides what is kept (quotas, time to live) and reports every change as a
//! [`MissedChange`]; this store only mirrors those changes, and at start hands the saved entries
//! back. SQLite runs on a thread of its own, fed through a bounded channel, so a slow disk never
//! blocks the async runtime or the hub's lock: [`Store::apply`] never waits. The thread batches
//! whatever is queued into one transaction (WAL mode, `synchronous = NORMAL`: a crash of the
//! process loses nothing committed; a power cut may lose the last moment).
//!
//! The file holds who called whom and when; it is created readable by the server's user only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use tincan_proto::switchboard::{MissedChange, MissedEntry};
use tincan_proto::{CallId, CallType, MissedCall, UserId};

/// The database file's name inside the data directory.
pub const FILE_NAME: &str = "missed-calls.sqlite3";

/// Changes queued for the writer at most; past it, changes are dropped (and counted) rather than
/// stalling call routing. The switchboard's quotas bound how many entries exist, not how often
/// they change, so this bounds the memory a flood can take.
const QUEUE: usize = 16_384;

/// Changes written in one transaction at most.
const BATCH: usize = 4_096;

/// The schema version in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the missed-call database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the missed-call database {path} has schema version {found}, newer than this server's \
         ({SCHEMA_VERSION}): run the newer server, or move the file away"
    )]
    Newer { path: PathBuf, found: i64 },
    #[error("cannot start the database thread: {0}")]
    Thread(std::io::Error),
}

enum Op {
    Change(MissedChange),
    /// Answer once everything queued before is committed.
    Flush(SyncSender<()>),
}

/// The handle to the writer thread. Cheap to call from under the hub's lock.
#[derive(Debug)]
pub struct Store {
    tx: Option<SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Change(c) => c.fmt(f),
            Op::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Store {
    /// Opens (or creates) `<dir>/missed-calls.sqlite3`, drops the entries placed at or before
    /// `expired_before_ms`, and returns the rest, oldest first, for
    /// [`tincan_proto::switchboard::Switchboard::load_missed`].
    pub fn open(
        dir: &Path,
        expired_before_ms: u64,
    ) -> Result<(Self, Vec<MissedEntry>), StoreError> {
        create_private_dir(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        create_private_file(&path).map_err(|source| StoreError::Dir {
            path: path.clone(),
            source,
        })?;
        let mut conn = rusqlite::Connection::open(&path).map_err(open_err)?;
        let version = init(&conn).map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path,
                found: version,
            });
        }
        let entries = load(&mut conn, expired_before_ms).map_err(open_err)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("missed-store".into())
            .spawn(move || writer(conn, rx, &thread_path))
            .map_err(StoreError::Thread)?;
        tracing::info!(
            path = %path.display(),
            loaded = entries.len(),
            "missed-call store open"
        );
        Ok((
            Self {
                tx: Some(tx),
                thread: Some(thread),
                path,
                dropped,
            },
            entries,
        ))
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a change for the writer; never blocks. A full queue drops the change (the entry
    /// then lives in memory only, until it is delivered or the server restarts).
    pub fn apply(&self, change: MissedChange) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Op::Change(change)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n + 1,
                        "missed-call store falling behind: changes dropped (kept in memory only)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Waits until every change queued so far is on disk (blocking: not for the async runtime's
    /// threads).
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if tx.send(Op::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    /// Writes what is queued and closes the database (blocking).
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("missed-call store thread panicked");
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shut();
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates the file owner-only before SQLite opens it; SQLite gives its `-wal` and `-shm` files
/// the same mode.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map(drop)
}

fn init(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "SQLite refused WAL mode (a network file system?)");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Ok(version);
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS missed_calls (
             callee    TEXT    NOT NULL,
             caller    TEXT    NOT NULL,
             call_id   TEXT    NOT NULL,
             call_type TEXT    NOT NULL,
             at_ms     INTEGER NOT NULL,
             PRIMARY KEY (callee, caller)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS missed_calls_at ON missed_calls (at_ms);",
    )?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(SCHEMA_VERSION)
}

fn call_type_str(t: CallType) -> &'static str {
    match t {
        CallType::Audio => "audio",
        CallType::Video => "video",
    }
}

fn parse_call_type(s: &str) -> Option<CallType> {
    match s {
        "audio" => Some(CallType::Audio),
        "video" => Some(CallType::Video),
        _ => None,
    }
}

/// Drops expired rows and reads the rest. A row that no longer parses (edited by hand, or IDs
/// this version refuses) is dropped with a warning rather than stopping the server.
fn load(
    conn: &mut rusqlite::Connection,
    expired_before_ms: u64,
) -> rusqlite::Result<Vec<MissedEntry>> {
    let cutoff = i64::try_from(expired_before_ms).unwrap_or(i64::MAX);
    let expired = conn.execute("DELETE FROM missed_calls WHERE at_ms <= ?1", [cutoff])?;
    if expired > 0 {
        tracing::info!(expired, "expired missed calls dropped");
    }
    let mut bad: Vec<(String, String)> = Vec::new();
    let mut entries = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT callee, caller, call_id, call_type, at_ms FROM missed_calls ORDER BY at_ms",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (callee, caller, call_id, call_type, at_ms) = row?;
            let parsed = (|| {
                Some(MissedEntry {
                    callee: UserId::new(callee.clone()).ok()?,
                    call: MissedCall {
                        call_id: CallId::new(call_id).ok()?,
                        caller: UserId::new(caller.clone()).ok()?,
                        call_type: parse_call_type(&call_type)?,
                        at_ms: u64::try_from(at_ms).ok()?,
                    },
                })
            })();
            match parsed {
                Some(e) => entries.push(e),
                None => bad.push((callee, caller)),
            }
        }
    }
    for (callee, caller) in &bad {
        tracing::warn!(%callee, %caller, "unreadable missed-call row dropped");
        conn.execute(
            "DELETE FROM missed_calls WHERE callee = ?1 AND caller = ?2",
            [callee, caller],
        )?;
    }
    Ok(entries)
}

fn write_one(tx: &rusqlite::Transaction<'_>, change: &MissedChange) -> rusqlite::Result<()> {
    match change {
        MissedChange::Recorded(e) => {
            let mut st = tx.prepare_cached(
                "INSERT INTO missed_calls (callee, caller, call_id, call_type, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (callee, caller) DO UPDATE SET
                     call_id = excluded.call_id, call_type = excluded.call_type,
                     at_ms = excluded.at_ms",
            )?;
            st.execute(rusqlite::params![
                e.callee.as_str(),
                e.call.caller.as_str(),
                e.call.call_id.as_str(),
                call_type_str(e.call.call_type),
                i64::try_from(e.call.at_ms).unwrap_or(i64::MAX),
            ])?;
        }
        MissedChange::Removed { callee, caller } => {
            let mut st =
                tx.prepare_cached("DELETE FROM missed_calls WHERE callee = ?1 AND caller = ?2")?;
            st.execute([callee.as_str(), caller.as_str()])?;
        }
        MissedChange::Delivered { callee } => {
            let mut st = tx.prepare_cached("DELETE FROM missed_calls WHERE callee = ?1")?;
            st.execute([callee.as_str()])?;
        }
    }
    Ok(())
}

fn write_batch(conn: &mut rusqlite::Connection, batch: &[MissedChange]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for c in batch {
        write_one(&tx, c)?;
    }
    tx.commit()
}

/// The writer thread: waits for a change, takes whatever else is queued, writes it all in one
/// transaction. Ends when the [`Store`] is dropped, after writing what was queued.
fn writer(mut conn: rusqlite::Connection, rx: Receiver<Op>, path: &Path) {
    let mut batch: Vec<MissedChange> = Vec::with_capacity(64);
    let mut waiting: Vec<SyncSender<()>> = Vec::new();
    let mut failures: u64 = 0;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                Op::Change(c) => batch.push(c),
                Op::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(err) = write_batch(&mut conn, &batch) {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::error!(
                        path = %path.display(),
                        %err,
                        failures,
                        lost = batch.len(),
                        "cannot write missed calls (kept in memory only)"
                    );
                }
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    // Leave no -wal file behind on a clean stop.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn entry(callee: &str, caller: &str, at_ms: u64) -> MissedEntry {
        MissedEntry {
            callee: UserId::new(callee).unwrap(),
            call: MissedCall {
                call_id: CallId::new(format!("{caller}-{at_ms}")).unwrap(),
                caller: UserId::new(caller).unwrap(),
                call_type: CallType::Audio,
                at_ms,
            },
        }
    }

    /// Upserts, removals and deliveries land as the switchboard meant them, across a reopen; the
    /// figure printed is the writer's rate on this machine (not asserted).
    #[test]
    fn mirrors_changes_and_reports_its_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (store, loaded) = Store::open(dir.path(), 0).unwrap();
        assert!(loaded.is_empty());
        let n = 20_000u64;
        let t = Instant::now();
        for i in 0..n {
            // 2,000 callees, 10 callers: most changes replace an entry.
            let callee = format!("u{}", i % 2_000);
            let caller = format!("c{}", i % 10);
            store.apply(MissedChange::Recorded(entry(&callee, &caller, 1_000 + i)));
        }
        for i in 0..1_000 {
            store.apply(MissedChange::Delivered {
                callee: UserId::new(format!("u{i}")).unwrap(),
            });
        }
        store.apply(MissedChange::Removed {
            callee: UserId::new("u1999").unwrap(),
            caller: UserId::new("c9").unwrap(),
        });
        store.flush();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "missed-call store: {} changes in {:.0} ms ({:.0}/s), {} dropped",
            n + 1_001,
            secs * 1000.0,
            (n + 1_001) as f64 / secs,
            store.dropped.load(Ordering::Relaxed)
        );
        assert_eq!(store.dropped.load(Ordering::Relaxed), 0);
        store.close();
        let (_store, loaded) = Store::open(dir.path(), 0).unwrap();
        // 1,000 callees left; each had 10 callers ... but only the pairs that occurred:
        // callee u(k) meets caller c(k mod 10) only.
        assert_eq!(loaded.len(), 999);
        assert!(loaded
            .windows(2)
            .all(|w| w[0].call.at_ms <= w[1].call.at_ms));
        let last = loaded
            .iter()
            .find(|e| e.callee.as_str() == "u1998")
            .unwrap();
        assert_eq!(last.call.at_ms, 1_000 + 19_998);
    }

    #[test]
    fn drops_expired_and_unreadable_rows_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), 0).unwrap();
        store.apply(MissedChange::Recorded(entry("bob", "old", 100)));
        store.apply(MissedChange::Recorded(entry("bob", "new", 300)));
        store.close();
        let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.execute(
            "INSERT INTO missed_calls VALUES ('bob', 'x y', 'id', 'audio', 400)",
            [],
        )
        .unwrap();
        drop(conn);
        let (_store, loaded) = Store::open(dir.path(), 200).unwrap();
        assert_eq!(loaded, [entry("bob", "new", 300)]);
        let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM missed_calls", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "expired and unreadable rows are deleted");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), 0).unwrap());
        let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        match Store::open(dir.path(), 0) {
            Err(StoreError::Newer { found: 99, .. }) => {}
            other => panic!("expected Newer, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("state");
        drop(Store::open(&data, 0).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(FILE_NAME)), 0o600);
    }
}
