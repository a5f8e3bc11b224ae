//! The cost of keeping the operator views up to date, by site size.
//!
//! `cargo bench --bench views` writes `target/bench/views.json` (and prints
//! it). Sites of 10, 100 and 1,000 Modbus TCP devices × 10 points, no
//! rules. One input is one device's 10 readings (values changing), as a
//! poll hands them over; after each the views are brought up to date:
//! - `rebuild`: what the engine task did before issue 15 — every point's
//!   view made anew (`Engine::point_values` clones and sorts all points,
//!   `Config::point` finds each by a linear scan), as on every tick and
//!   every alarm transition;
//! - `incremental`: `runtime::views::Views::publish`, which rewrites the
//!   entries of the points that changed, found through an index built once.
//!
//! Figures are microseconds per input, engine included (`engine_only` is
//! the engine alone), so the difference is the views' share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use riskgate::api::state::{PointView, Shared, StreamHub};
use riskgate::config::Config;
use riskgate::model::{Input, Quality, Reading, Value};
use riskgate::rules::Engine;
use riskgate::runtime::views::Views;
use riskgate::time::Clock;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const POINTS_PER_DEVICE: usize = 10;

fn site(devices: usize, dir: &std::path::Path) -> Config {
    let mut text = format!(
        "[site]\nid = \"bench\"\nkind = \"coal_mine\"\n[gateway]\nid = \"gw\"\ndata_dir = \"{}\"\n",
        dir.display()
    );
    for d in 0..devices {
        text += &format!(
            "[[devices]]\nid = \"dev-{d:04}\"\nprotocol = \"modbus_tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
        );
        for p in 0..POINTS_PER_DEVICE {
            text += &format!(
                "  [[devices.points]]\n  id = \"dev-{d:04}.p{p}\"\n  register = \"holding\"\n  address = {p}\n"
            );
        }
    }
    riskgate::config::load_str(&text, &dir.join("bench.toml")).expect("bench config")
}

fn shared(cfg: Config, dir: &std::path::Path) -> Shared {
    let store = riskgate::queue::Store::open(dir, 64 << 20, 64 << 20).expect("store");
    Shared {
        id: riskgate::sink::uplink::contract::Identity::from_config(&cfg),
        cfg: Arc::new(cfg),
        store: Arc::new(store),
        points: RwLock::new(Vec::new()),
        alarms: RwLock::new(Vec::new()),
        devices_online: RwLock::new(HashMap::new()),
        devices: RwLock::new(Vec::new()),
        online: Mutex::new(Default::default()),
        counts: Default::default(),
        acks: tokio::sync::mpsc::channel(1).0,
        calibrate: tokio::sync::mpsc::channel(1).0,
        calibrations: RwLock::new(Vec::new()),
        status_wake: Default::default(),
        engine_tick: Mutex::new(None),
        stream: StreamHub::new(CancellationToken::new()),
    }
}

/// One device's readings, values changing with `round`.
fn input(cfg: &Config, device: usize, round: usize) -> Input {
    let d = &cfg.devices[device];
    let dev: Arc<str> = Arc::from(d.id.as_str());
    Input::Readings(
        d.points()
            .into_iter()
            .map(|p| Reading {
                point: Arc::from(p.id),
                device: dev.clone(),
                value: Some(Value::Num((round % 50) as f64)),
                quality: Quality::Good,
                at: Utc::now(),
            })
            .collect(),
    )
}

/// The views as the engine task built them before: all of them, each
/// point's device and meta found by a scan of the config.
fn rebuild(engine: &Engine, sh: &Shared) {
    let views: Vec<PointView> = engine
        .point_values()
        .into_iter()
        .map(|s| {
            let (d, p) = sh.cfg.point(&s.id).expect("a configured point");
            PointView {
                name: p.name.map_or_else(|| s.id.clone(), str::to_string),
                device: d.id.clone(),
                unit: p.unit.map(str::to_string),
                value: if s.quality == Quality::Good {
                    s.value
                } else {
                    None
                },
                quality: s.quality.label().to_string(),
                last_good: s.last_good.map(|t| sh.id.time(t)),
                id: s.id,
            }
        })
        .collect();
    *sh.points.write().unwrap() = views;
}

/// Microseconds per input over at least `min_inputs` inputs and `budget`.
fn measure(
    devices: usize,
    budget: Duration,
    min_inputs: usize,
    mut after: impl FnMut(&mut Engine, &Shared),
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let sh = shared(site(devices, dir.path()), dir.path());
    let mut engine = Engine::new(&sh.cfg);
    let clock = Clock::new();
    // Every point read once first, as on a site that has run a while.
    for d in 0..devices {
        engine.handle(&input(&sh.cfg, d, 0), clock.now());
    }
    after(&mut engine, &sh);
    let inputs: Vec<Input> = (0..devices.min(200))
        .map(|d| input(&sh.cfg, d * devices / devices.min(200), d + 1))
        .collect();
    let (mut n, start) = (0usize, Instant::now());
    while n < min_inputs || start.elapsed() < budget {
        let out = engine.handle(&inputs[n % inputs.len()], clock.now());
        std::hint::black_box(out);
        after(&mut engine, &sh);
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Microseconds per `Engine::tick` (every 200 ms in the engine task) on a
/// site whose points were all read once: the time-driven work (stale
/// checks, rules re-evaluated on the clock) that every site pays whatever
/// its input rate.
fn measure_tick(devices: usize, budget: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = site(devices, dir.path());
    let mut engine = Engine::new(&cfg);
    let clock = Clock::new();
    for d in 0..devices {
        engine.handle(&input(&cfg, d, 0), clock.now());
    }
    let (mut n, start) = (0usize, Instant::now());
    while n < 20 || start.elapsed() < budget {
        std::hint::black_box(engine.tick(clock.now()));
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let mut results = Vec::new();
    for devices in [10, 100, 1000] {
        let budget = Duration::from_secs(2);
        let engine_only = measure(devices, budget, 20, |_, _| {});
        let rebuilt = measure(devices, budget, 20, |e, sh| rebuild(e, sh));
        let mut views: Option<Views> = None;
        let incremental = measure(devices, budget, 20, |e, sh| {
            views
                .get_or_insert_with(|| Views::new(sh, e))
                .publish(e, sh);
        });
        let tick = measure_tick(devices, Duration::from_secs(1));
        let r = json!({
            "devices": devices,
            "us_per_tick": (tick * 10.0).round() / 10.0,
            "points": devices * POINTS_PER_DEVICE,
            "us_per_input_engine_only": (engine_only * 10.0).round() / 10.0,
            "us_per_input_rebuild": (rebuilt * 10.0).round() / 10.0,
            "us_per_input_incremental": (incremental * 10.0).round() / 10.0,
        });
        println!("{r}");
        results.push(r);
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let doc = json!({ "measured_at": Utc::now().to_rfc3339(), "sites": results });
    std::fs::write(
        out.join("views.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
    println!("written to target/bench/views.json");
}
