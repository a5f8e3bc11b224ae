//! `riskgate calibrate POINT --for 30m`: opens a calibration window (标校)
//! on a point as the logged-in operator; the gateway closes it by itself.

use super::{Login, in_session};

/// Opens the window of `length` (e.g. `30m`, checked by the gateway) on
/// `point`; the line to print on success.
pub async fn calibrate(
    api: &str,
    point: &str,
    length: &str,
    login: Login,
) -> anyhow::Result<String> {
    let r = in_session(
        api,
        login,
        "/api/calibrations",
        serde_json::json!({"point": point, "for": length}),
    )
    .await?;
    Ok(format!(
        "calibrating {point} by {} until {}",
        r["by"].as_str().unwrap_or_default(),
        r["until"].as_str().unwrap_or_default()
    ))
}
