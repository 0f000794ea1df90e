//! tincan-bench: load for tincan-server, side by side with a bare WebSocket relay.
//!
//! The bare relay (same tokio-tungstenite, same 4 KiB read buffer, TCP_NODELAY) pairs two
//! connections by their first frame and forwards every text frame to the other one, or echoes when
//! unpaired. It is what a signaling relay costs with no sign-in, no rules and no checks: the floor
//! tincan is measured against. Every mode runs both in the same process run, alternating, and
//! prints both and their ratio. Nothing here asserts on time: the machine is shared and the figures
//! are for reading (BENCHMARKS.md), not for failing a build. Only loopback addresses are used.
//!
//! Modes: `relay` (ping-pong between the parties of connected calls), `idle` (signed-in sessions
//! and the server's RSS per session, the server as its own process), `signin` (sign-ins per
//! second), `calls` (full calls per second, every frame checked for loss and misrouting), `soak`
//! (thousands of clients churning against the server process, then a strict account: see soak.rs).

mod soak;

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tincan_proto::{
    CallId, ClientMessage, DeviceId, MediaSignal, SecretKey, ServerMessage, SigToken, UserId,
    UserSigKey, PROTOCOL_VERSION,
};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const APP: u64 = 1400000001;
const KEY: &str = "bench-secret-key";
const WAIT: Duration = Duration::from_secs(10);

/// A valid offer/answer body (passes `tincan_proto::sdp`), 420 bytes: the relay payload.
const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
    a=group:BUNDLE 0\r\n\
    a=fingerprint:sha-256 6F:93:7D:C0:00:65:D6:3D:39:DB:64:7A:6A:24:8D:AC:2C:0C:19:7E:47:97:C8:F2:D5:98:88:89:0D:0E:9E:33\r\n\
    m=audio 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
    a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=mid:0\r\n\
    a=rtpmap:96 opus/48000/2\r\n";
const CANDIDATE: &str =
    "candidate:842163049 1 udp 1677729535 127.0.0.1 50000 typ host generation 0";

#[derive(Parser)]
#[command(
    name = "tincan-bench",
    about = "tincan-server against a bare WebSocket relay"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Ping-pong (offer, answer) between the two parties of connected calls.
    Relay {
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        pairs: Vec<usize>,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Rounds per side, alternating bare and tincan.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// Idle signed-in sessions and the server's RSS per session (the server runs as a process).
    Idle {
        #[arg(long, default_value_t = 10_000)]
        sessions: usize,
        /// tincan-server binary (default: next to this one).
        #[arg(long)]
        server_bin: Option<std::path::PathBuf>,
    },
    /// Sign-ins per second from `connectors` clients that connect, sign in and close in a loop.
    Signin {
        #[arg(long, default_value_t = 50)]
        connectors: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// Full calls per second (invite, accept, offer, answer, 4 candidates, hang-up) over `pairs`.
    Calls {
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// Churn: `clients` users sign in, call, answer, hang up and reconnect at random against a
    /// tincan-server process, then every call's endings, every signal's delivery, a final round
    /// that calls every user, /healthz and the server's RSS are checked. Exits 1 on a correctness
    /// failure (never on time or memory).
    Soak {
        #[arg(long, default_value_t = 2000)]
        clients: usize,
        #[arg(long, default_value_t = 60.0)]
        secs: f64,
        /// Seed of every client's choices (printed; default from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Mean pause between a client's actions, milliseconds.
        #[arg(long, default_value_t = 500)]
        think_ms: u64,
        /// Source addresses 127.0.0.1..=127.0.0.N the clients spread over.
        #[arg(long, default_value_t = 250)]
        sources: u8,
        /// tincan-server binary (default: next to this one).
        #[arg(long)]
        server_bin: Option<std::path::PathBuf>,
        /// Use a running server at this address instead of starting one (its SDKAppID and key
        /// must be --sdkappid and --secret-key).
        #[arg(long)]
        connect: Option<SocketAddr>,
        /// With --connect: the server's pid, to read its RSS.
        #[arg(long)]
        server_pid: Option<u32>,
        /// An extra argument for the server process (repeat for more), e.g. a raised limit.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
        /// The server's --resume-secs (how long a dropped party's connected call is held): short,
        /// so held calls of devices that never come back end within the soak.
        #[arg(long, default_value_t = 5)]
        resume_secs: u32,
        #[arg(long, default_value_t = APP)]
        sdkappid: u64,
        #[arg(long, default_value = KEY)]
        secret_key: String,
    },
    /// Everything, briefly (CI: keeps the benchmark building and running; under a minute).
    Smoke,
    /// Run the bare relay alone (used by `idle` for its baseline process).
    #[command(hide = true)]
    BareServe,
}

fn main() {
    raise_nofile();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        match cli.mode {
            Mode::Relay {
                pairs,
                secs,
                rounds,
            } => {
                for p in pairs {
                    relay(p, secs, rounds).await;
                }
            }
            Mode::Idle {
                sessions,
                server_bin,
            } => idle(sessions, server_bin).await,
            Mode::Signin { connectors, secs } => signin(connectors, secs).await,
            Mode::Calls { pairs, secs } => calls(pairs, secs).await,
            Mode::Soak {
                clients,
                secs,
                seed,
                think_ms,
                sources,
                server_bin,
                connect,
                server_pid,
                server_args,
                resume_secs,
                sdkappid,
                secret_key,
            } => {
                let ok = soak::soak(soak::Opts {
                    clients,
                    secs,
                    seed,
                    think_ms,
                    sources,
                    server_bin,
                    connect,
                    server_pid,
                    server_args,
                    resume_secs,
                    sdk_app_id: sdkappid,
                    secret_key,
                })
                .await;
                if !ok {
                    std::process::exit(1);
                }
            }
            Mode::Smoke => {
                relay(10, 0.5, 1).await;
                signin(10, 0.5).await;
                calls(10, 0.5).await;
                idle(200, None).await;
            }
            Mode::BareServe => {
                let addr = bare_start().await;
                println!("listening {addr}");
                std::future::pending::<()>().await;
            }
        }
    });
}

