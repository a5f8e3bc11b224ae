//! The command line's clients of a running gateway's HTTP API, one file
//! per job: `riskgate ack` ([`ack`]) and `riskgate calibrate`
//! ([`calibrate`]). Each logs in (or uses a token), makes its one request
//! and logs out again, so the name on what it does is always a logged-in
//! operator's, never one the command line typed.

use std::time::Duration;

use anyhow::Context;

mod ack;
mod calibrate;

pub use ack::ack;
pub use calibrate::calibrate;

/// How the command line proves who it is.
pub enum Login {
    Password(String, String),
    Token(String),
}

impl Login {
    /// `RISKGATE_TOKEN` when set and not empty, else the account `user`
    /// with its password read from the terminal; `None` when neither is
    /// given (the caller says which flag is missing).
    pub fn from_env_or_prompt(user: Option<String>) -> Option<anyhow::Result<Login>> {
        match (std::env::var("RISKGATE_TOKEN").ok(), user) {
            (Some(t), _) if !t.is_empty() => Some(Ok(Login::Token(t))),
            (_, Some(u)) => Some(
                crate::auth::cli::read_password(&format!("password of {u}: "))
                    .map(|pw| Login::Password(u, pw))
                    .map_err(anyhow::Error::from),
            ),
            _ => None,
        }
    }
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

/// Logs in (unless given a token), POSTs `body` to `path` in that session
/// and logs out again; the answer of the one request.
async fn in_session(
    api: &str,
    login: Login,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
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
    let r = post(api, path, Some(&token), body).await;
    if own {
        // The session was only for this; a failed logout only leaves it to expire.
        let _ = post(api, "/api/logout", Some(&token), serde_json::json!({})).await;
    }
    r
}
