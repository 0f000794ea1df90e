//! A live call survives a signaling drop ([`ClientSession`], `session::resume`): a connected call is
//! kept (media untouched, "reconnecting" shown, timer running), resumed after signing in again, and
//! what the user did meanwhile (hang-up, mute, an ICE restart's offer) is sent once the server
//! relays again; a refused or timed-out resume ends the call as "connection lost"; the peer's
//! absence is shown and its signals wait for it. Scripted, no sockets: time is an input.

mod common;

use common::*;
use tincan_ipc::session::{Command, Config, Output, Reply};
use tincan_ipc::{AppEvent, CallPhase, ConnectionState};
use tincan_proto::{
    ClientMessage, CloseReason, DeviceId, EndReason, ErrorCode as WireCode, MediaSignal,
    ServerMessage,
};

/// Signed in as alice, in a connected call c1 with bob (alice called), connected at `h.now`.
fn connected() -> H {
    let mut h = H::new();
    h.sign_in("alice");
    h.start_call("c1", "bob");
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c1"),
        by: user("bob"),
    });
    assert_eq!(h.phase(), Some(CallPhase::Connected));
    h.take();
    h
}

fn login_ok_at(me: &str, server_time_ms: u64) -> ServerMessage {
    ServerMessage::LoginOk {
        user_id: user(me),
        device_id: DeviceId::new("test-device").unwrap(),
        server_time_ms,
        heartbeat_secs: 25,
        max_frame_bytes: 65_536,
        max_ring_secs: 120,
        ice_servers: Vec::new(),
        ice_servers_expire_at: None,
    }
}

/// After a drop: wait out the backoff, connect and sign in again; returns what was sent after
/// `login_ok`.
fn reconnect(h: &mut H) -> Vec<ClientMessage> {
    let wait = h.s.poll_timeout().expect("a retry is due") - h.now;
    h.advance(wait);
    assert!(h.take().contains(&Output::PlanLogin));
    h.plan(Ok(plan("alice")));
    h.connected();
    assert!(matches!(h.sent()[..], [ClientMessage::Login { .. }]));
    let at = h.now;
    h.frame(login_ok_at("alice", at));
    h.sent()
}

fn resumed(id: &str) -> ServerMessage {
    ServerMessage::CallResumed {
        call_id: call_id(id),
        peer: user("bob"),
        connected_at_ms: 0,
    }
}

fn signal(s: MediaSignal) -> Command {
    Command::Signal {
        call_id: call_id("c1"),
        signal: s,
    }
}

fn candidate(c: &str) -> MediaSignal {
    MediaSignal::Candidate {
        candidate: c.into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

#[test]
fn a_drop_keeps_a_connected_call_and_resumes_it_after_signing_in_again() {
    let mut h = connected();
    let connected_at = h.call().unwrap().connected_at_ms.unwrap();
    h.advance(5_000);
    h.disconnected(None);
    let ev = h.events();
    // The call stays connected (the media is not touched), marked "reconnecting", timer unchanged.
    let AppEvent::Call { call: Some(c) } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(c.phase, CallPhase::Connected);
    assert!(c.reconnecting && !c.peer_reconnecting);
    assert_eq!(c.connected_at_ms, Some(connected_at));
    assert!(c.ended.is_none());
    assert!(matches!(
        ev[1],
        AppEvent::Connection {
            state: ConnectionState::Reconnecting { attempt: 1, .. }
        }
    ));
    // Failed attempts back off, but never beyond 2 s while a call is held (the server's grace
    // period is 30 s by default).
    for _ in 0..6 {
        let wait = h.s.poll_timeout().unwrap() - h.now;
        assert!(wait <= 2_000, "{wait}");
        h.advance(wait);
        h.plan(Ok(plan("alice")));
        h.disconnected(None);
    }
    assert_eq!(h.phase(), Some(CallPhase::Connected));
    // Signed in again: the call is announced, in the server's clock (login_ok's server_time_ms
    // said the server's clock equals ours here, as the first login did: 0 - 1_000_000 offset).
    let sent = reconnect(&mut h);
    let [ClientMessage::ResumeCall {
        call_id: id,
        peer,
        connected_at_ms,
    }] = &sent[..]
    else {
        panic!("{sent:?}")
    };
    assert_eq!((id.as_str(), peer.as_str()), ("c1", "bob"));
    // The first login said server_time_ms 0 at local 1_000_000: the server's clock is 1_000_000
    // behind ours.
    assert_eq!(*connected_at_ms, connected_at - 1_000_000);
    // Still reconnecting until the server confirms.
    assert!(h.call().unwrap().reconnecting);
    h.take();
    h.frame(resumed("c1"));
    let c = h.call().unwrap();
    assert!(!c.reconnecting);
    assert_eq!(c.phase, CallPhase::Connected);
    assert_eq!(c.connected_at_ms, Some(connected_at));
    // And the call works as before: hang-up is sent at once.
    let id = h.cmd(Command::Hangup {
        call_id: call_id("c1"),
    });
    assert_eq!(h.ok(id), Reply::Done);
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Hangup {
            call_id: call_id("c1")
        }]
    );
}

