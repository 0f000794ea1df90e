//! The real Tauri commands, invoked through IPC on Tauri's mock runtime: argument names, results and
//! the `{code, message}` error shape exactly as the webview sees them, against a real tincan-server.

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
use tincan_proto::SecretKey;

const SDK: u64 = 1_400_000_099;
const KEY: &str = "ipc-test-secret-key-c0ffee";

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

#[test]
fn commands_through_ipc() {
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
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let outputs = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink_out = outputs.clone();
    let service = Service::new(ServiceConfig {
        profile: "ipc".into(),
        credentials: Credentials::new(Arc::new(MemoryStore::default()), "ipc"),
        store: Store::new(Arc::new(MemoryKv::default())),
        host: Arc::new(EmbeddedHost::new(free)),
        server_override: Some(url),
        sink: Arc::new(move |ev| {
            sink_out
                .lock()
                .expect("lock")
                .push(serde_json::to_string(&ev).expect("event json"));
        }),
        timing: Timing::default(),
    });
    let app = mock_builder()
        .manage(Shared {
            service: Arc::new(service),
        })
        .invoke_handler(tauri::generate_handler![
            tincan_app::ipc::get_state,
            tincan_app::ipc::sign_in,
            tincan_app::ipc::sign_out,
            tincan_app::ipc::start_call,
            tincan_app::ipc::hang_up,
            tincan_app::ipc::get_settings,
            tincan_app::ipc::save_settings,
            tincan_app::ipc::get_history,
        ])
        .build(mock_context(noop_assets()))
        .expect("mock app");
    let w = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("webview");
    let mut seen = Vec::new();
    let mut call = |cmd: &str, body: Value| {
        let r = invoke(&w, cmd, body);
        seen.push(format!("{r:?}"));
        r
    };

    // Signed out: a typed error, as {code, message}.
    let e = call("start_call", json!({"args": {"callee": "bob"}})).unwrap_err();
    assert_eq!(
        e,
        json!({"code": "not_signed_in", "message": "Sign in first."})
    );

    let st = call("get_state", json!({})).expect("state");
    assert_eq!(st["connection"]["state"], "signed_out");
    assert_eq!(st["server"]["mode"], "remote");

    // A bad user ID at sign-in.
    let e = call(
        "sign_in",
        json!({"args": {"user_id": "bad id", "credentials": {"mode": "secret_key", "sdk_app_id": SDK, "secret_key": KEY}}}),
    )
    .unwrap_err();
    assert_eq!(e["code"], "invalid_user_id");

    // Sign in with SDKAppID + secret key.
    let st = call(
        "sign_in",
        json!({"args": {"user_id": "alice", "credentials": {"mode": "secret_key", "sdk_app_id": SDK, "secret_key": KEY}}}),
    )
    .expect("signed in");
    assert_eq!(st["user"], "alice");
    assert_eq!(st["connection"]["state"], "online");
    assert_eq!(st["saved"]["has_secret_key"], true);

    // A call to someone offline: placed, then ended by the server as "offline".
    let c = call("start_call", json!({"args": {"callee": "nobody"}})).expect("call");
    assert_eq!(c["peer"], "nobody");
    assert_eq!(c["direction"], "outgoing");

    // Settings: invalid values are refused in words; valid ones are saved.
    let mut s = call("get_settings", json!({})).expect("settings");
    s["server_url"] = json!("http://wrong");
    let e = call("save_settings", json!({"settings": s.clone()})).unwrap_err();
    assert_eq!(e["code"], "invalid_input");
    s["server_url"] = Value::Null;
    s["ring_timeout_secs"] = json!(45);
    call("save_settings", json!({"settings": s})).expect("saved");
    assert_eq!(
        call("get_settings", json!({})).expect("settings")["ring_timeout_secs"],
        45
    );
    let _ = call("get_history", json!({})).expect("history");
    let st = call("sign_out", json!({}));
    assert_eq!(st.expect("signed out")["connection"]["state"], "signed_out");

    // No command result and no event carried the secret key.
    for out in seen.iter().chain(outputs.lock().expect("lock").iter()) {
        assert!(!out.contains(KEY), "secret in IPC output: {out}");
    }
    rt.block_on(server.shutdown());
}