fn raise_nofile() {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let l = getrlimit(Resource::Nofile);
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: l.maximum,
                maximum: l.maximum,
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The two servers

/// tincan-server in this process, with the per-connection rate limit out of the way (a load
/// generator sends thousands of frames a second per connection; a real client a few).
async fn tincan_start() -> (tincan_server::ServerHandle, SocketAddr) {
    let mut cfg = tincan_server::ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        APP,
        SecretKey::new(KEY.into()),
    );
    cfg.rate_per_sec = 1_000_000;
    cfg.rate_burst = 1_000_000;
    cfg.max_connections = 1_000_000;
    // A load generator is many users on a few source addresses: no per-address caps.
    cfg.max_conns_per_ip = usize::MAX;
    cfg.max_unauth_per_ip = usize::MAX;
    // The benchmark rings the same pairs back to back; the invite limits are for people.
    cfg.switchboard.max_invites_per_minute = u32::MAX;
    cfg.switchboard.max_pair_invites = u32::MAX;
    let h = tincan_server::start(cfg).await.expect("tincan starts");
    let a = h.local_addr();
    (h, a)
}

type Peers = Arc<Mutex<HashMap<(u64, u8), mpsc::UnboundedSender<Message>>>>;

/// The bare relay: see the module docs.
async fn bare_start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers: Peers = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(bare_conn(tcp, peers.clone()));
        }
    });
    addr
}

