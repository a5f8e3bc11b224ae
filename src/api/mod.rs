//! The operator's local HTTP API and page. The full description is
//! `docs/openapi.yaml` (`tests/openapi.rs` keeps it and the router in
//! step, guards included); how the guards work is `auth.rs`.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /` | anyone | the operator page (it shows a login form when needed) |
//! | `POST /api/login` · `POST /api/logout` · `GET /api/me` | anyone · anyone · session | `{"name","password"}` → session cookie and token |
//! | `GET /api/state` | reader | points, active alarms, device health, queue depths |
//! | `GET /api/points` · `GET /api/alarms` | reader | the two halves of it |
//! | `POST /api/alarms/ack` | operator | `{"alarm_id": "..."}`; the name acknowledged with is the session's user |
//! | `GET /api/history?point=ID&since=1h` | reader | raw readings and 5-minute statistics |
//! | `GET /api/events?since=24h` | reader | alarm events from the local log |
//! | `GET /api/events/stream` | reader | live server-sent events for the page (`stream.rs`) |
//! | `GET /api/online` | reader | per device, the share of polls answered over the last hour and day |
//! | `POST /api/calibrations` · `GET /api/calibrations` | operator · reader | calibration windows (标校): `{"point","for"}` opens one in the session user's name (`calibrate.rs`) |
//! | `GET /api/audit?since=24h` | operator | the audit log of acknowledgements |
//! | `GET /metrics` | anyone | Prometheus |
//! | `GET /health` | anyone | 200 `ok` while the gateway runs and keeps its promises; 503 `degraded: FAULTS` while a fault of the gateway itself is active (e.g. `store.write`) |
//! | `GET /healthz` · `GET /readyz` | anyone | process up (always 200) · ready (config, engine, store, sinks; 503 with reasons) |
//!
//! "reader": a session, unless reads are open (`http.public_read`, or no
//! users and a loopback listener; see `auth.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

mod act;
pub mod auth;
pub mod calibrate;
mod ready;
pub mod serve;
pub mod state;
pub mod stream;

use crate::queue::QueueId;
use crate::time::since;
use auth::{Operator, Reader};
pub use calibrate::CalibrateCmd;
pub use serve::{HEADER_TIMEOUT, serve};
pub use state::{AckCmd, PointView, Shared};

/// The most requests served at once; more wait their turn, so a client
/// that opens many cannot starve the gateway of threads or store reads.
pub const MAX_IN_FLIGHT: usize = 32;
/// A request (headers read) must be answered within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A request body must arrive within this (no slow-drip bodies).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body (an acknowledgement is a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    let http = shared.cfg.http.clone().unwrap_or_default();
    let guard = Arc::new(auth::Guard::new(&http));
    routes(shared)
        // Inside the bounds below: a refused Host or Origin costs no more
        // than any other request.
        .layer(axum::middleware::from_fn(auth::check))
        .layer(Extension(guard))
        .layer(
            tower::ServiceBuilder::new()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    MAX_IN_FLIGHT,
                ))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ))
                .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                    BODY_TIMEOUT,
                ))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
        )
}

/// Every route. Each handler that reads takes a [`Reader`], each that
/// writes an [`Operator`] (or checks the session itself): the guard is in
/// the handler's signature, so a route cannot be added without one.
fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(|| async { crate::metrics::render() }))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/state", get(state))
        .route("/api/points", get(points))
        .route("/api/alarms", get(alarms))
        .route("/api/alarms/ack", post(ack))
        .route(
            "/api/calibrations",
            get(calibrate::list).post(calibrate::open),
        )
        .route("/api/history", get(history))
        .route("/api/events", get(events))
        .route("/api/events/stream", get(stream::events_stream))
        .route("/api/online", get(online))
        .route("/api/audit", get(audit))
        .with_state(shared)
}

/// An error answer: `{"error": "..."}` with `status`.
fn error(status: StatusCode, message: impl ToString) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

/// 503 while a fault of the gateway itself is active: a monitor sees that
/// the gateway runs but cannot keep every promise (e.g. the store refuses
/// writes and alarms wait in memory).
async fn health(State(sh): State<Arc<Shared>>) -> Response {
    let faults = sh.faults();
    if faults.is_empty() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("degraded: {}", faults.join(", ")),
        )
            .into_response()
    }
}

/// The page, its scripts marked with this response's nonce (the CSP lets
/// no other script run).
async fn page(Extension(nonce): Extension<auth::Nonce>) -> Html<String> {
    Html(include_str!("page.html").replace("<script", &format!("<script nonce=\"{}\"", nonce.0)))
}

fn alarms_json(sh: &Shared) -> serde_json::Value {
    let alarms = sh.alarms.read().unwrap_or_else(|p| p.into_inner());
    json!(state::alarm_views(&sh.id, &alarms))
}

