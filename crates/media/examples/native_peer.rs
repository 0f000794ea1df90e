//! A native tincan peer for interop tests: signs in to a tincan-server, calls (or answers) a user,
//! carries the call's audio with the native engine, and reports what it hears as JSON lines.
//!
//! ```text
//! native_peer --server ws://127.0.0.1:7480/ws --sdkappid N --user native --dev-sig http://127.0.0.1:7480 \
//!     (--call bob | --answer) --tone 440 --expect 1000 [--seconds 20]
//! ```
//! Exit status 0 when the expected tone was heard steadily, 1 otherwise. The secret key never
//! appears here: the sig comes from `--sig` or the server's `--dev-issue-sigs` endpoint.
//! Over TLS: `--server wss://host:port/ws [--ca-file ca.pem] --sig SIG` (the app's own connector;
//! `--dev-sig` is plain http only).
//! TURN: the servers the server issues (`login_ok` / `ice_servers`) are used, plus
//! `--ice-servers-json '[{"urls":[...],"username":..,"credential":..}]'`; `--relay-only` is the
//! app's privacy switch. Once a second it prints `{"event":"route","kind":"direct|relay",
//! "local_type":..,"remote_type":..,"protocol":"udp|tcp","relay_protocol":"udp|tcp"|null}` when
//! the selected candidate pair changes.

/// The desktop app's signaling connector, the very file it uses: `wss://` verified with rustls
/// (platform trust store plus an optional CA file), `ws://` refused off loopback. Compiled in here so
/// the two-host test (tests/net) proves the app's connection path, not a copy of it.
#[path = "../../../src-tauri/src/transport.rs"]
#[allow(dead_code)]
mod transport;

/// What transport.rs takes from the app's `credentials` module: the embedded-server challenge's
/// nonce (unused here: this peer never dials the app's embedded server, but the file compiles whole).
mod credentials {
    pub fn random_hex(bytes: usize) -> String {
        use rand::RngCore;
        let mut buf = vec![0u8; bytes];
        rand::thread_rng().fill_bytes(&mut buf);
        buf.iter().map(|b| format!("{b:02x}")).collect()
    }
}

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tincan_media::{
    AudioInput, AudioOutput, EngineConfig, EngineEvent, IceSource, IceUrls, MediaSession, Role,
};
use tincan_proto::{
    CallId, ClientMessage, DeviceId, IceServer, MediaSignal, ServerMessage, SigToken, UserId,
    PROTOCOL_VERSION,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    server: String,
    #[arg(long)]
    sdkappid: u64,
    #[arg(long)]
    user: UserId,
    /// A UserSig for `--user`.
    #[arg(long)]
    sig: Option<String>,
    /// Base URL of a server running with --dev-issue-sigs, to fetch a sig from.
    #[arg(long)]
    dev_sig: Option<String>,
    /// Call this user.
    #[arg(long)]
    call: Option<UserId>,
    /// Answer the first incoming call.
    #[arg(long)]
    answer: bool,
    /// Accept this long after the call rings, ms.
    #[arg(long, default_value_t = 300)]
    answer_delay_ms: u64,
    /// The tone this peer sends, Hz.
    #[arg(long)]
    tone: f64,
    /// The tone this peer expects to hear, Hz.
    #[arg(long)]
    expect: f64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Hang up once the expected tone was heard steadily.
    #[arg(long)]
    hang_up: bool,
    /// Test only: change the `a=fingerprint` of every offer / answer received before the engine
    /// sees it, as an attacker on the signaling path would; the engine must then refuse the
    /// peer's DTLS certificate (`media_not_verified`) and carry no audio.
    #[arg(long)]
    tamper_remote_fingerprint: bool,
    /// Trust the CA certificates of this PEM file for `wss://` (as the app's Settings field; the
    /// TINCAN_CA_FILE environment variable wins, as in the app).
    #[arg(long)]
    ca_file: Option<String>,
    /// Relay-only privacy mode (the app's Settings switch): TURN relays only, no host or
    /// server-reflexive candidate sent.
    #[arg(long)]
    relay_only: bool,
    /// ICE servers as the app's Settings hold them: a JSON list of W3C `RTCIceServer`s
    /// (`[{"urls":["turn:h:3478?transport=udp"],"username":"u","credential":"p"}]`). The ones the
    /// server issues (`login_ok`, `ice_servers`) are used first, as in the app.
    #[arg(long)]
    ice_servers_json: Option<String>,
    /// Restrict ICE to this local address (repeatable; tests with a TURN server on loopback).
    #[arg(long)]
    ice_local_address: Vec<String>,
}

