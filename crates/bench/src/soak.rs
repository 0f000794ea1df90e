//! `tincan-bench soak`: thousands of clients churning against a real tincan-server process, then a
//! strict account of what every connection saw.
//!
//! Why a soak and not more unit tests: the promises it checks ("every call ends exactly once for
//! each party", "no signal lost or misrouted", "nobody is left busy", "memory comes back") are about
//! the interleavings of many sessions, reconnects and timers, which the switchboard's property tests
//! cannot reach through the real sockets, hub, outboxes and close paths.
//!
//! Each client is one user (`u0`…) driven by its own seeded RNG: it signs in, calls random users,
//! accepts, rejects (also as busy), cancels, lets calls ring out, exchanges signals, hangs up, and
//! leaves at random (abrupt TCP drop, close handshake, `logout`, or a second sign-in of the same
//! device that replaces the first), then comes back. Every request is followed by a `ping` whose
//! `pong` closes the request's reply window: an `error` between the two belongs to that request, so
//! the client knows exactly which of its signals the server refused (typed refusals: counted, not
//! losses) and which it took. Every signal carries its call, sender and a sequence number inside the
//! payload (the SDP's `s=` and `o=` lines, a candidate's foundation), so the receiver checks routing
//! and order, and the final account checks that every signal the server took reached the device
//! that was in the call.
//!
//! After `--secs` the clients hang up and wait until each of their calls has ended, all sign in,
//! and a final round calls every user once (even users call odd ones, then odd ones even): each
//! call must connect. Then everyone leaves, `/healthz` must come back to 0 sessions and 0
//! connections, and the server's RSS at start, peak and end is printed. The process exits non-zero
//! only on a correctness failure; time and memory are printed, never asserted. The seed fixes each
//! client's choices, not the scheduler's interleaving.

