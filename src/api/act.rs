//! What every operator's act over HTTP shares (an acknowledgement, a
//! calibration window): the name is the session's, never the body's; the
//! engine task does the act and answers on a channel; and the act is in
//! the audit log, committed before the client gets its answer.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::auth::Operator;
use super::{Shared, error};
use crate::queue::{AuditRow, AuditSource};

/// 400 for a body that names `by`: refused rather than ignored, so a
/// client that still sends one learns it is not used rather than believe
/// it was. `what` is the act, as the message names it.
pub fn refuse_by(body: &[u8], what: &str) -> Option<Response> {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("by").is_some())
        .then(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("`by` is not accepted: {what} carries the logged-in user's name"),
            )
        })
}

/// Hands `cmd` to the engine task and waits for its answer (503 when the
/// gateway is stopping and nobody will answer).
pub async fn ask<C, R>(
    tx: &mpsc::Sender<C>,
    cmd: C,
    answer: oneshot::Receiver<R>,
) -> Result<R, Response> {
    let stopping = || error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping");
    tx.send(cmd).await.map_err(|_| stopping())?;
    answer.await.map_err(|_| stopping())
}

/// Logs the act and commits its audit row: `action` on `subject` by the
/// session's user from the client's address, with its `result` (`ok…` or
/// `refused: WHY`). A store that refuses the row does not undo the act,
/// which the engine has applied and the county will see, but it is said
/// loudly.
pub async fn audit(sh: &Shared, op: &Operator, action: &str, subject: String, result: String) {
    let row = AuditRow {
        id: 0,
        at_ms: Utc::now().timestamp_millis(),
        actor: op.user.name.clone(),
        display_name: op.user.shown().to_string(),
        source: AuditSource::Local,
        address: op.from.to_string(),
        action: action.into(),
        alarm_id: subject,
        result,
    };
    tracing::info!(user = %row.actor, from = %row.address, action, subject = %row.alarm_id, result = %row.result, "operator act");
    let store = sh.store.clone();
    match tokio::task::spawn_blocking(move || store.audit(&row)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, action, "audit row not stored"),
        Err(e) => tracing::error!(error = %e, "storing an audit row panicked"),
    }
}
