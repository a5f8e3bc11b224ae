//! `GET /readyz`: whether the gateway can do its job now, with the reasons
//! when not. Unlike `/healthz` (the process answers) a load balancer or
//! systemd check may act on it.
//!
//! Ready means: the config was loaded (it was, or nothing would serve),
//! the engine task ticked within [`ENGINE_STALE`], and none of the
//! gateway's own faults is active — those are the store refusing writes
//! (`store.write`), a queue dropping rows at its cap
//! (`queue.*.overflow`), an action that never confirmed, a sink's
//! refusal. A sink that is merely disconnected while its queue stays within
//! its bounds is ready: queueing is what the store is for.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::Shared;

/// The engine ticks every 200 ms; this long without one is a hang.
pub const ENGINE_STALE: Duration = Duration::from_secs(5);

pub async fn readyz(State(sh): State<Arc<Shared>>) -> Response {
    let mut reasons = Vec::new();
    match sh.last_tick() {
        None => reasons.push("engine: not ticked yet".to_string()),
        Some(t) if t.elapsed() > ENGINE_STALE => {
            reasons.push(format!("engine: last tick {} s ago", t.elapsed().as_secs()))
        }
        Some(_) => {}
    }
    for f in sh.faults() {
        reasons.push(format!("fault: {f}"));
    }
    let body = json!({
        "ready": reasons.is_empty(),
        "reasons": reasons,
        "queues": crate::queue::QueueId::ALL.iter()
            .map(|q| (q.label().to_string(), json!(sh.store.depth(*q))))
            .collect::<serde_json::Map<_, _>>(),
    });
    if reasons.is_empty() {
        Json(body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