async fn bare_conn(tcp: TcpStream, peers: Peers) {
    let cfg = WebSocketConfig::default().read_buffer_size(4096);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(cfg)).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let mut me: Option<(u64, u8)> = None;
    loop {
        tokio::select! {
            m = stream.next() => {
                let Some(Ok(m)) = m else { break };
                let Message::Text(t) = m else { continue };
                if me.is_none() {
                    if let Some(rest) = t.strip_prefix("pair:") {
                        let mut it = rest.split(':');
                        let pair = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                        let side = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                        me = Some((pair, side));
                        peers.lock().unwrap().insert((pair, side), tx.clone());
                        if sink.send(Message::text("ok")).await.is_err() { break }
                        continue;
                    }
                }
                match me {
                    Some((pair, side)) => {
                        let peer = peers.lock().unwrap().get(&(pair, 1 - side)).cloned();
                        if let Some(p) = peer { let _ = p.send(Message::Text(t)); }
                    }
                    None => if sink.send(Message::Text(t)).await.is_err() { break },
                }
            }
            m = rx.recv() => {
                let Some(m) = m else { break };
                if sink.send(m).await.is_err() { break }
            }
        }
    }
    if let Some(k) = me {
        peers.lock().unwrap().remove(&k);
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

type Ws = WebSocketStream<TcpStream>;

/// A client from source address 127.0.0.`src` (so many sessions do not run out of ephemeral
/// ports), Nagle off.
async fn connect(addr: SocketAddr, src: u8) -> Ws {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_nodelay(true).unwrap();
    sock.bind(SocketAddr::from(([127, 0, 0, src.max(1)], 0)))
        .unwrap();
    let tcp = sock.connect(addr).await.expect("tcp connect");
    let cfg = WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(format!("ws://{addr}/ws"), tcp, Some(cfg))
            .await
            .expect("websocket upgrade");
    ws
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn login_frame(user: &str) -> String {
    let uid = UserId::new(user).unwrap();
    let sig = UserSigKey::new(APP, SecretKey::new(KEY.into())).gen(&uid, now_secs(), 3600, None);
    ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id: APP,
        user_id: uid,
        user_sig: SigToken(sig),
        device_id: DeviceId::new("bench").unwrap(),
    }
    .encode()
}

async fn recv_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn recv_msg(ws: &mut Ws) -> Option<ServerMessage> {
    ServerMessage::decode(&recv_text(ws).await?).ok()
}

async fn tincan_login(addr: SocketAddr, user: &str, src: u8) -> Ws {
    let mut ws = connect(addr, src).await;
    ws.send(Message::text(login_frame(user))).await.unwrap();
    loop {
        match recv_msg(&mut ws).await {
            Some(ServerMessage::LoginOk { .. }) => return ws,
            Some(ServerMessage::MissedCalls { .. }) => continue,
            other => panic!("login of {user}: {other:?}"),
        }
    }
}

/// Two signed-in users in a connected call, ready to exchange signals.
async fn tincan_pair(addr: SocketAddr, i: usize) -> (Ws, Ws, CallId) {
    let (a, b) = (format!("a{i}"), format!("b{i}"));
    let src = (i % 200) as u8 + 1;
    let mut wa = tincan_login(addr, &a, src).await;
    let mut wb = tincan_login(addr, &b, src).await;
    let call_id = CallId::new(format!("call-{i}-{}", now_secs())).unwrap();
    // A call that did not connect would turn every round trip into error replies.
    assert!(
        place_call(&mut wa, &mut wb, &b, &call_id).await,
        "pair {i}: the call did not connect"
    );
    (wa, wb, call_id)
}

async fn expect(ws: &mut Ws, want: impl Fn(&ServerMessage) -> bool) -> bool {
    for _ in 0..8 {
        match recv_msg(ws).await {
            Some(m) if want(&m) => return true,
            Some(ServerMessage::Ringing { .. }) => continue,
            Some(ServerMessage::Accepted { .. }) => continue,
            _ => return false,
        }
    }
    false
}

async fn place_call(wa: &mut Ws, wb: &mut Ws, callee: &str, call_id: &CallId) -> bool {
    let invite = ClientMessage::Invite {
        call_id: call_id.clone(),
        callee: UserId::new(callee).unwrap(),
        call_type: Default::default(),
        timeout_secs: None,
    };
    wa.send(Message::text(invite.encode())).await.unwrap();
    if !expect(
        wb,
        |m| matches!(m, ServerMessage::Invited { call_id: c, .. } if c == call_id),
    )
    .await
    {
        return false;
    }
    let accept = ClientMessage::Accept {
        call_id: call_id.clone(),
    };
    wb.send(Message::text(accept.encode())).await.unwrap();
    let ok_a = expect(
        wa,
        |m| matches!(m, ServerMessage::Accepted { call_id: c, .. } if c == call_id),
    );
    // Accepted goes to both; the callee's copy is skipped by `expect` later.
    ok_a.await
}

fn signal(call_id: &CallId, s: MediaSignal) -> String {
    ClientMessage::Signal {
        call_id: call_id.clone(),
        signal: s,
    }
    .encode()
}

// ---------------------------------------------------------------------------------------------
// Figures

struct Figures {
    count: u64,
    secs: f64,
    lat_us: Vec<u32>,
    errors: u64,
    /// CPU time this process (server and clients) spent, seconds: on a shared machine the CPU
    /// per operation moves less than the rate does, since it does not count the time the other
    /// jobs had the cores.
    cpu_secs: f64,
}

/// CPU time (user + system) of this process so far, seconds (`/proc/self/stat`, clock ticks).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which may hold spaces, so split after its `)`):
    // utime and stime are the 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let mut f = rest.split_whitespace().skip(11);
    let ticks: u64 = f.next().and_then(|u| u.parse().ok()).unwrap_or(0)
        + f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux whatever the kernel's tick.
    ticks as f64 / 100.0
}