#[test]
fn a_hang_up_while_away_ends_the_call_at_once_and_is_sent_after_the_resume() {
    let mut h = connected();
    h.disconnected(None);
    h.take();
    let id = h.cmd(Command::Hangup {
        call_id: call_id("c1"),
    });
    assert_eq!(h.ok(id), Reply::Done);
    // Ended here now: the driver's media stops on this event.
    let c = h.call().unwrap();
    assert_eq!(c.phase, CallPhase::Ended);
    assert!(!c.reconnecting);
    assert_eq!(c.ended.as_ref().unwrap().reason, Some(EndReason::Hangup));
    assert!(h.sent().is_empty());
    // Signed in again: resume first (the server would refuse a hang-up from a connection the call
    // is not attached to), the hang-up once it is confirmed.
    let sent = reconnect(&mut h);
    assert!(
        matches!(sent[..], [ClientMessage::ResumeCall { .. }]),
        "{sent:?}"
    );
    h.frame(resumed("c1"));
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Hangup {
            call_id: call_id("c1")
        }]
    );
    // The server's ending brings the duration it measured; the call stays ended with its reason.
    h.frame(ended("c1", EndReason::Hangup, Some("alice"), Some(12_000)));
    let c = h.call().unwrap();
    assert_eq!(c.ended.as_ref().unwrap().reason, Some(EndReason::Hangup));
    assert!(c.ended.unwrap().message.contains("0:12"));
}

#[test]
fn signals_and_mute_made_while_away_are_sent_in_order_after_the_resume() {
    let mut h = connected();
    h.disconnected(None);
    h.take();
    // The old negotiation's leftovers, then an ICE restart (new local address), then mute.
    for s in [
        candidate("old-1"),
        MediaSignal::EndOfCandidates,
        MediaSignal::Offer {
            sdp: "restart".into(),
            ice_restart: true,
        },
        candidate("new-1"),
    ] {
        let id = h.cmd(signal(s));
        assert_eq!(h.ok(id), Reply::Done, "kept, not refused");
    }
    let m = h.cmd(Command::SetMuted { muted: true });
    assert_eq!(h.ok(m), Reply::Done);
    assert!(h.call().unwrap().muted, "the view changes at once");
    assert!(h.sent().is_empty());
    let sent = reconnect(&mut h);
    assert!(matches!(sent[..], [ClientMessage::ResumeCall { .. }]));
    // Nothing but the resume goes out before the server confirms it.
    let c2 = h.cmd(signal(candidate("new-2")));
    assert_eq!(h.ok(c2), Reply::Done);
    assert!(h.sent().is_empty());
    h.frame(resumed("c1"));
    let got: Vec<MediaSignal> = h
        .sent()
        .into_iter()
        .map(|m| match m {
            ClientMessage::Signal { call_id: c, signal } if c.as_str() == "c1" => signal,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            MediaSignal::Offer {
                sdp: "restart".into(),
                ice_restart: true,
            },
            candidate("new-1"),
            MediaSignal::Mute { muted: true },
            candidate("new-2"),
        ]
    );
    // Afterwards signals go straight out again.
    h.cmd(signal(candidate("new-3")));
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn a_refused_resume_ends_the_call_as_connection_lost() {
    // The server forgot the call (its grace ran out): unknown_call.
    let mut h = connected();
    h.disconnected(None);
    reconnect(&mut h);
    h.take();
    h.frame(ServerMessage::error(
        WireCode::UnknownCall,
        "no such call",
        Some(call_id("c1")),
    ));
    let c = h.call().unwrap();
    assert_eq!(c.phase, CallPhase::Ended);
    assert_eq!(
        c.ended.as_ref().unwrap().reason,
        Some(EndReason::ConnectionLost)
    );
    assert!(!c.reconnecting);
    // The refusal is about this call: no extra error banner.
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, AppEvent::Error { .. })));
    // The ending itself (the resync) is the same.
    let mut h = connected();
    h.disconnected(Some(CloseReason::ServerShutdown));
    reconnect(&mut h);
    h.frame(ended("c1", EndReason::ConnectionLost, None, Some(40_000)));
    let c = h.call().unwrap();
    assert_eq!(c.phase, CallPhase::Ended);
    assert_eq!(
        c.ended.as_ref().unwrap().reason,
        Some(EndReason::ConnectionLost)
    );
    // Nothing is held any more: a later drop has no call to resume.
    h.disconnected(None);
    assert!(reconnect(&mut h).is_empty());
}

