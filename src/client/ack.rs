//! `riskgate ack ALARM_ID`: acknowledges one alarm as the logged-in operator.

use super::{Login, in_session};

/// Acknowledges `alarm_id`; the line to print on success.
pub async fn ack(api: &str, alarm_id: &str, login: Login) -> anyhow::Result<String> {
    let r = in_session(
        api,
        login,
        "/api/alarms/ack",
        serde_json::json!({"alarm_id": alarm_id}),
    )
    .await?;
    Ok(format!(
        "acknowledged {alarm_id} by {}",
        r["acked_by"].as_str().unwrap_or_default()
    ))
}
