//! The rules end to end: firmware-sim devices (Modbus TCP slaves and an MQTT
//! AI video box), a real Mosquitto, the gateway started in-process with
//! `riskgate::runtime::start`, and an independent MQTT subscriber standing in
//! for the county platform.
//!
//! - 无视频监控不作业 (preset `coal-no-video`): camera offline, blocked, or the
//!   video box silent while the face works → level 2 `interlock`.
//! - 断电失效 (preset `coal-kj-crosscheck`): methane over the cut value while
//!   the zone's 馈电 stays on for more than 2 s → level 1 `consistency`; a cut
//!   within 1 s raises nothing.
//! - Acknowledgement of a latching alarm by the `riskgate ack` CLI and by the
//!   county on `{prefix}/{site}/ack`.
//! - Actions: the event goes out at once with its write `pending`; a
//!   confirmed write (set in the device, `confirmed` in the local log, no
//!   failure alarm), a failed write and its own `fault` alarm naming the
//!   target and why, and no write at all from a rule whose input was never
//!   good.
//!
//! No test waits a fixed time: every wait is for an event, a state in the
//! API, or an `on_delay` marker that must come after what must not happen.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Mosquitto, Subscriber, assert_schema_valid, subscribe, wait_for_async};
use firmware_sim::{
    Fault, FaultSwitch, RegisterBank, Scenario, TcpSlave, VideoBox, VideoBoxConfig, devices,
};
use riskgate::demo::site::{GasChannel, GasDetector, GasPoint, Site};
use riskgate::runtime::Running;
use serde_json::Value as J;

const LIMIT: Duration = Duration::from_secs(20);

type Seen = Vec<(String, J, bool)>;

