//! Who may hold a connection, and for how long, before it is a signed-in session.
//!
//! A connection costs a descriptor and memory from the moment it is accepted, long before it signs
//! in, so the limits start at `accept`, not at the WebSocket upgrade:
//!
//! - **Per address.** One client address may hold at most `max_conns_per_ip` connections, and at
//!   most `max_unauth_per_ip` of them not signed in yet (a TCP connection, an HTTP request, a
//!   WebSocket before its `login_ok`). Past either, the connection is refused at once (plain TCP:
//!   HTTP 429 `too_many_connections`; TLS: closed before the handshake). So one address that opens
//!   sockets and never signs in fills only its own quota, and a real user elsewhere still gets in.
//!   Behind a `--trusted-proxy` every connection comes from the proxy, so the proxy's own
//!   connections are not counted per address; the forwarded address (see [`crate::proxy`]) is
//!   counted at the WebSocket upgrade instead, with the same two limits.
//! - **In total.** Accepted connections, upgraded or not, count against the global cap
//!   (`max_connections`, plus a small reserve so `/healthz` still answers when the WebSocket cap is
//!   reached); past it, HTTP 503 `server_full` at once.
//! - **In time.** Until a connection has upgraded to a WebSocket, [`Guarded`] enforces two
//!   deadlines on it: a request's headers must arrive within `header_timeout` of the connection
//!   opening or of the request's first byte (a slowloris client trickling one header line at a
//!   time is cut off, however steadily it trickles), and a connection on which nothing was written
//!   to the client for `upgrade_timeout` (an idle keep-alive, a TCP connection that never upgrades,
//!   a client that stopped reading a response) is closed. After the upgrade the WebSocket's own
//!   login timeout takes over (`connection`), and after `login_ok` its idle timeout.
//!
//! Both the per-address counts and the total are released when the connection closes, however it
//! closes (the counts live in [`ConnMeter`], dropped with the connection's last handle).

use crate::fds::LogLimiter;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Accepted connections allowed above `max_connections` (which caps WebSockets), so a health check
/// or a refusal with a status code still gets through when the WebSocket cap is reached.
pub const TCP_RESERVE: usize = 16;

/// Refused connections whose refusal is still being delivered (written, then the client's request
/// read and discarded so the close does not turn into a reset that hides the status line).
const LINGER_SLOTS: usize = 16;
/// How long a refused connection is kept open for its refusal to be read.
const LINGER: Duration = Duration::from_millis(500);

/// The limits, from [`crate::ServerConfig`].
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_conns_per_ip: usize,
    pub max_unauth_per_ip: usize,
    /// Accepted connections at most (upgraded or not).
    pub max_tcp: usize,
    pub header_timeout: Duration,
    pub upgrade_timeout: Duration,
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    total: usize,
    unauth: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address holds `max_conns_per_ip` connections already.
    PerAddress,
    /// This address holds `max_unauth_per_ip` connections that have not signed in.
    Unauthenticated,
    /// The server holds its maximum of connections.
    Full,
}

impl Refusal {
    /// The whole HTTP response a refused plain-TCP connection gets before it is closed.
    pub fn http_response(self) -> &'static [u8] {
        match self {
            Refusal::PerAddress | Refusal::Unauthenticated => {
                b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\n\
content-length: 20\r\nconnection: close\r\nretry-after: 5\r\n\r\ntoo_many_connections"
            }
            Refusal::Full => {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 11\r\nconnection: close\r\nretry-after: 5\r\n\r\nserver_full"
            }
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Refusal::PerAddress => "too many connections from this address",
            Refusal::Unauthenticated => {
                "too many connections from this address that have not signed in"
            }
            Refusal::Full => "server full",
        }
    }
}