use crate::Ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tincan_proto::{
    CallId, ClientMessage, DeviceId, MediaSignal, SecretKey, SigToken, UserId, UserSigKey,
    PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The soak's options (see `tincan-bench soak --help`).
pub struct Opts {
    pub clients: usize,
    pub secs: f64,
    pub seed: Option<u64>,
    pub think_ms: u64,
    pub sources: u8,
    pub server_bin: Option<std::path::PathBuf>,
    pub connect: Option<SocketAddr>,
    pub server_pid: Option<u32>,
    pub server_args: Vec<String>,
    pub resume_secs: u32,
    pub sdk_app_id: u64,
    pub secret_key: String,
}

/// How long a client waits for the answers it needs (sign-in, the end of its calls). Generous:
/// a debug server on a loaded 2-core machine can lag seconds behind 2,000 clients.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Seeded choices

/// SplitMix64: tiny, seedable, good enough to pick actions (no cryptography here).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// What every connection saw

#[derive(Debug, Clone)]
enum Seen {
    Invited {
        caller: Option<u32>,
    },
    Ringing,
    Accepted,
    /// `resync`: it came while this connection's `resume_call` for the call awaited its answer,
    /// where docs/PROTOCOL.md allows it to repeat an ending the device already heard.
    Ended {
        reason: String,
        resync: bool,
    },
    Signal {
        from: Option<u32>,
        seq: Option<u32>,
        payload_ok: bool,
    },
    /// An error answering this connection's request about the call (for traces only: read
    /// through `Debug`).
    #[allow(dead_code)]
    Refused {
        what: String,
        code: String,
    },
    /// `call_resumed`, `peer_reconnecting`, `peer_reconnected`.
    Resume {
        kind: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Still open when the soak ended (after every call had been given time to end).
    Open,
    /// We dropped the TCP connection, closed it, logged out or replaced it.
    ByUs,
    /// The server closed it (a kick, a slow-consumer close, …) or it failed.
    ByServer,
}

/// One connection's record, handed in when it is over.
struct ConnLog {
    conn: u64,
    user: u32,
    /// Device ID `d0` or `d1`: a party of a connected call is its (user, device), which a later
    /// connection of the same device takes over (resume).
    device: u8,
    login_at: Duration,
    left: Left,
    events: Vec<(u64, Seen)>,
    /// (call, seq) of the signals the server took (no error before the request's pong).
    taken: Vec<(u64, u32)>,
    /// The server told this leaver its call ended while it was leaving (logout, replacement).
    heard_own_end_on_leave: u32,
    left_with_calls: u32,
    /// How we left (`drop`, `close`, `logout`, `replace`), if we did.
    leave: &'static str,
}

struct CallMeta {
    caller: u32,
    callee: u32,
    caller_conn: u64,
    caller_device: u8,
    invite_at: Duration,
    refused: Option<String>,
}

#[derive(Default)]
struct Counts {
    map: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    fn add(&self, k: impl Into<String>) {
        *self.map.lock().unwrap().entry(k.into()).or_default() += 1;
    }
}

struct Shared {
    t0: Instant,
    end: Instant,
    addr: SocketAddr,
    clients: u32,
    sources: u8,
    think_ms: u64,
    resume_secs: u32,
    sdk_app_id: u64,
    key: String,
    next_call: AtomicU64,
    next_conn: AtomicU64,
    calls: Mutex<HashMap<u64, CallMeta>>,
    logs: Mutex<Vec<ConnLog>>,
    counts: Counts,
    failures: Mutex<Vec<String>>,
    barrier: tokio::sync::Barrier,
    /// Users whose trouble is worth a trace in the report (callees that could not be called).
    suspects: Mutex<Vec<u32>>,
    stop_sampling: AtomicBool,
}

impl Shared {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
    fn since(&self) -> Duration {
        self.t0.elapsed()
    }
}

// ---------------------------------------------------------------------------------------------
// Frames

fn user_name(i: u32) -> String {
    format!("u{i}")
}

fn user_index(s: &str) -> Option<u32> {
    s.strip_prefix('u')?.parse().ok()
}

fn call_name(n: u64) -> CallId {
    CallId::new(format!("k{n}")).expect("valid call id")
}

fn call_index(s: &str) -> Option<u64> {
    s.strip_prefix('k')?.parse().ok()
}

/// An offer or answer that passes the server's SDP check, naming its call, sender and sequence.
fn sdp(call: u64, from: u32, seq: u32) -> String {
    format!(
        "v=0\r\no=- {seq} 2 IN IP4 127.0.0.1\r\ns=k{call} u{from} {seq}\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\n\
         a=fingerprint:sha-256 6F:93:7D:C0:00:65:D6:3D:39:DB:64:7A:6A:24:8D:AC:2C:0C:19:7E:47:97:C8:F2:D5:98:88:89:0D:0E:9E:33\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=mid:0\r\n\
         a=rtpmap:111 opus/48000/2\r\n"
    )
}

/// A candidate whose foundation is the sequence number and whose port names the sender.
fn candidate(from: u32, seq: u32) -> String {
    format!(
        "candidate:{seq} 1 udp 2130706431 127.0.0.1 {} typ host",
        1024 + from % 60000
    )
}

/// Reads (call, sender, seq) back from a received signal payload; `None` if it is not ours.
fn parse_payload(sig: &Value) -> Option<(Option<u64>, u32, u32)> {
    match sig.get("kind")?.as_str()? {
        "offer" | "answer" => {
            let sdp = sig.get("sdp")?.as_str()?;
            let s = sdp.lines().find_map(|l| l.strip_prefix("s="))?;
            let mut it = s.split(' ');
            let call = call_index(it.next()?)?;
            let from = user_index(it.next()?)?;
            let seq = it.next()?.trim().parse().ok()?;
            Some((Some(call), from, seq))
        }
        "candidate" => {
            let c = sig.get("candidate")?.as_str()?;
            let mut it = c.strip_prefix("candidate:")?.split(' ');
            let seq = it.next()?.parse().ok()?;
            let port: u32 = it.nth(4)?.parse().ok()?;
            Some((None, port.checked_sub(1024)?, seq))
        }
        _ => None,
    }
}

/// A server frame, read loosely (by `type` and the fields the soak needs) so that fields other
/// helpers add or drop (e.g. `ringing`'s device count) do not matter.
enum In {
    LoginOk,
    Invited {
        call: Option<u64>,
        caller: Option<u32>,
    },
    Ringing {
        call: Option<u64>,
    },
    Accepted {
        call: Option<u64>,
    },
    Ended {
        call: Option<u64>,
        reason: String,
    },
    Signal {
        call: Option<u64>,
        from: Option<u32>,
        payload: Value,
    },
    Kicked {
        reason: String,
    },
    Resume {
        call: Option<u64>,
        kind: String,
    },
    Ignored,
    LoggedOut,
    Error {
        code: String,
    },
    Pong {
        nonce: Option<u64>,
    },
    Other(String),
}

fn read_frame(text: &str) -> In {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return In::Other("not_json".into());
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let call = || {
        v.get("call_id")
            .and_then(Value::as_str)
            .and_then(call_index)
    };
    match s("type").as_str() {
        "login_ok" => In::LoginOk,
        "invited" => In::Invited {
            call: call(),
            caller: user_index(&s("caller")),
        },
        "ringing" => In::Ringing { call: call() },
        "accepted" => In::Accepted { call: call() },
        "call_ended" => In::Ended {
            call: call(),
            reason: s("reason"),
        },
        "signal" => In::Signal {
            call: call(),
            from: user_index(&s("from")),
            payload: v.get("signal").cloned().unwrap_or(Value::Null),
        },
        "kicked_offline" => In::Kicked {
            reason: s("reason"),
        },
        k @ ("call_resumed" | "peer_reconnecting" | "peer_reconnected") => In::Resume {
            call: call(),
            kind: k.to_owned(),
        },
        "missed_calls" | "blocked" | "unblocked" => In::Ignored,
        "logged_out" => In::LoggedOut,
        "error" => In::Error { code: s("code") },
        "pong" => In::Pong {
            nonce: v.get("nonce").and_then(Value::as_u64),
        },
        other => In::Other(other.to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// A client

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ringing,
    Connected,
}

struct Local {
    role: Role,
    state: State,
    seq: u32,
    candidates: u32,
}

#[derive(Debug, Clone, Copy)]
enum Req {
    Invite(u64),
    Resume(u64),
    Signal(u64, u32),
    Other(&'static str, u64),
}

/// One open connection and what it has seen so far.
struct Conn {
    ws: Ws,
    log: ConnLog,
    calls: HashMap<u64, Local>,
    /// Requests whose reply window (up to the pong of the ping sent after them) is still open,
    /// with the error the server answered, if any.
    pending: VecDeque<(u64, Req, Option<String>)>,
    nonce: u64,
}

enum Step {
    Frame(In),
    Closed(Option<u16>),
}

impl Conn {
    async fn send(&mut self, sh: &Shared, m: ClientMessage, req: Req) -> bool {
        self.nonce += 1;
        let ping = ClientMessage::Ping {
            nonce: Some(self.nonce),
        };
        self.pending.push_back((self.nonce, req, None));
        let ok = self.ws.feed(Message::text(m.encode())).await.is_ok()
            && self.ws.send(Message::text(ping.encode())).await.is_ok();
        if let Req::Signal(..) = req {
            sh.counts.add("signals sent");
        }
        ok
    }

    async fn next(&mut self, until: Instant) -> Option<Step> {
        loop {
            let got = tokio::time::timeout_at(until.into(), self.ws.next()).await;
            return match got {
                Err(_) => None,
                Ok(None) | Ok(Some(Err(_))) => Some(Step::Closed(None)),
                Ok(Some(Ok(Message::Close(f)))) => {
                    Some(Step::Closed(Some(f.map_or(1005, |f| u16::from(f.code)))))
                }
                Ok(Some(Ok(Message::Text(t)))) => Some(Step::Frame(read_frame(&t))),
                Ok(Some(Ok(_))) => continue,
            };
        }
    }

    /// Records a frame and keeps the local view of the calls; returns whether it ended the
    /// connection (kicked, logged out).
    fn handle(&mut self, sh: &Shared, f: In) -> bool {
        let me = self.log.user;
        match f {
            In::LoginOk => sh.counts.add("unexpected login_ok"),
            In::Invited { call, caller } => {
                let Some(call) = call else {
                    sh.fail(format!("u{me}: invited with a call id not ours"));
                    return false;
                };
                self.log.events.push((call, Seen::Invited { caller }));
                self.calls.entry(call).or_insert(Local {
                    role: Role::Callee,
                    state: State::Ringing,
                    seq: 0,
                    candidates: 0,
                });
            }
            In::Ringing { call } => {
                if let Some(call) = self.known(sh, call, "ringing") {
                    self.log.events.push((call, Seen::Ringing));
                }
            }
            In::Accepted { call } => {
                if let Some(call) = self.known(sh, call, "accepted") {
                    self.log.events.push((call, Seen::Accepted));
                    if let Some(l) = self.calls.get_mut(&call) {
                        l.state = State::Connected;
                    }
                    sh.counts.add("calls connected (seen per party)");
                }
            }
            In::Ended { call, reason } => {
                if let Some(call) = self.known(sh, call, "call_ended") {
                    sh.counts.add(format!("call_ended {reason}"));
                    let resync = self
                        .pending
                        .iter()
                        .any(|(_, r, _)| matches!(r, Req::Resume(c) if *c == call));
                    self.log.events.push((call, Seen::Ended { reason, resync }));
                    self.calls.remove(&call);
                }
            }
            In::Signal {
                call,
                from,
                payload,
            } => {
                if let Some(call) = self.known(sh, call, "signal") {
                    let parsed = parse_payload(&payload);
                    let payload_ok = parsed
                        .is_some_and(|(c, f, _)| c.is_none_or(|c| c == call) && Some(f) == from);
                    sh.counts.add("signals received");
                    self.log.events.push((
                        call,
                        Seen::Signal {
                            from,
                            seq: parsed.map(|p| p.2),
                            payload_ok,
                        },
                    ));
                }
            }
            In::Kicked { reason } => {
                sh.counts.add(format!("kicked_offline {reason}"));
                return true;
            }
            In::Resume { call, kind } => {
                if let Some(call) = self.known(sh, call, &kind) {
                    sh.counts.add(kind.clone());
                    self.log.events.push((call, Seen::Resume { kind }));
                }
            }
            In::Ignored => {}
            In::LoggedOut => return true,
            In::Error { code } => match self.pending.front_mut() {
                Some((_, req, slot)) => {
                    let what = match req {
                        Req::Invite(_) => "invite",
                        Req::Resume(_) => "resume_call",
                        Req::Signal(..) => "signal",
                        Req::Other(w, _) => w,
                    };
                    sh.counts.add(format!("refused {what}: {code}"));
                    if let Req::Other(_, call) | Req::Resume(call) | Req::Invite(call) = req {
                        self.log.events.push((
                            *call,
                            Seen::Refused {
                                what: what.to_owned(),
                                code: code.clone(),
                            },
                        ));
                    }
                    slot.get_or_insert(code);
                }
                None => sh.counts.add(format!("error outside a request: {code}")),
            },
            In::Pong { nonce } => {
                let Some(nonce) = nonce else {
                    sh.counts.add("pong without nonce");
                    return false;
                };
                while let Some((n, req, err)) = self.pending.pop_front() {
                    if n > nonce {
                        self.pending.push_front((n, req, err));
                        break;
                    }
                    if n < nonce {
                        // Its ping was dropped (e.g. rate_limited): the request's fate is
                        // unknown, so it is held to nothing.
                        sh.counts.add("reply window lost (ping dropped)");
                        continue;
                    }
                    match (req, err) {
                        (Req::Signal(call, seq), None) => self.log.taken.push((call, seq)),
                        (Req::Invite(call), Some(code)) => {
                            if let Some(m) = sh.calls.lock().unwrap().get_mut(&call) {
                                m.refused = Some(code);
                            }
                            self.calls.remove(&call);
                        }
                        (Req::Resume(call), Some(_)) => {
                            self.calls.remove(&call);
                        }
                        _ => {}
                    }
                    break;
                }
            }
            In::Other(t) => sh.counts.add(format!("unknown frame type {t:?}")),
        }
        false
    }

    fn known(&self, sh: &Shared, call: Option<u64>, what: &str) -> Option<u64> {
        if call.is_none() {
            sh.fail(format!(
                "u{}: {what} with a call id the soak never made",
                self.log.user
            ));
        }
        call
    }

    async fn invite(&mut self, sh: &Shared, callee: u32, timeout_secs: Option<u32>) -> u64 {
        let n = sh.next_call.fetch_add(1, Ordering::Relaxed);
        sh.calls.lock().unwrap().insert(
            n,
            CallMeta {
                caller: self.log.user,
                callee,
                caller_conn: self.log.conn,
                caller_device: self.log.device,
                invite_at: sh.since(),
                refused: None,
            },
        );
        self.calls.insert(
            n,
            Local {
                role: Role::Caller,
                state: State::Ringing,
                seq: 0,
                candidates: 0,
            },
        );
        sh.counts.add("invites sent");
        let m = ClientMessage::Invite {
            call_id: call_name(n),
            callee: UserId::new(user_name(callee)).expect("valid user id"),
            call_type: Default::default(),
            timeout_secs,
        };
        self.send(sh, m, Req::Invite(n)).await;
        n
    }

    async fn signal(&mut self, sh: &Shared, call: u64, rng: &mut Rng) {
        let me = self.log.user;
        let Some(l) = self.calls.get_mut(&call) else {
            return;
        };
        l.seq += 1;
        let seq = l.seq;
        let s = if l.candidates < 20 && rng.below(3) == 0 {
            l.candidates += 1;
            MediaSignal::Candidate {
                candidate: candidate(me, seq),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            }
        } else if l.role == Role::Caller {
            MediaSignal::Offer {
                sdp: sdp(call, me, seq),
                ice_restart: false,
            }
        } else {
            MediaSignal::Answer {
                sdp: sdp(call, me, seq),
            }
        };
        let m = ClientMessage::Signal {
            call_id: call_name(call),
            signal: s,
        };
        self.send(sh, m, Req::Signal(call, seq)).await;
    }

    /// Claims a held call back on this (new) connection of the same device.
    async fn resume(&mut self, sh: &Shared, held: Held) {
        self.calls.insert(
            held.call,
            Local {
                role: held.role,
                state: State::Connected,
                seq: held.seq,
                candidates: held.candidates,
            },
        );
        sh.counts.add("sent resume_call");
        let m = ClientMessage::ResumeCall {
            call_id: call_name(held.call),
            peer: UserId::new(user_name(held.peer)).expect("valid user id"),
            connected_at_ms: crate::now_secs() * 1000,
        };
        self.send(sh, m, Req::Resume(held.call)).await;
    }

    /// The connected call this connection is in, to resume after a drop.
    fn held(&self, sh: &Shared) -> Option<Held> {
        let (call, l) = self
            .calls
            .iter()
            .find(|(_, l)| l.state == State::Connected)?;
        let m = sh.calls.lock().unwrap();
        let meta = m.get(call)?;
        let peer = if l.role == Role::Caller {
            meta.callee
        } else {
            meta.caller
        };
        Some(Held {
            call: *call,
            role: l.role,
            peer,
            seq: l.seq,
            candidates: l.candidates,
        })
    }

    async fn simple(&mut self, sh: &Shared, call: u64, what: &'static str) {
        let call_id = call_name(call);
        let m = match what {
            "accept" => ClientMessage::Accept { call_id },
            "reject" => ClientMessage::Reject {
                call_id,
                busy: false,
            },
            "reject busy" => ClientMessage::Reject {
                call_id,
                busy: true,
            },
            "cancel" => ClientMessage::Cancel { call_id },
            _ => ClientMessage::Hangup { call_id },
        };
        sh.counts.add(format!("sent {what}"));
        self.send(sh, m, Req::Other(what, call)).await;
    }

    /// Hands the record in.
    fn finish(mut self, sh: &Shared, left: Left) {
        self.log.left = left;
        self.log.left_with_calls = self.calls.len() as u32;
        sh.logs.lock().unwrap().push(self.log);
    }

    /// Reads a leaving connection to its end (logout, close, replacement), recording what the
    /// server still tells it, then hands the record in.
    async fn drain_and_finish(mut self, sh: Arc<Shared>, leave: &'static str) {
        self.log.leave = leave;
        let until = Instant::now() + Duration::from_secs(10);
        while let Some(Step::Frame(f)) = self.next(until).await {
            let before = self.calls.len();
            self.handle(&sh, f);
            if self.calls.len() < before {
                self.log.heard_own_end_on_leave += 1;
            }
        }
        self.finish(&sh, Left::ByUs);
    }
}

/// A connected call left behind by a drop, to claim back with `resume_call`.
#[derive(Clone, Copy)]
struct Held {
    call: u64,
    role: Role,
    peer: u32,
    seq: u32,
    candidates: u32,
}

fn device(gen: u32) -> DeviceId {
    DeviceId::new(format!("d{}", gen % 2)).expect("valid device id")
}

async fn tcp(sh: &Shared, src: u8) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.set_nodelay(true)?;
    sock.bind(SocketAddr::from(([127, 0, 0, src.max(1)], 0)))?;
    sock.connect(sh.addr).await
}

/// Connects and signs in as `user` on `dev`; `None` (counted) when the server refuses.
async fn sign_in(sh: &Shared, user: u32, dev: &DeviceId) -> Option<Conn> {
    let src = (user % u32::from(sh.sources)) as u8 + 1;
    let t = match tcp(sh, src).await {
        Ok(t) => t,
        Err(e) => {
            sh.counts.add(format!("connect failed: {:?}", e.kind()));
            return None;
        }
    };
    let cfg = WebSocketConfig::default().read_buffer_size(4096);
    let url = format!("ws://{}/ws", sh.addr);
    let mut ws = match tokio_tungstenite::client_async_with_config(url, t, Some(cfg)).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let why = match e {
                tokio_tungstenite::tungstenite::Error::Http(r) => {
                    format!("HTTP {}", r.status().as_u16())
                }
                other => format!("{:?}", std::mem::discriminant(&other)),
            };
            sh.counts.add(format!("upgrade refused: {why}"));
            return None;
        }
    };
    let uid = UserId::new(user_name(user)).expect("valid user id");
    let sig = UserSigKey::new(sh.sdk_app_id, SecretKey::new(sh.key.clone())).gen(
        &uid,
        crate::now_secs(),
        3600,
        None,
    );
    let login = ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id: sh.sdk_app_id,
        user_id: uid,
        user_sig: SigToken(sig),
        device_id: dev.clone(),
    };
    if ws.send(Message::text(login.encode())).await.is_err() {
        sh.counts.add("login: connection failed");
        return None;
    }
    let until = Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(until.into(), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match read_frame(&t) {
                In::LoginOk => break,
                In::Other(k) if k == "missed_calls" => continue,
                In::Error { code } => {
                    sh.counts.add(format!("login refused: {code}"));
                    return None;
                }
                _ => {
                    sh.counts.add("login: unexpected frame");
                    return None;
                }
            },
            Ok(Some(Ok(_))) => continue,
            _ => {
                sh.counts.add("login: no answer or closed");
                return None;
            }
        }
    }
    sh.counts.add("sign-ins");
    Some(Conn {
        ws,
        log: ConnLog {
            conn: sh.next_conn.fetch_add(1, Ordering::Relaxed),
            user,
            device: dev.as_str().ends_with('1') as u8,
            login_at: sh.since(),
            left: Left::Open,
            events: Vec::new(),
            taken: Vec::new(),
            heard_own_end_on_leave: 0,
            left_with_calls: 0,
            leave: "",
        },
        calls: HashMap::new(),
        pending: VecDeque::new(),
        nonce: 0,
    })
}

