//! Calibration windows over HTTP (标校):
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /api/calibrations` | operator | `{"point": "ch4.1301.t1", "for": "30m"}`: opens a window in the session user's name; `200 {"ok": true, "point", "by", "until"}`, `404` unknown point, `409` a window is open already, `400` a bad length or body (a `by` field is refused, as for acknowledgements) |
//! | `GET /api/calibrations` | reader | the open windows: point, by, opened_at, until, cut_test |
//!
//! Opening a window changes what the county is sent (the point's alarms
//! go out as `calibration` events), so it is an operator's act, audited
//! like an acknowledgement (action `calibrate`, the window's key
//! `{point}.calibration` in the row's alarm field). The engine task owns
//! the engine: the request goes there as a [`CalibrateCmd`] and the answer
//! comes back on its channel.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use super::act;
use super::auth::{self, Operator, Reader};
use super::{Shared, error};
use crate::rules::{CalibrateError, CalibrationView};

/// A window to open, with its answer.
pub struct CalibrateCmd {
    pub point: String,
    pub length: Duration,
    pub by: String,
    pub reply: oneshot::Sender<Result<CalibrationView, CalibrateError>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Body {
    point: String,
    #[serde(rename = "for")]
    length: String,
}

pub(super) async fn open(
    op: Operator,
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = act::refuse_by(&body, "the window") {
        return r;
    }
    let b: Body = match auth::json_body(&headers, &body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let length = match humantime::parse_duration(b.length.trim()) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`for`: `{}` is not a duration like \"30m\" ({e})", b.length),
            );
        }
    };
    let (tx, rx) = oneshot::channel();
    let cmd = CalibrateCmd {
        point: b.point.clone(),
        length,
        by: op.user.name.clone(),
        reply: tx,
    };
    let result = match act::ask(&sh.calibrate, cmd, rx).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let outcome = match &result {
        Ok(w) => format!(
            "ok: for {}, until {}",
            humantime::format_duration(length),
            sh.id.time(w.until)
        ),
        Err(e) => format!("refused: {e}"),
    };
    act::audit(
        &sh,
        &op,
        "calibrate",
        crate::rules::calibration::key(&b.point),
        outcome,
    )
    .await;
    match result {
        Ok(w) => Json(json!({
            "ok": true, "point": w.point, "by": w.by, "until": sh.id.time(w.until),
        }))
        .into_response(),
        Err(e @ CalibrateError::UnknownPoint(_)) => error(StatusCode::NOT_FOUND, e),
        Err(e @ CalibrateError::Open { .. }) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

pub(super) async fn list(_: Reader, State(sh): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let open = sh
        .calibrations
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Json(json!(
        open.iter()
            .map(|w| json!({
                "point": w.point, "by": w.by, "opened_at": sh.id.time(w.opened_at),
                "until": sh.id.time(w.until), "cut_test": w.cut_test,
            }))
            .collect::<Vec<_>>()
    ))
}
