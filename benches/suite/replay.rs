//! Replay: readings/s from a backlog into VictoriaMetrics after an outage,
//! measured from outside the gateway (the store's format is its own
//! business).
//!
//! 1. Outage: riskgate polls a simulated site with its InfluxDB URL on a
//!    closed loopback port, so every reading stays queued, until the
//!    readings it took in (`riskgate_readings_total` on /metrics) reach the
//!    backlog: one hour at 1,000 points/s (3.6 M) in full mode,
//!    `SUITE_REPLAY_READINGS` to choose, 2,000 in smoke mode. It is stopped
//!    (SIGTERM) as soon as they do (/metrics is read every 500 ms, so the
//!    backlog overshoots by up to half a second of polling).
//! 2. Recovery: the same site and store restarted with the URL of the
//!    running VictoriaMetrics and the devices' poll interval at one hour
//!    (one poll each at start, so the backlog is nearly all there is).
//!    `riskgate_delivered_total{queue="influx"}` is sampled every 100 ms
//!    (the depth it first reports is recorded) until
//!    `riskgate_queue_depth{queue="influx"}` reads 0 and the counter
//!    stops; the drain ends at the sample where the counter reached its
//!    final value.
//! 3. The figure: samples of the site counted in VictoriaMetrics (export
//!    API) / time from the restart to the end of the drain, so start-up
//!    and the first write count against it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::{Env, Fleet, Gateway, common};
use super::{head_toml, round, site_paths};

const TARGET_READINGS_PER_S: f64 = 50_000.0;
/// One hour at 1,000 points/s.
const FULL_BACKLOG: u64 = 3_600_000;
const SMOKE_BACKLOG: u64 = 2_000;

/// The simulated site of the outage: many registers a device, so the
/// backlog fills at what riskgate can store rather than at what polling costs.
struct Shape {
    devices: usize,
    registers: usize,
    period: &'static str,
}

pub(super) async fn run(env: &mut Env, smoke: bool) -> Value {
    let backlog = std::env::var("SUITE_REPLAY_READINGS")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(if smoke { SMOKE_BACKLOG } else { FULL_BACKLOG });
    let shape = if smoke {
        Shape {
            devices: 2,
            registers: 50,
            period: "20ms",
        }
    } else {
        Shape {
            devices: 20,
            registers: 50,
            period: "10ms",
        }
    };
    let fleet = Fleet::start(shape.devices, shape.registers).await;
    let site = "replay";
    let (data, config, log) = site_paths(env, site);
    let http = common::free_port();
    let metrics_url = format!("http://127.0.0.1:{http}/metrics");
    let closed = common::free_port();

    // 1. The outage.
    let toml = |influx: &str, period: &str| {
        let mut t = head_toml(site, &data, env.mosquitto.port, Some(http));
        let _ = write!(
            t,
            "\n[store]\nreadings_queue_mb = 16384\nhistory_mb = 16384\n\n\
             [influxdb]\nurl = \"{influx}\"\norg = \"bench\"\nbucket = \"bench\"\nflush_interval = \"200ms\"\n"
        );
        devices_toml(&mut t, &fleet, &shape, period);
        t
    };
    std::fs::write(
        &config,
        toml(&format!("http://127.0.0.1:{closed}"), shape.period),
    )
    .unwrap();
    println!(
        "replay: filling a backlog of {backlog} readings ({} devices × {} registers every {})",
        shape.devices, shape.registers, shape.period
    );
    let fill_start = Instant::now();
    let gw = Gateway::start(&config, &log);
    let mut last = Metrics::default();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(m) = scrape(&metrics_url).await {
            last = m;
        }
        if last.readings >= backlog {
            break;
        }
        if fill_start.elapsed() > Duration::from_secs(3600) {
            break;
        }
    }
    gw.stop();
    let fill_s = fill_start.elapsed().as_secs_f64();
    let readings_fill = last.readings;
    println!("replay: {readings_fill} readings taken in {fill_s:.0} s");

    // 2. The recovery.
    std::fs::write(&config, toml(&env.vm.url(), "1h")).unwrap();
    let log2 = log.with_extension("drain.log");
    let started = Instant::now();
    let gw = Gateway::start(&config, &log2);
    let mut first_write: Option<f64> = None;
    let mut last_change = started;
    let mut delivered = 0u64;
    let mut readings_drain = 0u64;
    let mut emptied = false;
    // The queue's depth as the restarted gateway first reports it.
    let mut depth_before = None;
    let limit = Duration::from_secs(if smoke { 60 } else { 1800 });
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(m) = scrape(&metrics_url).await else {
            continue;
        };
        let now = Instant::now();
        readings_drain = m.readings;
        if depth_before.is_none() && m.depth > 0 {
            depth_before = Some(m.depth);
        }
        if m.delivered > delivered {
            delivered = m.delivered;
            last_change = now;
            first_write.get_or_insert((now - started).as_secs_f64());
        }
        // Empty, and the counter has been still for a whole gauge period.
        if m.delivered > 0 && m.depth == 0 && now - last_change > Duration::from_millis(2500) {
            emptied = true;
            break;
        }
    }
    let drain_s = (last_change - started).as_secs_f64();
    gw.stop();
    let in_db = count(env.vm.url(), site).await;
    let rate = in_db as f64 / drain_s.max(1e-3);
    let v = json!({
        "backlog_readings": backlog,
        "fill": { "devices": shape.devices, "registers": shape.registers, "period": shape.period },
        "fill_s": round(fill_s, 1),
        "readings_taken_in": readings_fill,
        "queue_depth_before": depth_before,
        "readings_at_restart": readings_drain,
        "first_write_s": first_write.map(|s| round(s, 2)),
        "drain_s": round(drain_s, 2),
        "emptied": emptied,
        "delivered_rows": delivered,
        "in_database": in_db,
        "readings_per_s": round(rate, 0),
        "target_readings_per_s": TARGET_READINGS_PER_S,
        "met": emptied && rate >= TARGET_READINGS_PER_S,
    });
    println!("replay: {}", serde_json::to_string(&v).unwrap());
    v
}

