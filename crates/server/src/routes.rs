//! HTTP routes: the WebSocket endpoint, a health check, the dev sig issuer and the browser UI.

use crate::connection;
use crate::hub::Hub;
use crate::proxy::{self, Peer};
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tincan_proto::UserId;

pub fn router(hub: Arc<Hub>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(healthz));
    if hub.config.dev_issue_sigs {
        router = router.route("/dev/usersig", get(dev_usersig));
    }
    if let Some(dir) = &hub.config.ui_dir {
        router = router.fallback_service(tower_http::services::ServeDir::new(dir));
    }
    router.with_state(hub)
}

async fn ws(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let client = proxy::client_ip(peer, &headers, &hub.config.trusted_proxies);
    let Some(slot) = hub.open() else {
        if let Some(skipped) = hub.full_log.allow() {
            tracing::warn!(%client, skipped, max = hub.config.max_connections, "server full: connection refused with 503");
        }
        return (StatusCode::SERVICE_UNAVAILABLE, "server_full").into_response();
    };
    // Every log line of this connection names the client (behind a proxy: the forwarded address).
    let span = tracing::info_span!("conn", %client);
    let cfg = &hub.config;
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(cfg.max_frame_bytes.saturating_mul(2).max(64 * 1024))
        .max_message_size(cfg.hard_frame_bytes)
        .max_frame_size(cfg.hard_frame_bytes)
        .on_upgrade(move |socket| {
            let run = async move {
                tracing::info!("connection open");
                connection::run(socket, hub, slot).await;
                tracing::info!("connection closed");
            };
            tracing::Instrument::instrument(run, span)
        })
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    sessions: usize,
    connections: usize,
}

async fn healthz(State(hub): State<Arc<Hub>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        sessions: hub.session_count(),
        connections: hub.connection_count(),
    })
}

#[derive(Deserialize)]
struct SigRequest {
    user: String,
}

#[derive(Serialize)]
struct SigResponse {
    sdk_app_id: u64,
    user_id: UserId,
    user_sig: String,
    expire_secs: u64,
}

/// Only with `--dev-issue-sigs`: a UserSig for any user, so a browser demo needs no sig server.
async fn dev_usersig(State(hub): State<Arc<Hub>>, Query(q): Query<SigRequest>) -> Response {
    let user = match UserId::new(q.user) {
        Ok(u) => u,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let expire = 24 * 3600;
    let sig = hub.key.gen(&user, hub.clock.unix_secs(), expire, None);
    Json(SigResponse {
        sdk_app_id: hub.key.sdk_app_id(),
        user_id: user,
        user_sig: sig,
        expire_secs: expire,
    })
    .into_response()
}
