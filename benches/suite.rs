//! The end-to-end benchmark suite (issue 15, item 2): the `riskgate` binary
//! as a child process, polling simulated Modbus TCP devices, with rules and
//! both sinks on real services, measured from outside.
//!
//! `cargo bench --bench suite` (release build) runs the loads of
//! docs/benchmarks.md#end-to-end-suite and a search for the maximum sustained rate;
//! `cargo test --bench suite` (what `scripts/test.sh` runs, debug build) is
//! the smoke mode: one tiny load, a few steps, seconds. `SUITE_SMOKE=1` forces
//! the smoke mode under `cargo bench` too.
//!
//! Why a bench target and not a script: it reuses the tests' service fixtures
//! (`tests/common/services.rs`: Mosquitto and VictoriaMetrics on free loopback
//! ports, stopped when dropped), serves the devices with the firmware-sim
//! library in this process (one TcpSlave per device; a thousand listeners cost
//! nothing), changes the methane register directly to time the alarm path,
//! and cargo builds the `riskgate` binary of the same profile beside it
//! (`CARGO_BIN_EXE_riskgate`), so the command needs nothing else.
//!
//! Per load, one fresh gateway (its own store and site id) and a fixed window:
//! - delivered points/s: `reading_value` samples of the load's site whose
//!   poll timestamp is inside the window, counted in VictoriaMetrics through
//!   its export API once they stopped arriving; "sustained" is within 5 % of
//!   devices × registers / period;
//! - RSS (maximum of 1 s samples of `VmRSS`) and CPU % (utime + stime over
//!   the window; 100 = one core) of the riskgate process, from /proc; the
//!   same CPU figure for this process (simulator, subscriber, harness);
//! - alarm latency: the methane register of device 0 is stepped over the
//!   rule's threshold and back (50 times in full mode); each step is timed
//!   from the simulator's value change to an independent MQTT subscriber
//!   holding the event (`step`), and from the reading's own timestamp, the
//!   poll that saw it, to the same receipt (`pipeline`); raises (the alarm)
//!   and clears are reported apart. A random wait of up
//!   to one period before each step keeps steps from locking onto the poll's
//!   phase. The throughput window is the time the steps take (at least a
//!   minimum), so both are measured under the same load.
//!
//! In full mode the same loads also run against two peer gateways, Node-RED
//! and the ThingsBoard IoT Gateway (`suite/peers.rs`; `SUITE_PEERS=0` skips
//! them). `SUITE_LOADS=1,3` runs only those full-mode loads (1-based, in the
//! order below), and the maximum search only if the list holds `max`.
//!
//! Beside the loads, `suite/wire.rs` runs the RTU wire-time, Modbus TCP
//! request-rate limit, MQTT-sourced point latency and replay scenarios
//! (under `scenarios` in the JSON, a table of their own in the Markdown).
//!
//! Figures go to `target/bench/suite.json` and `suite.md` (smoke mode:
//! `suite-smoke.*`), with the machine (CPU model, cores, load average before
//! the run). Nothing here asserts a figure's value; the smoke mode asserts only
//! that every figure was produced.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "suite/peers.rs"]
mod peers;
#[path = "suite/wire.rs"]
mod wire;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Mosquitto, Victoria};
use firmware_sim::{FaultSwitch, RegisterBank, TcpSlave};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The methane point (device 0, register 0, u16 × 0.01) and its raw values.
const CH4_LOW: u16 = 30;
const CH4_HIGH: u16 = 162;

#[derive(Clone, Debug)]
struct Load {
    name: String,
    devices: usize,
    registers: usize,
    period: Duration,
    /// Alarm steps (raise and clear each count one).
    steps: usize,
    /// The window is at least this long.
    min_window: Duration,
}

impl Load {
    fn offered(&self) -> f64 {
        (self.devices * self.registers) as f64 / self.period.as_secs_f64()
    }
}