#[test]
fn a_call_not_resumed_within_the_window_ends_here() {
    let mut h = H::with(Config {
        resume_window_ms: 20_000,
        ..Config::default()
    });
    h.sign_in("alice");
    h.frame(invited("c1", "bob"));
    h.cmd(Command::Accept {
        call_id: call_id("c1"),
    });
    h.frame(ServerMessage::Accepted {
        call_id: call_id("c1"),
        by: user("alice"),
    });
    assert_eq!(h.phase(), Some(CallPhase::Connected));
    h.disconnected(None);
    // The server stays unreachable.
    for _ in 0..20 {
        if h.phase() == Some(CallPhase::Ended) {
            break;
        }
        let wait = h.s.poll_timeout().unwrap() - h.now;
        h.advance(wait);
        h.plan(Ok(plan("alice")));
        h.disconnected(None);
    }
    let c = h.call().unwrap();
    assert_eq!(c.phase, CallPhase::Ended);
    assert_eq!(
        c.ended.as_ref().unwrap().reason,
        Some(EndReason::ConnectionLost)
    );
    // Reconnecting goes on (the user is still signed in), but nothing is resumed.
    assert_eq!(h.s.snapshot().user, Some(user("alice")));
    assert!(reconnect(&mut h).is_empty());
}

#[test]
fn the_peers_absence_is_shown_and_signals_wait_for_its_return() {
    let mut h = connected();
    h.frame(ServerMessage::PeerReconnecting {
        call_id: call_id("c1"),
        peer: user("bob"),
        grace_secs: 30,
    });
    let c = h.call().unwrap();
    assert!(c.peer_reconnecting && !c.reconnecting);
    assert_eq!(c.phase, CallPhase::Connected);
    // This side's ICE restart while the peer is away: kept (the server would refuse to relay it,
    // peer_absent), not lost.
    let id = h.cmd(signal(MediaSignal::Offer {
        sdp: "restart".into(),
        ice_restart: true,
    }));
    assert_eq!(h.ok(id), Reply::Done);
    assert!(h.sent().is_empty());
    // A peer_absent refusal of a signal that crossed the peer's drop is not an error to show.
    h.frame(ServerMessage::error(
        WireCode::PeerAbsent,
        "peer away",
        Some(call_id("c1")),
    ));
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, AppEvent::Error { .. })));
    assert_eq!(h.phase(), Some(CallPhase::Connected));
    h.frame(ServerMessage::PeerReconnected {
        call_id: call_id("c1"),
        peer: user("bob"),
    });
    assert!(!h.call().unwrap().peer_reconnecting);
    assert_eq!(
        h.sent(),
        vec![ClientMessage::Signal {
            call_id: call_id("c1"),
            signal: MediaSignal::Offer {
                sdp: "restart".into(),
                ice_restart: true,
            },
        }]
    );
    // The peer giving up for good: the server's connection_lost ends the call.
    h.frame(ServerMessage::PeerReconnecting {
        call_id: call_id("c1"),
        peer: user("bob"),
        grace_secs: 30,
    });
    h.frame(ended("c1", EndReason::ConnectionLost, None, Some(9_000)));
    let c = h.call().unwrap();
    assert_eq!(c.phase, CallPhase::Ended);
    assert!(!c.peer_reconnecting);
    assert_eq!(
        c.ended.unwrap().message,
        "The connection was lost. The call lasted 0:09."
    );
}

