//! Calibration windows (标校) and point quality end to end (issue 14 items
//! 2 and 3): a gas detector simulated by firmware-sim on Modbus TCP, the
//! gateway on loopback (port 0) with operator accounts, a real Mosquitto
//! and a county subscriber that checks every message it gets against the
//! contract's schemas (alarm events 1.1, telemetry v1, status).
//!
//! - `POST /api/calibrations` is an operator's: 401 without a session, 403
//!   for a viewer, 400 for a `by` field or a bad length, 404 for an
//!   unknown point, 409 while a window is open; each refusal the engine
//!   makes, and each window opened, is in the audit log;
//! - inside the window the point is `calibrating` in `GET /api/points`,
//!   `GET /api/calibrations` and the county's telemetry (with its value),
//!   and the methane alarm the test gas raises goes out as a `calibration`
//!   event with quality `calibrating`;
//! - the window closes by itself: its alarm clears, the point is `good`;
//! - a reading outside the sensor's range is `over_range` and a device's
//!   fault bit makes its point `device_fault`, in telemetry and in the
//!   fault alarm's `quality`;
//! - `riskgate calibrate POINT --for 1m` opens a window as the token's user.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    Mosquitto, SiteCfg, Subscriber, SubscriberOpts, assert_schema_valid, gas_detectors,
    wait_for_async,
};
use reqwest::StatusCode;
use riskgate::auth::{Role, cli};
use serde_json::{Value as J, json};

const LIMIT: Duration = Duration::from_secs(20);
const PW: &str = "calibrate-check-1301";
const SITE: &str = "api-cal";

/// The fault tests' site with users, its uplink and telemetry, a range on
/// CO (0-1000 ppm) and the detector's sensor-fault bit on O₂.
fn config(dir: &Path, dev_port: u16, broker_port: u16) -> riskgate::config::Config {
    let users = dir.join("users.toml");
    cli::add(&users, "op", Role::Operator, Some("标校员 乙"), PW).unwrap();
    cli::add(&users, "viewer", Role::Viewer, None, PW).unwrap();
    let text = SiteCfg::new(SITE, &dir.join("data"), vec![dev_port])
        .plain_uplink(broker_port)
        .toml()
        .replace(
            "[http]\nlisten = \"127.0.0.1:0\"\n",
            "[http]\nlisten = \"127.0.0.1:0\"\nusers_file = \"users.toml\"\n",
        )
        + r#"
[telemetry]
interval = "1s"
min_interval = "200ms"

[[quality]]
point = "co.gd00"
range = [0.0, 1000.0]

[[quality]]
point = "o2.gd00"
fault = "status.gd00"
fault_mask = 1
"#;
    let p = dir.join("site.toml");
    std::fs::write(&p, &text).unwrap();
    riskgate::config::load(&p).unwrap_or_else(|e| panic!("{e:?}"))
}

fn client() -> reqwest::Client {
    common::api_client()
}

async fn token(api: &str, name: &str) -> String {
    common::login_token(api, name, PW).await
}

async fn get(api: &str, path: &str, token: &str) -> J {
    let r = client()
        .get(format!("{api}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn calibrate(api: &str, token: Option<&str>, body: J) -> (StatusCode, J) {
    let mut req = client().post(format!("{api}/api/calibrations")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(J::Null))
}

/// Every message the county got, each valid against its schema.
fn check_schemas(county: &Subscriber) {
    for m in &county.seen {
        let schema = match m.topic.rsplit('/').next().unwrap() {
            "alarm" => "alarm-event.schema.json",
            "telemetry" => "telemetry.schema.json",
            "status" => "status.schema.json",
            _ => continue,
        };
        assert_schema_valid(schema, &m.payload);
    }
}

/// The newest telemetry entry for `point`, if any.
fn telemetry_of<'a>(county: &'a Subscriber, point: &str) -> Option<&'a J> {
    county
        .seen
        .iter()
        .filter(|m| m.topic.ends_with("/telemetry"))
        .max_by_key(|m| m.payload["tseq"].as_u64())
        .and_then(|m| {
            m.payload["points"]
                .as_array()?
                .iter()
                .find(|p| p["id"] == point)
        })
}

fn alarm(county: &Subscriber, f: impl Fn(&J) -> bool) -> Option<&J> {
    county.alarms().into_iter().find(|a| f(a))
}

