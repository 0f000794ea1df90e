//! What happens at launch and at login, through the real commands on Tauri's mock runtime, against a
//! real tincan-server on loopback:
//!
//! - "Start tincan when I log in": `set_startup` writes and removes the real autostart entry
//!   (tauri-plugin-autostart; on Linux a `.desktop` file under `$HOME/.config/autostart`, here in a
//!   temporary HOME), and the question counts as asked;
//! - "Sign in automatically": a restarted app (a new `Service` over the same settings and keyring)
//!   signs in by itself, and does not when the setting is off or nothing is saved;
//! - errors at the IPC boundary: an empty SDKAppID and an over-long user ID are refused before the
//!   server with their own codes; the server's refusal comes in plain words (no nested brackets);
//! - a server that is not up yet at launch: reported once, retried until it answers, and given up
//!   once the user signs out.
//!
//! The first test sets HOME for the whole process (the autostart entry goes under it); the other
//! does not depend on it.

use serde_json::{json, Value};
use std::sync::Arc;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY,
};
use tauri::webview::InvokeRequest;
use tauri::WebviewWindow;
use tincan_app::credentials::{Credentials, MemoryStore};
use tincan_app::embedded::EmbeddedHost;
use tincan_app::ipc::Shared;
use tincan_app::service::{Service, ServiceConfig};
use tincan_app::signaling::Timing;
use tincan_app::storage::{MemoryKv, Store};
use tincan_ipc::{ConnectionState, CredentialMode, ErrorCode, SignInArgs, SignInCredentials};
use tincan_proto::SecretKey;

const SDK: u64 = 1_400_000_098;
const KEY: &str = "startup-test-secret-key-5e7a";

fn invoke(w: &WebviewWindow<MockRuntime>, cmd: &str, body: Value) -> Result<Value, Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: InvokeBody::Json(body),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().expect("json result"))
}

fn service(url: &str, secrets: &Arc<MemoryStore>, kv: &MemoryKv) -> Service {
    Service::new(ServiceConfig {
        profile: "startup".into(),
        credentials: Credentials::new(secrets.clone(), "startup"),
        store: Store::new(Arc::new(kv.clone())),
        host: Arc::new(EmbeddedHost::new(1)),
        server_override: Some(url.into()),
        sink: Arc::new(|_| {}),
        timing: Timing::default(),
    })
}

#[test]
fn startup_through_ipc_and_sign_in_at_launch() {
    let home = tempfile::tempdir().expect("home");
    // SAFETY: set before any other thread of this test binary reads the environment.
    unsafe { std::env::set_var("HOME", home.path()) };
    let entry = home.path().join(".config/autostart/tincan-startup.desktop");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(async {
        let cfg = tincan_server::ServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            SDK,
            SecretKey::new(KEY.into()),
        );
        tincan_server::start(cfg).await.expect("server")
    });
    let url = format!("ws://{}/ws", server.local_addr());
    let secrets = Arc::new(MemoryStore::default());
    let kv = MemoryKv::default();
    let app = mock_builder()
        .plugin(tincan_app::startup::plugin("startup"))
        .manage(Shared {
            service: Arc::new(service(&url, &secrets, &kv)),
        })
        .invoke_handler(tauri::generate_handler![
            tincan_app::ipc::sign_in,
            tincan_app::ipc::sign_out,
            tincan_app::ipc::start_call,
            tincan_app::startup::get_startup,
            tincan_app::startup::set_startup,
        ])
        .build(mock_context(noop_assets()))
        .expect("mock app");
    let w = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("webview");

    // Defaults: sign in automatically, do not start at login, not asked yet.
    let st = invoke(&w, "get_startup", json!({})).expect("startup");
    assert_eq!(
        st,
        json!({"sign_in_automatically": true, "start_at_login": false, "start_at_login_asked": false})
    );
    assert!(!entry.exists());

    // On: the autostart entry appears, starting this executable with the profile.
    let st = invoke(&w, "set_startup", json!({"args": {"start_at_login": true}})).expect("on");
    assert_eq!(st["start_at_login"], true);
    assert_eq!(st["start_at_login_asked"], true);
    let text = std::fs::read_to_string(&entry).expect("autostart entry written");
    assert!(text.contains("[Desktop Entry]"), "{text}");
    let exe = std::env::current_exe().expect("exe");
    assert!(
        text.contains(&format!("Exec={} --profile startup", exe.display())),
        "{text}"
    );
    // Off: gone, and still asked.
    let st = invoke(
        &w,
        "set_startup",
        json!({"args": {"start_at_login": false}}),
    )
    .expect("off");
    assert_eq!(st["start_at_login"], false);
    assert_eq!(st["start_at_login_asked"], true);
    assert!(!entry.exists(), "autostart entry still there");

    // Refused before the server: an empty SDKAppID (the UI sends 0), a pasted 200-character ID.
    let e = invoke(
        &w,
        "sign_in",
        json!({"args": {"user_id": "alice", "credentials": {"mode": "user_sig", "sdk_app_id": 0, "user_sig": "x"}}}),
    )
    .unwrap_err();
    assert_eq!(e["code"], "invalid_sdk_app_id", "{e}");
    let long = "a".repeat(200);
    let e = invoke(
        &w,
        "sign_in",
        json!({"args": {"user_id": long, "credentials": {"mode": "secret_key", "sdk_app_id": SDK, "secret_key": KEY}}}),
    )
    .unwrap_err();
    assert_eq!(e["code"], "invalid_user_id");
    assert!(e["message"].as_str().unwrap().contains("too long"), "{e}");
    // The server refuses a wrong key: the code stays, the words have no bracket in a bracket.
    let e = invoke(
        &w,
        "sign_in",
        json!({"args": {"user_id": "alice", "credentials": {"mode": "secret_key", "sdk_app_id": SDK, "secret_key": "wrong-key-123"}}}),
    )
    .unwrap_err();
    assert_eq!(e["code"], "user_sig_invalid");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.starts_with("The server did not accept your credentials"),
        "{msg}"
    );
    assert!(!msg.contains("(("), "{msg}");
    assert!(!msg.contains(")"), "nested detail left in: {msg}");

    // Sign in once, with the key (saved to the keyring).
    invoke(
        &w,
        "sign_in",
        json!({"args": {"user_id": "alice", "credentials": {"mode": "secret_key", "sdk_app_id": SDK, "secret_key": KEY}}}),
    )
    .expect("signed in");
    // A callee ID pasted 200 characters long is refused, not cut to 32 and called.
    let e = invoke(
        &w,
        "start_call",
        json!({"args": {"callee": "b".repeat(200)}}),
    )
    .unwrap_err();
    assert_eq!(e["code"], "invalid_user_id");
    invoke(&w, "sign_out", json!({})).expect("signed out");
    drop(w);
    drop(app);

    rt.block_on(async {
        // "Restart": a new service over the same settings and keyring signs in by itself.
        let again = service(&url, &secrets, &kv);
        let st = again
            .sign_in_at_launch()
            .await
            .expect("something to sign in with")
            .expect("signed in at launch");
        assert_eq!(st.connection, ConnectionState::Online);
        assert_eq!(st.user.as_ref().map(|u| u.as_str()), Some("alice"));
        assert_eq!(st.saved.last_mode, Some(CredentialMode::SecretKey));
        again.shutdown().await;

        // Off: nothing happens at launch.
        let off = service(&url, &secrets, &kv);
        off.store().set_sign_in_automatically(false).expect("off");
        assert!(off.sign_in_at_launch().await.is_none());
        off.store().set_sign_in_automatically(true).expect("on");
        // Nothing saved (forgotten): nothing happens either.
        off.forget_credentials().await.expect("forget");
        assert!(off.sign_in_at_launch().await.is_none());
        // And a manual sign-in without a key says so with its code.
        let e = off
            .sign_in(SignInArgs {
                user_id: "alice".into(),
                credentials: SignInCredentials::SecretKey {
                    sdk_app_id: SDK,
                    secret_key: None,
                },
            })
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NoSavedCredentials);
    });
    rt.block_on(server.shutdown());
}