/// Signs in, retrying (with a pause) until `deadline`.
async fn sign_in_retry(sh: &Shared, user: u32, dev: &DeviceId, deadline: Instant) -> Option<Conn> {
    loop {
        if let Some(c) = sign_in(sh, user, dev).await {
            return Some(c);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn client(sh: Arc<Shared>, me: u32, seed: u64) {
    let mut rng = Rng(seed ^ (u64::from(me) + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut gen = 0u32;
    let mut conn: Option<Conn> = None;
    // A connected call left behind by a drop, claimed back at the next sign-in (same device).
    let mut held: Option<Held> = None;
    let mut invites: VecDeque<Instant> = VecDeque::new();
    // Spread the first sign-ins over the first second.
    tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;

    // The churn.
    while Instant::now() < sh.end {
        let Some(c) = conn.as_mut() else {
            conn = sign_in(&sh, me, &device(gen)).await;
            match (conn.as_mut(), held.take()) {
                (Some(c), Some(h)) => c.resume(&sh, h).await,
                (None, _) => tokio::time::sleep(Duration::from_millis(rng.range(100, 500))).await,
                _ => {}
            }
            continue;
        };
        let think = Duration::from_millis(rng.range(sh.think_ms / 2, sh.think_ms * 3 / 2));
        let act_at = (Instant::now() + think).min(sh.end);
        // Read until it is time to act.
        let mut gone = None;
        while let Some(step) = c.next(act_at).await {
            match step {
                Step::Frame(f) => {
                    if c.handle(&sh, f) {
                        gone = Some(None);
                        break;
                    }
                }
                Step::Closed(code) => {
                    gone = Some(code);
                    break;
                }
            }
        }
        if let Some(code) = gone {
            sh.counts.add(format!(
                "closed by the server: {}",
                code.map_or("no close frame".into(), |c| c.to_string())
            ));
            conn.take().unwrap().finish(&sh, Left::ByServer);
            continue;
        }
        if Instant::now() >= sh.end {
            break;
        }
        // Stay under the server's invite limit (20 a minute), as a real client would.
        while invites
            .front()
            .is_some_and(|t| t.elapsed() > Duration::from_secs(61))
        {
            invites.pop_front();
        }
        let may_invite = invites.len() < 15;
        let Some(leave) = act(&sh, c, me, &mut rng, may_invite, &mut invites).await else {
            continue;
        };
        let old = conn.take().unwrap();
        sh.counts.add(format!("left: {leave}"));
        // After a drop, most clients come back on the same device and claim their call back.
        let resume = old.held(&sh).filter(|_| rng.below(10) < 7);
        match leave {
            "drop" => {
                let mut old = old;
                old.log.leave = "drop";
                old.finish(&sh, Left::ByUs)
            }
            "close" => {
                let mut old = old;
                let _ = old.ws.close(None).await;
                tokio::spawn(old.drain_and_finish(sh.clone(), "close"));
            }
            "logout" => {
                let mut old = old;
                let _ = old
                    .ws
                    .send(Message::text(ClientMessage::Logout.encode()))
                    .await;
                tokio::spawn(old.drain_and_finish(sh.clone(), "logout"));
            }
            _ => {
                // Replace: the same device signs in again while the old connection is open.
                tokio::spawn(old.drain_and_finish(sh.clone(), "replace"));
                conn = sign_in(&sh, me, &device(gen)).await;
                if let (Some(c), Some(h)) = (conn.as_mut(), resume) {
                    c.resume(&sh, h).await;
                }
                continue;
            }
        }
        if leave != "logout" && (resume.is_some() || rng.below(2) == 0) {
            held = resume;
        } else {
            gen += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(50, 1000))).await;
    }

    // Drain: end every call and wait until each has ended.
    if let Some(c) = conn.as_mut() {
        if !drain(&sh, c).await {
            conn.take().unwrap().finish(&sh, Left::ByServer);
        }
    }
    // Everyone signs in for the final round.
    if conn.is_none() {
        conn = sign_in_retry(&sh, me, &device(gen), Instant::now() + PATIENCE).await;
        match conn.as_mut() {
            None => sh.fail(format!("u{me}: could not sign in for the final round")),
            Some(c) => {
                if let Some(h) = held.take() {
                    c.resume(&sh, h).await;
                }
                if !drain(&sh, c).await {
                    conn.take().unwrap().finish(&sh, Left::ByServer);
                }
            }
        }
    }
    sh.barrier.wait().await;
    // Calls held for a device that went away and never came back end when their grace runs
    // out: until then both users are rightly busy.
    tokio::time::sleep(Duration::from_secs(u64::from(sh.resume_secs) + 1)).await;
    for phase in 0..2u32 {
        if let Some(c) = conn.as_mut() {
            final_round(&sh, c, me, phase).await;
        }
        sh.barrier.wait().await;
    }
    if let Some(mut c) = conn.take() {
        let _ = c.ws.close(None).await;
        let until = Instant::now() + Duration::from_secs(5);
        while let Some(Step::Frame(f)) = c.next(until).await {
            c.handle(&sh, f);
        }
        c.finish(&sh, Left::Open);
    }
}

/// One random action; returns how the client leaves, if it does.
async fn act(
    sh: &Shared,
    c: &mut Conn,
    me: u32,
    rng: &mut Rng,
    may_invite: bool,
    invites: &mut VecDeque<Instant>,
) -> Option<&'static str> {
    let pick = |role, state| {
        c.calls
            .iter()
            .find(|(_, l)| l.role == role && l.state == state)
            .map(|(k, _)| *k)
    };
    let connected = c
        .calls
        .iter()
        .find(|(_, l)| l.state == State::Connected)
        .map(|(k, _)| *k);
    let incoming = pick(Role::Callee, State::Ringing);
    let placing = pick(Role::Caller, State::Ringing);
    let r = rng.below(100);
    let leave = |rng: &mut Rng| match rng.below(10) {
        0..=3 => "drop",
        4..=5 => "close",
        6..=7 => "logout",
        _ => "replace",
    };
    if let Some(call) = connected {
        match r {
            0..=69 => {
                for _ in 0..rng.range(1, 3) {
                    c.signal(sh, call, rng).await;
                }
            }
            70..=84 => c.simple(sh, call, "hangup").await,
            85..=87 => return Some(leave(rng)),
            _ => {}
        }
    } else if let Some(call) = incoming {
        match r {
            0..=44 => c.simple(sh, call, "accept").await,
            45..=64 => c.simple(sh, call, "reject").await,
            65..=71 => c.simple(sh, call, "reject busy").await,
            72..=79 => c.simple(sh, call, "hangup").await,
            80..=82 => return Some(leave(rng)),
            _ => {} // let it ring (it may time out)
        }
    } else if let Some(call) = placing {
        match r {
            0..=39 => c.signal(sh, call, rng).await,
            40..=49 => c.simple(sh, call, "cancel").await,
            50..=52 => c.simple(sh, call, "hangup").await,
            53..=54 => return Some(leave(rng)),
            _ => {}
        }
    } else {
        match r {
            0..=54 if may_invite => {
                invites.push_back(Instant::now());
                let mut callee = rng.below(u64::from(sh.clients - 1)) as u32;
                if callee >= me {
                    callee += 1;
                }
                let timeout = rng.range(1, 4) as u32;
                c.invite(sh, callee, Some(timeout)).await;
            }
            55..=59 => return Some(leave(rng)),
            _ => {}
        }
    }
    None
}

/// Hangs up every call and reads until each has ended; `false` if the connection went away.
async fn drain(sh: &Shared, c: &mut Conn) -> bool {
    let until = Instant::now() + PATIENCE;
    let calls: Vec<u64> = c.calls.keys().copied().collect();
    for call in calls {
        c.simple(sh, call, "hangup").await;
    }
    while !(c.calls.is_empty() && c.pending.is_empty()) {
        match c.next(until).await {
            None => break,
            Some(Step::Closed(_)) => return false,
            Some(Step::Frame(f)) => {
                let invited = match &f {
                    In::Invited { call, .. } => *call,
                    _ => None,
                };
                if c.handle(sh, f) {
                    return false;
                }
                if let Some(call) = invited {
                    c.simple(sh, call, "hangup").await;
                }
            }
        }
    }
    true
}

/// Phase 0: even users call the next (odd) user; phase 1: odd users call the next (even) one.
/// Each callee accepts, each caller hangs up once connected; every call must connect.
async fn final_round(sh: &Shared, c: &mut Conn, me: u32, phase: u32) {
    let caller = me % 2 == phase;
    let until = Instant::now() + PATIENCE;
    let mut mine = None;
    if caller {
        let callee = (me + 1) % sh.clients;
        mine = Some(c.invite(sh, callee, Some(20)).await);
    }
    let mut connected = false;
    let mut answered = false;
    let mut retries = 0;
    loop {
        let my_done = mine.is_none_or(|m| !c.calls.contains_key(&m));
        if my_done && c.pending.is_empty() && retries < 10 {
            // A rate limit (too_many_invites: a minute's quota, or a recent unanswered ring to
            // the same user) says nothing about busyness: wait and ask again.
            let limited = mine.is_some_and(|m| {
                sh.calls
                    .lock()
                    .unwrap()
                    .get(&m)
                    .and_then(|x| x.refused.as_deref())
                    == Some("too_many_invites")
            });
            if limited {
                retries += 1;
                sh.counts
                    .add("final round: invite retried after too_many_invites");
                let pause = Instant::now() + Duration::from_secs(3);
                while let Some(Step::Frame(f)) = c.next(pause).await {
                    c.handle(sh, f);
                }
                mine = Some(c.invite(sh, (me + 1) % sh.clients, Some(20)).await);
                continue;
            }
        }
        let callee_done = caller || (answered && c.calls.is_empty());
        let my_done = my_done && (caller || c.calls.is_empty());
        if my_done && callee_done && c.pending.is_empty() {
            break;
        }
        match c.next(until).await {
            None => {
                sh.fail(format!(
                    "final round: u{me} ({}) still waiting after {} s",
                    if caller { "caller" } else { "callee" },
                    PATIENCE.as_secs()
                ));
                break;
            }
            Some(Step::Closed(code)) => {
                sh.fail(format!("final round: u{me}'s connection closed ({code:?})"));
                return;
            }
            Some(Step::Frame(f)) => {
                let copy = match &f {
                    In::Invited { call, caller } => (
                        if *caller == Some((me + sh.clients - 1) % sh.clients) {
                            "invited"
                        } else {
                            "stray"
                        },
                        *call,
                        String::new(),
                    ),
                    In::Accepted { call } => ("accepted", *call, String::new()),
                    In::Ended { call, reason } => ("ended", *call, reason.clone()),
                    _ => ("", None, String::new()),
                };
                c.handle(sh, f);
                match copy {
                    ("invited", Some(call), _) if !caller => {
                        answered = true;
                        c.simple(sh, call, "accept").await;
                    }
                    // A churn-time invite still in the socket (its ring may be over).
                    ("invited" | "stray", Some(call), _) => c.simple(sh, call, "hangup").await,
                    ("accepted", Some(call), _) if Some(call) == mine => {
                        connected = true;
                        c.simple(sh, call, "hangup").await;
                    }
                    ("ended", Some(call), reason) if Some(call) == mine && !connected => {
                        sh.suspects.lock().unwrap().push((me + 1) % sh.clients);
                        sh.fail(format!(
                            "final round: u{me} could not call u{}: {reason}",
                            (me + 1) % sh.clients
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(m) = mine {
        let refused = sh
            .calls
            .lock()
            .unwrap()
            .get(&m)
            .and_then(|x| x.refused.clone());
        if let Some(code) = refused {
            sh.fail(format!(
                "final round: u{me}'s invite was refused ({code}): raise the server's limit \
                 with --server-arg instead"
            ));
        } else if connected {
            sh.counts.add("final round: calls connected");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The account

fn check(sh: &Shared) {
    let logs = sh.logs.lock().unwrap();
    let metas = sh.calls.lock().unwrap();
    let by_conn: HashMap<u64, &ConnLog> = logs.iter().map(|l| (l.conn, l)).collect();
    let mut fails = Vec::new();
    let mut fail = |s: String| {
        if fails.len() < 10_000 {
            fails.push(s)
        }
    };
    // A party is a (user, device): a later connection of the same device takes its calls over.
    type Slot = (u32, u8);
    let slot = |l: &ConnLog| (l.user, l.device);
    // First pass: which slots each call rang, and which connections saw anything of it.
    let mut rang: HashMap<u64, Vec<Slot>> = HashMap::new();
    let mut conns_of: HashMap<(u64, Slot), Vec<u64>> = HashMap::new();
    for l in logs.iter() {
        let mut seen_here = std::collections::HashSet::new();
        for (call, ev) in &l.events {
            if let Seen::Invited { .. } = ev {
                rang.entry(*call).or_default().push(slot(l));
            }
            if seen_here.insert(*call) {
                conns_of.entry((*call, slot(l))).or_default().push(l.conn);
            }
        }
    }
    let mut placed_by: HashMap<u64, Vec<u64>> = HashMap::new();
    for (call, m) in metas.iter() {
        placed_by.entry(m.caller_conn).or_default().push(*call);
    }
    let mut received: HashMap<(u64, u64), Vec<u32>> = HashMap::new();
    let mut heard_end: std::collections::HashSet<(u64, u64)> = Default::default();
    // Per call and device: endings, and the rings / resumes that may legitimately follow one
    // (a device replaced while a call rings is told it ended, and rung again when it is back).
    // (connection, 0 ring or resume / 1 ending / 2 ending in a resume's answer, reason)
    type Story = Vec<(u64, u64, String)>;
    let mut slot_story: HashMap<(u64, Slot), Story> = HashMap::new();
    let mut accepted_by: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut leavers: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for l in logs.iter() {
        if l.left == Left::ByUs && l.left_with_calls + l.heard_own_end_on_leave > 0 {
            let e = leavers.entry(l.leave).or_default();
            e.0 += 1;
            e.1 += u64::from(l.left_with_calls == 0);
        }
        let me = slot(l);
        let mut ended_here: HashMap<u64, String> = Default::default();
        let mut resumed: std::collections::HashSet<u64> = Default::default();
        let mut invited_here: std::collections::HashSet<u64> = Default::default();
        for (call, ev) in &l.events {
            let call = *call;
            if let Seen::Refused { .. } = ev {
                continue;
            }
            let Some(m) = metas.get(&call) else {
                fail(format!(
                    "conn {} (u{}): {ev:?} for call k{call}, never placed",
                    l.conn, l.user
                ));
                continue;
            };
            let is_caller = me == (m.caller, m.caller_device);
            let is_callee = l.user == m.callee && rang.get(&call).is_some_and(|r| r.contains(&me));
            let who = format!(
                "conn {} (u{} d{}); the call is u{} d{} -> u{}",
                l.conn, l.user, l.device, m.caller, m.caller_device, m.callee
            );
            if let Some(code) = &m.refused {
                fail(format!(
                    "k{call}: invite refused ({code}) but {who} saw {ev:?}"
                ));
            }
            let repeat = matches!(ev, Seen::Ended { resync: true, reason }
                if ended_here.get(&call) == Some(reason));
            if ended_here.contains_key(&call) && !repeat {
                fail(format!("k{call}: {who} saw {ev:?} after its call_ended"));
            }
            match ev {
                Seen::Invited { caller } => {
                    slot_story
                        .entry((call, me))
                        .or_default()
                        .push((l.conn, 0, "invited".into()));
                    invited_here.insert(call);
                    if l.user != m.callee || *caller != Some(m.caller) {
                        fail(format!(
                            "k{call}: invited (caller {caller:?}) reached {who}"
                        ));
                    }
                }
                Seen::Ringing => {
                    if l.conn != m.caller_conn {
                        fail(format!("k{call}: ringing reached {who}"));
                    }
                }
                Seen::Accepted => {
                    if is_callee && l.user != m.caller {
                        if !invited_here.contains(&call) {
                            fail(format!(
                                "k{call}: accepted reached {who}, never invited there"
                            ));
                        }
                        accepted_by.entry(call).or_default().push(l.conn);
                    } else if l.conn != m.caller_conn {
                        fail(format!("k{call}: accepted reached {who}"));
                    }
                }
                Seen::Refused { .. } => {}
                Seen::Resume { kind } => {
                    if kind == "call_resumed" {
                        resumed.insert(call);
                        slot_story
                            .entry((call, me))
                            .or_default()
                            .push((l.conn, 0, kind.clone()));
                    }
                    if !is_caller && !is_callee {
                        fail(format!("k{call}: {kind} reached {who}, no party"));
                    }
                }
                Seen::Ended { reason, resync } => {
                    if !is_caller && !is_callee {
                        fail(format!(
                            "k{call}: call_ended ({reason}) reached {who}, no party"
                        ));
                    }
                    ended_here.insert(call, reason.clone());
                    heard_end.insert((l.conn, call));
                    slot_story.entry((call, me)).or_default().push((
                        l.conn,
                        1 + u64::from(*resync),
                        reason.clone(),
                    ));
                }
                Seen::Signal {
                    from,
                    seq,
                    payload_ok,
                } => {
                    let peer = if is_caller { m.callee } else { m.caller };
                    if !(is_caller || is_callee) || *from != Some(peer) || !payload_ok {
                        fail(format!(
                            "k{call}: signal from {from:?} (payload ok: {payload_ok}) reached {who}"
                        ));
                    }
                    let v = received.entry((l.conn, call)).or_default();
                    if let (Some(s), Some(last)) = (seq, v.last()) {
                        if s <= last {
                            fail(format!(
                                "k{call}: {who} got seq {s} after {last} (order or duplicate)"
                            ));
                        }
                    }
                    if let Some(s) = seq {
                        v.push(*s);
                    }
                }
            }
        }
        // Every call of a connection that stayed to the end ended for it.
        if l.left == Left::Open {
            let placed = placed_by.get(&l.conn).into_iter().flatten();
            for call in placed.chain(invited_here.iter()).chain(resumed.iter()) {
                let refused = metas.get(call).is_none_or(|m| m.refused.is_some());
                if !refused && !ended_here.contains_key(call) {
                    fail(format!(
                        "k{call}: conn {} (u{}) stayed to the end and never heard call_ended",
                        l.conn, l.user
                    ));
                }
            }
        }
    }
    // One ending per party, across the connections of its device.
    for ((call, (u, d)), story) in slot_story.iter_mut() {
        // Connections of one device follow each other: their IDs are in sign-in order.
        story.sort_by_key(|(conn, _, _)| *conn);
        // (A stable sort: one connection's own events stay in the order it read them.)
        let mut since = 0;
        let mut last: Option<&str> = None;
        for (_, what, reason) in story.iter() {
            let resync_repeat = *what == 2 && last == Some(reason.as_str());
            since = match what {
                0 => 0,
                _ if resync_repeat => since,
                _ => since + 1,
            };
            if *what > 0 {
                last = Some(reason);
            }
            if since > 1 {
                fail(format!(
                    "k{call}: u{u} d{d} heard call_ended twice with no ring or resume between                      (conn, end?, what): {story:?}"
                ));
                break;
            }
        }
    }
    let mut lost_users = Vec::new();
    // A call that rang rang every device of the callee: a connection of the callee signed in
    // before the invite and open to the end must have been invited.
    let mut rang_at_caller: std::collections::HashSet<u64> = Default::default();
    for l in logs.iter() {
        for (call, ev) in &l.events {
            if matches!(ev, Seen::Ringing)
                && metas.get(call).is_some_and(|m| m.caller_conn == l.conn)
            {
                rang_at_caller.insert(*call);
            }
        }
    }
    let mut by_user: HashMap<u32, Vec<&ConnLog>> = HashMap::new();
    for l in logs.iter().filter(|l| l.left == Left::Open) {
        by_user.entry(l.user).or_default().push(l);
    }
    let mut invites_checked = 0u64;
    for call in &rang_at_caller {
        let m = &metas[call];
        for l in by_user.get(&m.callee).into_iter().flatten() {
            if l.login_at >= m.invite_at {
                continue;
            }
            invites_checked += 1;
            let invited = l
                .events
                .iter()
                .any(|(c, ev)| c == call && matches!(ev, Seen::Invited { .. }));
            if !invited {
                lost_users.push(l.user);
                fail(format!(
                    "k{call}: rang (the caller heard ringing) but conn {} of callee u{}, signed in \
                     before the invite and open to the end, was never invited",
                    l.conn, l.user
                ));
            }
        }
    }
    // Every signal the server took reached the device in the call, when that device used one
    // connection for the whole call and kept reading until the call ended.
    let (mut taken_total, mut checked) = (0u64, 0u64);
    for l in logs.iter() {
        for (call, seq) in &l.taken {
            taken_total += 1;
            let Some(m) = metas.get(call) else { continue };
            let target: Option<Slot> = if slot(l) == (m.caller, m.caller_device) {
                // The callee device that accepted, if it was signed in before the invite was
                // sent (so it rang from the start and was sent every signal of the call).
                accepted_by
                    .get(call)
                    .and_then(|v| v.first())
                    .and_then(|c| by_conn.get(c))
                    .filter(|p| p.login_at < m.invite_at)
                    .map(|p| slot(p))
            } else {
                Some((m.caller, m.caller_device))
            };
            let Some(target) = target else { continue };
            let Some([t]) = conns_of.get(&(*call, target)).map(Vec::as_slice) else {
                continue;
            };
            let Some(p) = by_conn.get(t) else { continue };
            if !heard_end.contains(&(*t, *call)) && p.left != Left::Open {
                continue;
            }
            checked += 1;
            if !received.get(&(*t, *call)).is_some_and(|v| v.contains(seq)) {
                lost_users.push(p.user);
                fail(format!(
                    "k{call}: signal seq {seq} from conn {} (u{}) was taken by the server and \
                     never reached conn {t} (u{})",
                    l.conn, l.user, p.user
                ));
            }
        }
    }
    let mut traced: Vec<u32> = sh
        .suspects
        .lock()
        .unwrap()
        .iter()
        .take(2)
        .copied()
        .collect();
    traced.extend(lost_users.iter().take(2));
    if let Ok(trace) = std::env::var("SOAK_TRACE") {
        traced.extend(trace.split(',').filter_map(user_index));
    }
    {
        for u in traced {
            for (call, m) in metas.iter() {
                if m.caller == u || m.callee == u {
                    println!(
                        "trace k{call}: u{} d{} (conn {}) -> u{} at {:?} refused {:?}",
                        m.caller, m.caller_device, m.caller_conn, m.callee, m.invite_at, m.refused
                    );
                }
            }
            for l in logs.iter().filter(|l| l.user == u) {
                println!(
                    "trace conn {} u{} d{} login {:?} left {:?} ({}) events {:?}",
                    l.conn, l.user, l.device, l.login_at, l.left, l.leave, l.events
                );
            }
        }
    }
    println!(
        "soak account: {} calls placed, {} connections ({} invitations held to delivery), {} \
         signals taken by the server ({} held to delivery: the rest went to a party that left)",
        metas.len(),
        logs.len(),
        invites_checked,
        taken_total,
        checked,
    );
    for (how, (n, told)) in &leavers {
        println!(
            "  left by {how} with a live call: {n} (told call_ended for every call while \
             leaving: {told})"
        );
    }
    sh.failures.lock().unwrap().extend(fails);
}

// ---------------------------------------------------------------------------------------------
// The server process

async fn healthz(addr: SocketAddr) -> Option<(u64, u64)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split("\r\n\r\n").nth(1)?;
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    Some((
        v.get("sessions")?.as_u64()?,
        v.get("connections")?.as_u64()?,
    ))
}

/// Runs the soak; `false` on any correctness failure.
pub async fn soak(o: Opts) -> bool {
    let clients = (o.clients.max(2).div_ceil(2) * 2) as u32;
    let seed = o.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut child = None;
    // Missed calls go to the server's real store (SQLite), in a folder removed afterwards.
    let data_dir = std::env::temp_dir().join(format!("tincan-soak-{}", std::process::id()));
    let mut args: Vec<String> = vec![
        "--max-connections".into(),
        "1000000".into(),
        // 2,000 users on a few source addresses, reconnecting: no per-address caps.
        "--max-conns-per-ip".into(),
        "1000000".into(),
        "--max-unauth-per-ip".into(),
        "1000000".into(),
        "--resume-secs".into(),
        o.resume_secs.to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    args.extend(o.server_args.iter().cloned());
    let (addr, pid) = match o.connect {
        Some(a) => (a, o.server_pid),
        None => {
            let exe = std::env::current_exe().expect("own path");
            let bin = o
                .server_bin
                .clone()
                .unwrap_or_else(|| exe.with_file_name("tincan-server"));
            if !bin.exists() {
                println!(
                    "soak: {} not built (cargo build -p tincan-server)",
                    bin.display()
                );
                return false;
            }
            let mut cmd = std::process::Command::new(&bin);
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--sdkappid"])
                .arg(o.sdk_app_id.to_string())
                .args(&args)
                .env("TINCAN_SECRET_KEY", &o.secret_key)
                .env("RUST_LOG", "warn,tincan_server=info")
                .env("NO_COLOR", "1");
            let (c, a) = crate::spawn_server(&mut cmd);
            let pid = c.id();
            child = Some(c);
            (a, Some(pid))
        }
    };
    println!(
        "soak: {clients} clients for {:.0} s against {addr} (server args: {:?}); seed {seed} \
         (--seed {seed} repeats every client's choices; the interleaving is the scheduler's)",
        o.secs,
        if o.connect.is_some() {
            &o.server_args
        } else {
            &args
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = |pid: Option<u32>| pid.map(crate::rss_kb).unwrap_or(0);
    let rss_start = rss(pid);
    let t0 = Instant::now();
    let sh = Arc::new(Shared {
        t0,
        end: t0 + Duration::from_secs_f64(o.secs),
        addr,
        clients,
        sources: o.sources.max(1),
        think_ms: o.think_ms.max(2),
        resume_secs: o.resume_secs,
        sdk_app_id: o.sdk_app_id,
        key: o.secret_key.clone(),
        next_call: AtomicU64::new(0),
        next_conn: AtomicU64::new(0),
        calls: Mutex::default(),
        logs: Mutex::default(),
        counts: Counts::default(),
        failures: Mutex::default(),
        barrier: tokio::sync::Barrier::new(clients as usize),
        suspects: Mutex::default(),
        stop_sampling: AtomicBool::new(false),
    });
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let (sh, peak) = (sh.clone(), peak.clone());
        tokio::spawn(async move {
            while !sh.stop_sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(sh.clone(), i, seed)))
        .collect();
    for t in tasks {
        if t.await.is_err() {
            sh.fail("a client task panicked".into());
        }
    }
    let churn_secs = t0.elapsed().as_secs_f64();
    // Leavers still draining hand their records in within 10 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut health = healthz(addr).await;
    let until = Instant::now() + Duration::from_secs(15);
    while health != Some((0, 0)) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        health = healthz(addr).await;
    }
    if health != Some((0, 0)) {
        sh.fail(format!(
            "after every client left, /healthz says (sessions, connections) = {health:?}, not (0, 0)"
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    sh.stop_sampling.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let rss_end = rss(pid);
    let rss_peak = peak.load(Ordering::Relaxed).max(rss_end);
    // Wait for the last leavers' records (they read for at most 10 s).
    let want = sh.next_conn.load(Ordering::Relaxed) as usize;
    let until = Instant::now() + Duration::from_secs(11);
    while sh.logs.lock().unwrap().len() < want && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(&sh);
    for (k, v) in sh.counts.map.lock().unwrap().iter() {
        println!("  {k}: {v}");
    }
    if pid.is_some() {
        println!(
            "server RSS: start {rss_start} KiB, peak {rss_peak} KiB, end {rss_end} KiB \
             (end - start = {} KiB; {:.0}% of the peak's growth kept)",
            rss_end as i64 - rss_start as i64,
            100.0 * (rss_end.saturating_sub(rss_start)) as f64
                / (rss_peak.saturating_sub(rss_start)).max(1) as f64
        );
    }
    println!("soak took {churn_secs:.1} s (churn, drain and final round)");
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let fails = sh.failures.lock().unwrap();
    if fails.is_empty() {
        println!("soak: PASS (no call ended twice or not at all, no signal lost or misrouted, nobody left busy)");
        true
    } else {
        println!("soak: FAIL, {} problems; the first ones:", fails.len());
        for f in fails.iter().take(30) {
            println!("  {f}");
        }
        // By kind: the text with call IDs, user IDs and numbers taken out.
        let mut kinds: BTreeMap<String, (usize, &str)> = BTreeMap::new();
        for f in fails.iter() {
            let k: String = f
                .split(' ')
                .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                .collect::<Vec<_>>()
                .join(" ");
            kinds
                .entry(k.chars().take(100).collect())
                .or_insert((0, f))
                .0 += 1;
        }
        println!("problems by kind (count, first of the kind):");
        for (n, first) in kinds.values() {
            println!("  {n} × {first}");
        }
        false
    }
}
