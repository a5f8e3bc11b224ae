//! The command line's client of a running gateway's HTTP API: `riskgate
//! ack` logs in (or uses a token), acknowledges and logs out again, so
//! the name on the acknowledgement is always a logged-in operator's.

use std::time::Duration;

use anyhow::Context;

/// How the command line proves who it is.
pub enum Login {
    Password(String, String),
    Token(String),
}

/// POSTs `body` to `{api}{path}` with the bearer token, if any; the JSON
/// answer on success, the answer's `error` otherwise.
async fn post(
    api: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    // `--api 127.0.0.1:8080` (as `http.listen` is written) means http://.
    let api = api.trim_end_matches('/');
    let url = if api.contains("://") {
        format!("{api}{path}")
    } else {
        format!("http://{api}{path}")
    };
    let mut req = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status.is_success() {
        Ok(body)
    } else {
        anyhow::bail!("{}", body["error"].as_str().unwrap_or(status.as_str()))
    }
}

/// Logs in (unless given a token), acknowledges, logs out again.
pub async fn ack(api: &str, alarm_id: &str, login: Login) -> anyhow::Result<String> {
    let (token, own) = match login {
        Login::Token(t) => (t, false),
        Login::Password(name, password) => {
            let r = post(
                api,
                "/api/login",
                None,
                serde_json::json!({"name": name, "password": password}),
            )
            .await
            .context("login")?;
            (r["token"].as_str().unwrap_or_default().to_string(), true)
        }
    };
    let r = post(
        api,
        "/api/alarms/ack",
        Some(&token),
        serde_json::json!({"alarm_id": alarm_id}),
    )
    .await;
    if own {
        // The session was only for this; a failed logout only leaves it to expire.
        let _ = post(api, "/api/logout", Some(&token), serde_json::json!({})).await;
    }
    let r = r?;
    Ok(format!(
        "acknowledged {alarm_id} by {}",
        r["acked_by"].as_str().unwrap_or_default()
    ))
}
