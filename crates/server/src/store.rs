//! Missed calls on disk, so they survive a restart: one SQLite file in `--data-dir`.
//!
//! The switchboard decides what is kept (quotas, time to live) and reports every change as a
//! [`MissedChange`]; this store only mirrors those changes, and at start hands the saved entries
//! back. SQLite runs on a thread of its own, so a slow disk never blocks the async runtime or the
//! hub's lock: [`Store::apply`] only records the change in a pending set and wakes the thread,
//! which writes everything pending in one transaction (WAL mode, `synchronous = NORMAL`: a crash
//! of the process loses nothing committed; a power cut may lose the last moment).
//!
//! The pending set is keyed by (callee, caller) and keeps only the latest state of each row, so it
//! is bounded by the switchboard's own caps, not by how fast changes come: a caller redialling
//! an offline user hundreds of times a second is one row to write, and no change is ever dropped
//! however far the disk falls behind.
//!
//! The file holds who called whom and when; it is created readable by the server's user only.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tincan_proto::switchboard::{MissedChange, MissedEntry};
use tincan_proto::{CallId, CallType, MissedCall, UserId};

/// The database file's name inside the data directory.
pub const FILE_NAME: &str = "missed-calls.sqlite3";

/// The lock that keeps a second server off the same file.
pub const LOCK_NAME: &str = "missed-calls.lock";

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
    #[error(
        "another tincan-server is using the data directory {path}: give each server its own \
         --data-dir"
    )]
    InUse { path: PathBuf },
}

/// What the writer has yet to write: the latest state of each touched row, and the callees whose
/// rows all go (delivered) before those.
#[derive(Debug, Default)]
struct Pending {
    /// callee → caller → the row to write, or `None` to delete it.
    rows: HashMap<UserId, HashMap<UserId, Option<MissedCall>>>,
    /// Callees whose every row is deleted first (a row for them in `rows` came later).
    delivered: HashSet<UserId>,
    /// Answered once what was pending with them is committed.
    flushes: Vec<SyncSender<()>>,
    closed: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.delivered.is_empty() && self.flushes.is_empty()
    }

    fn add(&mut self, change: MissedChange) {
        match change {
            MissedChange::Recorded(e) => {
                let caller = e.call.caller.clone();
                self.rows
                    .entry(e.callee)
                    .or_default()
                    .insert(caller, Some(e.call));
            }
            MissedChange::Removed { callee, caller } => {
                self.rows.entry(callee).or_default().insert(caller, None);
            }
            MissedChange::Delivered { callee } => {
                self.rows.remove(&callee);
                self.delivered.insert(callee);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handle to the writer thread. Cheap to call from under the hub's lock.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    /// Held locked while the store is open: two servers on one file would both deliver the
    /// same missed calls.
    _lock: std::fs::File,
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
        let lock = lock_dir(dir)?;
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
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("missed-store".into())
            .spawn(move || writer(conn, &thread_shared, &thread_path))
            .map_err(StoreError::Thread)?;
        tracing::info!(
            path = %path.display(),
            loaded = entries.len(),
            "missed-call store open"
        );
        Ok((
            Self {
                shared,
                thread: Some(thread),
                path,
                _lock: lock,
            },
            entries,
        ))
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a change to the writer; never waits for the disk.
    pub fn apply(&self, change: MissedChange) {
        self.shared.lock().add(change);
        self.shared.wake.notify_one();
    }

    /// Waits until every change handed over so far is on disk (blocking: not for the async
    /// runtime's threads).
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        {
            let mut p = self.shared.lock();
            if p.closed {
                return;
            }
            p.flushes.push(done_tx);
        }
        self.shared.wake.notify_one();
        let _ = done_rx.recv();
    }

    /// Writes what is pending and closes the database (blocking).
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
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

/// Takes `<dir>/missed-calls.lock` (an advisory lock the OS releases when the process ends, however
/// it ends).
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = dir.join(LOCK_NAME);
    let file = {
        let mut o = std::fs::OpenOptions::new();
        o.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        o.open(&path).map_err(|source| StoreError::Dir {
            path: path.clone(),
            source,
        })?
    };
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Dir { path, source }),
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

fn write_batch(conn: &mut rusqlite::Connection, batch: &Pending) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut deliver = tx.prepare_cached("DELETE FROM missed_calls WHERE callee = ?1")?;
        for callee in &batch.delivered {
            deliver.execute([callee.as_str()])?;
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO missed_calls (callee, caller, call_id, call_type, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (callee, caller) DO UPDATE SET
                 call_id = excluded.call_id, call_type = excluded.call_type,
                 at_ms = excluded.at_ms",
        )?;
        let mut remove =
            tx.prepare_cached("DELETE FROM missed_calls WHERE callee = ?1 AND caller = ?2")?;
        for (callee, caller, row) in batch
            .rows
            .iter()
            .flat_map(|(callee, m)| m.iter().map(move |(caller, row)| (callee, caller, row)))
        {
            match row {
                Some(m) => {
                    upsert.execute(rusqlite::params![
                        callee.as_str(),
                        caller.as_str(),
                        m.call_id.as_str(),
                        call_type_str(m.call_type),
                        i64::try_from(m.at_ms).unwrap_or(i64::MAX),
                    ])?;
                }
                None => {
                    remove.execute([callee.as_str(), caller.as_str()])?;
                }
            }
        }
    }
    tx.commit()
}

