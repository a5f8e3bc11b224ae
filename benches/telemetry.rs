//! Telemetry: alarm latency with and without a telemetry backlog replaying,
//! and the size of a snapshot, measured and written to a file.
//!
//! `cargo bench --bench telemetry` (needs Debian's `mosquitto`):
//! - **latency**: the gateway in-process with `[telemetry]` on, a
//!   firmware-sim gas detector polled every 100 ms, a real Mosquitto and a
//!   county subscriber on `alarm` and `telemetry`. The methane value steps
//!   over the power-cut value `CYCLES` times; for each `raised` event the
//!   time from its reading (`ts`) to the subscriber's receipt. Twice: on a
//!   fresh store, and on a store whose telemetry queue holds a 10-minute
//!   backlog (what a 200-point site with 1 s snapshots and change reports
//!   queues during a 10-minute outage, made by the real builder on a
//!   scripted clock), which the uplink replays, paced, while the alarms are
//!   measured. The backlog must still be replaying when the last alarm is
//!   measured; the file records the depth before and after.
//! - **size**: bytes per point of a snapshot of the shipped coal-mine
//!   example and of the 200-point site, as JSON, gzip-compressed, and with
//!   floats written at full f64 length (what the builder avoids).
//!
//! It writes `target/bench/telemetry.json` and prints it.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use firmware_sim::{Scenario, devices};
use riskgate::config::Telemetry;
use riskgate::demo::site::{GasChannel, GasDetector, GasPoint, Site};
use riskgate::model::{Quality, Reading, Value};
use riskgate::queue::{QueueId, Store};
use riskgate::sink::uplink::contract::Identity;
use riskgate::telemetry::{Builder, Message, encode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const CYCLES: usize = 100;
const SITE: &str = "bench-tele";
const BACKLOG_POINTS: usize = 200;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    serde_json::json!({ "n": v.len(), "min_ms": q(0.0), "p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0) })
}

fn site_toml(data: &Path, broker: u16, dev_port: u16) -> String {
    Site::new(SITE, "coal_mine", "gw-bench-tele", data)
        .site_field("region_code", "140581")
        .raw("[http]\nenabled = false")
        .plain_uplink("127.0.0.1", broker, "")
        .device(
            &GasDetector::new("gd", dev_port)
                .poll_interval("100ms")
                .timeout("300ms")
                .point(GasPoint::new(GasChannel::Ch4, "ch4")),
        )
        .raw(
            r#"[[rules]]
id = "cut"
kind = "threshold"
point = "ch4"
op = ">="
value = 1.5
recovery = 1.0
level = 1

[telemetry]
interval = "2s"
min_interval = "1s"
# Room for the 10-minute backlog (20.9 MB): nothing of it dropped.
queue_mb = 32
"#,
        )
        .toml()
}

/// What a 200-point site queues in 10 minutes without a broker: 1 s
/// snapshots and change reports, every value moving, from the builder.
fn backlog(id: &Identity, t0: DateTime<Utc>) -> Vec<Message> {
    let cfg = Telemetry {
        interval: Duration::from_secs(1),
        min_interval: Duration::from_secs(1),
        ..Telemetry::default()
    };
    let points: Vec<(String, Duration)> = (0..BACKLOG_POINTS)
        .map(|i| (format!("p.{i:03}"), Duration::from_secs(10)))
        .collect();
    let mut b = Builder::new(cfg, id.clone(), points.clone(), t0);
    let mut out = Vec::new();
    for ms in (0..600_000i64).step_by(500) {
        let at = t0 + chrono::Duration::milliseconds(ms);
        let rs: Vec<Reading> = points
            .iter()
            .enumerate()
            .map(|(i, (p, _))| Reading {
                point: Arc::from(p.as_str()),
                device: Arc::from("d"),
                value: Some(Value::Num(
                    ((20.0 + i as f64 + (ms as f64 / 7000.0).sin()) as f32) as f64,
                )),
                quality: Quality::Good,
                at,
            })
            .collect();
        b.on_readings(&rs);
        out.extend(b.tick(at));
    }
    out
}

struct Run {
    latency: Vec<f64>,
    telemetry_received: usize,
    depth_before: u64,
    depth_after: u64,
}

async fn run(broker: u16, data: &Path, prefill: bool) -> Run {
    let (slave, dev) =
        devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), Scenario::default())
            .await
            .unwrap();
    dev.set_signal("ch4", 0.3);
    let path = data.join("site.toml");
    std::fs::write(
        &path,
        site_toml(&data.join("data"), broker, slave.local_addr().port()),
    )
    .unwrap();
    let cfg = riskgate::config::load(&path).expect("bench config");
    let mut depth_before = 0;
    if prefill {
        let store = Store::open(&data.join("data"), u64::MAX, u64::MAX).unwrap();
        let id = Identity::from_config(&cfg);
        let msgs = backlog(&id, Utc::now() - chrono::Duration::minutes(10));
        store
            .append_telemetry(&msgs, |t, m| encode(&id, t, m), 0)
            .unwrap();
        depth_before = store.depth(QueueId::Telemetry);
    }

    let mut opts = MqttOptions::new(format!("bench-county-{prefill}"), "127.0.0.1", broker);
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 100);
    client
        .subscribe(format!("riskgate/v1/{SITE}/+"), QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = el.poll().await {
            break;
        }
    }
    let running = riskgate::runtime::start(cfg).await.unwrap();
    let store = running.shared.store.clone();
    let mut telemetry_received = 0usize;
    // The first snapshot or backlog message: the uplink is up.
    loop {
        if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await
            && p.topic.ends_with("/telemetry")
        {
            telemetry_received += 1;
            break;
        }
    }
    let mut latency = Vec::new();
    for _ in 0..CYCLES {
        for (level, want) in [(1.62, "raised"), (0.3, "cleared")] {
            dev.set_signal("ch4", level);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let ev = tokio::time::timeout_at(deadline.into(), el.poll())
                    .await
                    .expect("alarm in time");
                let Ok(Event::Incoming(Packet::Publish(p))) = ev else {
                    continue;
                };
                let got = Utc::now();
                if p.topic.ends_with("/telemetry") {
                    telemetry_received += 1;
                    continue;
                }
                if !p.topic.ends_with("/alarm") {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                // Only the methane rule: the gateway's own fault alarms go
                // on the same topic.
                if v["rule_id"] != "cut" || v["state"] != want {
                    continue;
                }
                if want == "raised" {
                    let ts = DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap();
                    latency.push(
                        (got - ts.with_timezone(&Utc)).num_microseconds().unwrap() as f64 / 1000.0,
                    );
                }
                break;
            }
        }
    }
    let depth_after = store.depth(QueueId::Telemetry);
    running.stop().await;
    drop(slave);
    Run {
        latency,
        telemetry_received,
        depth_before,
        depth_after,
    }
}