/// The server's connection accounting (one per server).
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    by_ip: Mutex<HashMap<IpAddr, Counts>>,
    tcp: AtomicUsize,
    lingering: Arc<tokio::sync::Semaphore>,
    log: LogLimiter,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            by_ip: Mutex::new(HashMap::new()),
            tcp: AtomicUsize::new(0),
            lingering: Arc::new(tokio::sync::Semaphore::new(LINGER_SLOTS)),
            log: LogLimiter::new(Duration::from_secs(10)),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.limits
            .trusted_proxies
            .iter()
            .any(|t| t.to_canonical() == ip)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Counts>> {
        self.by_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more connection (not signed in) for `ip`, or says why not.
    pub fn admit_addr(self: &Arc<Self>, ip: IpAddr) -> Result<AddrTicket, Refusal> {
        let ip = ip.to_canonical();
        let mut map = self.lock();
        let c = map.entry(ip).or_default();
        let refused = if c.total >= self.limits.max_conns_per_ip {
            Some(Refusal::PerAddress)
        } else if c.unauth >= self.limits.max_unauth_per_ip {
            Some(Refusal::Unauthenticated)
        } else {
            None
        };
        if let Some(why) = refused {
            if c.total == 0 {
                map.remove(&ip);
            }
            drop(map);
            self.log_refusal(ip, why);
            return Err(why);
        }
        c.total += 1;
        c.unauth += 1;
        Ok(AddrTicket {
            admission: self.clone(),
            ip,
            signed_in: AtomicBool::new(false),
        })
    }

    /// Counts an accepted TCP connection from `peer` (per address unless `peer` is a trusted
    /// proxy, and in the total), or says why it must be refused.
    pub fn admit_tcp(
        self: &Arc<Self>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<Arc<ConnMeter>, Refusal> {
        let n = self.tcp.fetch_add(1, Ordering::AcqRel);
        let total = TcpSlot(self.clone());
        if n >= self.limits.max_tcp {
            drop(total);
            self.log_refusal(peer.ip(), Refusal::Full);
            return Err(Refusal::Full);
        }
        let ticket = if self.is_trusted_proxy(peer.ip()) {
            None
        } else {
            Some(self.admit_addr(peer.ip())?)
        };
        Ok(Arc::new(ConnMeter {
            admission: self.clone(),
            local,
            ticket,
            upgraded: AtomicBool::new(false),
            _total: total,
        }))
    }

    /// Accepted connections open right now (upgraded or not).
    pub fn tcp_count(&self) -> usize {
        self.tcp.load(Ordering::Acquire)
    }

    /// `(total, not signed in)` connections counted for `ip` right now.
    pub fn counts(&self, ip: IpAddr) -> (usize, usize) {
        self.lock()
            .get(&ip.to_canonical())
            .map(|c| (c.total, c.unauth))
            .unwrap_or((0, 0))
    }

    fn log_refusal(&self, ip: IpAddr, why: Refusal) {
        if let Some(skipped) = self.log.allow() {
            tracing::warn!(
                client = %ip,
                skipped,
                why = why.as_str(),
                max_conns_per_ip = self.limits.max_conns_per_ip,
                max_unauth_per_ip = self.limits.max_unauth_per_ip,
                "connection refused"
            );
        }
    }

    /// Delivers a refusal on a plain TCP connection and closes it, without holding up the accept
    /// loop: the response is written, then (in a task, a bounded number at once) the client's
    /// request is read and discarded for a moment so the close is a clean FIN, not a reset that
    /// would hide the status line from the client.
    pub fn refuse_plain(&self, tcp: tokio::net::TcpStream, why: Refusal) {
        let _ = tcp.try_write(why.http_response());
        let Ok(slot) = self.lingering.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut tcp = tcp;
            let mut buf = [0u8; 2048];
            let drain = async {
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
            drop(slot);
        });
    }
}

/// One connection in the total count.
#[derive(Debug)]
struct TcpSlot(Arc<Admission>);