async fn point_quality(api: &str, token: &str, point: &str) -> String {
    get(api, "/api/points", token)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == point)
        .map(|p| p["quality"].as_str().unwrap().to_string())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_windows_and_quality_states_reach_the_api_and_the_county() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let devs = gas_detectors(1).await;
    let dev = &devs[0].1;
    let cfg = config(dir.path(), devs[0].0.local_addr().port(), broker.port);
    let mut county = Subscriber::connect(SubscriberOpts::new(
        broker.port,
        "county-calibrate",
        &format!("riskgate/v1/{SITE}/+"),
    ))
    .await;
    let gw = riskgate::runtime::start(cfg).await.unwrap();
    let api = format!("http://{}", gw.http_addr.unwrap());
    let op = token(&api, "op").await;
    let viewer = token(&api, "viewer").await;
    county
        .until("methane sent as good", LIMIT, |c| {
            telemetry_of(c, "ch4.gd00").is_some_and(|p| p["q"] == "good")
        })
        .await;

    // The guards, and what the request itself must carry.
    let body = json!({"point": "ch4.gd00", "for": "3s"});
    assert_eq!(
        calibrate(&api, None, body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        calibrate(&api, Some(&viewer), body.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, v) = calibrate(
        &api,
        Some(&op),
        json!({"point": "ch4.gd00", "for": "3s", "by": "someone else"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = calibrate(&api, Some(&op), json!({"point": "ch4.gd00", "for": "soon"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("`for`"), "{v}");
    let (s, v) = calibrate(&api, Some(&op), json!({"point": "ch4.gd00", "for": "5h"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "at most 4 h: {v}");
    let (s, v) = calibrate(&api, Some(&op), json!({"point": "no.such", "for": "3s"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // The window: in the session user's name, one at a time.
    let (s, v) = calibrate(&api, Some(&op), body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["point"], "ch4.gd00");
    assert_eq!(v["by"], "op");
    assert!(v["until"].is_string(), "{v}");
    let (s, v) = calibrate(&api, Some(&op), body.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let open = get(&api, "/api/calibrations", &viewer).await;
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["point"], "ch4.gd00");
    assert_eq!(open[0]["by"], "op");
    wait_for_async("the point shown as calibrating", LIMIT, || async {
        (point_quality(&api, &viewer, "ch4.gd00").await == "calibrating").then_some(())
    })
    .await;

    // Test gas: the preset's methane alarm goes out as a calibration
    // event, and the telemetry carries the value as `calibrating`.
    dev.set_signal("ch4", 1.2);
    county
        .until("the test gas as calibrating telemetry", LIMIT, |c| {
            telemetry_of(c, "ch4.gd00").is_some_and(|p| p["q"] == "calibrating" && p["v"] == 1.2)
        })
        .await;
    county
        .until("the methane alarm as a calibration event", LIMIT, |c| {
            alarm(c, |a| {
                a["point_id"] == "ch4.gd00"
                    && a["state"] == "raised"
                    && a["kind"] == "calibration"
                    && a["rule_id"] != "ch4.gd00.calibration"
            })
            .is_some()
        })
        .await;
    let a = alarm(&county, |a| {
        a["point_id"] == "ch4.gd00" && a["kind"] == "calibration" && a["state"] == "raised"
    })
    .unwrap();
    assert_eq!(a["quality"], "calibrating", "{a:#}");
    dev.set_signal("ch4", 0.3);

    // The window closes by itself.
    county
        .until("the window's alarm cleared", LIMIT, |c| {
            alarm(c, |a| {
                a["rule_id"] == "ch4.gd00.calibration" && a["state"] == "cleared"
            })
            .is_some()
        })
        .await;
    county
        .until("methane good again", LIMIT, |c| {
            telemetry_of(c, "ch4.gd00").is_some_and(|p| p["q"] == "good")
        })
        .await;
    wait_for_async("no window listed", LIMIT, || async {
        get(&api, "/api/calibrations", &viewer)
            .await
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    wait_for_async("the point shown as good", LIMIT, || async {
        (point_quality(&api, &viewer, "ch4.gd00").await == "good").then_some(())
    })
    .await;

    // Over range, and the device's own fault bit.
    dev.set_signal("co", 5000.0);
    dev.set_signal("fault", 1.0);
    county
        .until(
            "CO over range and O2 device_fault in telemetry",
            LIMIT,
            |c| {
                telemetry_of(c, "co.gd00")
                    .is_some_and(|p| p["q"] == "over_range" && p["v"].is_null())
                    && telemetry_of(c, "o2.gd00").is_some_and(|p| p["q"] == "device_fault")
            },
        )
        .await;
    county
        .until("both fault alarms with their quality", LIMIT, |c| {
            alarm(c, |a| {
                a["rule_id"] == "co.gd00.fault" && a["quality"] == "over_range"
            })
            .is_some()
                && alarm(c, |a| {
                    a["rule_id"] == "o2.gd00.fault" && a["quality"] == "device_fault"
                })
                .is_some()
        })
        .await;

    // The command line opens a window as the token's user.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["calibrate", "temp.gd00", "--for", "1m", "--api", &api])
        .env("RISKGATE_TOKEN", &op)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("calibrating temp.gd00 by op until "),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["calibrate", "temp.gd00", "--for", "1m", "--api", &api])
        .env_remove("RISKGATE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no account, no token");

    // The audit log: every window and every refusal the engine made.
    let rows = get(&api, "/api/audit", &op).await;
    let rows: Vec<&J> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "calibrate")
        .collect();
    let results: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["alarm_id"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(results.len(), 5, "{results:#?}");
    assert!(results[0].1.starts_with("refused"), "5h: {results:?}");
    assert_eq!(results[1].0, "no.such.calibration");
    assert!(results[2].1.starts_with("ok: for 3s"), "{results:?}");
    assert!(results[3].1.starts_with("refused"), "409: {results:?}");
    assert_eq!(results[4].0, "temp.gd00.calibration");
    for r in &rows {
        assert_eq!(r["actor"], "op");
        assert_eq!(r["display_name"], "标校员 乙");
    }

    check_schemas(&county);
    gw.stop().await;
}