impl Figures {
    fn rate(&self) -> f64 {
        self.count as f64 / self.secs
    }
    /// CPU microseconds (this whole process) per operation.
    fn cpu_us(&self) -> f64 {
        self.cpu_secs * 1e6 / (self.count as f64).max(1.0)
    }
    fn pct(&mut self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        self.lat_us.sort_unstable();
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i] as f64 / 1000.0
    }
}

fn print_pair(what: &str, unit: &str, mut t: Figures, mut b: Figures) {
    let (tr, br) = (t.rate(), b.rate());
    let (t50, t99, b50, b99) = (t.pct(0.5), t.pct(0.99), b.pct(0.5), b.pct(0.99));
    let (tc, bc) = (t.cpu_us(), b.cpu_us());
    println!(
        "{what}: tincan {tr:.0} {unit} (p50 {t50:.2} ms, p99 {t99:.2} ms, errors {}, cpu {tc:.1} µs/op) \
         | bare {br:.0} {unit} (p50 {b50:.2} ms, p99 {b99:.2} ms, errors {}, cpu {bc:.1} µs/op) \
         | ratio {:.2}x, p99 {:.2}x, cpu per op {:.2}x",
        t.errors,
        b.errors,
        tr / br.max(1e-9),
        t99 / b99.max(1e-9),
        tc / bc.max(1e-9),
    );
}

fn merge(mut a: Figures, b: Figures) -> Figures {
    a.count += b.count;
    a.secs += b.secs;
    a.lat_us.extend(b.lat_us);
    a.errors += b.errors;
    a.cpu_secs += b.cpu_secs;
    a
}

/// Runs `pairs` loops concurrently for `secs`, each returning (round trips, latencies, errors).
async fn drive<F, Fut>(n: usize, secs: f64, f: F) -> Figures
where
    F: Fn(usize, Instant) -> Fut,
    Fut: std::future::Future<Output = (u64, Vec<u32>, u64)> + Send + 'static,
{
    let start = Instant::now();
    let cpu_start = cpu_secs();
    let end = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(i, end))).collect();
    let mut fig = Figures {
        count: 0,
        secs: 0.0,
        lat_us: Vec::new(),
        errors: 0,
        cpu_secs: 0.0,
    };
    for t in tasks {
        let (c, l, e) = t.await.unwrap_or((0, Vec::new(), 1));
        fig.count += c;
        fig.lat_us.extend(l);
        fig.errors += e;
    }
    fig.secs = start.elapsed().as_secs_f64();
    fig.cpu_secs = cpu_secs() - cpu_start;
    fig
}

