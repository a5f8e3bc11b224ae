//! `docs/openapi.yaml` against the router (issue 11, observability).
//!
//! Two directions, so neither can drift:
//! - every `.route(PATH, METHOD(...))` in `src/api/` is described, with the
//!   same methods, and nothing is described that is not routed;
//! - on a live gateway (users configured, reads closed), every described
//!   operation answers a status the description lists, and the security it
//!   declares is the one enforced: an open operation never asks for a login,
//!   a guarded one answers 401 without a session, and one marked
//!   `x-riskgate-role: operator` answers 403 to a viewer's session.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{SiteCfg, gas_detectors};
use reqwest::{Method, StatusCode};
use riskgate::auth::{Role, cli};
use serde_json::json;
use yaml_rust2::{Yaml, YamlLoader};

const PW: &str = "openapi-check-1301";
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// One described operation.
#[derive(Debug)]
struct Op {
    /// Declares a security requirement (a session).
    guarded: bool,
    /// `x-riskgate-role`: `reader` or `operator` (guarded ones only).
    role: Option<String>,
    /// The statuses its `responses` list.
    statuses: BTreeSet<u16>,
}

fn spec() -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml");
    YamlLoader::load_from_str(&text)
        .expect("docs/openapi.yaml is YAML")
        .remove(0)
}

/// (method, path) → operation, from the description.
fn documented() -> BTreeMap<(String, String), Op> {
    let doc = spec();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document"
    );
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_hash().expect("paths") {
        let path = path.as_str().expect("a path").to_string();
        for (method, op) in item.as_hash().expect("a path item") {
            let method = method.as_str().unwrap().to_string();
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}: a summary"
            );
            let security = op["security"]
                .as_vec()
                .expect("security stated per operation");
            let statuses: BTreeSet<u16> = op["responses"]
                .as_hash()
                .expect("responses")
                .keys()
                .map(|k| k.as_str().unwrap().parse().expect("a status code"))
                .collect();
            let guarded = !security.is_empty();
            let role = op["x-riskgate-role"].as_str().map(str::to_string);
            if guarded {
                assert!(statuses.contains(&401), "{method} {path}: 401 listed");
            }
            if role.as_deref() == Some("operator") {
                assert!(statuses.contains(&403), "{method} {path}: 403 listed");
            }
            ops.insert(
                (method, path.clone()),
                Op {
                    guarded,
                    role,
                    statuses,
                },
            );
        }
    }
    ops
}

/// (method, path) of every `.route(...)` in the Rust files of `src/api/`.
fn routed() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "rs") {
            routes.extend(routes_in(&std::fs::read_to_string(&p).unwrap()));
        }
    }
    routes
}

/// The routes of one source text: the path literal after `.route(`, and
/// each method router called at the call's own depth (`get(h).post(h2)`).
fn routes_in(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(".route(") {
        let rest = &text[at + ".route(".len()..];
        let lit = rest.trim_start();
        let lit = lit.strip_prefix('"').expect("a route path literal");
        let end = lit.find('"').unwrap();
        let path = lit[..end].to_string();
        let mut depth = 1;
        let mut word = String::new();
        for c in lit[end + 1..].chars() {
            match c {
                '(' => {
                    if depth == 1 && METHODS.contains(&word.as_str()) {
                        out.push((word.clone(), path.clone()));
                    }
                    depth += 1;
                    word.clear();
                }
                ')' => {
                    depth -= 1;
                    word.clear();
                    if depth == 0 {
                        break;
                    }
                }
                c if c.is_alphanumeric() || c == '_' => word.push(c),
                _ => word.clear(),
            }
        }
    }
    out
}

#[test]
fn every_route_is_described_and_every_description_is_routed() {
    let routed = routed();
    let documented: BTreeSet<(String, String)> = documented().into_keys().collect();
    assert!(
        routed.len() >= 15,
        "the route scan found the router: {routed:?}"
    );
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not in docs/openapi.yaml: {undocumented:?}; described but not routed: {unrouted:?}"
    );
}

