//! ICE servers with short-lived TURN credentials (issue 14): a real server on loopback, real
//! WebSocket clients. `login_ok` carries the configured URLs with a credential valid for the
//! signed-in user (coturn's `use-auth-secret` scheme; the HMAC itself is checked against an
//! independent vector in `tincan_proto::ice`, and against real coturn in tests/net); a short TTL
//! brings an `ice_servers` refresh before the expiry, with a later one; and a server with
//! nothing configured says nothing new. The binary refuses bad TURN flags at startup.

mod common;

use common::*;
use futures_util::StreamExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use tincan_proto::ice::turn_password;
use tincan_proto::{IceConfig, IceServer, SecretKey, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

const TURN_SECRET: &str = "coturn-shared-secret";

fn ice(ttl: u32) -> IceConfig {
    IceConfig {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec![
            "turn:127.0.0.1:3478?transport=udp".into(),
            "turn:127.0.0.1:3478?transport=tcp".into(),
            "turns:localhost:443?transport=tcp".into(),
        ],
        turn_secret: Some(SecretKey::new(TURN_SECRET.into())),
        turn_ttl_secs: ttl,
    }
}

/// Asserts the list is the configured one with a credential for `user` expiring at `expiry`.
fn assert_issued(list: &[IceServer], user: &str, expiry: u64, cfg: &IceConfig) {
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0], IceServer::stun(cfg.stun_urls.clone()));
    let turn = &list[1];
    assert_eq!(turn.urls, cfg.turn_urls);
    let username = format!("{expiry}:{user}");
    assert_eq!(turn.username.as_deref(), Some(username.as_str()));
    assert_eq!(
        turn.credential.as_deref(),
        Some(turn_password(TURN_SECRET.as_bytes(), &username).as_str())
    );
}

/// Signs in and returns the raw `login_ok` text and the client.
async fn login_raw(s: &TestServer, user: &str, device: &str) -> (String, Client) {
    let mut c = s.connect().await;
    c.send(&login_msg(user, device, s.sig(user))).await;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), c.ws.next())
            .await
            .expect("login_ok within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = frame {
            return (t.as_str().to_owned(), c);
        }
    }
}

#[tokio::test]
async fn login_ok_carries_the_servers_with_a_credential_for_that_user() {
    let cfg = ice(3600);
    let s = server_with(|c| c.switchboard.ice = cfg.clone()).await;
    for user in ["alice", "bob"] {
        let before = now_secs();
        let (text, _c) = login_raw(&s, user, "d1").await;
        let after = now_secs();
        let ServerMessage::LoginOk {
            ice_servers,
            ice_servers_expire_at: Some(expiry),
            ..
        } = ServerMessage::decode(&text).unwrap()
        else {
            panic!("{text}")
        };
        assert!(
            (before + 3600..=after + 3600).contains(&expiry),
            "{expiry} not 1 h from now"
        );
        assert_issued(&ice_servers, user, expiry, &cfg);
        // The RTCIceServer shape, as a browser takes it.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ice_servers"][0]["urls"][0], "stun:127.0.0.1:3478");
        assert!(v["ice_servers"][0].get("username").is_none());
        assert_eq!(v["ice_servers"][1]["username"], format!("{expiry}:{user}"));
        assert_eq!(v["ice_servers_expire_at"], expiry);
    }
    s.handle.shutdown().await;
}

#[tokio::test]
async fn a_short_ttl_brings_a_refresh_before_the_expiry() {
    let cfg = ice(4);
    let s = server_with(|c| c.switchboard.ice = cfg.clone()).await;
    let mut c = s.login("alice", "d1").await;
    // `login` consumed login_ok; sign in a second device to read its fields too.
    let (text, mut c2) = login_raw(&s, "alice", "d2").await;
    let ServerMessage::LoginOk {
        ice_servers_expire_at: Some(first),
        ..
    } = ServerMessage::decode(&text).unwrap()
    else {
        panic!("{text}")
    };
    // At 3/4 of 4 s: well before `first`.
    for client in [&mut c2, &mut c] {
        let m = client.recv().await;
        let ServerMessage::IceServers {
            ice_servers,
            expires_at,
        } = m
        else {
            panic!("expected ice_servers, got {m:?}")
        };
        assert!(now_secs() < first, "the refresh came after the expiry");
        assert!(expires_at > first, "{expires_at} vs {first}");
        assert_issued(&ice_servers, "alice", expires_at, &cfg);
    }
    // And again, with a later expiry each time.
    let m = c2.recv().await;
    let ServerMessage::IceServers { expires_at, .. } = m else {
        panic!("expected a second ice_servers, got {m:?}")
    };
    assert!(expires_at > first, "{expires_at} vs {first}");
    s.handle.shutdown().await;
}

