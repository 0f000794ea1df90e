//! Micro-benchmarks of the per-frame work on the server's hot paths (issue 12, item 4):
//! UserSig verification (every sign-in), client frame decode (every frame), server frame encode
//! (every answer and event), the relay's fast path (`wire.rs`: every relayed `signal`, against
//! the typed decode + encode it replaced), and the SDP check every relayed description passes.
//!
//! Run: `cargo bench -p tincan-proto --bench proto` (figures in BENCHMARKS.md). CI only builds
//! them (`cargo test -p tincan-proto --benches` runs each once as a test). Inputs are real: a
//! Chromium offer from the SDP corpus, candidates of the shape browsers send.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tincan_proto::sdp::{check_signal, Limits};
use tincan_proto::wire::{decode_signal, inbound_frame};
use tincan_proto::{
    CallId, CallType, ClientMessage, DeviceId, MediaSignal, SecretKey, ServerMessage, SigToken,
    UserId, UserSigKey, PROTOCOL_VERSION,
};

const APP: u64 = 1400000001;
const NOW: u64 = 1_764_000_000;
const OFFER: &str = include_str!("../tests/data/sdp/chromium-156-offer.sdp");
const CANDIDATE: &str =
    "candidate:842163049 1 udp 1677729535 192.0.2.10 49203 typ srflx raddr 0.0.0.0 rport 0";

fn call_id() -> CallId {
    CallId::new("7d1c0b1e-2f7a-4c55-9a35-0b9fb0a8d9f1").unwrap()
}

fn offer() -> MediaSignal {
    MediaSignal::Offer {
        sdp: OFFER.into(),
        ice_restart: false,
    }
}

fn candidate() -> MediaSignal {
    MediaSignal::Candidate {
        candidate: CANDIDATE.into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

fn signal_frame(s: MediaSignal) -> String {
    ClientMessage::Signal {
        call_id: call_id(),
        signal: s,
    }
    .encode()
}

fn usersig(c: &mut Criterion) {
    let key = UserSigKey::new(APP, SecretKey::new("bench-secret-key".into()));
    let alice = UserId::new("alice").unwrap();
    let token = key.gen(&alice, NOW, 86_400, None);
    let mut g = c.benchmark_group("usersig");
    g.bench_function("verify", |b| {
        b.iter(|| key.verify(black_box(&token), "alice", NOW + 60).unwrap())
    });
    g.bench_function("verify_forged", |b| {
        let other = UserSigKey::new(APP, SecretKey::new("another-key".into()));
        b.iter(|| {
            other
                .verify(black_box(&token), "alice", NOW + 60)
                .unwrap_err()
        })
    });
    g.bench_function("gen", |b| {
        b.iter(|| key.gen(black_box(&alice), NOW, 86_400, None))
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let key = UserSigKey::new(APP, SecretKey::new("bench-secret-key".into()));
    let alice = UserId::new("alice").unwrap();
    let login = ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id: APP,
        user_id: alice.clone(),
        user_sig: SigToken(key.gen(&alice, NOW, 86_400, None)),
        device_id: DeviceId::new("laptop-7f3a").unwrap(),
    }
    .encode();
    let invite = ClientMessage::Invite {
        call_id: call_id(),
        callee: UserId::new("bob").unwrap(),
        call_type: CallType::Audio,
        timeout_secs: Some(30),
    }
    .encode();
    let offer = signal_frame(offer());
    let cand = signal_frame(candidate());
    let mut g = c.benchmark_group("client_decode");
    for (name, text) in [
        ("login", &login),
        ("invite", &invite),
        ("signal_offer", &offer),
        ("signal_candidate", &cand),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| ClientMessage::decode(black_box(text)).unwrap())
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let bob = UserId::new("bob").unwrap();
    let invited = ServerMessage::Invited {
        call_id: call_id(),
        caller: bob.clone(),
        call_type: CallType::Audio,
        timeout_secs: 30,
    };
    let ended = ServerMessage::CallEnded {
        call_id: call_id(),
        reason: tincan_proto::EndReason::Hangup,
        by: Some(bob.clone()),
        duration_ms: Some(93_500),
    };
    let offer = ServerMessage::Signal {
        call_id: call_id(),
        from: bob,
        signal: offer(),
    };
    let mut g = c.benchmark_group("server_encode");
    for (name, m) in [
        ("invited", &invited),
        ("call_ended", &ended),
        ("signal_offer", &offer),
    ] {
        g.bench_function(name, |b| b.iter(|| black_box(m).encode()));
    }
    g.finish();
}

/// A relayed signal as the server handles it: the fast path (envelope parsed, payload kept raw,
/// the peer's frame built once) against the typed path it replaced (decode, encode again).
fn relay(c: &mut Criterion) {
    let from = UserId::new("alice").unwrap();
    let mut g = c.benchmark_group("relay");
    for (name, text) in [
        ("offer", signal_frame(offer())),
        ("candidate", signal_frame(candidate())),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("{name}_fast_path"), |b| {
            b.iter(|| {
                let s = decode_signal(black_box(&text)).unwrap();
                inbound_frame(&s.call_id, &from, &s)
            })
        });
        g.bench_function(format!("{name}_typed_path"), |b| {
            b.iter(|| {
                let ClientMessage::Signal { call_id, signal } =
                    ClientMessage::decode(black_box(&text)).unwrap()
                else {
                    unreachable!()
                };
                ServerMessage::Signal {
                    call_id,
                    from: from.clone(),
                    signal,
                }
                .encode()
            })
        });
    }
    g.finish();
}

fn sdp_check(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("sdp_check");
    let o = offer();
    let cand = candidate();
    g.bench_function("offer", |b| {
        b.iter(|| check_signal(black_box(&o), &limits).unwrap())
    });
    g.bench_function("candidate", |b| {
        b.iter(|| check_signal(black_box(&cand), &limits).unwrap())
    });
    g.finish();
}

criterion_group!(benches, usersig, decode, encode, relay, sdp_check);
criterion_main!(benches);
