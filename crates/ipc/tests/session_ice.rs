//! The ICE servers the signaling server issues (issue 14), through the client machine with
//! scripted frames: kept and told to the UI at `login_ok` (before "online"), replaced by each
//! `ice_servers` refresh, kept through a lost connection (a held call may restart ICE), cleared
//! at sign-out; a server with none configured adds no event at all.

mod common;

use common::*;
use tincan_ipc::session::{Command, Output};
use tincan_ipc::{AppEvent, ConnectionState, IceServer};
use tincan_proto::{ClientMessage, DeviceId, ServerMessage};

fn servers(expiry: u64) -> Vec<IceServer> {
    vec![
        IceServer::stun(vec!["stun:turn.example.org:3478".into()]),
        IceServer {
            urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            username: Some(format!("{expiry}:alice")),
            credential: Some(format!("secret-for-{expiry}")),
        },
    ]
}

fn login_ok_with(expiry: u64) -> ServerMessage {
    ServerMessage::LoginOk {
        user_id: user("alice"),
        device_id: DeviceId::new("test-device").unwrap(),
        server_time_ms: 0,
        heartbeat_secs: 25,
        max_frame_bytes: 65_536,
        max_ring_secs: 120,
        ice_servers: servers(expiry),
        ice_servers_expire_at: Some(expiry),
    }
}

fn ice_event(expiry: u64) -> AppEvent {
    AppEvent::IceServers {
        ice_servers: servers(expiry),
        expires_at: Some(expiry),
    }
}

/// Connects and sends `login` (after a sign-in command or a reconnect's backoff).
fn up_to_login(h: &mut H) {
    assert!(h.take().contains(&Output::PlanLogin));
    h.plan(Ok(plan("alice")));
    assert_eq!(h.take(), vec![Output::Connect { url: URL.into() }]);
    h.connected();
    assert!(matches!(h.sent()[..], [ClientMessage::Login { .. }]));
}

#[test]
fn login_ok_then_refreshes_then_sign_out() {
    let mut h = H::new();
    h.cmd(Command::SignIn);
    up_to_login(&mut h);
    h.frame(login_ok_with(1000));
    let events = h.events();
    let ice = events.iter().position(|e| *e == ice_event(1000));
    let online = events.iter().position(|e| {
        *e == AppEvent::Connection {
            state: ConnectionState::Online,
        }
    });
    assert!(
        ice.is_some() && ice < online,
        "the servers come before online: {events:?}"
    );
    assert_eq!(h.s.ice_servers(), &servers(1000)[..]);
    assert_eq!(h.s.ice_servers_expire_at(), Some(1000));

    // A refresh replaces the list.
    h.frame(ServerMessage::IceServers {
        ice_servers: servers(2000),
        expires_at: 2000,
    });
    assert_eq!(h.events(), vec![ice_event(2000)]);
    assert_eq!(h.s.ice_servers(), &servers(2000)[..]);

    // A lost connection keeps it; signing in again with the same list says nothing new, with a
    // new one tells it.
    h.disconnected(None);
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, AppEvent::IceServers { .. })));
    assert_eq!(h.s.ice_servers(), &servers(2000)[..]);
    h.advance(20_000);
    up_to_login(&mut h);
    h.frame(login_ok_with(2000));
    assert!(!h
        .events()
        .iter()
        .any(|e| matches!(e, AppEvent::IceServers { .. })));
    h.disconnected(None);
    h.advance(20_000);
    up_to_login(&mut h);
    h.frame(login_ok_with(3000));
    assert!(h.events().contains(&ice_event(3000)));

    // Signing out clears it.
    h.cmd(Command::SignOut);
    assert!(h.events().contains(&AppEvent::IceServers {
        ice_servers: vec![],
        expires_at: None,
    }));
    assert!(h.s.ice_servers().is_empty());
    assert_eq!(h.s.ice_servers_expire_at(), None);
}

#[test]
fn a_server_without_ice_servers_adds_no_event() {
    let mut h = H::new();
    h.cmd(Command::SignIn);
    up_to_login(&mut h);
    h.frame(login_ok("alice"));
    h.cmd(Command::SignOut);
    assert!(!h
        .all
        .iter()
        .any(|o| matches!(o, Output::Event(AppEvent::IceServers { .. }))));
    assert!(h.s.ice_servers().is_empty());
}

#[test]
fn the_event_crosses_ipc_with_the_credential_but_never_prints_it() {
    let ev = ice_event(1000);
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["kind"], "ice_servers");
    assert_eq!(v["expires_at"], 1000);
    assert_eq!(v["ice_servers"][1]["credential"], "secret-for-1000");
    assert_eq!(serde_json::from_value::<AppEvent>(v).unwrap(), ev);
    let dbg = format!("{:?}", Output::Event(ev));
    assert!(!dbg.contains("secret-for-1000"), "{dbg}");
}