fn load(name: &str, devices: usize, registers: usize, period_us: u64, steps: usize) -> Load {
    Load {
        name: name.into(),
        devices,
        registers,
        period: Duration::from_micros(period_us),
        steps,
        min_window: Duration::from_secs(20),
    }
}

/// The simulated site: one Modbus TCP slave per device, `registers` holding
/// registers each (values 30, 31, ...; register 0 of device 0 is methane).
struct Fleet {
    slaves: Vec<TcpSlave>,
    banks: Vec<RegisterBank>,
}

impl Fleet {
    async fn start(devices: usize, registers: usize) -> Fleet {
        let mut slaves = Vec::with_capacity(devices);
        let mut banks = Vec::with_capacity(devices);
        for _ in 0..devices {
            let bank = RegisterBank::new();
            for r in 0..registers {
                bank.set_holding(r as u16, CH4_LOW + r as u16);
            }
            let slave = TcpSlave::start(
                "127.0.0.1:0".parse().unwrap(),
                vec![],
                bank.clone(),
                FaultSwitch::default(),
            )
            .await
            .expect("a simulated device listens");
            slaves.push(slave);
            banks.push(bank);
        }
        Fleet { slaves, banks }
    }
}

fn site_toml(site: &str, data: &Path, l: &Load, fleet: &Fleet, broker: u16, vm: &str) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        "[site]\nid = \"{site}\"\nkind = \"coal_mine\"\n\n[gateway]\nid = \"gw-{site}\"\ndata_dir = \"{}\"\n\n\
         [http]\nenabled = false\n\n\
         [uplink]\nhost = \"127.0.0.1\"\nport = {broker}\nplain_tcp = true\n\n\
         [influxdb]\nurl = \"{vm}\"\norg = \"bench\"\nbucket = \"bench\"\nflush_interval = \"200ms\"\n\n\
         [[rules]]\nid = \"cut\"\nkind = \"threshold\"\npoint = \"d0000.r00\"\nop = \">=\"\nvalue = 1.5\nrecovery = 1.0\nlevel = 1\n",
        data.display()
    );
    for (d, slave) in fleet.slaves.iter().take(l.devices).enumerate() {
        let _ = write!(
            t,
            "\n[[devices]]\nid = \"d{d:04}\"\nprotocol = \"modbus_tcp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             poll_interval = \"{}us\"\ntimeout = \"1s\"\n",
            slave.local_addr().port(),
            l.period.as_micros()
        );
        for r in 0..l.registers {
            let _ = write!(
                t,
                "  [[devices.points]]\n  id = \"d{d:04}.r{r:02}\"\n  register = \"holding\"\n  address = {r}\n  type = \"u16\"\n  scale = 0.01\n"
            );
        }
    }
    t
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: &str, tick: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / tick
}

fn rss_mb(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `reading_value` samples of `site` with a timestamp in [from, to] (ms).
async fn delivered(vm: String, site: String, from: i64, to: i64) -> u64 {
    tokio::task::spawn_blocking(move || {
        let _ = common::http::http_get(&format!("{vm}/internal/force_flush"));
        let sel = format!(r#"{{__name__="reading_value",site="{site}"}}"#);
        let body = format!(
            "match[]={}&start={}&end={}",
            common::http::urlencode(&sel),
            from as f64 / 1000.0,
            to as f64 / 1000.0
        );
        let (code, text) =
            common::http::http_post(&format!("{vm}/api/v1/export"), &body).expect("export");
        assert_eq!(code, 200, "export: {text}");
        let mut n = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("export line");
            n += v["timestamps"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .filter_map(Value::as_i64)
                        .filter(|t| (from..=to).contains(t))
                        .count()
                })
                .unwrap_or(0) as u64;
        }
        n
    })
    .await
    .unwrap()
}

/// An alarm event of the methane rule as the county's subscriber got it.
struct Got {
    at: DateTime<Utc>,
    state: String,
    ts: Option<DateTime<Utc>>,
}