#[tokio::test]
async fn nothing_configured_changes_nothing() {
    let s = server().await;
    let (text, mut c) = login_raw(&s, "alice", "d1").await;
    let ServerMessage::LoginOk {
        ice_servers,
        ice_servers_expire_at,
        ..
    } = ServerMessage::decode(&text).unwrap()
    else {
        panic!("{text}")
    };
    assert!(ice_servers.is_empty() && ice_servers_expire_at.is_none());
    assert!(!text.contains("ice_servers"), "{text}");
    c.expect_silence(300).await;
    s.handle.shutdown().await;
}

#[tokio::test]
async fn stun_only_is_listed_and_never_refreshed() {
    let s = server_with(|c| {
        c.switchboard.ice = IceConfig {
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            turn_ttl_secs: 4,
            ..IceConfig::default()
        }
    })
    .await;
    let (text, mut c) = login_raw(&s, "alice", "d1").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["ice_servers"],
        serde_json::json!([{"urls": ["stun:127.0.0.1:3478"]}])
    );
    assert!(v.get("ice_servers_expire_at").is_none(), "{text}");
    c.expect_silence(3500).await;
    s.handle.shutdown().await;
}

fn serve(args: &[&str], turn_secret_env: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(common::binary::BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--sdkappid",
        "1400000000",
        "--memory-only",
    ])
    .args(args)
    .env("TINCAN_SECRET_KEY", SECRET)
    .env_remove("TINCAN_TURN_SECRET")
    .env_remove("TINCAN_TURN_URLS")
    .env_remove("TINCAN_STUN_URLS")
    .env_remove("TINCAN_TURN_SECRET_FILE")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(s) = turn_secret_env {
        cmd.env("TINCAN_TURN_SECRET", s);
    }
    // Bounded: a server that wrongly accepted the flags would serve forever.
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_refuses_bad_turn_flags_at_startup() {
    let (ok, err) = serve(&["--turn-url", "turn:127.0.0.1:3478"], None);
    assert!(!ok);
    assert!(
        err.contains("--turn-secret-file") && err.contains("TINCAN_TURN_SECRET"),
        "{err}"
    );
    let (ok, err) = serve(&["--turn-url", "http://127.0.0.1:3478"], Some("s"));
    assert!(!ok);
    assert!(err.contains("scheme must be turn: or turns:"), "{err}");
    let (ok, err) = serve(&["--stun-url", "turn:127.0.0.1"], None);
    assert!(!ok);
    assert!(err.contains("scheme must be stun: or stuns:"), "{err}");
    let (ok, err) = serve(
        &["--turn-url", "turn:127.0.0.1", "--turn-ttl", "1"],
        Some("s"),
    );
    assert!(!ok);
    assert!(err.contains("--turn-ttl 1"), "{err}");
}

/// The shipped binary with the flags and a secret file: the credential a client gets is the one
/// coturn computes from that file's secret.
#[tokio::test]
async fn the_binary_hands_out_credentials_from_the_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("turn-secret");
    std::fs::write(&secret_file, format!("{TURN_SECRET}\n")).unwrap();
    let mut cmd = Command::new(common::binary::BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--sdkappid",
        &APP.to_string(),
        "--memory-only",
        "--stun-url",
        "stun:127.0.0.1:3478",
        "--turn-url",
        "turn:127.0.0.1:3478?transport=udp",
        "--turn-url",
        "turn:127.0.0.1:3478?transport=tcp",
        "--turn-url",
        "turns:localhost:443?transport=tcp",
        "--turn-ttl",
        "600",
        "--turn-secret-file",
    ])
    .arg(&secret_file)
    .env("TINCAN_SECRET_KEY", SECRET)
    .env_remove("TINCAN_TURN_SECRET");
    let (mut child, addr) = common::binary::spawn_listening(&mut cmd, "TINCAN_TEST_ECHO", |_| {});
    let url = format!("ws://{addr}/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let key = tincan_proto::UserSigKey::new(APP, SecretKey::new(SECRET.into()));
    let sig = key.gen(&uid("carol"), now_secs(), 600, None);
    futures_util::SinkExt::send(
        &mut ws,
        Message::Text(login_msg("carol", "d1", sig).encode().into()),
    )
    .await
    .unwrap();
    let text = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => break t.as_str().to_owned(),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let ServerMessage::LoginOk {
        ice_servers,
        ice_servers_expire_at: Some(expiry),
        ..
    } = ServerMessage::decode(&text).unwrap()
    else {
        panic!("{text}")
    };
    let cfg = IceConfig {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec![
            "turn:127.0.0.1:3478?transport=udp".into(),
            "turn:127.0.0.1:3478?transport=tcp".into(),
            "turns:localhost:443?transport=tcp".into(),
        ],
        ..IceConfig::default()
    };
    assert_issued(&ice_servers, "carol", expiry, &cfg);
    assert!(expiry.abs_diff(now_secs() + 600) <= 5);
}