async fn state(_: Reader, State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let points = sh.points.read().unwrap_or_else(|p| p.into_inner()).clone();
    let devices = sh
        .devices_online
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let faults = sh.faults();
    let queues: serde_json::Map<String, serde_json::Value> = QueueId::ALL
        .iter()
        .map(|q| (q.label().to_string(), json!(sh.store.depth(*q))))
        .collect();
    Json(json!({
        "site": {"id": sh.cfg.site.id, "name": sh.cfg.site.name, "kind": sh.cfg.site.kind.as_str()},
        "gateway": sh.cfg.gateway.id,
        "now": sh.id.time(Utc::now()),
        "points": points,
        "alarms": alarms_json(&sh),
        "devices": sh.cfg.devices.iter().map(|d| json!({
            "id": d.id, "name": d.name, "online": devices.get(&d.id).copied(),
        })).collect::<Vec<_>>(),
        "queues": queues,
        "health": if faults.is_empty() { "ok" } else { "degraded" },
        "faults": faults,
    }))
}

async fn online(_: Reader, State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let rates = sh
        .online
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .rates(Utc::now());
    Json(json!({ "now": sh.id.time(Utc::now()), "devices": rates }))
}

async fn points(_: Reader, State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!(
        sh.points.read().unwrap_or_else(|p| p.into_inner()).clone()
    ))
}

async fn alarms(_: Reader, State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(alarms_json(&sh))
}

/// The acknowledgement's body. A `by` field is refused (400), not ignored:
/// the name is the session's, and a client that still sends one should
/// learn that it is not used rather than believe it was.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    alarm_id: String,
}

async fn ack(
    op: Operator,
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = act::refuse_by(&body, "the acknowledgement") {
        return r;
    }
    let body: AckBody = match auth::json_body(&headers, &body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if body.alarm_id.is_empty() || body.alarm_id.len() > 256 {
        return error(StatusCode::BAD_REQUEST, "`alarm_id` must be 1 to 256 bytes");
    }
    let (tx, rx) = oneshot::channel();
    let cmd = AckCmd {
        alarm_id: body.alarm_id.clone(),
        by: op.user.name.clone(),
        reply: Some(tx),
    };
    let result = match act::ask(&sh.acks, cmd, rx).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let outcome = match &result {
        Ok(()) => "ok".into(),
        Err(e) => format!("refused: {e}"),
    };
    act::audit(&sh, &op, "ack", body.alarm_id.clone(), outcome).await;
    match result {
        Ok(()) => Json(json!({"ok": true, "alarm_id": body.alarm_id, "acked_by": op.user.name}))
            .into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default = "default_events_since")]
    since: String,
}

/// `GET /api/audit`: operators only (it names who was where when).
async fn audit(
    _: Operator,
    State(sh): State<Arc<Shared>>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let from = match since(&q.since, Utc::now()) {
        Ok(t) => t.timestamp_millis(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (store, id) = (sh.store.clone(), sh.id.clone());
    match tokio::task::spawn_blocking(move || store.audit_log(from, 10_000)).await {
        Ok(Ok(rows)) => Json(json!(
            rows.iter()
                .map(|r| {
                    let mut v = json!(r);
                    v["at"] =
                        json!(chrono::DateTime::from_timestamp_millis(r.at_ms).map(|t| id.time(t)));
                    v
                })
                .collect::<Vec<_>>()
        ))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    point: String,
    #[serde(default = "default_since")]
    since: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_since() -> String {
    "1h".into()
}
fn default_limit() -> usize {
    10_000
}

async fn history(
    _: Reader,
    State(sh): State<Arc<Shared>>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let from = match since(&q.since, Utc::now()) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if sh.cfg.point(&q.point).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no point `{}`", q.point));
    }
    let store = sh.store.clone();
    let (point, limit, id) = (q.point.clone(), q.limit.min(100_000), sh.id.clone());
    let r = tokio::task::spawn_blocking(move || {
        let raw = store.history(&point, from, limit)?;
        let stats = store.stats_5m(&point, from)?;
        Ok::<_, crate::queue::StoreError>((raw, stats))
    })
    .await;
    match r {
        Ok(Ok((raw, stats))) => Json(json!({
            "point": q.point,
            "raw": raw.iter().map(|h| json!({
                "at": chrono::DateTime::from_timestamp_millis(h.at_ms).map(|t| id.time(t)),
                "value": h.value, "quality": if h.quality == 0 { "good" } else { "bad" },
            })).collect::<Vec<_>>(),
            "stats_5m": stats.iter().map(|s| json!({
                "start": chrono::DateTime::from_timestamp_millis(s.start_ms).map(|t| id.time(t)),
                "min": s.min, "max": s.max, "mean": s.mean, "count": s.count,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default = "default_events_since")]
    since: String,
}

fn default_events_since() -> String {
    "24h".into()
}

async fn events(
    _: Reader,
    State(sh): State<Arc<Shared>>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let from = match since(&q.since, Utc::now()) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let store = sh.store.clone();
    match tokio::task::spawn_blocking(move || store.alarm_log(from, 10_000)).await {
        Ok(Ok(v)) => Json(json!(v)).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
