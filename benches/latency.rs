//! Alarm latency end to end, measured, written to a file.
//!
//! `cargo bench --bench latency` runs the gateway in-process against a
//! firmware-sim gas detector (Modbus TCP, polled every 100 ms) and a real
//! Mosquitto (Debian's `mosquitto`, started on a free loopback port), steps
//! the methane value over the power-cut value 20 times, and records for each
//! `raised` event:
//! - `step_to_receipt`: from the simulator's value change to the county-side
//!   subscriber's receipt (includes up to one poll interval of waiting);
//! - `reading_to_receipt`: from the reading's timestamp (the event's `ts`)
//!   to the receipt: the gateway's own work, the durable commit and the MQTT
//!   round trip.
//!
//! It writes `target/bench/latency.json` with min / p50 / p95 / max of both,
//! and the process's peak resident memory.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use firmware_sim::{Scenario, devices};
use riskgate::demo::site::{GasChannel, GasDetector, GasPoint, Site};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

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
    serde_json::json!({ "n": v.len(), "min_ms": q(0.0), "p50_ms": q(0.5), "p95_ms": q(0.95), "max_ms": q(1.0) })
}

/// The next alarm event in state `want`, with the time it was received.
async fn next_state(
    el: &mut rumqttc::EventLoop,
    want: &str,
) -> (chrono::DateTime<chrono::Utc>, serde_json::Value) {
    loop {
        if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
            let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            if v["state"] == want {
                return (chrono::Utc::now(), v);
            }
        }
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mosquitto = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(mosquitto) = mosquitto else {
        eprintln!("latency bench skipped: mosquitto is not installed (apt-get install mosquitto)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("m.conf");
    writeln!(
        std::fs::File::create(&conf).unwrap(),
        "listener {port} 127.0.0.1\nallow_anonymous true"
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

    let (slave, dev) =
        devices::gas_detector_tcp("127.0.0.1:0".parse().unwrap(), Scenario::default())
            .await
            .unwrap();
    dev.set_signal("ch4", 0.3);
    let text = Site::new(
        "bench-site",
        "coal_mine",
        "gw-bench",
        &dir.path().join("data"),
    )
    .raw("[http]\nenabled = false")
    .plain_uplink("127.0.0.1", port, "")
    .device(
        &GasDetector::new("gd", slave.local_addr().port())
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
level = 1"#,
    )
    .toml();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = riskgate::config::load(&path).expect("bench config");
    let running = riskgate::runtime::start(cfg).await.unwrap();

    let mut opts = MqttOptions::new("bench-county", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = AsyncClient::new(opts, 100);
    client
        .subscribe("riskgate/v1/bench-site/alarm", QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = el.poll().await {
            break;
        }
    }
    let mut step_to_receipt = Vec::new();
    let mut reading_to_receipt = Vec::new();
    for _ in 0..20 {
        let stepped = chrono::Utc::now();
        dev.set_signal("ch4", 1.62);
        let (got, v) = tokio::time::timeout(Duration::from_secs(10), next_state(&mut el, "raised"))
            .await
            .expect("raised in time");
        let ts = chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap();
        step_to_receipt.push((got - stepped).num_microseconds().unwrap() as f64 / 1000.0);
        reading_to_receipt.push(
            (got - ts.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap() as f64
                / 1000.0,
        );
        dev.set_signal("ch4", 0.3);
        tokio::time::timeout(Duration::from_secs(10), next_state(&mut el, "cleared"))
            .await
            .expect("cleared in time");
    }
    running.stop().await;
    let _ = broker.kill();
    let _ = broker.wait();

    let result = serde_json::json!({
        "measured_at": chrono::Utc::now().to_rfc3339(),
        "poll_interval_ms": 100,
        "step_to_receipt": summary(step_to_receipt),
        "reading_to_receipt": summary(reading_to_receipt),
        "peak_rss_kb": peak_rss_kb(),
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("latency.json");
    std::fs::write(&file, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    println!("written to {}", file.display());
}