#[test]
fn both_away_after_a_server_restart_waits_for_the_peer_too() {
    // After a restart the first party back is told the peer has not claimed yet, then resumed
    // (docs/PROTOCOL.md, "After a server restart"): what was kept waits for the peer.
    let mut h = connected();
    h.disconnected(Some(CloseReason::ServerShutdown));
    h.cmd(signal(candidate("x")));
    reconnect(&mut h);
    h.frame(ServerMessage::PeerReconnecting {
        call_id: call_id("c1"),
        peer: user("bob"),
        grace_secs: 30,
    });
    h.frame(resumed("c1"));
    let c = h.call().unwrap();
    assert!(!c.reconnecting && c.peer_reconnecting);
    assert!(h.sent().is_empty(), "nothing is relayed to an absent peer");
    h.cmd(signal(candidate("y")));
    assert!(h.sent().is_empty());
    h.frame(ServerMessage::PeerReconnected {
        call_id: call_id("c1"),
        peer: user("bob"),
    });
    let got: Vec<_> = h.sent();
    assert_eq!(
        got,
        vec![
            ClientMessage::Signal {
                call_id: call_id("c1"),
                signal: candidate("x"),
            },
            ClientMessage::Signal {
                call_id: call_id("c1"),
                signal: candidate("y"),
            },
        ]
    );
    assert!(!h.call().unwrap().peer_reconnecting);

    // The other order (a server that answers call_resumed first) sends what was kept at once.
    let mut h = connected();
    h.disconnected(Some(CloseReason::ServerShutdown));
    h.cmd(signal(candidate("x")));
    reconnect(&mut h);
    h.frame(resumed("c1"));
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn a_drop_before_the_resume_is_answered_asks_again() {
    let mut h = connected();
    h.disconnected(None);
    assert!(matches!(
        reconnect(&mut h)[..],
        [ClientMessage::ResumeCall { .. }]
    ));
    h.disconnected(None);
    assert!(h.call().unwrap().reconnecting);
    assert!(matches!(
        reconnect(&mut h)[..],
        [ClientMessage::ResumeCall { .. }]
    ));
    h.frame(resumed("c1"));
    assert!(!h.call().unwrap().reconnecting);
}

#[test]
fn signing_out_or_being_kicked_during_a_held_call_ends_it_for_good() {
    let mut h = connected();
    h.disconnected(None);
    h.cmd(Command::SignOut);
    let c = h.call().unwrap();
    assert_eq!(c.phase, CallPhase::Ended);
    assert_eq!(h.s.poll_timeout(), None);
    // A kick on the new connection, before the resume was answered.
    let mut h = connected();
    h.disconnected(None);
    reconnect(&mut h);
    h.frame(ServerMessage::KickedOffline {
        reason: CloseReason::KickedOffline,
    });
    assert_eq!(h.phase(), Some(CallPhase::Ended));
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn a_connection_that_dies_silently_is_noticed_and_the_call_kept() {
    // A Wi-Fi hand-over leaves the old TCP connection open but dead: nothing arrives, nothing
    // fails. During a call pings go every 5 s, and an unanswered one gives the connection up.
    let mut h = connected();
    h.auto_pong = false;
    let start = h.now;
    let mut waited = 0;
    while h.call().is_some_and(|c| !c.reconnecting) && waited < 60_000 {
        h.advance(500);
        waited += 500;
    }
    let out = h.take();
    assert!(out.contains(&Output::Close), "{out:?}");
    let pings = out
        .iter()
        .filter(|o| matches!(o, Output::Send(ClientMessage::Ping { .. })))
        .count();
    assert_eq!(pings, 1, "{out:?}");
    assert!(
        h.now - start <= 10_000,
        "noticed after {} ms",
        h.now - start
    );
    let c = h.call().unwrap();
    assert_eq!(c.phase, CallPhase::Connected);
    assert!(c.reconnecting);
    // And it is resumed like any other drop.
    h.auto_pong = true;
    assert!(matches!(
        reconnect(&mut h)[..],
        [ClientMessage::ResumeCall { .. }]
    ));

    // Without a call the interval is the server's (20 s for heartbeat_secs 25): noticed within 40 s.
    let mut h = H::new();
    h.sign_in("alice");
    h.auto_pong = false;
    h.advance(39_999);
    assert_eq!(h.connection(), ConnectionState::Online);
    h.advance(1);
    assert!(matches!(
        h.connection(),
        ConnectionState::Reconnecting { attempt: 1, .. }
    ));
    // A live server's pongs keep it up for good.
    let mut h = connected();
    h.advance(120_000);
    assert_eq!(h.connection(), ConnectionState::Online);
    assert!(!h.call().unwrap().reconnecting);
}
