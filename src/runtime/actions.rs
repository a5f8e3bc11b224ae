//! Actions (writes to a device) that an alarm asks for, checked by reading
//! the value back within the action's `confirm_within`.
//!
//! The event that asks for an action does not wait for it: it is committed
//! at once with the action listed as `pending` (see `outbox`). The outcome
//! follows as events of its own: a failed or unconfirmed write raises the
//! target's `{point}.action` fault alarm (level 2, its message naming the
//! target and why), a confirmed one clears it. An action runs for at most
//! its `confirm_within` (validation caps it at 60 s).

use tokio::sync::{mpsc, oneshot};

use crate::model::{ActionResult, Value};
use crate::rules::engine::ActionRequest;
use crate::source::WriteRequest;

/// Starts `a` on `writer`; reports a failure (`Some(why)`) or a confirmed
/// write (`None`, which ends an earlier failure alarm) on `failed`.
pub(super) fn spawn(
    writer: Option<mpsc::Sender<WriteRequest>>,
    a: ActionRequest,
    failed: mpsc::UnboundedSender<(String, Option<String>)>,
) -> tokio::task::JoinHandle<ActionResult> {
    tokio::spawn(async move {
        let r = run(writer, &a).await;
        if r.result == "failed" {
            let _ = failed.send((a.point.clone(), Some(r.detail.clone().unwrap_or_default())));
        } else if r.result == "confirmed" {
            let _ = failed.send((a.point.clone(), None));
        }
        r
    })
}

/// How `a` is listed in the event that asks for it, before its outcome.
pub(super) fn pending(a: &ActionRequest) -> ActionResult {
    ActionResult {
        kind: "modbus_write".into(),
        target: a.point.clone(),
        value: Some(serde_json::json!(a.value)),
        result: "pending".into(),
        detail: None,
    }
}

/// Writes the action's value and checks the read-back within its time.
async fn run(writer: Option<mpsc::Sender<WriteRequest>>, a: &ActionRequest) -> ActionResult {
    let mut result = ActionResult {
        result: "failed".into(),
        ..pending(a)
    };
    let Some(w) = writer else {
        result.detail = Some("no writer for this point's device".into());
        return result;
    };
    let (tx, rx) = oneshot::channel();
    let req = WriteRequest {
        point: a.point.clone(),
        value: Value::Num(a.value),
        reply: tx,
    };
    let outcome = tokio::time::timeout(a.confirm_within, async {
        w.send(req)
            .await
            .map_err(|_| "device task not running".to_string())?;
        rx.await
            .map_err(|_| "device task dropped the request".to_string())?
            .map_err(|e| e.to_string())
    })
    .await;
    match outcome {
        Ok(Ok(v)) if v.as_f64().is_some_and(|x| (x - a.value).abs() < 1e-6) => {
            result.result = "confirmed".into()
        }
        Ok(Ok(v)) => {
            result.detail = Some(format!(
                "read back {v}, expected {}",
                crate::model::trim_float(a.value)
            ))
        }
        Ok(Err(e)) => result.detail = Some(e.chars().take(200).collect()),
        Err(_) => {
            result.detail = Some(format!(
                "not confirmed within {}",
                humantime::format_duration(a.confirm_within)
            ))
        }
    }
    result
}