#[test]
fn the_route_scan_reads_chained_methods_and_closures() {
    let text = r#".route("/a", get(|| async { "x" }))
        .route(
            "/b",
            get(handler::b).post(other(1)),
        )"#;
    assert_eq!(
        routes_in(text),
        vec![
            ("get".to_string(), "/a".to_string()),
            ("get".to_string(), "/b".to_string()),
            ("post".to_string(), "/b".to_string()),
        ]
    );
}

fn client() -> reqwest::Client {
    common::api_client()
}

async fn token(api: &str, name: &str) -> String {
    common::login_token(api, name, PW).await
}

/// Calls an operation with an empty JSON object as the body of a write and
/// a known point for the history, and returns the status (a streamed
/// answer is not read further than its head).
async fn call(api: &str, method: &str, path: &str, token: Option<&str>) -> StatusCode {
    let url = match path {
        "/api/history" => format!("{api}{path}?point=ch4.gd00&since=10m"),
        _ => format!("{api}{path}"),
    };
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut req = client().request(m.clone(), url);
    if m != Method::GET {
        req = req.json(&json!({}));
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("an answer").status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_answers_as_described_and_is_guarded_as_declared() {
    let dir = tempfile::tempdir().unwrap();
    let devs = gas_detectors(1).await;
    let users = dir.path().join("users.toml");
    cli::add(&users, "op", Role::Operator, None, PW).unwrap();
    cli::add(&users, "viewer", Role::Viewer, None, PW).unwrap();
    let text = SiteCfg::new(
        "openapi",
        &dir.path().join("data"),
        vec![devs[0].0.local_addr().port()],
    )
    .toml()
    .replace(
        "[http]\nlisten = \"127.0.0.1:0\"\n",
        "[http]\nlisten = \"127.0.0.1:0\"\nusers_file = \"users.toml\"\n",
    );
    let path = dir.path().join("site.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = riskgate::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
    let gw = riskgate::runtime::start(cfg).await.unwrap();
    let api = format!("http://{}", gw.http_addr.unwrap());
    let viewer = token(&api, "viewer").await;
    let operator = token(&api, "op").await;

    let mut checked = 0;
    for ((method, path), op) in documented() {
        // Logging out ends the session it is called with: last, alone.
        if path == "/api/logout" {
            continue;
        }
        let anonymous = call(&api, &method, &path, None).await;
        let as_viewer = call(&api, &method, &path, Some(&viewer)).await;
        let as_operator = call(&api, &method, &path, Some(&operator)).await;
        for (who, s) in [
            ("anonymous", anonymous),
            ("viewer", as_viewer),
            ("operator", as_operator),
        ] {
            assert!(
                op.statuses.contains(&s.as_u16()),
                "{method} {path} as {who} answered {s}, not a status the description lists ({:?})",
                op.statuses
            );
        }
        if op.guarded {
            assert_eq!(
                anonymous,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a session"
            );
        } else {
            assert_ne!(
                anonymous,
                StatusCode::UNAUTHORIZED,
                "{method} {path} is open"
            );
        }
        match op.role.as_deref() {
            Some("operator") => {
                assert_eq!(
                    as_viewer,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as a viewer"
                );
                assert_ne!(
                    as_operator,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as an operator"
                );
                assert_ne!(as_operator, StatusCode::UNAUTHORIZED);
            }
            Some("reader") => {
                assert!(
                    as_viewer.is_success(),
                    "{method} {path} as a viewer: {as_viewer}"
                );
            }
            Some(other) => panic!("{method} {path}: unknown x-riskgate-role {other}"),
            None => {}
        }
        checked += 1;
    }
    assert!(checked >= 15, "operations checked: {checked}");
    assert_eq!(
        call(&api, "post", "/api/logout", Some(&viewer)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&api, "get", "/api/me", Some(&viewer)).await,
        StatusCode::UNAUTHORIZED,
        "the session ended"
    );
    gw.stop().await;
    drop(devs);
}
