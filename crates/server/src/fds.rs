//! File descriptors and overload: the server never stalls because the process ran out of them.
//!
//! Every connection costs one descriptor. The usual soft limit (1,024) is far below what the server
//! can hold (tens of thousands of idle sessions fit in a few hundred MB), so at start the soft
//! limit is raised to the hard one ([`raise_nofile_limit`]), and the connection cap is kept below
//! what is left ([`connection_budget`]), with a reserve for `/healthz`, TLS handshakes and files. A
//! client past the cap gets HTTP 503 `server_full` at once, not a hang.
//!
//! If descriptors still run out (say, many TCP connections that never upgrade), `accept` fails
//! with `EMFILE`; left alone, the connection would wait in the backlog until it times out while the
//! runtime logs an error for each retry. [`Overload`] keeps one spare descriptor: on `EMFILE` it
//! frees it, accepts the waiting connection, answers 503 and closes it, then takes the spare again.
//! Its log lines are rate-limited ([`LogLimiter`]).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Descriptors kept back from the connection cap: `/healthz` requests, TLS handshakes in flight, UI
/// files being served, certificate reloads, the spare of [`Overload`].
pub const FD_RESERVE: u64 = 32;

/// The soft and hard RLIMIT_NOFILE, before and after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimits {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and logs both. `None` off Unix or if the limit
/// cannot be read.
pub fn raise_nofile_limit() -> Option<NofileLimits> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let now = getrlimit(Resource::Nofile);
        let soft_before = now.current.unwrap_or(u64::MAX);
        let hard = now.maximum;
        let mut soft = soft_before;
        if now.current != hard {
            match setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: hard,
                    maximum: hard,
                },
            ) {
                Ok(()) => soft = hard.unwrap_or(u64::MAX),
                Err(err) => {
                    tracing::warn!(%err, soft_before, "cannot raise the file descriptor limit")
                }
            }
        }
        let hard = hard.unwrap_or(u64::MAX);
        tracing::info!(
            soft_before,
            soft,
            hard,
            "file descriptor limit (RLIMIT_NOFILE): soft raised to the hard limit"
        );
        Some(NofileLimits {
            soft_before,
            soft,
            hard,
        })
    }
    #[cfg(not(unix))]
    None
}

/// Connections the process can hold: the soft descriptor limit, minus those open now, minus
/// [`FD_RESERVE`]. `None` when the limit is unknown (not Unix).
pub fn connection_budget() -> Option<usize> {
    #[cfg(unix)]
    {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        // Linux lists the open descriptors here; elsewhere count a handful for std streams etc.
        let open = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(16);
        let budget = soft.saturating_sub(open).saturating_sub(FD_RESERVE).max(1);
        Some(usize::try_from(budget).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    None
}

/// At most one log line per interval; the lines skipped in between are counted in the next one.
#[derive(Debug)]
pub struct LogLimiter {
    start: Instant,
    every_ms: u64,
    /// When the last line was logged, ms since `start` (+1, so 0 means never).
    last: AtomicU64,
    skipped: AtomicU64,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        Self {
            start: Instant::now(),
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            last: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// `Some(skipped since the last line)` if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.every_ms {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

/// The 503 a refused connection gets before it is closed (before any TLS: plain text).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 11\r\nconnection: close\r\nretry-after: 5\r\n\r\nserver_full";

/// Refuses connections at once when the process is out of descriptors (see the module docs).
#[derive(Debug)]
pub struct Overload {
    spare: Mutex<Option<File>>,
    log: LogLimiter,
}

impl Default for Overload {
    fn default() -> Self {
        Self::new()
    }
}

fn is_out_of_fds(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            err.raw_os_error(),
            Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
                || code == rustix::io::Errno::NFILE.raw_os_error()
                || code == rustix::io::Errno::NOBUFS.raw_os_error()
                || code == rustix::io::Errno::NOMEM.raw_os_error()
        )
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

fn spare_file() -> Option<File> {
    #[cfg(unix)]
    return File::open("/dev/null").ok();
    #[cfg(not(unix))]
    None
}

/// The process's one [`Overload`] (descriptors are a process-wide resource).
pub fn overload() -> &'static Overload {
    static OVERLOAD: std::sync::OnceLock<Overload> = std::sync::OnceLock::new();
    OVERLOAD.get_or_init(Overload::new)
}

impl Overload {
    pub fn new() -> Self {
        Self {
            spare: Mutex::new(spare_file()),
            log: LogLimiter::new(Duration::from_secs(10)),
        }
    }

    /// Handles a failed `accept`. On descriptor exhaustion: the waiting connection gets a 503 and
    /// is closed (using the spare descriptor); otherwise (a connection reset before it was
    /// accepted, …) nothing to do. Never sleeps longer than a few milliseconds.
    pub async fn on_accept_error(&self, err: io::Error, listener: &tokio::net::TcpListener) {
        if !is_out_of_fds(&err) {
            if let Some(skipped) = self.log.allow() {
                tracing::debug!(%err, skipped, "accept failed");
            }
            return;
        }
        let spare = self.spare.lock().ok().and_then(|mut s| s.take());
        let refused = match spare {
            Some(file) => {
                drop(file);
                // The connection that failed is still waiting: it is the one accepted here.
                match tokio::time::timeout(Duration::from_millis(5), listener.accept()).await {
                    Ok(Ok((tcp, _))) => {
                        let _ = tcp.try_write(REFUSAL);
                        drop(tcp);
                        true
                    }
                    _ => false,
                }
            }
            None => false,
        };
        if let Ok(mut s) = self.spare.lock() {
            if s.is_none() {
                *s = spare_file();
            }
        }
        if let Some(skipped) = self.log.allow() {
            tracing::warn!(
                %err,
                skipped,
                "out of file descriptors: refusing new connections with 503 (existing sessions \
                 and /healthz go on); raise the hard RLIMIT_NOFILE or lower --max-connections"
            );
        }
        if !refused {
            // No spare: do not spin on a backlog that cannot be accepted.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_limiter_counts_what_it_skips() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        let l2 = LogLimiter::new(Duration::ZERO);
        assert_eq!(l2.allow(), Some(0));
        assert_eq!(l2.allow(), Some(0));
    }
}
