//! Throughput and memory of the hot path, measured, written to a file.
//!
//! `cargo bench --bench throughput` writes `target/bench/throughput.json`
//! (and prints it). What it measures:
//! - the rule engine: readings per second through `Engine::on_readings`
//!   with the shipped coal-mine example (its presets and interlocks);
//! - line protocol: readings formatted per second;
//! - the durable store: readings committed per second in 200-reading
//!   transactions (WAL, synchronous=FULL: one fsync per commit), and alarm
//!   events committed per second one transaction each;
//! - peak resident memory of the process (VmHWM).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use riskgate::model::{Quality, Reading, Value};

fn readings(cfg: &riskgate::config::Config, round: usize) -> Vec<Reading> {
    let now = Utc::now();
    cfg.devices
        .iter()
        .flat_map(|d| d.points().into_iter().map(move |p| (d, p)))
        .map(|(d, p)| {
            let bool_point = p.value == riskgate::config::ValueKind::Bool;
            let value = if bool_point {
                Value::Bool(round.is_multiple_of(2))
            } else {
                Value::Num(0.2 + (round % 20) as f64 * 0.09)
            };
            Reading {
                point: Arc::from(p.id),
                device: Arc::from(d.id.as_str()),
                value: Some(value),
                quality: Quality::Good,
                at: now,
            }
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
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

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = riskgate::config::load(&root.join("config/coal-mine.example.toml"))
        .expect("example config");

    // Rule engine.
    let mut engine = riskgate::rules::Engine::new(&cfg);
    let batches: Vec<Vec<Reading>> = (0..40).map(|i| readings(&cfg, i)).collect();
    let per_batch = batches[0].len();
    let mut n = 0usize;
    let mut events = 0usize;
    let start = Instant::now();
    let clock = riskgate::time::Clock::new();
    while start.elapsed() < Duration::from_secs(3) {
        for b in &batches {
            let out = engine.on_readings(b, clock.now());
            events += out.transitions.len();
            n += per_batch;
        }
    }
    let engine_rate = rate(n, start.elapsed());

    // Line protocol.
    let flat: Vec<Reading> = batches.concat();
    let mut bytes = 0usize;
    let mut m = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for r in &flat {
            bytes += riskgate::sink::influx::line("reading", "bench-site", r).len();
            m += 1;
        }
    }
    let line_rate = rate(m, start.elapsed());

    // Durable store.
    let dir = tempfile::tempdir().unwrap();
    let store = riskgate::queue::Store::open(dir.path(), 512 << 20, 2048 << 20).unwrap();
    let lines: Vec<String> = flat
        .iter()
        .map(|r| riskgate::sink::influx::line("reading", "bench-site", r))
        .collect();
    let hist: Vec<riskgate::queue::HistoryRow> = flat
        .iter()
        .map(|r| riskgate::queue::HistoryRow {
            point: r.point.to_string(),
            at_ms: r.at.timestamp_millis(),
            value: r.value.as_ref().and_then(|v| v.as_f64()),
            quality: 0,
        })
        .collect();
    let chunk = 200.min(lines.len());
    let mut k = 0usize;
    let mut commits = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        store
            .append_readings(
                &hist[..chunk],
                &[(riskgate::queue::QueueId::Readings, lines[..chunk].to_vec())],
                Utc::now().timestamp_millis(),
            )
            .unwrap();
        k += chunk;
        commits += 1;
    }
    let store_rate = rate(k, start.elapsed());
    let commit_ms = start.elapsed().as_secs_f64() * 1000.0 / commits as f64;

    let id = riskgate::sink::uplink::contract::Identity::from_config(&cfg);
    let t = riskgate::model::AlarmTransition {
        alarm_id: "a@t".into(),
        rule_id: "r".into(),
        kind: riskgate::model::AlarmKind::Threshold,
        level: 1,
        state: riskgate::model::AlarmState::Raised,
        point_id: Some("ch4.1301.t1".into()),
        point_name: Some("1301采煤工作面 T1 甲烷".into()),
        value: Some(serde_json::json!(1.62)),
        unit: Some("%CH4".into()),
        threshold: Some(serde_json::json!(1.5)),
        message: "bench".into(),
        raised_at: Utc::now(),
        ts: Utc::now(),
        acked_by: None,
        actions: vec![],
        detail: None,
        quality: None,
    };
    let mut e = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        store
            .append_events(
                riskgate::queue::QueueId::Alarms,
                std::slice::from_ref(&t),
                |seq, t| id.alarm_event(seq, t),
                &[] as &[(String, ())],
            )
            .unwrap();
        e += 1;
    }
    let event_rate = rate(e, start.elapsed());

    let result = serde_json::json!({
        "measured_at": Utc::now().to_rfc3339(),
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "engine_readings_per_s": engine_rate.round(),
        "engine_config": { "points": per_batch, "rules": cfg.rules.len(), "events_seen": events },
        "line_protocol_readings_per_s": line_rate.round(),
        "line_protocol_avg_bytes": (bytes as f64 / m as f64).round(),
        "store_readings_committed_per_s": store_rate.round(),
        "store_commit_ms_200_readings": (commit_ms * 100.0).round() / 100.0,
        "store_alarm_events_committed_per_s": event_rate.round(),
        "peak_rss_kb": peak_rss_kb(),
    });
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let path = out_dir.join("throughput.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&result).unwrap());
    println!("written to {}", path.display());
}
