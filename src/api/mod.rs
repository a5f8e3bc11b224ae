//! The operator's local HTTP API and page.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the operator page (live points and alarms, acknowledge) |
//! | `GET /api/state` | points, active alarms, device health, queue depths |
//! | `GET /api/points` · `GET /api/alarms` | the two halves of it |
//! | `POST /api/alarms/ack` | `{"alarm_id": "...", "by": "name"}` |
//! | `GET /api/history?point=ID&since=1h` | raw readings and 5-minute statistics |
//! | `GET /api/events?since=24h` | alarm events from the local log |
//! | `GET /api/online` | per device, the share of polls answered over the last hour and day |
//! | `GET /metrics` | Prometheus |
//! | `GET /health` | 200 `ok` while the gateway runs and keeps its promises; 503 `degraded: FAULTS` while a fault of the gateway itself is active (e.g. `store.write`) |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

pub mod serve;
pub mod state;

use crate::queue::QueueId;
use crate::time::since;
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
    routes(shared).layer(
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

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(|| async { crate::metrics::render() }))
        .route("/api/state", get(state))
        .route("/api/points", get(points))
        .route("/api/alarms", get(alarms))
        .route("/api/alarms/ack", post(ack))
        .route("/api/history", get(history))
        .route("/api/events", get(events))
        .route("/api/online", get(online))
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

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

fn alarms_json(sh: &Shared) -> serde_json::Value {
    let alarms = sh.alarms.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut list: Vec<_> = alarms
        .iter()
        .map(|a| {
            json!({
                "alarm_id": a.alarm_id, "rule_id": a.rule_id, "kind": a.kind, "level": a.level,
                "level_color": crate::model::level_color(a.level), "name": a.name, "point_id": a.point_id,
                "value": a.value, "threshold": a.threshold, "message": a.message,
                "raised_at": sh.id.time(a.raised_at), "acked_by": a.acked_by,
                "acked_at": a.acked_at.map(|t| sh.id.time(t)), "latching": a.latching, "condition": a.condition,
            })
        })
        .collect();
    list.sort_by_key(|a| {
        (
            a["level"].as_u64(),
            a["raised_at"].as_str().map(String::from),
        )
    });
    json!(list)
}

async fn state(State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
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

async fn online(State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let rates = sh
        .online
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .rates(Utc::now());
    Json(json!({ "now": sh.id.time(Utc::now()), "devices": rates }))
}

async fn points(State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!(
        sh.points.read().unwrap_or_else(|p| p.into_inner()).clone()
    ))
}

async fn alarms(State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(alarms_json(&sh))
}

#[derive(Deserialize)]
struct AckBody {
    alarm_id: String,
    by: String,
}

async fn ack(State(sh): State<Arc<Shared>>, Json(body): Json<AckBody>) -> Response {
    if body.by.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "`by` must name who acknowledges");
    }
    let (tx, rx) = oneshot::channel();
    let cmd = AckCmd {
        alarm_id: body.alarm_id.clone(),
        by: body.by.trim().to_string(),
        reply: Some(tx),
    };
    if sh.acks.send(cmd).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping");
    }
    match rx.await {
        Ok(Ok(())) => Json(json!({"ok": true, "alarm_id": body.alarm_id})).into_response(),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping"),
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

async fn history(State(sh): State<Arc<Shared>>, Query(q): Query<HistoryQuery>) -> Response {
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

async fn events(State(sh): State<Arc<Shared>>, Query(q): Query<EventsQuery>) -> Response {
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