impl Drop for TcpSlot {
    fn drop(&mut self) {
        self.0.tcp.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection counted for one address; counted "not signed in" until [`AddrTicket::signed_in`].
#[derive(Debug)]
pub struct AddrTicket {
    admission: Arc<Admission>,
    ip: IpAddr,
    signed_in: AtomicBool,
}

impl AddrTicket {
    /// The connection signed in: it no longer counts against `max_unauth_per_ip`.
    pub fn signed_in(&self) {
        if !self.signed_in.swap(true, Ordering::AcqRel) {
            let mut map = self.admission.lock();
            if let Some(c) = map.get_mut(&self.ip) {
                c.unauth = c.unauth.saturating_sub(1);
            }
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for AddrTicket {
    fn drop(&mut self) {
        let mut map = self.admission.lock();
        if let Some(c) = map.get_mut(&self.ip) {
            c.total = c.total.saturating_sub(1);
            if !*self.signed_in.get_mut() {
                c.unauth = c.unauth.saturating_sub(1);
            }
            if c.total == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What the server knows about one accepted connection: its counts (released when the last handle
/// goes) and whether it has become a WebSocket. Shared by the connection's I/O ([`Guarded`]) and
/// its request handlers (through [`crate::proxy::Peer`]).
#[derive(Debug)]
pub struct ConnMeter {
    admission: Arc<Admission>,
    /// The address the client connected to (the server's side of the connection).
    local: SocketAddr,
    /// Per-address count of the TCP peer; `None` for a trusted proxy's connections.
    ticket: Option<AddrTicket>,
    upgraded: AtomicBool,
    _total: TcpSlot,
}

impl ConnMeter {
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The server's own address on this connection (its real port, also with `--listen :0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// From now on the WebSocket's own timeouts apply, not the HTTP ones.
    pub fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    fn upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// The connection signed in (see [`AddrTicket::signed_in`]).
    pub fn signed_in(&self) {
        if let Some(t) = &self.ticket {
            t.signed_in();
        }
    }
}

/// What a WebSocket holds until it signs in: the counts to release from "not signed in" at
/// `login_ok` (its TCP connection's, and behind a trusted proxy the forwarded address's).
#[derive(Debug, Default)]
pub struct Pending {
    conn: Option<Arc<ConnMeter>>,
    forwarded: Option<AddrTicket>,
}

impl Pending {
    pub fn new(conn: Option<Arc<ConnMeter>>, forwarded: Option<AddrTicket>) -> Self {
        Self { conn, forwarded }
    }

    /// Call at a successful login.
    pub fn signed_in(&self) {
        if let Some(c) = &self.conn {
            c.signed_in();
        }
        if let Some(t) = &self.forwarded {
            t.signed_in();
        }
    }
}

/// A connection's I/O with the pre-upgrade deadlines of the module docs. After
/// [`ConnMeter::mark_upgraded`] it only passes bytes through.
#[derive(Debug)]
pub struct Guarded<Io> {
    io: Io,
    meter: Arc<ConnMeter>,
    /// The pre-upgrade deadlines' timer; dropped at the first read or write after the upgrade.
    /// Kept, it would hold the HTTP task's waker (registered when hyper last polled it) until it
    /// fired: that pinned the whole finished HTTP connection task (~1.4 KB) and the timer's
    /// allocation to every idle WebSocket for `upgrade_timeout`.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the timer is set to fire.
    timer_at: Instant,
    /// Set while a request's headers are awaited: at accept, and at a request's first byte read.
    header_deadline: Option<Instant>,
    /// Moved forward by every byte written to the client.
    idle_deadline: Instant,
    header_timeout: Duration,
    upgrade_timeout: Duration,
}

impl<Io> Guarded<Io> {
    pub fn new(io: Io, meter: Arc<ConnMeter>) -> Self {
        let now = Instant::now();
        let header_timeout = meter.admission.limits.header_timeout;
        let upgrade_timeout = meter.admission.limits.upgrade_timeout;
        let header_deadline = now + header_timeout;
        let idle_deadline = now + upgrade_timeout;
        let timer_at = header_deadline.min(idle_deadline);
        Self {
            io,
            meter,
            timer: Some(Box::pin(tokio::time::sleep_until(timer_at))),
            timer_at,
            header_deadline: Some(header_deadline),
            idle_deadline,
            header_timeout,
            upgrade_timeout,
        }
    }

    pub fn meter(&self) -> &Arc<ConnMeter> {
        &self.meter
    }

    pub fn get_ref(&self) -> &Io {
        &self.io
    }

    /// `Some(error)` once a deadline has passed (the caller then fails the read, and the HTTP layer
    /// closes the connection); otherwise the timer is armed for the next deadline.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let due = match self.header_deadline {
            Some(h) => h.min(self.idle_deadline),
            None => self.idle_deadline,
        };
        let timer = self.timer.as_mut()?;
        if self.timer_at != due {
            timer.as_mut().reset(due);
            self.timer_at = due;
        }
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let what = if self.header_deadline.is_some_and(|h| h <= due) {
            "headers not received in time"
        } else {
            "idle and not upgraded to a WebSocket in time"
        };
        tracing::debug!(local = %self.meter.local, what, "connection timed out");
        Some(io::Error::new(io::ErrorKind::TimedOut, what))
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.passing_through() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if let Some(err) = this.expired(cx) {
            return Poll::Ready(Err(err));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // The first byte of a request: its headers are now on the clock.
            if this.header_deadline.is_none() {
                this.header_deadline = Some(Instant::now() + this.header_timeout);
            }
        }
        r
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 && !this.passing_through() {
                this.progress();
            }
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 && !this.passing_through() {
                this.progress();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<Io> Guarded<Io> {
    /// Whether the connection has upgraded (only bytes pass now); the first time it says so, the
    /// deadlines' timer goes (see [`Guarded::timer`]).
    fn passing_through(&mut self) -> bool {
        if !self.meter.upgraded() {
            return false;
        }
        self.timer = None;
        true
    }

    /// Bytes went out to the client: a response is under way, so its request's headers were read,
    /// and the connection is not idle.
    fn progress(&mut self) {
        self.header_deadline = None;
        self.idle_deadline = Instant::now() + self.upgrade_timeout;
    }
}

/// Whether a WebSocket upgrade with this `Origin` may go ahead (see `--allow-origin`).
///
/// Allowed: no `Origin` at all (native clients, the desktop app's own connector, command-line
/// tools: a browser always sends one on a WebSocket), an origin on the allow-list (which always
/// holds the desktop app's own webview origins, `tauri://localhost` and `http(s)://tauri.localhost`),
/// `*` on the list, and the server's own origin: the browser UI it serves, whose origin's host and
/// port are the request's `Host` (a page elsewhere cannot make the browser send another `Host`).
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allow: &[String]) -> bool {
    let Some(origin) = origin.map(str::trim) else {
        return true;
    };
    let origin_l = origin.trim_end_matches('/').to_ascii_lowercase();
    if APP_ORIGINS.contains(&origin_l.as_str()) {
        return true;
    }
    if allow
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(&origin_l))
    {
        return true;
    }
    // The server's own pages: scheme http(s), and authority == Host.
    let authority = origin_l
        .strip_prefix("http://")
        .or_else(|| origin_l.strip_prefix("https://"));
    match (authority, host) {
        (Some(a), Some(h)) => {
            let h = h.trim().to_ascii_lowercase();
            let strip_default = |s: &str, scheme_default: &str| {
                s.strip_suffix(scheme_default)
                    .map(str::to_owned)
                    .unwrap_or_else(|| s.to_owned())
            };
            let default_port = if origin_l.starts_with("https://") {
                ":443"
            } else {
                ":80"
            };
            !a.is_empty()
                && !a.contains('/')
                && strip_default(a, default_port) == strip_default(&h, default_port)
        }
        _ => false,
    }
}

/// The desktop app's own webview origins (Linux/macOS, and Windows with either scheme).
pub const APP_ORIGINS: [&str; 3] = [
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

/// Whether a `Host` header names this machine by a loopback name with the server's port:
/// `127.0.0.1:<port>` (any 127/8), `localhost:<port>`, `[::1]:<port>`. A DNS-rebinding page runs
/// under its own name (`evil.example`), which the browser puts in `Host`, so it never matches.
/// `also` is one more IP literal accepted (the server's own local address on this connection, for
/// a demo on this machine reached by its own address, as in the two-host test).
pub fn is_local_host_header(host: &str, port: u16, also: Option<IpAddr>) -> bool {
    let host = host.trim();
    let (name, p) = match host.rsplit_once(':') {
        // `[::1]:7480`, `127.0.0.1:7480`, `localhost:7480`; a bare IPv6 has more colons.
        Some((n, p)) if !n.contains(':') || n.ends_with(']') => match p.parse::<u16>() {
            Ok(p) => (n, p),
            Err(_) => return false,
        },
        _ => (host, 80),
    };
    if p != port {
        return false;
    }
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => {
            let ip = ip.to_canonical();
            ip.is_loopback() || also.is_some_and(|a| a.to_canonical() == ip)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let allow = vec!["https://app.example.com".to_owned()];
        let host = Some("calls.example.com");
        assert!(origin_allowed(None, host, &allow));
        assert!(origin_allowed(Some("tauri://localhost"), host, &allow));
        assert!(origin_allowed(Some("http://tauri.localhost"), host, &allow));
        assert!(origin_allowed(
            Some("https://app.example.com"),
            host,
            &allow
        ));
        assert!(origin_allowed(
            Some("HTTPS://APP.example.com/"),
            host,
            &allow
        ));
        assert!(origin_allowed(
            Some("https://calls.example.com"),
            host,
            &allow
        ));
        assert!(origin_allowed(
            Some("http://127.0.0.1:7480"),
            Some("127.0.0.1:7480"),
            &[]
        ));
        assert!(origin_allowed(
            Some("https://calls.example.com"),
            Some("calls.example.com:443"),
            &[]
        ));
        assert!(!origin_allowed(Some("https://evil.example"), host, &allow));
        assert!(!origin_allowed(Some("null"), host, &allow));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:1420"),
            Some("127.0.0.1:7480"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("https://calls.example.com"),
            None,
            &[]
        ));
        assert!(origin_allowed(
            Some("https://evil.example"),
            host,
            &["*".to_owned()]
        ));
    }

    #[test]
    fn local_host_headers() {
        for h in [
            "127.0.0.1:7480",
            "localhost:7480",
            "[::1]:7480",
            "127.0.0.9:7480",
        ] {
            assert!(is_local_host_header(h, 7480, None), "{h}");
        }
        for h in [
            "127.0.0.1:7481",
            "evil.example:7480",
            "localhost.evil.example:7480",
            "127.0.0.1",
            "10.0.0.1:7480",
            "",
            "[::2]:7480",
        ] {
            assert!(!is_local_host_header(h, 7480, None), "{h}");
        }
        assert!(is_local_host_header("localhost", 80, None));
        let own: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(is_local_host_header("10.0.0.1:7480", 7480, Some(own)));
    }

    fn limits() -> Limits {
        Limits {
            max_conns_per_ip: 3,
            max_unauth_per_ip: 2,
            max_tcp: 100,
            header_timeout: Duration::from_secs(1),
            upgrade_timeout: Duration::from_secs(1),
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        }
    }

    #[test]
    fn per_address_counts_and_release() {
        let a = Admission::new(limits());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t1 = a.admit_addr(ip).unwrap();
        let t2 = a.admit_addr(ip).unwrap();
        assert_eq!(a.admit_addr(ip).unwrap_err(), Refusal::Unauthenticated);
        // Another address is not affected.
        let other = a.admit_addr("192.0.2.2".parse().unwrap()).unwrap();
        t1.signed_in();
        t1.signed_in();
        assert_eq!(a.counts(ip), (2, 1));
        let t3 = a.admit_addr(ip).unwrap();
        t2.signed_in();
        t3.signed_in();
        assert_eq!(a.admit_addr(ip).unwrap_err(), Refusal::PerAddress);
        drop((t1, t2, t3, other));
        assert_eq!(a.counts(ip), (0, 0));
        assert!(a.lock().is_empty());
    }

    #[test]
    fn trusted_proxies_are_not_counted_per_address_and_total_is() {
        let mut l = limits();
        l.max_tcp = 4;
        let a = Admission::new(l);
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let metered: Vec<_> = (0..4).map(|_| a.admit_tcp(proxy, local).unwrap()).collect();
        assert_eq!(a.counts(proxy.ip()), (0, 0));
        assert_eq!(a.admit_tcp(proxy, local).unwrap_err(), Refusal::Full);
        drop(metered);
        assert_eq!(a.tcp_count(), 0);
        let _one = a.admit_tcp("192.0.2.1:4".parse().unwrap(), local).unwrap();
        assert_eq!(a.counts("192.0.2.1".parse().unwrap()), (1, 1));
    }
}