/// The ICE candidates an SDP carries (`a=candidate:` lines), to report what crosses.
fn sdp_candidates(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .collect()
}

/// Reports the candidates of a signal sent or received (`dir`), for tests that check where media
/// may flow.
fn report_candidates(dir: &str, signal: &MediaSignal) {
    let found: Vec<&str> = match signal {
        MediaSignal::Offer { sdp, .. } | MediaSignal::Answer { sdp } => sdp_candidates(sdp),
        MediaSignal::Candidate { candidate, .. } => vec![candidate.as_str()],
        _ => Vec::new(),
    };
    if !found.is_empty() {
        report(serde_json::json!({"event": "candidates", "dir": dir, "candidates": found}));
    }
}

/// Another certificate's fingerprint in place of each `a=fingerprint` (first byte changed).
fn tamper_fingerprint(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| match line.strip_prefix("a=fingerprint:") {
            Some(rest) => {
                let (hash, digest) = rest.split_once(' ').unwrap_or((rest, ""));
                let first = u8::from_str_radix(digest.get(..2).unwrap_or("00"), 16).unwrap_or(0);
                format!(
                    "a=fingerprint:{hash} {:02X}{}",
                    first ^ 0x5a,
                    digest.get(2..).unwrap_or("")
                )
            }
            None => line.to_owned(),
        })
        .collect()
}

/// The engine error's stable code, as the desktop app maps it (`NativeMediaErrorCode`).
fn error_code(e: &tincan_media::MediaError) -> &'static str {
    use tincan_media::MediaError as E;
    match e {
        E::NotVerified(_) => "media_not_verified",
        E::ConnectionLost => "connection_lost",
        E::PeerUnreachable => "peer_unreachable",
        E::MissingPlugins(_) => "missing_plugins",
        E::NoMicrophone(_) => "no_microphone",
        E::BadRemoteDescription(_) | E::Negotiation(_) => "negotiation",
        E::NoRelay => "relay_unavailable",
        _ => "pipeline",
    }
}

/// Prints one JSON line, stamped with milliseconds since the process started (`t_ms`), so a test
/// can see where the time between accept and first audio goes.
fn report(mut v: serde_json::Value) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
    if let Some(o) = v.as_object_mut() {
        o.insert("t_ms".into(), t.into());
    }
    println!("{v}");
}

