//! SL 651 stations against the real gateway (issue 12 items 1-3 and 6):
//! firmware-sim stations over TCP (two on one port) and UDP replay a
//! 6-hour storm in observation time that lies in the past, so no real
//! waiting is needed; riskgate takes each report once, stamps readings
//! with their observation time, raises the 汛限 level alarm, the
//! cabinet-door tamper alarm and the silent station's offline alarm, and
//! counts every bad frame against its station. A real Mosquitto (county
//! subscriber, every event schema-checked) and a real VictoriaMetrics.
//!
//! The 1 h / 3 h rainfall alarms are `accumulation` rules (issue 12 item
//! 4) on the stations' PJ and PT.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use common::{
    Mosquitto, Riskgate, Victoria, assert_schema_valid, free_port, http_get, subscribe,
    wait_for_async,
};
use firmware_sim::Scenario;
use firmware_sim::sl651::codec::{self, Identity, Report};
use firmware_sim::sl651::{Plan, Sl651Fault, Station, reports};

const TZ: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

const RAIN: &str = r#"
[signals.rain_total]
initial = 0.0
steps = [
  { at = "30m", ramp_to = 40.0, over = "60m" },
  { at = "90m", ramp_to = 70.0, over = "120m" },
]
[signals.voltage]
initial = 12.6
"#;

/// The reservoir: level 152.0 m rising 1.6 m over 3 h from 1 h, past the
/// 汛限 153.0 m at 172.5 min (first 5-minute report above it: 175 min);
/// the cabinet door open from 2 h to 2.5 h.
const RESERVOIR: &str = r#"
[signals.level]
initial = 152.0
steps = [ { at = "60m", ramp_to = 153.6, over = "180m" } ]
[signals.door]
initial = 0.0
steps = [ { at = "120m", value = 1.0 }, { at = "150m", value = 0.0 } ]
[signals.voltage]
initial = 12.4
"#;

fn ident(address: [u8; 5], category: u8) -> Identity {
    Identity {
        centre: 1,
        address,
        password: 0x1234,
        category,
    }
}

const A: [u8; 5] = [0x00, 0x00, 0x00, 0x10, 0x01];
const B: [u8; 5] = [0x00, 0x00, 0x00, 0x10, 0x02];
const C: [u8; 5] = [0x00, 0x00, 0x00, 0x10, 0x03];

fn config(
    dir: &std::path::Path,
    (tcp, udp, http, mqtt): (u16, u16, u16, u16),
    vm: &str,
    storm_day: chrono::NaiveDate,
) -> std::path::PathBuf {
    // 汛限 by calendar: the storm falls in 主汛期 (153.0 m); outside it the
    // limit is the normal pool level (155.0 m), which the storm never
    // reaches.
    let day = |d: chrono::NaiveDate| d.format("%m-%d").to_string();
    let (from, to) = (
        day(storm_day - chrono::Duration::days(1)),
        day(storm_day + chrono::Duration::days(1)),
    );
    let toml = format!(
        r#"
[site]
id = "sl651-res-01"
kind = "reservoir"
region_code = "330782"
timezone = "Asia/Shanghai"

[gateway]
id = "gw-sl651-01"
data_dir = "{data}"

[http]
listen = "127.0.0.1:{http}"

[store]
commit_interval = "100ms"

[uplink]
host = "127.0.0.1"
port = {mqtt}
plain_tcp = true
status_interval = "2s"

[influxdb]
url = "{vm}"
org = "sl651"
bucket = "sl651"
flush_interval = "200ms"

[[devices]]
id = "rain-a"
name = "上游雨量站"
protocol = "sl651"
listen = "tcp://127.0.0.1:{tcp}"
station = "0000001001"
password = "1234"
report_interval = "1h"
points = [
  {{ id = "rain-a.pt", element = "PT" }},
  {{ id = "rain-a.pj", element = "20" }},
  {{ id = "rain-a.drp", element = "DRP" }},
  {{ id = "rain-a.vt", element = "VT" }},
]

[[devices]]
id = "res-b"
name = "坝前水位站"
protocol = "sl651"
listen = "tcp://127.0.0.1:{tcp}"
station = "0000001002"
password = "1234"
report_interval = "1h"
points = [
  {{ id = "res-b.level", name = "库水位", element = "ZU" }},
  {{ id = "res-b.door", name = "坝前水位站机箱门", element = "ZT", status = "door_open" }},
  {{ id = "res-b.mains", element = "ZT", status = "mains_lost" }},
  {{ id = "res-b.vt", element = "38" }},
]

[[devices]]
id = "rain-c"
name = "下游雨量站"
protocol = "sl651"
listen = "udp://127.0.0.1:{udp}"
station = "0000001003"
password = "1234"
report_interval = "4s"
report_margin = "1s"
points = [ {{ id = "rain-c.pt", element = "PT" }}, {{ id = "rain-c.pj", element = "PJ" }} ]

[[rules]]
id = "rain-a-1h"
kind = "accumulation"
name = "1 小时降雨量"
point = "rain-a.pj"
input = "increment"
window = "1h"
op = ">="
value = 20
level = 3

[[rules]]
id = "rain-a-3h"
kind = "accumulation"
name = "3 小时降雨量"
point = "rain-a.pt"
input = "cumulative"
window = "3h"
op = ">="
value = 46
level = 2

[[rules]]
id = "res-b-flood-limit"
kind = "threshold"
name = "超汛限水位"
point = "res-b.level"
op = ">"
schedule = [ {{ name = "主汛期", from = "{from}", to = "{to}", value = 153.0 }} ]
otherwise = 155.0
level = 2
"#,
        data = dir.join("data").display(),
    );
    let p = dir.join("riskgate.toml");
    std::fs::write(&p, toml).unwrap();
    p
}

