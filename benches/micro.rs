//! Micro-benchmarks of the hot path's parts, with criterion (issue 15):
//! Modbus decoding, rule evaluation, line-protocol encoding, the readings
//! queue (append then acknowledge) and the raw history append.
//!
//! `cargo bench --bench micro` runs them; criterion keeps each estimate in
//! `target/criterion/<group>/<bench>/new/estimates.json` and compares a run
//! with the one before. `cargo test --bench micro` (what the test command
//! does) runs each once, so the benchmarks cannot rot. All work on the
//! shipped coal-mine example (its devices, presets and interlocks), so the
//! figures are those of a real site's points and rules, not of a toy.

use std::hint::black_box;
use std::sync::Arc;

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use riskgate::config::{Config, DeviceKind};
use riskgate::model::{Quality, Reading, Value};
use riskgate::queue::{HistoryRow, QueueId, Store};
use riskgate::source::modbus::decode::{decode, width};

fn example() -> Config {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    riskgate::config::load(&root.join("config/coal-mine.example.toml")).expect("example config")
}

/// One good reading of every point, numbers walking through the rules'
/// bands from round to round so thresholds are crossed.
fn readings(cfg: &Config, round: usize) -> Vec<Reading> {
    let now = Utc::now();
    cfg.devices
        .iter()
        .flat_map(|d| d.points().into_iter().map(move |p| (d, p)))
        .map(|(d, p)| Reading {
            point: Arc::from(p.id),
            device: Arc::from(d.id.as_str()),
            value: Some(if p.value == riskgate::config::ValueKind::Bool {
                Value::Bool(round.is_multiple_of(2))
            } else {
                Value::Num(0.2 + (round % 20) as f64 * 0.09)
            }),
            quality: Quality::Good,
            at: now,
        })
        .collect()
}

fn lines(rs: &[Reading]) -> Vec<String> {
    rs.iter()
        .map(|r| riskgate::sink::influx::line("reading", "bench-site", r))
        .collect()
}

fn history(rs: &[Reading]) -> Vec<HistoryRow> {
    rs.iter()
        .map(|r| HistoryRow {
            point: r.point.to_string(),
            at_ms: r.at.timestamp_millis(),
            value: r.value.as_ref().and_then(|v| v.as_f64()),
            quality: 0,
        })
        .collect()
}

fn modbus_decode(c: &mut Criterion) {
    let cfg = example();
    let points: Vec<_> = cfg
        .devices
        .iter()
        .filter_map(|d| match &d.kind {
            DeviceKind::ModbusTcp(t) => Some((&t.modbus, t.points.iter())),
            DeviceKind::ModbusRtu(r) => Some((&r.modbus, r.points.iter())),
            _ => None,
        })
        .flat_map(|(m, ps)| ps.map(move |p| (m.byte_order, p)))
        .filter(|(_, p)| !p.register.is_bit())
        .collect();
    // A float's worth of words; each point takes the width it needs.
    let words = [0x3fcf_u16, 0x5c29, 0x0000, 0x0001];
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(points.len() as u64));
    g.bench_function("modbus_registers_all_points", |b| {
        b.iter(|| {
            for (order, p) in &points {
                let w = &words[..(width(p) as usize).min(words.len())];
                let _ = black_box(decode(p, *order, black_box(w)));
            }
        })
    });
    g.finish();
}

fn rule_evaluation(c: &mut Criterion) {
    let cfg = example();
    let mut engine = riskgate::rules::Engine::new(&cfg);
    let clock = riskgate::time::Clock::new();
    let batches: Vec<Vec<Reading>> = (0..20).map(|i| readings(&cfg, i)).collect();
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(batches[0].len() as u64));
    let mut i = 0;
    g.bench_function("on_readings_all_points", |b| {
        b.iter(|| {
            i = (i + 1) % batches.len();
            black_box(engine.on_readings(&batches[i], clock.now()))
        })
    });
    g.finish();
}

fn line_protocol(c: &mut Criterion) {
    let cfg = example();
    let rs = readings(&cfg, 3);
    let mut g = c.benchmark_group("line_protocol");
    g.throughput(Throughput::Elements(rs.len() as u64));
    g.bench_function("encode_all_points", |b| {
        b.iter(|| {
            for r in &rs {
                black_box(riskgate::sink::influx::line("reading", "bench-site", r));
            }
        })
    });
    g.finish();
}

/// 200 readings a commit: what the engine task commits every 200 ms at
/// 1,000 readings/s. Each commit is one transaction with its fsync, which
/// is most of the figure.
const BATCH: usize = 200;

fn batch(cfg: &Config) -> Vec<Reading> {
    (0..).flat_map(|i| readings(cfg, i)).take(BATCH).collect()
}

fn queue_append_ack(c: &mut Criterion) {
    let cfg = example();
    let rs = batch(&cfg);
    let (hist, body) = (history(&rs), lines(&rs));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 512 << 20, 2048 << 20).unwrap();
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("readings_append_then_ack_200", |b| {
        b.iter_batched(
            || body.clone(),
            |body| {
                store
                    .append_readings(
                        &hist,
                        &[(QueueId::Readings, body)],
                        Utc::now().timestamp_millis(),
                    )
                    .unwrap();
                let rows = store.peek(QueueId::Readings, 0, BATCH).unwrap();
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                store.ack(QueueId::Readings, &ids).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn history_append(c: &mut Criterion) {
    let cfg = example();
    let hist = history(&batch(&cfg));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 512 << 20, 2048 << 20).unwrap();
    let mut g = c.benchmark_group("history");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("append_200", |b| {
        b.iter(|| {
            store
                .append_readings(&hist, &[], Utc::now().timestamp_millis())
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    modbus_decode,
    rule_evaluation,
    line_protocol,
    queue_append_ack,
    history_append
);
criterion_main!(benches);