/// Fetches a sig from `/dev/usersig` with a bare HTTP/1.1 request (test harness; no TLS).
async fn dev_sig(base: &str, user: &UserId) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&host)
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(
        format!(
            "GET /dev/usersig?user={user} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    tcp.read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    let body = text.split("\r\n\r\n").nth(1).ok_or("no HTTP body")?;
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    v["user_sig"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no user_sig in {body}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // The engine's log (RUST_LOG, e.g. tincan_media=debug) goes to stderr; stdout is the JSON lines.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    match run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            report(serde_json::json!({"event": "error", "message": e}));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    tincan_media::check_plugins().map_err(|e| e.to_string())?;
    // As an app does long before its first call (the DTLS key, the plugins).
    tincan_media::warm_up_blocking();
    let sig = match (&args.sig, &args.dev_sig) {
        (Some(s), _) => s.clone(),
        (None, Some(base)) => dev_sig(base, &args.user).await?,
        (None, None) => return Err("give --sig or --dev-sig".into()),
    };
    // The app's connector (Nagle off there too); its error codes are reported as the app's IPC has them.
    let tls = transport::TlsOptions::from_env_or(args.ca_file.as_deref());
    let ws = match transport::connect(&args.server, &tls).await {
        Ok(ws) => ws,
        Err(e) => {
            let code = serde_json::to_value(e.code()).unwrap_or_default();
            report(
                serde_json::json!({"event": "connect_failed", "code": code, "message": e.to_string()}),
            );
            return Err(e.to_string());
        }
    };
    report(serde_json::json!({"event": "connected", "tls": args.server.starts_with("wss://")}));
    let (mut tx, mut rx) = ws.split();
    let send = |m: ClientMessage| Message::Text(m.encode().into());
    tx.send(send(ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id: args.sdkappid,
        user_id: args.user.clone(),
        user_sig: SigToken(sig),
        device_id: DeviceId::new("native-peer").map_err(|e| e.to_string())?,
    }))
    .await
    .map_err(|e| e.to_string())?;

    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<EngineEvent>();
    let configured: Vec<IceServer> = match &args.ice_servers_json {
        Some(j) => serde_json::from_str(j).map_err(|e| format!("--ice-servers-json: {e}"))?,
        None => Vec::new(),
    };
    // The server's list, newest first at every pipe (as the app's backend keeps it).
    let issued: Arc<Mutex<Vec<IceServer>>> = Arc::default();
    let ice_source = {
        let issued = issued.clone();
        IceSource(Arc::new(move || {
            let mut urls = IceUrls::default();
            let issued = issued.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for s in issued.iter().chain(&configured) {
                urls.push_server(&s.urls, s.username.as_deref(), s.credential.as_deref());
            }
            urls
        }))
    };
    let config = EngineConfig {
        input: AudioInput::Tone { hz: args.tone },
        output: AudioOutput::Measure,
        echo_cancellation: false,
        ice_source: Some(ice_source),
        relay_only: args.relay_only,
        local_addresses: args.ice_local_address.clone(),
        ..EngineConfig::default()
    };
    let start_engine = |role| {
        let ev_tx = ev_tx.clone();
        MediaSession::start(&config, role, move |e| {
            let _ = ev_tx.send(e);
        })
        .map_err(|e| {
            report(serde_json::json!({"event": "engine_error", "code": error_code(&e), "message": e.to_string()}));
            e.to_string()
        })
    };
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_route: Option<serde_json::Value> = None;

    let mut call_id: Option<CallId> = None;
    let mut engine: Option<MediaSession> = None;
    let mut connected = false;
    let mut accept_at: Option<tokio::time::Instant> = None;
    let mut accepted_at: Option<Instant> = None;
    let mut restarted_at: Option<Instant> = None;
    let mut streak = 0u32;
    let mut heard = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);

    loop {
        let accept_timer = async {
            match accept_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            _ = stats_tick.tick() => {
                if let Some(e) = &engine {
                    e.request_stats();
                }
            }
            () = accept_timer => {
                accept_at = None;
                if let Some(id) = &call_id {
                    tx.send(send(ClientMessage::Accept { call_id: id.clone() })).await.map_err(|e| e.to_string())?;
                }
            }
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { return Err("server closed the connection".into()) };
                let Message::Text(text) = frame else { continue };
                let msg = ServerMessage::decode(text.as_str()).map_err(|e| e.to_string())?;
                match msg {
                    ServerMessage::IceServers { ice_servers, .. } => {
                        report(serde_json::json!({"event": "ice_servers", "count": ice_servers.len()}));
                        *issued.lock().unwrap_or_else(|e| e.into_inner()) = ice_servers;
                    }
                    ServerMessage::LoginOk { ice_servers, .. } => {
                        report(serde_json::json!({"event": "ice_servers", "count": ice_servers.len()}));
                        *issued.lock().unwrap_or_else(|e| e.into_inner()) = ice_servers;
                        report(serde_json::json!({"event": "signed_in", "user": args.user}));
                        if let Some(peer) = &args.call {
                            let id = CallId::new(format!("native-{}", std::process::id())).map_err(|e| e.to_string())?;
                            call_id = Some(id.clone());
                            tx.send(send(ClientMessage::Invite { call_id: id, callee: peer.clone(), call_type: Default::default(), timeout_secs: Some(30) }))
                                .await.map_err(|e| e.to_string())?;
                        }
                    }
                    ServerMessage::Ringing { .. } => {
                        report(serde_json::json!({"event": "ringing"}));
                        // The offer travels while the callee rings.
                        engine = Some(start_engine(Role::Offerer)?);
                    }
                    ServerMessage::Invited { call_id: id, caller, .. } if args.answer && call_id.is_none() => {
                        report(serde_json::json!({"event": "invited", "caller": caller}));
                        call_id = Some(id);
                        accept_at = Some(tokio::time::Instant::now() + Duration::from_millis(args.answer_delay_ms));
                        // Ready while ringing (microphone closed): accepting only answers.
                        engine = Some(start_engine(Role::Answerer)?);
                    }
                    ServerMessage::Accepted { .. } => {
                        connected = true;
                        accepted_at = Some(Instant::now());
                        report(serde_json::json!({"event": "accepted"}));
                        if let Some(e) = &engine {
                            e.accept().map_err(|e| e.to_string())?;
                        }
                    }
                    ServerMessage::Signal { mut signal, .. } => {
                        if args.tamper_remote_fingerprint {
                            signal = match signal {
                                MediaSignal::Offer { sdp, ice_restart } => MediaSignal::Offer { sdp: tamper_fingerprint(&sdp), ice_restart },
                                MediaSignal::Answer { sdp } => MediaSignal::Answer { sdp: tamper_fingerprint(&sdp) },
                                other => other,
                            };
                        }
                        report_candidates("received", &signal);
                        if let MediaSignal::Offer { ice_restart, .. } = &signal {
                            report(serde_json::json!({"event": "offer_received", "ice_restart": ice_restart}));
                        }
                        if let Some(e) = &engine {
                            e.apply_remote(&signal).map_err(|e| e.to_string())?;
                        }
                    }
                    ServerMessage::CallEnded { reason, duration_ms, .. } => {
                        report(serde_json::json!({"event": "call_ended", "reason": reason, "duration_ms": duration_ms}));
                        break;
                    }
                    ServerMessage::Error { code, message, .. } => {
                        report(serde_json::json!({"event": "server_error", "code": code, "message": message}));
                    }
                    _ => {}
                }
            }
            Some(ev) = ev_rx.recv() => match ev {
                EngineEvent::Signal(signal) => {
                    let sdp_kind = match &signal {
                        MediaSignal::Offer { .. } => Some("offer"),
                        MediaSignal::Answer { .. } => Some("answer"),
                        _ => None,
                    };
                    report_candidates("sent", &signal);
                    if let Some(kind) = sdp_kind {
                        report(serde_json::json!({"event": "sdp_sent", "kind": kind}));
                    }
                    if let Some(id) = &call_id {
                        if connected || args.call.is_some() {
                            tx.send(send(ClientMessage::Signal { call_id: id.clone(), signal })).await.map_err(|e| e.to_string())?;
                        }
                    }
                }
                EngineEvent::RemoteAudioStarted => {
                    let after = accepted_at.map(|t| t.elapsed().as_millis() as u64);
                    let after_restart = restarted_at.map(|t| t.elapsed().as_millis() as u64);
                    report(serde_json::json!({"event": "first_audio", "after_accept_ms": after, "after_restart_ms": after_restart}));
                }
                EngineEvent::IceRestart { restarts } => {
                    restarted_at = Some(Instant::now());
                    // What is heard from now on is heard over the new connection.
                    heard = false;
                    streak = 0;
                    report(serde_json::json!({"event": "ice_restart", "restarts": restarts}));
                }
                EngineEvent::RemotePeak { hz, db } => {
                    if db > -60.0 && (hz - args.expect).abs() < args.expect * 0.05 {
                        streak += 1;
                    } else {
                        streak = 0;
                    }
                    if streak == 5 && !heard {
                        heard = true;
                        report(serde_json::json!({"event": "heard", "hz": hz, "db": db}));
                        if args.hang_up {
                            if let Some(id) = &call_id {
                                tx.send(send(ClientMessage::Hangup { call_id: id.clone() })).await.map_err(|e| e.to_string())?;
                            }
                        }
                    }
                }
                EngineEvent::Stats(s) => {
                    let route = s.route.map(|r| serde_json::json!({
                        "event": "route",
                        "kind": if r.relayed() { "relay" } else { "direct" },
                        "local_type": r.local.as_str(),
                        "remote_type": r.remote.as_str(),
                        "protocol": r.protocol.as_str(),
                        "relay_protocol": r.relay_protocol.map(|t| t.as_str()),
                    }));
                    if route.is_some() && route != last_route {
                        if let Some(r) = &route {
                            report(r.clone());
                        }
                        last_route = route;
                    }
                }
                EngineEvent::IceState(s) => report(serde_json::json!({"event": "ice", "state": format!("{s:?}")})),
                EngineEvent::Error(e) => {
                    // As the app does: a failure the call cannot survive ends it.
                    report(serde_json::json!({"event": "engine_error", "code": error_code(&e), "message": e.to_string()}));
                    if let Some(id) = &call_id {
                        let _ = tx.send(send(ClientMessage::Hangup { call_id: id.clone() })).await;
                    }
                    if let Some(engine) = engine.take() {
                        engine.stop();
                    }
                    return Err(e.to_string());
                }
                _ => {}
            },
        }
    }
    if let Some(e) = engine {
        e.stop();
    }
    report(serde_json::json!({"event": "result", "heard_expected": heard}));
    Ok(heard)
}