fn gzip_len(s: &str) -> usize {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap().len()
}

/// Bytes per point of one snapshot: (whole − the same with no points) / n,
/// as JSON, gzip, and with full-length floats.
fn size(id: &Identity, snapshot: &Message) -> serde_json::Value {
    let n = snapshot.items.len();
    let empty = Message {
        items: Vec::new(),
        ..snapshot.clone()
    };
    let body = encode(id, 1, snapshot);
    let head = encode(id, 1, &empty).len();
    let long = {
        let mut m = snapshot.clone();
        for it in &mut m.items {
            if let Some(v) = it["v"].as_f64() {
                it["v"] = serde_json::json!((v as f32) as f64);
            }
        }
        encode(id, 1, &m).len()
    };
    serde_json::json!({
        "points": n,
        "message_bytes": body.len(),
        "json_bytes_per_point": (body.len() - head) as f64 / n as f64,
        "gzip_message_bytes": gzip_len(&body),
        "gzip_bytes_per_point": gzip_len(&body) as f64 / n as f64,
        "full_f64_floats_bytes_per_point": (long - head) as f64 / n as f64,
    })
}

/// A snapshot of the shipped coal-mine example with every point read.
fn coal_mine_snapshot() -> (Identity, Message, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = riskgate::config::load(&root.join("config/coal-mine.example.toml")).unwrap();
    let t0 = DateTime::parse_from_rfc3339("2026-12-03T10:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc);
    let mut b = Builder::from_config(&cfg, t0).expect("[telemetry] in the example");
    let rs: Vec<Reading> = cfg
        .devices
        .iter()
        .flat_map(|d| d.points().into_iter().map(move |p| (d.id.clone(), p)))
        .map(|(d, p)| Reading {
            point: Arc::from(p.id),
            device: Arc::from(d.as_str()),
            value: Some(match p.value {
                riskgate::config::ValueKind::Bool => Value::Bool(false),
                // Typical values, as the f32 registers deliver them.
                _ => Value::Num(f64::from(match p.id.split('.').next() {
                    Some("ch4") => 0.42f32,
                    Some("co") => 6.0,
                    Some("o2") => 20.8,
                    Some("temp") => 21.5,
                    _ => 1.0,
                })),
            }),
            quality: Quality::Good,
            at: t0 + chrono::Duration::milliseconds(29_870),
        })
        .collect();
    b.on_readings(&rs);
    let id = Identity::from_config(&cfg);
    let snap = b
        .tick(t0 + chrono::Duration::seconds(30))
        .into_iter()
        .find(|m| m.kind == riskgate::telemetry::Kind::Snapshot)
        .unwrap();
    let body = encode(&id, 1, &snap);
    (id, snap, body)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (cm_id, cm_snap, cm_body) = coal_mine_snapshot();
    let bl_id = Identity {
        gateway_id: "gw-bench-tele".into(),
        site_id: SITE.into(),
        site_kind: "coal_mine",
        region_code: Some("140581".into()),
        prefix: "riskgate/v1".into(),
        tz: chrono_tz::Asia::Shanghai,
        epoch: None,
    };
    let bl = backlog(&bl_id, Utc::now());
    let bl_snap = bl
        .iter()
        .find(|m| m.kind == riskgate::telemetry::Kind::Snapshot)
        .unwrap();
    let backlog_bytes: usize = bl.iter().map(|m| encode(&bl_id, 1, m).len()).sum();

    let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(mosquitto) = mosquitto else {
        eprintln!(
            "telemetry bench skipped: mosquitto is not installed (apt-get install mosquitto)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("m.conf");
    writeln!(
        std::fs::File::create(&conf).unwrap(),
        "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000"
    )
    .unwrap();
    let mut broker = Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "mosquitto did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let plain = dir.path().join("plain");
    let loaded = dir.path().join("backlog");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&loaded).unwrap();
    let a = run(port, &plain, false).await;
    let b = run(port, &loaded, true).await;
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        b.depth_after > 0,
        "the backlog must still be replaying at the last alarm: {} left of {}",
        b.depth_after,
        b.depth_before
    );

    let result = serde_json::json!({
        "measured_at": Utc::now().to_rfc3339(),
        "poll_interval_ms": 100,
        "cycles": CYCLES,
        "alarm_latency_no_backlog": summary(a.latency),
        "alarm_latency_backlog_replaying": summary(b.latency),
        "backlog": {
            "messages": bl.len(),
            "bytes": backlog_bytes,
            "points": BACKLOG_POINTS,
            "queued_before": b.depth_before,
            "left_after_last_alarm": b.depth_after,
            "telemetry_received_while_measuring": b.telemetry_received,
            "replay_rate_per_s": 20,
        },
        "snapshot_size_coal_mine_example": size(&cm_id, &cm_snap),
        "snapshot_size_200_points": size(&bl_id, bl_snap),
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("telemetry.json"),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    let pretty: serde_json::Value = serde_json::from_str(&cm_body).unwrap();
    std::fs::write(
        out.join("telemetry-coal-mine-snapshot.json"),
        serde_json::to_string_pretty(&pretty).unwrap(),
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    println!("written to {}", out.join("telemetry.json").display());
}