fn devices_toml(t: &mut String, fleet: &Fleet, shape: &Shape, period: &str) {
    for (d, slave) in fleet.slaves.iter().take(shape.devices).enumerate() {
        let _ = write!(
            t,
            "\n[[devices]]\nid = \"p{d:03}\"\nprotocol = \"modbus_tcp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             poll_interval = \"{period}\"\ntimeout = \"1s\"\n",
            slave.local_addr().port(),
        );
        for r in 0..shape.registers {
            let _ = write!(
                t,
                "  [[devices.points]]\n  id = \"p{d:03}.r{r:02}\"\n  register = \"holding\"\n  address = {r}\n  type = \"u16\"\n"
            );
        }
    }
}

/// What the replay reads from /metrics.
#[derive(Default, Debug)]
struct Metrics {
    /// Readings handed to the rule engine, all devices.
    readings: u64,
    /// `riskgate_queue_depth{queue="influx"}`.
    depth: u64,
    /// `riskgate_delivered_total{queue="influx"}`.
    delivered: u64,
}

async fn scrape(url: &str) -> Option<Metrics> {
    let url = url.to_string();
    let text = tokio::task::spawn_blocking(move || common::http::http_get(&url))
        .await
        .ok()?
        .ok()
        .filter(|(code, _)| *code == 200)?
        .1;
    Some(parse_metrics(&text))
}

fn parse_metrics(text: &str) -> Metrics {
    let mut m = Metrics::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let value = value as u64;
        if name.starts_with("riskgate_readings_total{") {
            m.readings += value;
        } else if name == r#"riskgate_queue_depth{queue="influx"}"# {
            m.depth = value;
        } else if name == r#"riskgate_delivered_total{queue="influx"}"# {
            m.delivered = value;
        }
    }
    m
}

/// Every `reading_value` sample of `site` in the database (a count the
/// database makes, rather than an export of millions of samples).
async fn count(vm: String, site: &str) -> u64 {
    let query = format!(r#"sum(count_over_time(reading_value{{site="{site}"}}[2d]))"#);
    tokio::task::spawn_blocking(move || {
        let _ = common::http::http_get(&format!("{vm}/internal/force_flush"));
        let (code, text) = common::http::http_get(&format!(
            "{vm}/api/v1/query?query={}",
            common::http::urlencode(&query)
        ))
        .expect("query");
        assert_eq!(code, 200, "query: {text}");
        let v: Value = serde_json::from_str(&text).expect("query answer");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .map_or(0, |n| n as u64)
    })
    .await
    .unwrap()
}