/// An MQTT client of its own on the county topic, forwarding the methane
/// rule's events.
async fn subscribe(port: u16, site: &str) -> mpsc::UnboundedReceiver<Got> {
    let mut opts = MqttOptions::new(format!("county-{site}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 100);
    client
        .subscribe(format!("riskgate/v1/{site}/alarm"), QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("subscriber: {e}"),
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Utc::now();
                    let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
                        continue;
                    };
                    if v["rule_id"] != "cut" {
                        continue;
                    }
                    let ts = v["ts"]
                        .as_str()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map(|t| t.with_timezone(&Utc));
                    let state = v["state"].as_str().unwrap_or_default().to_string();
                    if tx.send(Got { at, state, ts }).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

fn summary(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!({ "n": 0 });
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| (v[((v.len() - 1) as f64 * p).round() as usize] * 100.0).round() / 100.0;
    json!({ "n": v.len(), "min_ms": q(0.0), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0) })
}

/// A cheap random number in [0, 1) (the step phase needs no quality).
fn jitter(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

struct Gateway {
    child: Child,
    pid: String,
}

impl Gateway {
    fn start(config: &Path, log: &Path) -> Gateway {
        let child = Command::new(env!("CARGO_BIN_EXE_riskgate"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("riskgate binary");
        let pid = child.id().to_string();
        Gateway { child, pid }
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(&self.pid).status();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Env {
    mosquitto: Mosquitto,
    vm: Victoria,
    dir: tempfile::TempDir,
    tick: f64,
    seed: u64,
}

async fn run_load(env: &mut Env, fleet: &Fleet, l: &Load, k: usize) -> Value {
    let site = format!("bench{k}");
    let data = env.dir.path().join(&site);
    std::fs::create_dir_all(&data).unwrap();
    let config = env.dir.path().join(format!("{site}.toml"));
    let text = site_toml(&site, &data, l, fleet, env.mosquitto.port, &env.vm.url());
    std::fs::write(&config, text).unwrap();
    let ch4 = &fleet.banks[0];
    ch4.set_holding(0, CH4_LOW);
    let mut events = subscribe(env.mosquitto.port, &site).await;
    let log = env.dir.path().join(format!("{site}.log"));
    let gw = Gateway::start(&config, &log);
    println!(
        "{}: {} devices x {} registers every {:?} ({:.0} points/s offered)",
        l.name,
        l.devices,
        l.registers,
        l.period,
        l.offered()
    );

    // Running: the first readings are in the database; then a warm-up.
    let started = Instant::now();
    let t_start = Utc::now().timestamp_millis();
    loop {
        let now = Utc::now().timestamp_millis();
        if delivered(env.vm.url(), site.clone(), t_start - 60_000, now).await > 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            gw.stop();
            panic!(
                "{}: nothing delivered in 60 s; gateway log:\n{tail}",
                l.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep((l.period * 2).max(Duration::from_secs(2))).await;
    while events.try_recv().is_ok() {}

    // The window: steps, /proc samples.
    let t0 = Utc::now().timestamp_millis();
    let w0 = Instant::now();
    let (gw_cpu0, own_cpu0) = (
        cpu_seconds(&gw.pid, env.tick),
        cpu_seconds("self", env.tick),
    );
    let mut rss_max = rss_mb(&gw.pid);
    let mut last_rss = Instant::now();
    // Raises and clears apart: a clear may wait on purpose (it is not the
    // alarm path), so mixing them would hide the alarm's own latency.
    let (mut raise_ms, mut raise_pipe_ms) = (Vec::new(), Vec::new());
    let (mut clear_ms, mut clear_pipe_ms) = (Vec::new(), Vec::new());
    let mut missed = 0;
    let step_limit = l.period * 3 + Duration::from_secs(10);
    let mut high = false;
    for _ in 0..l.steps {
        let wait = l
            .period
            .min(Duration::from_secs(1))
            .mul_f64(jitter(&mut env.seed));
        tokio::time::sleep(wait).await;
        high = !high;
        let want = if high { "raised" } else { "cleared" };
        let stepped = Utc::now();
        ch4.set_holding(0, if high { CH4_HIGH } else { CH4_LOW });
        let got = tokio::time::timeout(step_limit, async {
            while let Some(g) = events.recv().await {
                if g.state == want {
                    return Some(g);
                }
            }
            None
        })
        .await;
        match got {
            Ok(Some(g)) => {
                let (step, pipe) = if high {
                    (&mut raise_ms, &mut raise_pipe_ms)
                } else {
                    (&mut clear_ms, &mut clear_pipe_ms)
                };
                step.push((g.at - stepped).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                if let Some(ts) = g.ts {
                    pipe.push((g.at - ts).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                }
            }
            _ => missed += 1,
        }
        if last_rss.elapsed() >= Duration::from_secs(1) {
            rss_max = rss_max.max(rss_mb(&gw.pid));
            last_rss = Instant::now();
        }
    }
    while w0.elapsed() < l.min_window {
        tokio::time::sleep(Duration::from_secs(1).min(l.min_window - w0.elapsed())).await;
        rss_max = rss_max.max(rss_mb(&gw.pid));
    }
    let window = w0.elapsed().as_secs_f64();
    let t1 = Utc::now().timestamp_millis();
    let rss_end = rss_mb(&gw.pid);
    rss_max = rss_max.max(rss_end);
    let gw_cpu = (cpu_seconds(&gw.pid, env.tick) - gw_cpu0) / window * 100.0;
    let own_cpu = (cpu_seconds("self", env.tick) - own_cpu0) / window * 100.0;
    // Leave the alarm cleared for the next load.
    ch4.set_holding(0, CH4_LOW);

    // Delivered: counted once the count stops growing (the sink flushes every
    // 200 ms; a backlog drains at its own pace), at most 60 s.
    let mut n = delivered(env.vm.url(), site.clone(), t0, t1).await;
    let settle = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let m = delivered(env.vm.url(), site.clone(), t0, t1).await;
        if m == n || settle.elapsed() > Duration::from_secs(60) {
            n = m;
            break;
        }
        n = m;
    }
    gw.stop();
    drop(events);

    let span = (t1 - t0) as f64 / 1000.0;
    let rate = n as f64 / span;
    let ratio = rate / l.offered();
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let v = json!({
        "name": l.name,
        "devices": l.devices,
        "registers": l.registers,
        "period_ms": l.period.as_secs_f64() * 1000.0,
        "offered_points_per_s": round(l.offered(), 1),
        "window_s": round(span, 2),
        "delivered_points": n,
        "delivered_points_per_s": round(rate, 1),
        "delivered_ratio": round(ratio, 4),
        "sustained": ratio >= 0.95,
        "rss_mb_max": round(rss_max, 1),
        "rss_mb_end": round(rss_end, 1),
        "cpu_percent": round(gw_cpu, 1),
        "harness_cpu_percent": round(own_cpu, 1),
        "alarm_steps": l.steps,
        "alarm_steps_missed": missed,
        "alarm_latency": summary(raise_ms),
        "pipeline_latency": summary(raise_pipe_ms),
        "clear_latency": summary(clear_ms),
        "clear_pipeline_latency": summary(clear_pipe_ms),
    });
    println!("{}", serde_json::to_string(&v).unwrap());
    v
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    json!({ "cpu": cpu, "cores": cores, "mem_gib": mem, "loadavg_before": loadavg })
}

fn ms3(v: &Value) -> String {
    if v["n"].as_u64().unwrap_or(0) == 0 {
        return "–".into();
    }
    format!(
        "{} / {} / {} (n={})",
        v["p50_ms"], v["p99_ms"], v["max_ms"], v["n"]
    )
}

fn markdown(result: &Value) -> String {
    let m = &result["machine"];
    let mut t = format!(
        "Measured {} ({} mode, `riskgate` {} build) on {} × {} ({} GiB), load average before the run {}.\n\n",
        result["measured_at"].as_str().unwrap_or(""),
        result["mode"].as_str().unwrap_or(""),
        result["profile"].as_str().unwrap_or(""),
        m["cores"],
        m["cpu"].as_str().unwrap_or(""),
        m["mem_gib"],
        m["loadavg_before"].as_str().unwrap_or(""),
    );
    t.push_str("| load | devices × registers @ period | offered pts/s | delivered pts/s | RSS MB (max) | CPU % (100 = 1 core) | harness CPU % | alarm latency p50 / p99 / max ms | pipeline latency p50 / p99 / max ms | clear latency p50 / p99 / max ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let rows = result["loads"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(result["max_search"].as_array().into_iter().flatten());
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} × {} @ {} ms | {} | {} ({:.1} %{}) | {} | {} | {} | {} | {} | {} |",
            r["name"].as_str().unwrap_or(""),
            r["devices"],
            r["registers"],
            r["period_ms"],
            r["offered_points_per_s"],
            r["delivered_points_per_s"],
            r["delivered_ratio"].as_f64().unwrap_or(0.0) * 100.0,
            if r["sustained"] == true {
                ""
            } else {
                ", not sustained"
            },
            r["rss_mb_max"],
            r["cpu_percent"],
            r["harness_cpu_percent"],
            ms3(&r["alarm_latency"]),
            ms3(&r["pipeline_latency"]),
            ms3(&r["clear_latency"]),
        );
    }
    if let Some(max) = result["max_sustained_points_per_s"].as_f64() {
        let _ = writeln!(
            t,
            "\nMaximum sustained (delivered within 5 % of offered): {max:.0} points/s."
        );
    }
    t
}

/// The highest rate 10 devices × 10 registers sustain: the period halved from
/// 10 ms until a probe falls short, then one probe between the last two.
async fn max_search(env: &mut Env, fleet: &Fleet, k: &mut usize) -> (Vec<Value>, Option<f64>) {
    let mut probes = Vec::new();
    let mut best: Option<(u64, f64)> = None;
    let mut failed: Option<u64> = None;
    let mut period_us = 10_000u64;
    let probe = |period_us: u64| Load {
        name: format!("max search @ {period_us} µs"),
        devices: 10,
        registers: 10,
        period: Duration::from_micros(period_us),
        steps: 10,
        min_window: Duration::from_secs(10),
    };
    while period_us >= 50 {
        *k += 1;
        let v = run_load(env, fleet, &probe(period_us), *k).await;
        let ok = v["sustained"] == true;
        let rate = v["delivered_points_per_s"].as_f64().unwrap_or(0.0);
        probes.push(v);
        if !ok {
            failed = Some(period_us);
            break;
        }
        best = Some((period_us, rate));
        period_us /= 2;
    }
    if let (Some((good, _)), Some(bad)) = (best, failed) {
        let mid = ((good as f64) * (bad as f64)).sqrt() as u64;
        if mid != good && mid != bad {
            *k += 1;
            let v = run_load(env, fleet, &probe(mid), *k).await;
            if v["sustained"] == true {
                let rate = v["delivered_points_per_s"].as_f64().unwrap_or(0.0);
                best = Some((mid, rate.max(best.map(|b| b.1).unwrap_or(0.0))));
            }
            probes.push(v);
        }
    }
    (probes, best.map(|b| b.1))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let smoke =
        !std::env::args().any(|a| a == "--bench") || std::env::var_os("SUITE_SMOKE").is_some();
    let machine = machine();
    let profile = if env!("CARGO_BIN_EXE_riskgate").contains("/release/") {
        "release"
    } else {
        "debug"
    };
    let mut env = Env {
        mosquitto: Mosquitto::start(),
        vm: Victoria::start(),
        dir: tempfile::tempdir().unwrap(),
        tick: clock_tick(),
        seed: Utc::now().timestamp_micros() as u64 | 1,
    };
    let loads = if smoke {
        vec![Load {
            min_window: Duration::from_secs(2),
            ..load("smoke: 2 × 3 @ 100 ms", 2, 3, 100_000, 4)
        }]
    } else {
        vec![
            load("10 devices, 1k points/s", 10, 10, 100_000, 100),
            load("10 devices, 10k points/s", 10, 10, 10_000, 100),
            load("1,000 devices, 1k points/s", 1000, 1, 1_000_000, 100),
            load("1,000 devices, 10k points/s", 1000, 10, 1_000_000, 100),
        ]
    };
    let only = std::env::var("SUITE_LOADS").ok().filter(|_| !smoke);
    let picked = |i: usize| {
        only.as_deref()
            .is_none_or(|s| s.split(',').any(|x| x.trim() == i.to_string()))
    };
    let loads: Vec<Load> = (1..)
        .zip(loads)
        .filter(|(i, _)| picked(*i))
        .map(|(_, l)| l)
        .collect();
    let search = !smoke
        && only
            .as_deref()
            .is_none_or(|s| s.split(',').any(|x| x.trim() == "max"));
    let peers = (!smoke && std::env::var("SUITE_PEERS").as_deref() != Ok("0")).then(peers::install);
    let devices = loads.iter().map(|l| l.devices).max().unwrap_or(10).max(10);
    let registers = loads
        .iter()
        .map(|l| l.registers)
        .max()
        .unwrap_or(10)
        .max(10);
    let fleet = Fleet::start(devices, registers).await;

    let mut k = 0;
    let mut results = Vec::new();
    for l in &loads {
        k += 1;
        let mut v = run_load(&mut env, &fleet, l, k).await;
        if let Some(p) = &peers {
            v["peers"] = peers::run(&mut env, &fleet, l, k, p).await;
        }
        results.push(v);
    }
    let (probes, max) = if !search {
        (Vec::new(), None)
    } else {
        max_search(&mut env, &fleet, &mut k).await
    };
    let best = results
        .iter()
        .filter_map(|r| r["delivered_points_per_s"].as_f64())
        .fold(0.0, f64::max);
    let scenarios = wire::run(&mut env, smoke, max, best).await;

    let result = json!({
        "measured_at": Utc::now().to_rfc3339(),
        "mode": if smoke { "smoke" } else { "full" },
        "profile": profile,
        "machine": machine,
        "loads": results,
        "max_search": probes,
        "max_sustained_points_per_s": max,
        "peers": peers.as_ref().map(peers::Installed::to_json),
        "scenarios": scenarios,
    });
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let stem = if smoke { "suite-smoke" } else { "suite" };
    let md = markdown(&result) + &peers::markdown(&result) + &wire::markdown(&result["scenarios"]);
    std::fs::write(
        out.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&result).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join(format!("{stem}.md")), &md).unwrap();
    println!("{md}");
    println!("written to {}/{stem}.json and .md", out.display());

    if smoke {
        peers::self_check(&loads[0], &fleet, env.mosquitto.port);
        // Figures produced, whatever their values: every field a number, and
        // at least one alarm step timed end to end.
        for r in result["loads"].as_array().unwrap() {
            for f in [
                "delivered_points_per_s",
                "rss_mb_max",
                "cpu_percent",
                "harness_cpu_percent",
            ] {
                assert!(r[f].as_f64().is_some_and(f64::is_finite), "{f}: {r}");
            }
            assert!(r["alarm_latency"]["n"].as_u64().unwrap_or(0) > 0, "{r}");
            assert!(r["alarm_latency"]["p99_ms"].as_f64().is_some(), "{r}");
            assert!(r["pipeline_latency"]["p99_ms"].as_f64().is_some(), "{r}");
            assert!(r["clear_latency"]["p99_ms"].as_f64().is_some(), "{r}");
        }
        wire::assert_produced(&result["scenarios"]);
    }
}
