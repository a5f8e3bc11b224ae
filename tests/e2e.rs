//! End to end with real parts: a firmware-sim gas detector over Modbus TCP,
//! the `riskgate` binary, a real Mosquitto and a real VictoriaMetrics.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{
    Mosquitto, Riskgate, STEADY, Victoria, assert_schema_valid, subscribe, wait_for_async,
};
use firmware_sim::{Fault, Scenario, devices};
use riskgate::demo::site::{GasChannel, GasDetector, GasPoint, Site};

fn config(
    dir: &std::path::Path,
    modbus_port: u16,
    mqtt_port: u16,
    influx: &str,
) -> std::path::PathBuf {
    Site::new("e2e-coal-01", "coal_mine", "gw-e2e-01", &dir.join("data"))
        .site_field("region_code", "140581")
        .raw("[http]\nlisten = \"127.0.0.1:0\"\n[store]\ncommit_interval = \"100ms\"")
        .plain_uplink("127.0.0.1", mqtt_port, "status_interval = \"2s\"")
        .raw(&format!(
            "[influxdb]\nurl = \"{influx}\"\norg = \"e2e\"\nbucket = \"e2e\"\nflush_interval = \"200ms\""
        ))
        .device(
            &GasDetector::new("gd-1301", modbus_port)
                .name("1301 T1 甲烷传感器")
                .poll_interval("200ms")
                .timeout("300ms")
                .retries(0)
                .offline_after(3)
                .point(
                    GasPoint::new(GasChannel::Ch4, "ch4.1301.t1")
                        .name("1301采煤工作面 T1 甲烷")
                        .unit("%CH4"),
                )
                .point(GasPoint::new(GasChannel::Temp, "temp.1301.t1").unit("°C")),
        )
        .raw(
            r#"[[presets]]
name = "coal-methane-face"
id_prefix = "1301-t1-"
bind = { ch4 = "ch4.1301.t1" }"#,
        )
        .write(dir)
        .unwrap()
}