/// At login the network (or the server) may come up after the app: the sign-in at launch reports
/// the first failure once and keeps trying until the server answers. And once the user signs out
/// (takes over), a launch sign-in that is still retrying gives up.
#[test]
fn sign_in_at_launch_waits_for_the_server() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let addr: std::net::SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
            l.local_addr().expect("addr")
        };
        let url = format!("ws://{addr}/ws");
        let secrets = Arc::new(MemoryStore::default());
        let kv = MemoryKv::default();
        // Signed in once before (the key is in the keyring, the user and mode remembered).
        let store = Store::new(Arc::new(kv.clone()));
        store
            .remember_sign_in("alice", CredentialMode::SecretKey, Some(SDK))
            .expect("remember");
        Credentials::new(secrets.clone(), "startup")
            .save_secret_key(&SecretKey::new(KEY.into()))
            .expect("key");
        let errors = Arc::new(std::sync::Mutex::new(Vec::<ErrorCode>::new()));
        let seen = errors.clone();
        let app = Arc::new(Service::new(ServiceConfig {
            profile: "startup".into(),
            credentials: Credentials::new(secrets.clone(), "startup"),
            store: Store::new(Arc::new(kv.clone())),
            host: Arc::new(EmbeddedHost::new(1)),
            server_override: Some(url.clone()),
            sink: Arc::new(move |ev| {
                if let tincan_ipc::AppEvent::Error { error } = ev {
                    seen.lock().expect("lock").push(error.code);
                }
            }),
            timing: Timing::default(),
        }));
        let launching = tokio::spawn({
            let app = app.clone();
            async move { app.sign_in_at_launch().await }
        });
        // Nothing listens yet; the server comes up a moment later.
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let server = tincan_server::start(tincan_server::ServerConfig::new(
            addr,
            SDK,
            SecretKey::new(KEY.into()),
        ))
        .await
        .expect("server");
        let st = tokio::time::timeout(std::time::Duration::from_secs(10), launching)
            .await
            .expect("signed in within 10 s")
            .expect("task")
            .expect("something to sign in with")
            .expect("signed in");
        assert_eq!(st.connection, ConnectionState::Online);
        assert_eq!(
            *errors.lock().expect("lock"),
            vec![ErrorCode::ServerUnreachable]
        );
        app.shutdown().await;
        server.shutdown().await;

        // The server is gone again: the launch sign-in retries until the user signs out.
        let again = Arc::new(service(&url, &secrets, &kv));
        let launching = tokio::spawn({
            let app = again.clone();
            async move { app.sign_in_at_launch().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        again.sign_out().await;
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), launching)
            .await
            .expect("gave up after the sign-out")
            .expect("task")
            .expect("attempted");
        assert_eq!(
            r.expect_err("never reached").code,
            ErrorCode::ServerUnreachable
        );
    });
}