/// The writer thread: sleeps until something is pending, takes all of it, writes it in one
/// transaction. Ends once the [`Store`] is closed, after writing what was pending.
fn writer(mut conn: rusqlite::Connection, shared: &Shared, path: &Path) {
    let mut failures: u64 = 0;
    loop {
        let (batch, closed) = {
            let mut p = shared.lock();
            while p.is_empty() && !p.closed {
                p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            let closed = p.closed;
            (std::mem::take(&mut *p), closed)
        };
        if !batch.rows.is_empty() || !batch.delivered.is_empty() {
            if let Err(err) = write_batch(&mut conn, &batch) {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::error!(
                        path = %path.display(),
                        %err,
                        failures,
                        lost = batch.rows.values().map(HashMap::len).sum::<usize>()
                            + batch.delivered.len(),
                        "cannot write missed calls (kept in memory only)"
                    );
                }
            }
        }
        for done in &batch.flushes {
            let _ = done.send(());
        }
        if closed {
            shared.lock().closed = true;
            break;
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
            "missed-call store: {} changes on disk in {:.0} ms ({:.0}/s)",
            n + 1_001,
            secs * 1000.0,
            (n + 1_001) as f64 / secs,
        );
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

    /// The order of changes to one callee survives coalescing: a delivery wipes what came
    /// before it, not what came after.
    #[test]
    fn coalescing_keeps_the_order_that_matters() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), 0).unwrap();
        store.apply(MissedChange::Recorded(entry("bob", "kept", 5)));
        store.flush();
        let bob = || UserId::new("bob").unwrap();
        // Held back as one batch: the writer takes it all at once.
        {
            let mut p = store.shared.lock();
            p.add(MissedChange::Recorded(entry("bob", "a", 10)));
            p.add(MissedChange::Delivered { callee: bob() });
            p.add(MissedChange::Recorded(entry("bob", "b", 20)));
            p.add(MissedChange::Recorded(entry("bob", "c", 30)));
            p.add(MissedChange::Removed {
                callee: bob(),
                caller: UserId::new("c").unwrap(),
            });
            for i in 0..10_000 {
                p.add(MissedChange::Recorded(entry("carol", "spam", 100 + i)));
            }
            assert_eq!(p.rows.values().map(HashMap::len).sum::<usize>(), 3);
        }
        store.flush();
        store.close();
        let (_s, loaded) = Store::open(dir.path(), 0).unwrap();
        assert_eq!(
            loaded,
            [entry("bob", "b", 20), entry("carol", "spam", 10_099)]
        );
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
    fn one_server_per_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = Store::open(dir.path(), 0).unwrap();
        match Store::open(dir.path(), 0) {
            Err(StoreError::InUse { .. }) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
        first.close();
        drop(Store::open(dir.path(), 0).unwrap());
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