fn storm_start() -> NaiveDateTime {
    // Seven hours ago on the hour, local time: the 6-hour storm lies
    // wholly in the past.
    let now = Utc::now().with_timezone(&TZ).naive_local();
    now.with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap()
        - chrono::Duration::hours(7)
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    TZ.from_local_datetime(&t).unwrap().with_timezone(&Utc)
}

fn plan(start: NaiveDateTime, level_element: u8, reset: Option<Duration>) -> Plan {
    Plan {
        start,
        duration: Duration::from_secs(6 * 3600),
        timed_every: Duration::from_secs(3 * 3600),
        level_element,
        counter_reset_at: reset,
    }
}

/// Sends every report, numbering them; `fault_at(i)` may add a fault
/// first (the report is then sent again properly, as a station does).
async fn replay(
    st: &mut Station,
    mut rs: Vec<Report>,
    fault_at: impl Fn(usize) -> Sl651Fault,
) -> Vec<Report> {
    for (i, r) in rs.iter_mut().enumerate() {
        r.serial = st.next_serial();
        let f = fault_at(i);
        if f != Sl651Fault::None {
            let answers = st.send(r, f).await.unwrap();
            match f {
                Sl651Fault::BadCrc => {
                    assert_eq!(
                        answers.first().map(|a| a.end),
                        Some(codec::NAK),
                        "bad CRC answered NAK"
                    );
                }
                Sl651Fault::Retransmit | Sl651Fault::OutOfOrder => {
                    assert!(
                        answers
                            .iter()
                            .all(|a| a.serial == r.serial && a.end == codec::EOT),
                        "{answers:?}"
                    );
                    continue;
                }
                _ => {}
            }
        }
        let answers = st.send(r, Sl651Fault::None).await.unwrap();
        assert_eq!(answers.len(), 1, "report {i} answered once: {answers:?}");
        assert_eq!(answers[0].serial, r.serial);
        assert_eq!(answers[0].end, codec::EOT);
    }
    rs
}