fn alarm<'a>(kind_rule: &'a str, state: &'a str) -> impl Fn(&str, &serde_json::Value) -> bool + 'a {
    move |t: &str, v: &serde_json::Value| {
        t.ends_with("/alarm") && v["rule_id"] == kind_rule && v["state"] == state
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methane_alarm_goes_to_the_county_and_readings_to_the_database() {
    let broker = Mosquitto::start();
    let vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let (slave, dev) = devices::gas_detector_tcp(
        "127.0.0.1:0".parse().unwrap(),
        Scenario::from_toml_str(STEADY).unwrap(),
    )
    .await
    .unwrap();
    let cfg = config(
        dir.path(),
        slave.local_addr().port(),
        broker.port,
        &vm.url(),
    );
    let mut sub = subscribe(broker.port, "riskgate/v1/e2e-coal-01/#", "e2e-sub").await;
    let started = chrono::Utc::now();
    let mut daemon = Riskgate::spawn(&cfg, &dir.path().join("riskgate.log"), &[]);
    let mut seen = Vec::new();

    // The retained birth status.
    let online = sub
        .wait(
            "status online",
            Duration::from_secs(20),
            &mut seen,
            |t, v| t.ends_with("/status") && v["state"] == "online",
        )
        .await;
    assert_schema_valid("status.schema.json", &online);

    // Let a few normal readings through, then a methane step above 1.5 %.
    wait_for_async(
        "normal readings in the history",
        Duration::from_secs(10),
        || async {
            let n = riskgate::queue::Store::open(&dir.path().join("data"), u64::MAX, u64::MAX)
                .unwrap()
                .history("ch4.1301.t1", started, 100)
                .unwrap()
                .len();
            (n >= 3).then_some(())
        },
    )
    .await;
    dev.set_signal("ch4", 1.62);
    let raised = sub
        .wait(
            "cut raised",
            Duration::from_secs(10),
            &mut seen,
            alarm("1301-t1-ch4-cut", "raised"),
        )
        .await;
    assert_schema_valid("alarm-event.schema.json", &raised);
    assert_eq!(raised["level"], 1);
    assert_eq!(raised["level_color"], "red");
    assert_eq!(raised["kind"], "threshold");
    assert_eq!(raised["point_id"], "ch4.1301.t1");
    assert_eq!(raised["site_kind"], "coal_mine");
    assert_eq!(raised["region_code"], "140581");
    assert!(
        (raised["value"].as_f64().unwrap() - 1.62).abs() < 1e-4,
        "{raised}"
    );
    assert_eq!(raised["threshold"], 1.5);
    assert!(
        raised["ts"].as_str().unwrap().ends_with("+08:00"),
        "site time with its offset: {raised}"
    );

    // Below the recovery value (1.0 %): cleared.
    dev.set_signal("ch4", 0.8);
    let cleared = sub
        .wait(
            "cut cleared",
            Duration::from_secs(10),
            &mut seen,
            alarm("1301-t1-ch4-cut", "cleared"),
        )
        .await;
    assert_schema_valid("alarm-event.schema.json", &cleared);
    assert_eq!(cleared["alarm_id"], raised["alarm_id"]);

    // The device stops answering: offline (fail safe).
    dev.faults().set(Fault::Silent);
    let offline = sub
        .wait(
            "offline raised",
            Duration::from_secs(10),
            &mut seen,
            |t, v| t.ends_with("/alarm") && v["kind"] == "offline",
        )
        .await;
    assert_schema_valid("alarm-event.schema.json", &offline);
    assert_eq!(offline["rule_id"], "gd-1301.offline");
    dev.faults().set(Fault::None);
    sub.wait(
        "offline cleared",
        Duration::from_secs(10),
        &mut seen,
        |t, v| t.ends_with("/alarm") && v["kind"] == "offline" && v["state"] == "cleared",
    )
    .await;

    // A clean stop: SIGTERM, exit 0, status offline retained.
    let status = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap();
    assert!(status.success(), "riskgate exit status {status:?}");
    let off = sub
        .wait(
            "status offline",
            Duration::from_secs(10),
            &mut seen,
            |t, v| t.ends_with("/status") && v["state"] == "offline",
        )
        .await;
    assert_schema_valid("status.schema.json", &off);
    let mut late = subscribe(broker.port, "riskgate/v1/e2e-coal-01/status", "e2e-late").await;
    let mut seen2 = Vec::new();
    let retained = late
        .wait(
            "retained status",
            Duration::from_secs(5),
            &mut seen2,
            |_, _| true,
        )
        .await;
    assert_eq!(
        retained["state"], "offline",
        "the retained status after a clean stop"
    );

    // Every alarm event is schema-valid, seq is gap-free from 1, event_ids unique.
    let events: Vec<&serde_json::Value> = seen
        .iter()
        .filter(|m| m.0.ends_with("/alarm"))
        .map(|m| &m.1)
        .collect();
    for e in &events {
        assert_schema_valid("alarm-event.schema.json", e);
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let mut dedup = seqs.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(
        dedup,
        (1..=dedup.len() as u64).collect::<Vec<_>>(),
        "gap-free seq: {seqs:?}"
    );

    // Readings in VictoriaMetrics: the step's value, at the poll's time.
    let ended = chrono::Utc::now();
    let samples = wait_for_async("readings in VictoriaMetrics", Duration::from_secs(15), || {
        let vm = &vm;
        async move {
            let s = vm.export(r#"{__name__="reading_value",point="ch4.1301.t1",site="e2e-coal-01",device="gd-1301"}"#);
            (s.iter().any(|p| (p.1 - 1.62).abs() < 1e-4) && s.iter().any(|p| (p.1 - 0.8).abs() < 1e-4)).then_some(s)
        }
    })
    .await;
    for (ts, _) in &samples {
        assert!(
            *ts >= started.timestamp_millis() - 1000 && *ts <= ended.timestamp_millis(),
            "timestamp {ts} outside the run"
        );
    }
    let first_high = samples
        .iter()
        .find(|p| (p.1 - 1.62).abs() < 1e-4)
        .unwrap()
        .0;
    let raised_ms = chrono::DateTime::parse_from_rfc3339(raised["ts"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        (first_high - raised_ms).abs() <= 1,
        "the alarm's ts is the reading's time: {first_high} vs {raised_ms}"
    );
    let temps = vm.export(r#"{__name__="reading_value",point="temp.1301.t1"}"#);
    assert!(
        temps.iter().all(|p| (p.1 - 21.5).abs() < 1e-6),
        "scaled i16: {temps:?}"
    );
    let quality = vm.export(r#"{__name__="reading_quality",point="ch4.1301.t1"}"#);
    assert!(
        quality.iter().any(|p| p.1 == 1.0),
        "bad-quality readings while the device was silent"
    );
    assert!(quality.iter().any(|p| p.1 == 0.0));

    // The local history answers `riskgate history` after the daemon stopped.
    let out = Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["history", "ch4.1301.t1", "--since", "1h", "--config"])
        .arg(&cfg)
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
            .any(|l| l.contains("\t1.62") && l.ends_with("\tgood")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with("\tbad")),
        "the silent spell is in the history: {text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args(["history", "ch4.1301.t1", "--stats", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The run may straddle a 5-minute boundary: the step is in one of the rows.
    let max = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split('\t')
                .nth(2)
                .expect("a max column")
                .parse::<f64>()
                .unwrap()
        })
        .fold(f64::MIN, f64::max);
    assert!((max - 1.62).abs() < 1e-9, "5-minute max: {text}");
    let _keep = Arc::new(slave);
}