/// The site config around `body`: HTTP on a free port, the data in `dir`, the
/// uplink in plain TCP to the test broker.
fn site_config(site: &str, dir: &Path, broker: u16, body: &str) -> riskgate::config::Config {
    let text = Site::new(site, "coal_mine", &format!("gw-{site}"), &dir.join("data"))
        .site_field("name", "规则测试矿")
        .site_field("region_code", "140581")
        // Reads open (the checks below read the API without a login);
        // acknowledging still needs an operator's login.
        .raw("[http]\nlisten = \"127.0.0.1:0\"\nusers_file = \"users.toml\"\npublic_read = true\n[store]\ncommit_interval = \"100ms\"")
        // The county's acknowledgement below releases a latched alarm.
        .plain_uplink(
            "127.0.0.1",
            broker,
            "status_interval = \"2s\"\nremote_ack_clears_latching = true",
        )
        .raw(body)
        .toml();
    let path = dir.join("site.toml");
    std::fs::write(&path, &text).unwrap();
    riskgate::config::load_str(&text, &path).unwrap_or_else(|e| {
        panic!(
            "config: {}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

async fn start(cfg: riskgate::config::Config) -> (Running, String) {
    let running = riskgate::runtime::start(cfg).await.expect("gateway starts");
    let api = format!("http://{}", running.http_addr.expect("http enabled"));
    (running, api)
}

async fn get_json(url: &str) -> J {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Waits until the API shows every one of `points` with good quality.
async fn points_good(api: &str, points: &[&str]) {
    let url = format!("{api}/api/points");
    wait_for_async("the points to be good in /api/points", LIMIT, || {
        let url = url.clone();
        async move {
            let v = get_json(&url).await;
            let all = points.iter().all(|id| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["id"] == *id && p["quality"] == "good")
            });
            all.then_some(())
        }
    })
    .await;
}

async fn active_alarms(api: &str) -> Vec<J> {
    get_json(&format!("{api}/api/alarms"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// An alarm event of `rule` in `state`.
fn alarm<'a>(rule: &'a str, state: &'a str) -> impl Fn(&str, &J) -> bool + 'a {
    move |t: &str, v: &J| t.ends_with("/alarm") && v["rule_id"] == rule && v["state"] == state
}

async fn wait_alarm(sub: &mut Subscriber, seen: &mut Seen, rule: &str, state: &str) -> J {
    let v = sub
        .wait(&format!("{rule} {state}"), LIMIT, seen, alarm(rule, state))
        .await;
    assert_schema_valid("alarm-event.schema.json", &v);
    v
}

/// The event `seq` as the local alarm log (`/api/events`) has it once its
/// actions have ended; the county got it with them `pending`.
async fn logged_outcome(api: &str, seq: &J) -> J {
    let url = format!("{api}/api/events?since=1h");
    wait_for_async(
        &format!("the action outcome of event {seq} in the log"),
        LIMIT,
        || {
            let url = url.clone();
            async move {
                let v = get_json(&url).await;
                v.as_array()?
                    .iter()
                    .find(|e| e["seq"] == *seq && e["actions"][0]["result"] != "pending")
                    .cloned()
            }
        },
    )
    .await
}

/// The highest `seq` of the alarm events seen so far.
fn seq_now(seen: &Seen) -> u64 {
    seen.iter()
        .filter(|(t, _, _)| t.ends_with("/alarm"))
        .filter_map(|(_, v, _)| v["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// a. 无视频监控不作业
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_video_while_the_face_works_is_an_interlock_alarm() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let site = "rules-video";

    // The face PLC: coil 0 is "采煤机运行" (the face is working).
    let plc_bank = RegisterBank::new();
    plc_bank.set_coil(0, true);
    let plc = TcpSlave::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![],
        plc_bank.clone(),
        FaultSwitch::new(),
    )
    .await
    .unwrap();

    // The AI video box of the face, one camera, publishing every 200 ms.
    let mut vb_cfg = VideoBoxConfig::new("127.0.0.1", broker.port, "vb-1301", 1);
    vb_cfg.heartbeat = Duration::from_millis(200);
    let topic = vb_cfg.topic();
    let mut vb = VideoBox::start(vb_cfg);

    let cfg = site_config(
        site,
        dir.path(),
        broker.port,
        &format!(
            r#"
[[devices]]
id = "face-plc-1301"
name = "1301 工作面 PLC"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {plc_port}
poll_interval = "200ms"
timeout = "300ms"
retries = 0
  [[devices.points]]
  id = "face_1301.working"
  name = "1301 采煤机运行"
  register = "coil"
  address = 0

[[devices]]
id = "vb-1301"
name = "1301 AI 视频盒"
protocol = "mqtt"
broker = "127.0.0.1:{mqtt}"
topic = "{topic}"
heartbeat = "1s"
  [[devices.points]]
  id = "video_1301.online"
  name = "1301 摄像机在线"
  path = "cameras[0].online"
  type = "bool"
  [[devices.points]]
  id = "video_1301.blocked"
  name = "1301 摄像机遮挡"
  path = "cameras[0].blocked"
  type = "bool"

[[presets]]
name = "coal-no-video"
id_prefix = "1301-"
bind = {{ working = "face_1301.working", cam_online = "video_1301.online", cam_blocked = "video_1301.blocked" }}

# The preset's rule with a 1 s hold instead of 30 s, to keep the test short:
# a site rule with the same id replaces the preset's.
[[rules]]
id = "1301-no-video"
kind = "interlock"
name = "无视频监控不作业"
when = "face_1301.working && !(video_1301.online && !video_1301.blocked)"
hold = "1s"
level = 2
"#,
            plc_port = plc.local_addr().port(),
            mqtt = broker.port,
        ),
    );
    assert_eq!(
        cfg.rules.iter().filter(|r| r.id == "1301-no-video").count(),
        1,
        "the site rule replaced the preset's"
    );
    assert_eq!(
        cfg.rules
            .iter()
            .find(|r| r.id == "1301-no-video")
            .unwrap()
            .hold
            .unwrap()
            .0,
        Duration::from_secs(1)
    );

    let mut sub = subscribe(
        broker.port,
        &format!("riskgate/v1/{site}/alarm"),
        "rules-video-sub",
    )
    .await;
    let (gw, api) = start(cfg).await;
    let mut seen = Seen::new();
    points_good(
        &api,
        &[
            "face_1301.working",
            "video_1301.online",
            "video_1301.blocked",
        ],
    )
    .await;
    assert!(
        active_alarms(&api)
            .await
            .iter()
            .all(|a| a["rule_id"] != "1301-no-video"),
        "camera online: no interlock alarm"
    );

    // The camera goes offline while the face works.
    vb.set_camera(1, false, false);
    let raised = wait_alarm(&mut sub, &mut seen, "1301-no-video", "raised").await;
    assert_eq!(raised["kind"], "interlock");
    assert_eq!(raised["level"], 2);
    assert_eq!(raised["level_color"], "orange");
    assert_eq!(raised["site_id"], site);
    assert!(
        raised["message"]
            .as_str()
            .unwrap()
            .contains("无视频监控不作业"),
        "{raised}"
    );
    assert!(
        raised["alarm_id"]
            .as_str()
            .unwrap()
            .starts_with("1301-no-video@"),
        "{raised}"
    );

    // The camera is back: cleared, the same instance.
    vb.set_camera(1, true, false);
    let cleared = wait_alarm(&mut sub, &mut seen, "1301-no-video", "cleared").await;
    assert_eq!(cleared["alarm_id"], raised["alarm_id"]);

    // A blocked lens is no video either.
    vb.set_camera(1, true, true);
    let blocked = wait_alarm(&mut sub, &mut seen, "1301-no-video", "raised").await;
    assert_ne!(blocked["alarm_id"], raised["alarm_id"], "a new instance");
    vb.set_camera(1, true, false);
    wait_alarm(&mut sub, &mut seen, "1301-no-video", "cleared").await;

    // The video box goes quiet: after the source's heartbeat its points are
    // bad, which counts as no video (fail safe).
    vb.set_quiet(true);
    let quiet = wait_alarm(&mut sub, &mut seen, "1301-no-video", "raised").await;
    assert_eq!(quiet["level"], 2);
    assert_ne!(quiet["alarm_id"], blocked["alarm_id"]);
    assert!(
        quiet["message"].as_str().unwrap().contains("输入数据无效"),
        "bad input named: {quiet}"
    );
    let api_view = active_alarms(&api).await;
    let active = api_view
        .iter()
        .find(|a| a["rule_id"] == "1301-no-video")
        .expect("active in the API");
    assert_eq!(active["alarm_id"], quiet["alarm_id"]);

    // It talks again: cleared.
    vb.set_quiet(false);
    let back = wait_alarm(&mut sub, &mut seen, "1301-no-video", "cleared").await;
    assert_eq!(back["alarm_id"], quiet["alarm_id"]);

    gw.stop().await;
    vb.stop().await;
    drop(plc);
}

// ---------------------------------------------------------------------------
// b. 断电失效
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_still_on_after_a_methane_cut_is_a_consistency_alarm() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let site = "rules-kj";
    let (gd_slave, gd) =
        devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), Scenario::default())
            .await
            .unwrap();
    let (kj_slave, kj) =
        devices::kj_monitor_tcp("127.0.0.1:0".parse().unwrap(), 2, Scenario::default())
            .await
            .unwrap();
    gd.set_signal("ch4", 0.3);
    kj.set_signal("zone1.cut", 0.0);
    kj.set_signal("zone1.feed", 1.0);
    kj.set_signal("zone1.fan_running", 1.0);
    kj.set_signal("zone2.ch4", 0.25);

    let cfg = site_config(
        site,
        dir.path(),
        broker.port,
        &format!(
            r#"{detector}
[[devices]]
id = "kj"
name = "KJ 安全监控系统"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {kj_port}
poll_interval = "200ms"
timeout = "300ms"
retries = 0
  [[devices.points]]
  id = "kj.zone1.cut"
  name = "1 区断电"
  register = "discrete"
  address = 16
  [[devices.points]]
  id = "kj.zone1.feed"
  name = "1 区馈电"
  register = "discrete"
  address = 17
  [[devices.points]]
  id = "kj.zone1.fan"
  name = "1 区局扇运行"
  register = "discrete"
  address = 18
  [[devices.points]]
  id = "kj.zone2.ch4"
  name = "2 区甲烷"
  register = "holding"
  address = 102
  type = "u16"
  decimals = 2
  unit = "%CH4"

[[presets]]
name = "coal-kj-crosscheck"
id_prefix = "z1-"
bind = {{ ch4 = "ch4.1301", cut = "kj.zone1.cut", feed = "kj.zone1.feed", fan = "kj.zone1.fan", cut_value = 1.5, alarm_value = 1.0 }}

# A marker with an on_delay longer than the 2 s hold of 断电失效: when it is
# raised, a 断电失效 started at the same time would have been raised before.
[[rules]]
id = "marker"
kind = "threshold"
name = "marker"
point = "kj.zone2.ch4"
op = ">="
value = 1.0
on_delay = "3s"
level = 4
"#,
            detector = detector_device(gd_slave.local_addr().port()),
            kj_port = kj_slave.local_addr().port(),
        ),
    );
    let mut sub = subscribe(
        broker.port,
        &format!("riskgate/v1/{site}/alarm"),
        "rules-kj-sub",
    )
    .await;
    let (gw, api) = start(cfg).await;
    let mut seen = Seen::new();
    points_good(
        &api,
        &[
            "ch4.1301",
            "kj.zone1.cut",
            "kj.zone1.feed",
            "kj.zone1.fan",
            "kj.zone2.ch4",
        ],
    )
    .await;

    // The certified system cuts at once: methane over the cut value, then the
    // cut and the feed dropping in well under 1 s. No 断电失效.
    kj.set_signal("zone2.ch4", 1.2); // the marker's 3 s start now
    gd.set_signal("ch4", 1.62);
    kj.set_signal("zone1.cut", 1.0);
    kj.set_signal("zone1.feed", 0.0);
    wait_alarm(&mut sub, &mut seen, "marker", "raised").await;
    let early: Vec<&J> = seen
        .iter()
        .filter(|m| {
            m.0.ends_with("/alarm") && m.1["rule_id"].as_str().unwrap_or("").starts_with("z1-")
        })
        .map(|m| &m.1)
        .collect();
    assert!(
        early.is_empty(),
        "a cut within 1 s raises no cross-check alarm: {early:#?}"
    );
    assert!(
        active_alarms(&api)
            .await
            .iter()
            .all(|a| !a["rule_id"].as_str().unwrap().starts_with("z1-")),
        "nothing active in the engine either"
    );
    kj.set_signal("zone2.ch4", 0.25);
    wait_alarm(&mut sub, &mut seen, "marker", "cleared").await;

    // Power restored with methane normal.
    gd.set_signal("ch4", 0.3);
    kj.set_signal("zone1.cut", 0.0);
    kj.set_signal("zone1.feed", 1.0);
    let url = format!("{api}/api/points");
    wait_for_async(
        "methane and feed back to normal in the engine",
        LIMIT,
        || {
            let url = url.clone();
            async move {
                let v = get_json(&url).await;
                let p = |id: &str| {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["id"] == id)
                        .cloned()
                        .unwrap()
                };
                let ok = p("ch4.1301")["value"].as_f64().is_some_and(|x| x < 1.0)
                    && p("kj.zone1.feed")["value"] == true;
                ok.then_some(())
            }
        },
    )
    .await;

    // Methane over the cut value and the feed stays on: 断电失效 after 2 s.
    let set_at = chrono::Utc::now();
    gd.set_signal("ch4", 1.62);
    let raised = wait_alarm(&mut sub, &mut seen, "z1-cut-failed", "raised").await;
    assert_eq!(raised["kind"], "consistency");
    assert_eq!(raised["level"], 1);
    assert_eq!(raised["level_color"], "red");
    assert!(
        raised["message"].as_str().unwrap().contains("断电失效"),
        "{raised}"
    );
    let ts = chrono::DateTime::parse_from_rfc3339(raised["ts"].as_str().unwrap()).unwrap();
    let after = ts.with_timezone(&chrono::Utc) - set_at;
    assert!(
        after >= chrono::Duration::seconds(2),
        "raised only after the 2 s hold: {after:?}"
    );
    assert!(
        after < chrono::Duration::seconds(10),
        "and soon after it: {after:?}"
    );

    // The certified system finally cuts: cleared.
    kj.set_signal("zone1.cut", 1.0);
    kj.set_signal("zone1.feed", 0.0);
    let cleared = wait_alarm(&mut sub, &mut seen, "z1-cut-failed", "cleared").await;
    assert_eq!(cleared["alarm_id"], raised["alarm_id"]);

    gw.stop().await;
    drop((gd, kj, gd_slave, kj_slave));
}

// ---------------------------------------------------------------------------
// c. Acknowledgement: CLI and county
// ---------------------------------------------------------------------------

const LATCHING: &str = r#"
[[rules]]
id = "ch4-latched"
kind = "threshold"
name = "甲烷超限 (须确认)"
point = "ch4.1301"
op = ">="
value = 1.0
recovery = 1.0
level = 2
latching = true
"#;

fn detector_device(port: u16) -> String {
    GasDetector::new("gd-1301", port)
        .name("1301 T1 甲烷传感器")
        .poll_interval("200ms")
        .timeout("300ms")
        .retries(0)
        .point(
            GasPoint::new(GasChannel::Ch4, "ch4.1301")
                .name("1301 T1 甲烷")
                .unit("%CH4"),
        )
        .point(GasPoint::new(GasChannel::Lamp, "lamp.1301").name("1301 声光报警器"))
        .toml()
}

/// The operators of the acknowledgement test, in `dir/users.toml` (beside
/// the site config, as its `http.users_file` says).
const OPERATORS: [&str; 2] = ["张三", "李四"];
const OPERATOR_PASSWORD: &str = "interlock-test-pw";

fn add_operators(dir: &Path) {
    for name in OPERATORS {
        riskgate::auth::cli::add(
            &dir.join("users.toml"),
            name,
            riskgate::auth::Role::Operator,
            None,
            OPERATOR_PASSWORD,
        )
        .unwrap();
    }
}

/// `riskgate ack ID --by NAME` logged in as NAME, the password on stdin.
async fn cli_ack(api: &str, alarm_id: &str, by: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["ack", alarm_id, "--by", by, "--api", api])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{OPERATOR_PASSWORD}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latching_alarm_acknowledged_by_the_cli_and_by_the_county() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let site = "rules-ack";
    add_operators(dir.path());
    let (slave, gd) =
        devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), Scenario::default())
            .await
            .unwrap();
    gd.set_signal("ch4", 0.3);
    let cfg = site_config(
        site,
        dir.path(),
        broker.port,
        &format!("{}{LATCHING}", detector_device(slave.local_addr().port())),
    );
    let mut sub = subscribe(
        broker.port,
        &format!("riskgate/v1/{site}/alarm"),
        "rules-ack-sub",
    )
    .await;
    let (gw, api) = start(cfg).await;
    let mut seen = Seen::new();
    points_good(&api, &["ch4.1301"]).await;

    // (i) The CLI, while the condition still holds.
    gd.set_signal("ch4", 1.2);
    let raised = wait_alarm(&mut sub, &mut seen, "ch4-latched", "raised").await;
    let id = raised["alarm_id"].as_str().unwrap().to_string();
    let out = cli_ack(&api, &id, "张三").await;
    assert!(
        out.status.success(),
        "riskgate ack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("acknowledged") && stdout.contains("张三"),
        "{stdout}"
    );
    let acked = wait_alarm(&mut sub, &mut seen, "ch4-latched", "acknowledged").await;
    assert_eq!(acked["alarm_id"], id.as_str());
    assert_eq!(acked["acked_by"], "张三");
    let in_api = active_alarms(&api).await;
    let a = in_api
        .iter()
        .find(|a| a["alarm_id"] == id.as_str())
        .expect("still active: the condition holds");
    assert_eq!(a["acked_by"], "张三");
    // Acknowledging twice is refused, with the reason.
    let out = cli_ack(&api, &id, "李四").await;
    assert!(!out.status.success(), "a second acknowledgement must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already acknowledged"), "{stderr}");
    // The condition goes: cleared (it was acknowledged before).
    gd.set_signal("ch4", 0.3);
    let cleared = wait_alarm(&mut sub, &mut seen, "ch4-latched", "cleared").await;
    assert_eq!(cleared["alarm_id"], id.as_str());
    assert_eq!(cleared["acked_by"], "张三");

    // An unknown alarm id: a non-zero exit and a message saying so.
    // (`--api` also takes the bare `host:port` that `http.listen` holds.)
    let out = cli_ack(api.trim_start_matches("http://"), "no-such-alarm", "张三").await;
    assert!(!out.status.success(), "unknown alarm must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no active alarm `no-such-alarm`"),
        "{stderr}"
    );
    gd.set_signal("ch4", 1.2);
    let raised2 = wait_alarm(&mut sub, &mut seen, "ch4-latched", "raised").await;
    let id2 = raised2["alarm_id"].as_str().unwrap().to_string();
    assert_ne!(id2, id);

    // (ii) The county, on {prefix}/{site}/ack, once the condition is gone:
    // the latched alarm waits for it, then clears right after.
    gd.set_signal("ch4", 0.3);
    let url = format!("{api}/api/alarms");
    wait_for_async("the latched alarm with its condition gone", LIMIT, || {
        let (url, id2) = (url.clone(), id2.clone());
        async move {
            let v = get_json(&url).await;
            v.as_array()
                .unwrap()
                .iter()
                .any(|a| {
                    a["alarm_id"] == id2.as_str()
                        && a["condition"] == false
                        && a["latching"] == true
                })
                .then_some(())
        }
    })
    .await;
    let mut opts = rumqttc::MqttOptions::new("county-operator-console", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (county, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let county_loop = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let ack = serde_json::json!({
        "alarm_id": id2,
        "by": "county-operator",
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    county
        .publish(
            format!("riskgate/v1/{site}/ack"),
            rumqttc::QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&ack).unwrap(),
        )
        .await
        .unwrap();
    let acked2 = wait_alarm(&mut sub, &mut seen, "ch4-latched", "acknowledged").await;
    assert_eq!(acked2["alarm_id"], id2.as_str());
    assert_eq!(acked2["acked_by"], "county-operator");
    let cleared2 = wait_alarm(&mut sub, &mut seen, "ch4-latched", "cleared").await;
    assert_eq!(cleared2["alarm_id"], id2.as_str());
    assert!(
        active_alarms(&api)
            .await
            .iter()
            .all(|a| a["alarm_id"] != id2.as_str())
    );

    // Acknowledging the cleared alarm is an error.
    let out = cli_ack(&api, &id2, "李四").await;
    assert!(!out.status.success());

    county_loop.abort();
    gw.stop().await;
    drop((gd, slave));
}

// ---------------------------------------------------------------------------
// d. Actions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_confirmed_or_raise_a_fault_and_never_run_on_unknown_inputs() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let site = "rules-actions";
    let (slave, gd) =
        devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), Scenario::default())
            .await
            .unwrap();
    gd.set_signal("ch4", 0.3);
    // A second detector that never answers, from before the gateway starts.
    let (silent_slave, silent) =
        devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), Scenario::default())
            .await
            .unwrap();
    silent.faults().set(Fault::Silent);

    let cfg = site_config(
        site,
        dir.path(),
        broker.port,
        &format!(
            r#"{detector}
[[devices]]
id = "gd-1302"
name = "1302 T1 甲烷传感器"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {silent_port}
poll_interval = "200ms"
timeout = "300ms"
retries = 0
  [[devices.points]]
  id = "ch4.1302"
  register = "holding"
  address = 0
  type = "f32"
  unit = "%CH4"
  [[devices.points]]
  id = "lamp.1302"
  register = "coil"
  address = 0
  writable = true

[[rules]]
id = "ch4-lamp-1301"
kind = "threshold"
name = "1301 甲烷报警, 声光报警器"
point = "ch4.1301"
op = ">="
value = 1.0
recovery = 1.0
level = 2
actions = [{{ write = "lamp.1301", value = 1, on_clear = 0, confirm_within = "2s" }}]

[[rules]]
id = "ch4-lamp-1302"
kind = "threshold"
name = "1302 甲烷报警, 声光报警器"
point = "ch4.1302"
op = ">="
value = 1.0
recovery = 1.0
level = 2
actions = [{{ write = "lamp.1302", value = 1, on_clear = 0, confirm_within = "2s" }}]
"#,
            detector = detector_device(slave.local_addr().port()),
            silent_port = silent_slave.local_addr().port(),
        ),
    );
    let mut sub = subscribe(
        broker.port,
        &format!("riskgate/v1/{site}/alarm"),
        "rules-actions-sub",
    )
    .await;
    let (gw, api) = start(cfg).await;
    let mut seen = Seen::new();

    // The silent detector: its threshold alarm is raised (bad = alarm side)
    // but its input was never good, so the lamp is not written.
    let unknown = wait_alarm(&mut sub, &mut seen, "ch4-lamp-1302", "raised").await;
    assert!(unknown["value"].is_null(), "{unknown}");
    assert!(
        unknown.get("actions").is_none(),
        "no action on an input never seen good: {unknown}"
    );
    assert!(!silent.bank().coil(0), "the coil is untouched");
    assert_eq!(
        silent.bank().requests_served_fc(5),
        0,
        "no write single coil was even sent"
    );
    assert_eq!(
        silent.bank().requests_served_fc(15),
        0,
        "no write multiple coils was even sent"
    );

    // A confirmed write with the raise. The event does not wait for it: it
    // goes out at once with the write `pending`; the write reaches the
    // device, is read back, and the local log notes it `confirmed`.
    points_good(&api, &["ch4.1301", "lamp.1301"]).await;
    assert!(!gd.bank().coil(0));
    gd.set_signal("ch4", 1.2);
    let raised = wait_alarm(&mut sub, &mut seen, "ch4-lamp-1301", "raised").await;
    let act = &raised["actions"][0];
    assert_eq!(act["result"], "pending", "{raised}");
    assert_eq!(act["kind"], "modbus_write");
    assert_eq!(act["target"], "lamp.1301");
    assert_eq!(act["value"], 1.0);
    let logged = logged_outcome(&api, &raised["seq"]).await;
    let act = &logged["actions"][0];
    assert_eq!(act["result"], "confirmed", "{logged}");
    assert_eq!(act["target"], "lamp.1301");
    assert_eq!(act["value"], 1.0);
    assert!(gd.bank().coil(0), "the lamp coil is set in the device");

    // on_clear with the clear.
    gd.set_signal("ch4", 0.3);
    let cleared = wait_alarm(&mut sub, &mut seen, "ch4-lamp-1301", "cleared").await;
    assert_eq!(cleared["actions"][0]["result"], "pending", "{cleared}");
    assert_eq!(cleared["actions"][0]["value"], 0.0);
    let logged = logged_outcome(&api, &cleared["seq"]).await;
    assert_eq!(logged["actions"][0]["result"], "confirmed", "{logged}");
    assert_eq!(logged["actions"][0]["value"], 0.0);
    assert!(!gd.bank().coil(0), "the lamp coil is reset");
    // Both writes confirmed: no failure alarm was sent for either.
    let before_fault = seq_now(&seen);

    // The device answers everything with exception 4: the reading is bad, the
    // alarm is raised (fail safe; the input was seen good, so the write is
    // tried), the write fails, and the failure is its own `fault` alarm,
    // naming the target and why.
    gd.faults().set(Fault::Exception(4));
    let failed = wait_alarm(&mut sub, &mut seen, "ch4-lamp-1301", "raised").await;
    assert_eq!(failed["actions"][0]["result"], "pending", "{failed}");
    let fault = wait_alarm(&mut sub, &mut seen, "lamp.1301.action", "raised").await;
    assert_eq!(fault["kind"], "fault");
    assert_eq!(fault["level"], 2);
    let msg = fault["message"].as_str().unwrap();
    assert!(msg.contains("联动输出失败"), "{fault}");
    assert!(msg.starts_with("lamp.1301 "), "names the target: {fault}");
    let why = msg.split_once(": ").map(|(_, w)| w).unwrap_or("");
    assert!(!why.is_empty(), "says why: {fault}");
    assert!(
        fault["seq"].as_u64() > failed["seq"].as_u64(),
        "the outcome follows the event: {fault}"
    );
    let logged = logged_outcome(&api, &failed["seq"]).await;
    let act = &logged["actions"][0];
    assert_eq!(act["result"], "failed", "{logged}");
    assert!(
        act["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{logged}"
    );
    assert!(!gd.bank().coil(0), "exception 4: nothing written");

    // The device recovers: the alarm clears with a confirmed on_clear write,
    // which ends the failure alarm.
    gd.faults().set(Fault::None);
    let cleared = wait_alarm(&mut sub, &mut seen, "ch4-lamp-1301", "cleared").await;
    assert_eq!(cleared["actions"][0]["result"], "pending", "{cleared}");
    wait_alarm(&mut sub, &mut seen, "lamp.1301.action", "cleared").await;
    let logged = logged_outcome(&api, &cleared["seq"]).await;
    assert_eq!(logged["actions"][0]["result"], "confirmed", "{logged}");

    // The one failure alarm is the exception's: none before it.
    let faults: Vec<u64> = seen
        .iter()
        .filter(|(t, v, _)| alarm("lamp.1301.action", "raised")(t, v))
        .filter_map(|(_, v, _)| v["seq"].as_u64())
        .collect();
    assert_eq!(faults.len(), 1, "one failure alarm: {faults:?}");
    assert!(faults[0] > before_fault, "{faults:?} after {before_fault}");

    // Every alarm event seen was schema-valid.
    for (t, v, _) in &seen {
        if t.ends_with("/alarm") {
            assert_schema_valid("alarm-event.schema.json", v);
        }
    }
    gw.stop().await;
    drop((gd, slave, silent, silent_slave));
}
