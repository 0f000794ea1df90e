//! HTTP routes: the WebSocket endpoint, a health check, the dev sig issuer and the browser UI.

use crate::admission::{self, Pending};
use crate::connection;
use crate::hub::Hub;
use crate::proxy::{self, Peer};
use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tincan_proto::UserId;

/// The WebSocket read buffer of a connection (see [`ws`]).
const READ_BUFFER_BYTES: usize = 2 * 1024;

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

/// The request's `Host` (HTTP/1.1) as text; `None` when missing or not text.
fn host_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

async fn ws(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(Peer { addr: peer, conn }): ConnectInfo<Peer>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let client = proxy::client_ip(peer, &headers, &hub.config.trusted_proxies);
    // A page on another site must not open a session with the visitor's browser (cross-site
    // WebSocket hijacking); native clients send no Origin at all.
    let origin = match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => None,
        Some(Ok(o)) => Some(o),
        Some(Err(_)) => Some("\u{fffd}"),
    };
    if !admission::origin_allowed(origin, host_header(&headers), &hub.config.allowed_origins) {
        if let Some(skipped) = hub.full_log.allow() {
            tracing::warn!(%client, ?origin, skipped, "WebSocket from a page of another origin refused with 403 (see --allow-origin)");
        }
        return (StatusCode::FORBIDDEN, "origin_not_allowed").into_response();
    }
    // Behind a trusted proxy, the forwarded address is what is counted per address.
    let peer_is_proxy = {
        let ip = peer.ip().to_canonical();
        hub.config
            .trusted_proxies
            .iter()
            .any(|t| t.to_canonical() == ip)
    };
    let forwarded = match (&conn, peer_is_proxy) {
        (Some(c), true) => match c.admission().admit_addr(client) {
            Ok(t) => Some(t),
            Err(why) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "5")],
                    match why {
                        admission::Refusal::Full => "server_full",
                        _ => "too_many_connections",
                    },
                )
                    .into_response()
            }
        },
        _ => None,
    };
    // The app's embedded server proves it is the app's own (see `challenge`).
    let proof = hub
        .config
        .answer_app_challenge
        .then(|| headers.get(crate::challenge::CHALLENGE_HEADER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .filter(|n| crate::challenge::valid_nonce(n))
        .zip(conn.as_ref())
        .map(|(nonce, c)| crate::challenge::proof(&hub.config.secret, nonce, c.local_addr()))
        .and_then(|p| HeaderValue::from_str(&p).ok());
    let Some(slot) = hub.open() else {
        if let Some(skipped) = hub.full_log.allow() {
            tracing::warn!(%client, skipped, max = hub.config.max_connections, "server full: connection refused with 503");
        }
        return (StatusCode::SERVICE_UNAVAILABLE, "server_full").into_response();
    };
    // Every log line of this connection names the client (behind a proxy: the forwarded address).
    let span = tracing::info_span!("conn", %client);
    // From here the WebSocket's login and idle timeouts apply instead of the HTTP ones.
    if let Some(c) = &conn {
        c.mark_upgraded();
    }
    let pending = Pending::new(conn, forwarded);
    let cfg = &hub.config;
    let mut response = upgrade
        // What each idle session holds for reading (tungstenite allocates and zero-fills it up
        // front). 2 KiB takes any frame but an SDP description in one read (a login, a candidate,
        // a burst of several); an offer takes two or three, and the buffer grows to fit a frame
        // larger than it. 4 KiB cost an idle session 2 KB more for reads that never come.
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(cfg.max_frame_bytes.saturating_mul(2).max(64 * 1024))
        .max_message_size(cfg.hard_frame_bytes)
        .max_frame_size(cfg.hard_frame_bytes)
        // No `async` block around `run`: what a block captures stays in the task for as long as
        // it lives (the socket alone is 368 bytes), on top of `run`'s own future.
        .on_upgrade(move |socket| {
            tracing::Instrument::instrument(connection::run(socket, hub, slot, pending), span)
        });
    if let Some(p) = proof {
        response
            .headers_mut()
            .insert(crate::challenge::PROOF_HEADER, p);
    }
    response
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

/// Whether a `/dev/usersig` request comes from this machine, addressed to this machine by a
/// loopback name or address: the TCP peer is loopback (or the connection's own local address),
/// nothing says it was forwarded, and `Host` (and `Origin`, if sent) name this machine with the
/// server's port. A DNS-rebinding page (`evil.example` resolving to 127.0.0.1) makes the browser
/// send `Host: evil.example:<port>`, so it is refused; so is anything from another machine.
fn dev_request_is_local(
    peer: std::net::SocketAddr,
    conn: Option<&admission::ConnMeter>,
    headers: &HeaderMap,
) -> bool {
    let Some(local) = conn.map(|c| c.local_addr()) else {
        return false;
    };
    let peer_ip = peer.ip().to_canonical();
    let local_ip = local.ip().to_canonical();
    let from_here = peer_ip.is_loopback() || peer_ip == local_ip;
    let forwarded =
        headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED);
    // The server's own non-loopback address counts as this machine only when the peer is that
    // address too (a demo reached by its own address, as in tests/net).
    let also = (peer_ip == local_ip && !local_ip.is_unspecified()).then_some(local_ip);
    let host_ok = host_header(headers)
        .is_some_and(|h| admission::is_local_host_header(h, local.port(), also));
    let origin_ok = match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => true,
        Some(Ok(o)) => o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_some_and(|a| {
                admission::is_local_host_header(a.trim_end_matches('/'), local.port(), also)
            }),
        Some(Err(_)) => false,
    };
    from_here && !forwarded && host_ok && origin_ok
}

/// Only with `--dev-issue-sigs`: a UserSig for any user, so a browser demo needs no sig server.
/// Answers only requests from this machine to this machine (see [`dev_request_is_local`]).
async fn dev_usersig(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(Peer { addr, conn }): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<SigRequest>,
) -> Response {
    if !dev_request_is_local(addr, conn.as_deref(), &headers) {
        tracing::warn!(peer = %addr, host = ?host_header(&headers), "/dev/usersig refused: not a request from this machine to a loopback address");
        return (StatusCode::FORBIDDEN, "dev_usersig_local_only").into_response();
    }
    let user = match UserId::new(q.user) {
        Ok(u) => u,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let expire = hub.config.max_sig_lifetime_secs.min(24 * 3600);
    let sig = hub.key.gen(&user, hub.clock.unix_secs(), expire, None);
    Json(SigResponse {
        sdk_app_id: hub.key.sdk_app_id(),
        user_id: user,
        user_sig: sig,
        expire_secs: expire,
    })
    .into_response()
}
