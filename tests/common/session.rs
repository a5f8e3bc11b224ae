//! The API as an operator's script sees it: a client with a limit, and a
//! login that hands back the bearer token.

use std::time::Duration;

/// An async HTTP client whose requests give up after 15 s, so a hung
/// gateway fails the test instead of stalling it.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// Logs `name` in at `api` and returns the session's token; the login must
/// succeed.
pub async fn login_token(api: &str, name: &str, password: &str) -> String {
    let r = api_client()
        .post(format!("{api}/api/login"))
        .json(&serde_json::json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK, "login {name}");
    r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}
