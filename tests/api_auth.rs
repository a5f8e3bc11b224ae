//! Operator accounts over a real server on loopback (port 0): missing,
//! invalid and expired sessions, viewer against operator, the acknowledgement
//! by bearer token and by cookie with the session's name (a `by` in the body
//! is refused), bad bodies, a foreign Host, a cross-site Origin, the security
//! headers, the audit rows the acknowledgements leave (API and `riskgate
//! history --audit`), the login lockout, and the config check that a LAN
//! listener needs users.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{SiteCfg, gas_detectors, wait_for_async};
use reqwest::StatusCode;
use riskgate::auth::{Role, cli};
use serde_json::{Value as J, json};

const LIMIT: Duration = Duration::from_secs(20);
const PW: &str = "correct-horse-1301";

/// The fault tests' site with `http` as its `[http]` body and two users
/// (`op` operator, `viewer` viewer) in `dir/users.toml`.
fn config(dir: &Path, port: u16, http: &str) -> riskgate::config::Config {
    let users = dir.join("users.toml");
    cli::add(&users, "op", Role::Operator, Some("值班员 甲"), PW).unwrap();
    cli::add(&users, "viewer", Role::Viewer, None, PW).unwrap();
    let text = SiteCfg::new("api-auth", &dir.join("data"), vec![port])
        .toml()
        .replace(
            "[http]\nlisten = \"127.0.0.1:0\"\n",
            &format!("[http]\nlisten = \"127.0.0.1:0\"\nusers_file = \"users.toml\"\n{http}\n"),
        );
    let p = dir.join("site.toml");
    std::fs::write(&p, &text).unwrap();
    riskgate::config::load(&p).unwrap_or_else(|e| panic!("{e:?}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn login(api: &str, name: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{api}/api/login"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Logs in and returns the token.
async fn token(api: &str, name: &str) -> String {
    let r = login(api, name, PW).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<J>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(api: &str, path: &str, token: Option<&str>) -> (StatusCode, J) {
    let mut req = client().get(format!("{api}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(J::Null))
}

async fn ack(api: &str, token: Option<&str>, body: J) -> (StatusCode, J) {
    let mut req = client().post(format!("{api}/api/alarms/ack")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(J::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_roles_acknowledgement_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let devs = gas_detectors(1).await;
    let cfg = config(
        dir.path(),
        devs[0].0.local_addr().port(),
        "allowed_hosts = [\"gw.site.lan\"]",
    );
    let cfg_path = cfg.file.clone();
    let gw = riskgate::runtime::start(cfg).await.unwrap();
    let addr = gw.http_addr.unwrap();
    let api = format!("http://{addr}");

    // No session, a made-up token, a made-up cookie: 401 on reads and writes.
    for path in [
        "/api/state",
        "/api/points",
        "/api/alarms",
        "/api/events",
        "/api/online",
        "/api/history?point=ch4.gd00",
        "/api/me",
        "/api/audit",
    ] {
        assert_eq!(
            get(&api, path, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            get(&api, path, Some(&"0".repeat(64))).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let r = client()
        .get(format!("{api}/api/state"))
        .header("Cookie", "riskgate_session=deadbeef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, v) = ack(&api, None, json!({"alarm_id": "x"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"], "login required");

    // The page is served to anyone (its login form), with the headers.
    let r = client().get(format!("{api}/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(html.contains(&format!("<script nonce=\"{nonce}\"")));
    // ... and every API answer too, errors included.
    let r = client()
        .get(format!("{api}/api/state"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // Health and metrics stay open for monitors.
    assert_eq!(get(&api, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(
        client()
            .get(format!("{api}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Bad logins and bad bodies.
    let r = login(&api, "op", "wrong password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.json::<J>().await.unwrap()["error"].is_string());
    assert_eq!(
        login(&api, "nobody", PW).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for (ct, body) in [
        ("application/json", "{not json"),
        ("application/json", r#"{"name":"op"}"#),
        (
            "application/json",
            r#"{"name":"op","password":"x","role":"operator"}"#,
        ),
    ] {
        let r = client()
            .post(format!("{api}/api/login"))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let r = client()
        .post(format!("{api}/api/login"))
        .header("Content-Type", "text/plain")
        .body(format!(r#"{{"name":"op","password":"{PW}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // The viewer: logged in by cookie, reads, may not acknowledge.
    let r = login(&api, "viewer", PW).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["riskgate_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let v: J = r.json().await.unwrap();
    assert_eq!(v["name"], "viewer");
    assert_eq!(v["display_name"], "viewer");
    assert_eq!(v["role"], "viewer");
    let viewer = v["token"].as_str().unwrap().to_string();
    let session = cookie.split(';').next().unwrap().to_string();
    let r = client()
        .get(format!("{api}/api/me"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<J>().await.unwrap(),
        json!({"name": "viewer", "display_name": "viewer", "role": "viewer"})
    );
    assert_eq!(
        get(&api, "/api/state", Some(&viewer)).await.0,
        StatusCode::OK
    );
    let r = client()
        .post(format!("{api}/api/alarms/ack"))
        .header("Cookie", &session)
        .json(&json!({"alarm_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a viewer's acknowledgement"
    );
    assert_eq!(
        get(&api, "/api/audit", Some(&viewer)).await.0,
        StatusCode::FORBIDDEN
    );

    // An alarm to acknowledge: methane over the face's limits.
    devs[0].1.set_signal("ch4", 1.62);
    let op = token(&api, "op").await;
    let (s, me) = get(&api, "/api/me", Some(&op)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        me,
        json!({"name": "op", "display_name": "值班员 甲", "role": "operator"})
    );
    let alarm_id = wait_for_async("an active alarm in /api/alarms", LIMIT, || {
        let (api, op) = (api.clone(), op.clone());
        async move {
            let (_, v) = get(&api, "/api/alarms", Some(&op)).await;
            v.as_array()?.first()?["alarm_id"]
                .as_str()
                .map(String::from)
        }
    })
    .await;

    // `by` cannot be forged: a body naming someone is refused outright.
    let (s, v) = ack(&api, Some(&op), json!({"alarm_id": alarm_id, "by": "张三"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("`by`"));
    // Bad bodies.
    for body in [
        json!({}),
        json!({"alarm_id": 7}),
        json!({"alarm_id": ""}),
        json!({"alarm": "x"}),
    ] {
        assert_eq!(
            ack(&api, Some(&op), body.clone()).await.0,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    // An unknown alarm: refused, and audited as refused.
    let (s, _) = ack(&api, Some(&op), json!({"alarm_id": "no-such-alarm"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // The operator, by bearer token: the name is the session's.
    let (s, v) = ack(&api, Some(&op), json!({"alarm_id": alarm_id})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["acked_by"], "op");
    let (_, alarms) = get(&api, "/api/alarms", Some(&viewer)).await;
    let a = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alarm_id"] == alarm_id.as_str())
        .unwrap();
    assert_eq!(a["acked_by"], "op");

    // The audit log: both tries, who, from where, the result.
    let (s, rows) = get(&api, "/api/audit", Some(&op)).await;
    assert_eq!(s, StatusCode::OK);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["alarm_id"], "no-such-alarm");
    assert!(rows[0]["result"].as_str().unwrap().starts_with("refused"));
    assert_eq!(rows[1]["alarm_id"], alarm_id.as_str());
    assert_eq!(rows[1]["result"], "ok");
    for r in rows {
        assert_eq!(r["actor"], "op");
        assert_eq!(r["display_name"], "值班员 甲");
        assert_eq!(r["source"], "local");
        assert_eq!(r["address"], "127.0.0.1");
        assert!(r["at"].is_string());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["history", "--audit", "--since", "1h", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("\tlocal\top\t") && l.contains(&alarm_id) && l.ends_with("\tok")),
        "{text}"
    );

    // Host: a name not allowed is refused (DNS rebinding); an allowed name,
    // an IP address and localhost pass.
    let port = addr.port();
    for (host, ok) in [
        (format!("evil.example:{port}"), false),
        (format!("gw.site.lan:{port}"), true),
        (format!("127.0.0.1:{port}"), true),
        (format!("localhost:{port}"), true),
    ] {
        let r = client()
            .get(format!("{api}/api/state"))
            .header("Host", &host)
            .bearer_auth(&op)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status() == StatusCode::OK,
            ok,
            "Host {host}: {}",
            r.status()
        );
        if !ok {
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
            assert!(r.headers().contains_key("content-security-policy"));
        }
    }
    // Origin: a cross-site POST is refused even with a valid session; the
    // page's own origin passes (to the handler, which then says 409).
    for (origin, fetch_site, want) in [
        ("http://evil.example", None, StatusCode::FORBIDDEN),
        ("null", None, StatusCode::FORBIDDEN),
        (api.as_str(), Some("cross-site"), StatusCode::FORBIDDEN),
        (api.as_str(), Some("same-origin"), StatusCode::CONFLICT),
    ] {
        let mut req = client()
            .post(format!("{api}/api/alarms/ack"))
            .header("Origin", origin)
            .bearer_auth(&op)
            .json(&json!({"alarm_id": "no-such-alarm"}));
        if let Some(f) = fetch_site {
            req = req.header("Sec-Fetch-Site", f);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            want,
            "Origin {origin} {fetch_site:?}"
        );
    }

    // A changed password ends the sessions opened with the old one.
    cli::passwd(&dir.path().join("users.toml"), "viewer", "another-password").unwrap();
    assert_eq!(
        get(&api, "/api/me", Some(&viewer)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Logout: 204, the cookie cleared, the token dead.
    let r = client()
        .post(format!("{api}/api/logout"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get(&api, "/api/me", Some(&op)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Failed logins are counted, and an address that keeps failing is locked
    // out (429) even with the right password.
    for _ in 0..riskgate::auth::throttle::MAX_FAILURES {
        assert_eq!(
            login(&api, "op", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = login(&api, "op", PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let metrics = client()
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("riskgate_login_failures_total{reason=\"refused\"}")),
        "{metrics}"
    );

    gw.stop().await;
    drop(devs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let devs = gas_detectors(1).await;
    let cfg = config(
        dir.path(),
        devs[0].0.local_addr().port(),
        "session_idle = \"1s\"\nsession_max = \"1s\"",
    );
    let gw = riskgate::runtime::start(cfg).await.unwrap();
    let api = format!("http://{}", gw.http_addr.unwrap());
    let t = token(&api, "op").await;
    assert_eq!(get(&api, "/api/me", Some(&t)).await.0, StatusCode::OK);
    // Requests keep the idle clock going; the absolute limit ends it anyway.
    wait_for_async("the session to expire", LIMIT, || {
        let (api, t) = (api.clone(), t.clone());
        async move { (get(&api, "/api/me", Some(&t)).await.0 == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
    assert_eq!(
        get(&api, "/api/state", Some(&t)).await.0,
        StatusCode::UNAUTHORIZED
    );
    gw.stop().await;
    drop(devs);
}

#[test]
fn a_lan_listener_without_users_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let write = |listen: &str| {
        let text = format!(
            "[site]\nid = \"s1\"\nkind = \"coal_mine\"\ntimezone = \"Mars/Olympus\"\n[gateway]\nid = \"gw1\"\ndata_dir = \"{}\"\n[http]\nlisten = \"{listen}\"\nusers_file = \"users.toml\"\n",
            dir.path().join("data").display()
        );
        let p = dir.path().join("site.toml");
        std::fs::write(&p, text).unwrap();
        p
    };
    let errors = |p: &Path| match riskgate::config::load(p) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    };
    // Loopback without users: only the bad time zone.
    let p = write("127.0.0.1:8080");
    let e = errors(&p);
    assert_eq!(e.len(), 1, "{e:?}");
    // The LAN without users: both errors at once, each FILE: path: message.
    let p = write("0.0.0.0:8080");
    let e = errors(&p);
    let file = p.display().to_string();
    assert!(
        e.iter()
            .any(|x| x.starts_with(&format!("{file}: site.timezone: "))),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|x| x.starts_with(&format!("{file}: http.listen: "))
                && x.contains("no user is configured")),
        "{e:?}"
    );
    // `riskgate validate` says so and exits 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["validate", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.listen"));
    // A user added with the CLI (password on stdin) settles it.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args([
            "user",
            "add",
            "keeper",
            "--role",
            "operator",
            "--display",
            "值守员",
            "--config",
        ])
        .arg(&p)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"keeper-password\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = errors(&p);
    assert_eq!(e.len(), 1, "only the time zone is left: {e:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["user", "list", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("keeper\toperator\t值守员"), "{text}");
    assert!(!text.contains("argon2"), "hashes are not listed");
    // A short password is refused; so is a password on the command line
    // (there is no such argument).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args([
            "user",
            "add",
            "x",
            "--role",
            "viewer",
            "--password",
            "p",
            "--config",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