fn metric(http: u16, station: &str, result: &str) -> u64 {
    let (_, text) = http_get(&format!("http://127.0.0.1:{http}/metrics")).unwrap();
    let needle =
        format!("riskgate_sl651_frames_total{{result=\"{result}\",station=\"{station}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_over_tcp_and_udp() {
    let broker = Mosquitto::start();
    let vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let (tcp, udp, http) = (free_port(), free_port(), free_port());
    let start = storm_start();
    let cfg = config(
        dir.path(),
        (tcp, udp, http, broker.port),
        &vm.url(),
        start.date(),
    );
    let mut sub = subscribe(broker.port, "riskgate/v1/sl651-res-01/#", "sl651-county").await;
    let _daemon = Riskgate::spawn(&cfg, &dir.path().join("riskgate.log"), &[]);
    let mut seen = Vec::new();
    sub.wait(
        "status online",
        Duration::from_secs(20),
        &mut seen,
        |t, v| t.ends_with("/status") && v["state"] == "online",
    )
    .await;
    let centre: SocketAddr = format!("127.0.0.1:{tcp}").parse().unwrap();
    let centre_udp: SocketAddr = format!("127.0.0.1:{udp}").parse().unwrap();
    wait_for_async("sl651 TCP listener", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(centre)
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    let rain = Scenario::from_toml_str(RAIN).unwrap();
    let res = Scenario::from_toml_str(RESERVOIR).unwrap();

    let mut a = Station::tcp(centre, ident(A, 0x50)).await.unwrap();
    let mut b = Station::tcp(centre, ident(B, 0x4B)).await.unwrap();
    let mut c = Station::udp(centre_udp, ident(C, 0x50)).await.unwrap();
    for s in [&mut a, &mut b, &mut c] {
        s.answer_timeout = Duration::from_millis(500);
    }

    // A stranger on the same port is counted, not answered.
    let mut stranger = Station::tcp(centre, ident([0, 0, 0, 0x99, 0x99], 0x50))
        .await
        .unwrap();
    stranger.answer_timeout = Duration::from_millis(200);
    let r0 = reports(&rain, &plan(start, 0x39, None)).remove(0);
    assert!(
        stranger
            .send(&r0, Sl651Fault::None)
            .await
            .unwrap()
            .is_empty()
    );

    // Station A (TCP) with every fault; B (TCP) clean; C (UDP) with a
    // counter reset at 3 h and faults of its own, then silent.
    let ra = reports(&rain, &plan(start, 0x39, None));
    let rb = reports(&res, &plan(start, 0x3B, None));
    let rc = reports(
        &rain,
        &plan(start, 0x39, Some(Duration::from_secs(3 * 3600))),
    );
    let faults_a = |i: usize| match i {
        2 => Sl651Fault::BadCrc,
        4 => Sl651Fault::WrongPassword,
        6 => Sl651Fault::Truncated,
        8 => Sl651Fault::OutOfOrder,
        10 => Sl651Fault::Retransmit,
        _ => Sl651Fault::None,
    };
    let faults_c = |i: usize| match i {
        1 => Sl651Fault::BadCrc,
        3 => Sl651Fault::Truncated,
        5 => Sl651Fault::Retransmit,
        _ => Sl651Fault::None,
    };
    let (sent_a, sent_b, sent_c) = tokio::join!(
        replay(&mut a, ra, faults_a),
        replay(&mut b, rb, |_| Sl651Fault::None),
        replay(&mut c, rc, faults_c),
    );
    let silent_since = Utc::now();

    // 汛限: raised at the observation time of the first report above 153.0 m.
    let flood = sub
        .wait(
            "flood limit raised",
            Duration::from_secs(20),
            &mut seen,
            |t, v| {
                t.ends_with("/alarm")
                    && v["rule_id"] == "res-b-flood-limit"
                    && v["state"] == "raised"
            },
        )
        .await;
    let want = utc(start + chrono::Duration::minutes(175));
    let ts: DateTime<Utc> = flood["ts"].as_str().unwrap().parse().unwrap();
    assert_eq!(ts, want, "raised at the frame's observation time: {flood}");
    assert!(
        (flood["value"].as_f64().unwrap() - 153.022).abs() < 0.001,
        "{flood}"
    );

    // Rain: PJ 3.3 mm every 5 minutes from 35 min (40 mm over an hour,
    // one decimal on the wire): 7 slots = 23.1 mm ≥ 20 at 65 min. PT: the
    // station's first report of the storm (35 min, PT 3.3) is the
    // counter's baseline, since a running total's first value says nothing
    // of when it rose; 46 mm more have fallen at 130 min (PT 50.0: 46.7).
    for (rule, minutes) in [("rain-a-1h", 65), ("rain-a-3h", 130)] {
        let hit = |t: &str, v: &serde_json::Value| {
            t.ends_with("/alarm") && v["rule_id"] == rule && v["state"] == "raised"
        };
        let ev = match seen.iter().find(|m| hit(&m.0, &m.1)) {
            Some(m) => m.1.clone(),
            None => {
                sub.wait(rule, Duration::from_secs(20), &mut seen, hit)
                    .await
            }
        };
        assert_eq!(ev["kind"], "accumulation", "{ev}");
        let ts: DateTime<Utc> = ev["ts"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            ts,
            utc(start + chrono::Duration::minutes(minutes)),
            "{rule}: {ev}"
        );
    }

    // The door: tamper raised at 2 h, cleared at 2.5 h (observation times).
    let tamper = |state: &'static str| {
        move |t: &str, v: &serde_json::Value| {
            t.ends_with("/alarm") && v["kind"] == "tamper" && v["state"] == state
        }
    };
    let mut seen2 = seen.clone();
    let raised = if let Some(m) = seen.iter().find(|m| tamper("raised")(&m.0, &m.1)) {
        m.1.clone()
    } else {
        sub.wait(
            "tamper raised",
            Duration::from_secs(20),
            &mut seen2,
            tamper("raised"),
        )
        .await
    };
    assert_eq!(raised["rule_id"], "res-b.door.tamper");
    assert_eq!(raised["point_id"], "res-b.door");
    let ts: DateTime<Utc> = raised["ts"].as_str().unwrap().parse().unwrap();
    assert_eq!(ts, utc(start + chrono::Duration::minutes(120)));

    // The silent UDP station goes offline after its interval and margin.
    let offline = sub
        .wait(
            "rain-c offline",
            Duration::from_secs(20),
            &mut seen,
            |t, v| {
                t.ends_with("/alarm")
                    && v["rule_id"] == "rain-c.offline"
                    && v["state"] == "raised"
                    && v["ts"]
                        .as_str()
                        .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                        .is_some_and(|ts| ts > silent_since)
            },
        )
        .await;
    assert_eq!(offline["kind"], "offline");

    // Every event the county got is valid against the contract.
    sub.pump();
    let alarms = sub.alarms();
    assert!(
        alarms
            .iter()
            .any(|a| a["kind"] == "tamper" && a["state"] == "cleared"),
        "door closed again"
    );
    for a in &alarms {
        assert_schema_valid("alarm-event.schema.json", a);
    }

    // Counted per station.
    for (station, result) in [
        ("rain-a", "bad_crc"),
        ("rain-a", "wrong_password"),
        ("rain-a", "truncated"),
        ("rain-a", "duplicate"),
        ("rain-c", "bad_crc"),
        ("rain-c", "truncated"),
        ("rain-c", "duplicate"),
        ("unknown", "unknown_station"),
    ] {
        assert!(
            metric(http, station, result) >= 1,
            "{station} {result} counted"
        );
    }
    assert_eq!(metric(http, "rain-a", "ok"), sent_a.len() as u64);
    assert_eq!(metric(http, "res-b", "ok"), sent_b.len() as u64);
    assert_eq!(metric(http, "rain-c", "ok"), sent_c.len() as u64);

    // Readings: once per report, at the observation time, in the store
    // and in VictoriaMetrics.
    let want_b: Vec<i64> = sent_b
        .iter()
        .map(|r| utc(r.observed).timestamp_millis())
        .collect();
    let want_a: Vec<i64> = sent_a
        .iter()
        .map(|r| utc(r.observed).timestamp_millis())
        .collect();
    let store_dir = dir.path().join("data");
    let got_a = wait_for_async(
        "rain-a.pt in the history",
        Duration::from_secs(10),
        || async {
            let store = riskgate::queue::Store::open(&store_dir, u64::MAX, u64::MAX).unwrap();
            let got = common::accepted_readings(&store, &["rain-a.pt".to_string()])
                .remove("rain-a.pt")
                .unwrap();
            (got.len() >= want_a.len()).then_some(got)
        },
    )
    .await;
    let mut got_a = got_a;
    got_a.sort();
    assert_eq!(
        got_a, want_a,
        "each report once (retransmission and faults taken once)"
    );
    let got_b = wait_for_async(
        "res-b.level in VictoriaMetrics",
        Duration::from_secs(20),
        || async {
            let s = vm.export(r#"{__name__="reading_value",point="res-b.level"}"#);
            (s.len() >= want_b.len()).then_some(s)
        },
    )
    .await;
    let ts_b: Vec<i64> = got_b.iter().map(|p| p.0).collect();
    assert_eq!(
        ts_b, want_b,
        "VictoriaMetrics holds the levels at their observation times"
    );
    // DRP: one reading per 5 minutes of every hourly report.
    let drp = vm.export(r#"{__name__="reading_value",point="rain-a.drp"}"#);
    let hourly = sent_a
        .iter()
        .filter(|r| r.function == codec::HOURLY)
        .count();
    assert_eq!(
        drp.len(),
        hourly * 12,
        "12 five-minute rainfalls per hourly report"
    );
    // The counter reset on C: PT goes back down, riskgate keeps the values.
    let pt_c = vm.export(r#"{__name__="reading_value",point="rain-c.pt"}"#);
    assert!(
        pt_c.windows(2).any(|w| w[1].1 < w[0].1),
        "C's cumulative counter reset is delivered as is"
    );
}