fn us(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// relay

async fn relay(pairs: usize, secs: f64, rounds: usize) {
    let (server, taddr) = tincan_start().await;
    let baddr = bare_start().await;
    let offer = |c: &CallId| {
        signal(
            c,
            MediaSignal::Offer {
                sdp: SDP.into(),
                ice_restart: false,
            },
        )
    };
    let answer = |c: &CallId| signal(c, MediaSignal::Answer { sdp: SDP.into() });
    let mut tin: Option<Figures> = None;
    let mut bare: Option<Figures> = None;
    for round in 0..rounds.max(1) {
        // bare
        let mut conns = Vec::new();
        for i in 0..pairs {
            let mut a = connect(baddr, (i % 200) as u8 + 1).await;
            let mut b = connect(baddr, (i % 200) as u8 + 1).await;
            a.send(Message::text(format!("pair:{i}:0"))).await.unwrap();
            b.send(Message::text(format!("pair:{i}:1"))).await.unwrap();
            recv_text(&mut a).await;
            recv_text(&mut b).await;
            conns.push(Some((a, b)));
        }
        let c = CallId::new("bare").unwrap();
        let (o, an) = (offer(&c), answer(&c));
        let conns = Arc::new(Mutex::new(conns));
        let f = drive(pairs, secs, |i, end| {
            let (mut a, mut b) = conns.lock().unwrap()[i].take().unwrap();
            let (o, an) = (o.clone(), an.clone());
            async move { pingpong(&mut a, &mut b, &o, &an, end, false).await }
        })
        .await;
        bare = Some(match bare {
            Some(x) => merge(x, f),
            None => f,
        });
        // tincan
        let mut conns = Vec::new();
        for i in 0..pairs {
            conns.push(Some(
                // Fresh users every round: the last round's calls are still held for their
                // parties (resume, `--resume-secs`), so reusing its users would find them busy.
                tincan_pair(taddr, i + 1_000_000 * round).await,
            ));
        }
        let conns = Arc::new(Mutex::new(conns));
        let f = drive(pairs, secs, |i, end| {
            let (mut a, mut b, c) = conns.lock().unwrap()[i].take().unwrap();
            let (o, an) = (offer(&c), answer(&c));
            async move { pingpong(&mut a, &mut b, &o, &an, end, true).await }
        })
        .await;
        tin = Some(match tin {
            Some(x) => merge(x, f),
            None => f,
        });
    }
    print_pair(
        &format!("relay {pairs} pairs"),
        "round trips/s",
        tin.unwrap(),
        bare.unwrap(),
    );
    server.shutdown().await;
}

/// a sends `o`, b reads it and sends `an`, a reads it: one round trip. With `check`, each frame
/// must be a `signal` (from tincan).
async fn pingpong(
    a: &mut Ws,
    b: &mut Ws,
    o: &str,
    an: &str,
    end: Instant,
    check: bool,
) -> (u64, Vec<u32>, u64) {
    let (mut n, mut lat, mut err) = (0, Vec::new(), 0);
    while Instant::now() < end {
        let t = Instant::now();
        if a.send(Message::text(o)).await.is_err() {
            err += 1;
            break;
        }
        let Some(got) = recv_skip_accepted(b).await else {
            err += 1;
            break;
        };
        if b.send(Message::text(an)).await.is_err() {
            err += 1;
            break;
        }
        let Some(back) = recv_skip_accepted(a).await else {
            err += 1;
            break;
        };
        if check
            && !(got.starts_with(r#"{"type":"signal""#) && back.starts_with(r#"{"type":"signal""#))
        {
            err += 1;
        }
        lat.push(us(t));
        n += 1;
    }
    (n, lat, err)
}

async fn recv_skip_accepted(ws: &mut Ws) -> Option<String> {
    loop {
        let t = recv_text(ws).await?;
        if !t.starts_with(r#"{"type":"accepted""#) {
            return Some(t);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// signin

async fn signin(connectors: usize, secs: f64) {
    let (server, taddr) = tincan_start().await;
    let baddr = bare_start().await;
    let b = drive(connectors, secs, move |i, end| async move {
        let (mut n, mut lat, mut err) = (0, Vec::new(), 0);
        while Instant::now() < end {
            let t = Instant::now();
            let mut ws = connect(baddr, (i % 200) as u8 + 1).await;
            let _ = ws.send(Message::text(login_frame(&format!("u{i}")))).await;
            if recv_text(&mut ws).await.is_none() {
                err += 1;
            }
            let _ = ws.close(None).await;
            lat.push(us(t));
            n += 1;
        }
        (n, lat, err)
    })
    .await;
    let t = drive(connectors, secs, move |i, end| async move {
        let (mut n, mut lat, mut err) = (0, Vec::new(), 0);
        while Instant::now() < end {
            let t = Instant::now();
            let mut ws = connect(taddr, (i % 200) as u8 + 1).await;
            let _ = ws.send(Message::text(login_frame(&format!("u{i}")))).await;
            match recv_msg(&mut ws).await {
                Some(ServerMessage::LoginOk { .. }) => {}
                _ => err += 1,
            }
            let _ = ws.close(None).await;
            lat.push(us(t));
            n += 1;
        }
        (n, lat, err)
    })
    .await;
    print_pair(
        &format!("sign-in, {connectors} connectors (bare: connect + one echo)"),
        "/s",
        t,
        b,
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// calls

static CALL_SEQ: AtomicU64 = AtomicU64::new(0);

async fn calls(pairs: usize, secs: f64) {
    let (server, taddr) = tincan_start().await;
    let baddr = bare_start().await;
    // bare: the same nine frames, relayed (a: invite; b: accept; a: offer; b: answer; 2+2
    // candidates; a: hang-up), each read by the other side.
    let b = drive(pairs, secs, move |i, end| async move {
        let mut a = connect(baddr, (i % 200) as u8 + 1).await;
        let mut b = connect(baddr, (i % 200) as u8 + 1).await;
        let _ = a.send(Message::text(format!("pair:{i}:0"))).await;
        let _ = b.send(Message::text(format!("pair:{i}:1"))).await;
        recv_text(&mut a).await;
        recv_text(&mut b).await;
        let (mut n, mut lat, mut err) = (0, Vec::new(), 0);
        while Instant::now() < end {
            let t = Instant::now();
            let c = CallId::new(format!("b{}", CALL_SEQ.fetch_add(1, Ordering::Relaxed))).unwrap();
            let steps: [(bool, String); 9] = call_script(&c);
            for (from_a, frame) in steps {
                let (s, r) = if from_a {
                    (&mut a, &mut b)
                } else {
                    (&mut b, &mut a)
                };
                let _ = s.send(Message::text(frame.clone())).await;
                if recv_text(r).await.as_deref() != Some(frame.as_str()) {
                    err += 1;
                }
            }
            lat.push(us(t));
            n += 1;
        }
        (n, lat, err)
    })
    .await;
    let t = drive(pairs, secs, move |i, end| async move {
        let (ua, ub) = (format!("ca{i}"), format!("cb{i}"));
        let src = (i % 200) as u8 + 1;
        let mut a = tincan_login(taddr, &ua, src).await;
        let mut b = tincan_login(taddr, &ub, src).await;
        let (mut n, mut lat, mut err) = (0, Vec::new(), 0);
        while Instant::now() < end {
            let t = Instant::now();
            let c = CallId::new(format!("t{}", CALL_SEQ.fetch_add(1, Ordering::Relaxed))).unwrap();
            err += tincan_call(&mut a, &mut b, &ua, &ub, &c).await;
            lat.push(us(t));
            n += 1;
        }
        (n, lat, err)
    })
    .await;
    print_pair(
        &format!("full calls, {pairs} pairs (errors = frames lost or misrouted)"),
        "calls/s",
        t,
        b,
    );
    server.shutdown().await;
}

fn call_script(c: &CallId) -> [(bool, String); 9] {
    let cand = |c: &CallId| {
        signal(
            c,
            MediaSignal::Candidate {
                candidate: CANDIDATE.into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
        )
    };
    [
        (
            true,
            ClientMessage::Invite {
                call_id: c.clone(),
                callee: UserId::new("x").unwrap(),
                call_type: Default::default(),
                timeout_secs: None,
            }
            .encode(),
        ),
        (false, ClientMessage::Accept { call_id: c.clone() }.encode()),
        (
            true,
            signal(
                c,
                MediaSignal::Offer {
                    sdp: SDP.into(),
                    ice_restart: false,
                },
            ),
        ),
        (false, signal(c, MediaSignal::Answer { sdp: SDP.into() })),
        (true, cand(c)),
        (true, cand(c)),
        (false, cand(c)),
        (false, cand(c)),
        (true, ClientMessage::Hangup { call_id: c.clone() }.encode()),
    ]
}

/// One full call; returns the number of frames that were lost, late or misrouted.
async fn tincan_call(a: &mut Ws, b: &mut Ws, ua: &str, ub: &str, c: &CallId) -> u64 {
    let mut err = 0;
    let send = |m: ClientMessage| Message::text(m.encode());
    let _ = a
        .send(send(ClientMessage::Invite {
            call_id: c.clone(),
            callee: UserId::new(ub).unwrap(),
            call_type: Default::default(),
            timeout_secs: None,
        }))
        .await;
    // The caller hears ringing, the callee the invitation.
    err += u64::from(
        !matches!(recv_msg(b).await, Some(ServerMessage::Invited { call_id, .. }) if call_id == *c),
    );
    err += u64::from(
        !matches!(recv_msg(a).await, Some(ServerMessage::Ringing { call_id, .. }) if call_id == *c),
    );
    let _ = b
        .send(send(ClientMessage::Accept { call_id: c.clone() }))
        .await;
    err += u64::from(
        !matches!(recv_msg(a).await, Some(ServerMessage::Accepted { call_id, .. }) if call_id == *c),
    );
    err += u64::from(
        !matches!(recv_msg(b).await, Some(ServerMessage::Accepted { call_id, .. }) if call_id == *c),
    );
    for (from_a, frame) in call_script(c).into_iter().skip(2).take(6) {
        let (s, r, who) = if from_a {
            (&mut *a, &mut *b, ua)
        } else {
            (&mut *b, &mut *a, ub)
        };
        let _ = s.send(Message::text(frame)).await;
        err += u64::from(!matches!(recv_msg(r).await,
            Some(ServerMessage::Signal { call_id, from, .. }) if call_id == *c && from.as_str() == who));
    }
    let _ = a
        .send(send(ClientMessage::Hangup { call_id: c.clone() }))
        .await;
    for ws in [a, b] {
        err += u64::from(
            !matches!(recv_msg(ws).await, Some(ServerMessage::CallEnded { call_id, .. }) if call_id == *c),
        );
    }
    err
}

// ---------------------------------------------------------------------------------------------
// idle

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts a server process and reads the address it prints or logs.
fn spawn_server(cmd: &mut std::process::Command) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("server process starts");
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let addr = loop {
        let line = lines.next().expect("server output").expect("readable");
        let found = line
            .split("addr=")
            .nth(1)
            .or_else(|| line.strip_prefix("listening "))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok());
        if let Some(a) = found {
            break a;
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

async fn idle(sessions: usize, server_bin: Option<std::path::PathBuf>) {
    let exe = std::env::current_exe().unwrap();
    let bin = server_bin.unwrap_or_else(|| exe.with_file_name("tincan-server"));
    if !bin.exists() {
        println!(
            "idle: skipped, {} not built (cargo build -p tincan-server)",
            bin.display()
        );
        return;
    }
    let mut results = Vec::new();
    for bare in [true, false] {
        let mut cmd = if bare {
            let mut c = std::process::Command::new(&exe);
            c.arg("bare-serve");
            c
        } else {
            let mut c = std::process::Command::new(&bin);
            c.args(["serve", "--listen", "127.0.0.1:0", "--sdkappid"])
                .arg(APP.to_string())
                .args(["--max-connections", "1000000", "--memory-only"])
                // Many users on a few source addresses: no per-address caps.
                .args([
                    "--max-conns-per-ip",
                    "1000000",
                    "--max-unauth-per-ip",
                    "1000000",
                ])
                .env("TINCAN_SECRET_KEY", KEY)
                .env("RUST_LOG", "warn,tincan_server=info")
                .env("NO_COLOR", "1");
            c
        };
        let (mut child, addr) = spawn_server(&mut cmd);
        let pid = child.id();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kb(pid);
        let start = Instant::now();
        let mut held = Vec::with_capacity(sessions);
        let mut failed = 0;
        for i in 0..sessions {
            // 127.0.0.1..=127.0.0.250: 250 × ~28k ephemeral ports.
            let src = (i % 250) as u8 + 1;
            let ws = if bare {
                let mut ws = connect(addr, src).await;
                let _ = ws.send(Message::text(format!("pair:{i}:0"))).await;
                recv_text(&mut ws).await.map(|_| ws)
            } else {
                let mut ws = connect(addr, src).await;
                let _ = ws
                    .send(Message::text(login_frame(&format!("idle{i}"))))
                    .await;
                match recv_msg(&mut ws).await {
                    Some(ServerMessage::LoginOk { .. }) => Some(ws),
                    _ => None,
                }
            };
            match ws {
                Some(ws) => held.push(ws),
                None => failed += 1,
            }
        }
        let took = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kb(pid);
        let per = (after.saturating_sub(before)) as f64 * 1024.0 / held.len().max(1) as f64;
        results.push((per, held.len(), failed, took, before, after));
        drop(held);
        let _ = child.kill();
        let _ = child.wait();
    }
    let (b, t) = (results[0], results[1]);
    println!(
        "idle sessions: tincan {} signed in ({} failed, {:.1} s), RSS {} -> {} KiB, {:.0} bytes/session | \
         bare {} ({} failed), RSS {} -> {} KiB, {:.0} bytes/session | ratio {:.2}x",
        t.1, t.2, t.3, t.4, t.5, t.0, b.1, b.2, b.4, b.5, b.0, t.0 / b.0.max(1e-9)
    );
}
