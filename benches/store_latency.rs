//! Alarm commit latency of the store, idle and behind a readings backlog.
//!
//! `cargo bench --bench store_latency` opens a store in a temporary
//! directory and times `Store::append_events` (one alarm event, its `seq`,
//! queue row, log row and active set, fsync'd: what the outbox does for
//! each event):
//! - `idle`: nothing else touches the store;
//! - `backlog`: after a readings backlog of `BACKLOG_MB` (400 by default)
//!   was written (queue and raw history, half of it past its retention),
//!   while readings keep being committed (a batch of 1,000 every 100 ms),
//!   pruning deletes the expired history in steps, the WAL is checkpointed
//!   every 2 s, and a reader polls stats, the queue head and the history as
//!   the API and the sinks do.
//!
//! Each commit is followed by a bare `fdatasync` of a side file in the same
//! directory, timed too: what the disk costs under the same load whatever
//! the store does. It writes `target/bench/store_latency.json` (p50 / p99 /
//! max in ms per phase, the same for the bare fsync, the load average, the
//! backlog size, how many rows pruning deleted during the measurement) and
//! prints it. `docs/benchmarks.md` has the figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riskgate::queue::{HistoryRow, LoggedEvent, QueueId, Store};

const SAMPLES: usize = 400;
const DAY_MS: i64 = 86_400_000;

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    serde_json::json!({
        "n": v.len(),
        "p50_ms": (q(0.5) * 100.0).round() / 100.0,
        "p99_ms": (q(0.99) * 100.0).round() / 100.0,
        "max_ms": (q(1.0) * 100.0).round() / 100.0,
    })
}

/// An alarm event body of the contract's usual size (~600 bytes).
fn event(seq: u64, _: &u32) -> LoggedEvent {
    LoggedEvent {
        event_id: format!("gw-bench:0000beef:{seq:012}"),
        alarm_id: format!("face1301-ch4-cut@{seq}"),
        at_ms: chrono::Utc::now().timestamp_millis(),
        body: format!(
            r#"{{"schema":"riskgate.alarm.v1","event_id":"gw-bench:0000beef:{seq:012}","seq":{seq},"gateway_id":"gw-bench","site_id":"bench","site_kind":"coal_mine","alarm_id":"face1301-ch4-cut@{seq}","rule_id":"face1301-ch4-cut","kind":"threshold","level":1,"level_color":"red","state":"raised","message":"1301 采煤工作面 甲烷 1.62 %CH4 ≥ 1.5, 断电","raised_at":"2026-12-03T10:15:02.123+08:00","ts":"2026-12-03T10:15:02.123+08:00","point_id":"face1301.ch4","point_name":"1301 采煤工作面 甲烷","value":1.62,"unit":"%CH4","threshold":1.5}}"#
        ),
    }
}

/// Alarm commit times, each paired with the time of a bare `fdatasync` of
/// a side file in the same directory taken right after it: the disk's own
/// floor under the same load, so the figures say what the store adds to
/// it and what the machine costs whatever the store does.
fn time_alarms(store: &Store, side: &mut std::fs::File, n: usize) -> (Vec<f64>, Vec<f64>) {
    use std::io::Write;
    let active = vec![("face1301-ch4-cut".to_string(), serde_json::json!({"a": 1}))];
    let line = [b'x'; 600];
    let mut commits = Vec::with_capacity(n);
    let mut floor = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        store
            .append_events(QueueId::Alarms, &[0u32], event, &active)
            .unwrap();
        commits.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        side.write_all(&line).unwrap();
        side.sync_data().unwrap();
        floor.push(t.elapsed().as_secs_f64() * 1000.0);
        // Alarms come one by one, not back to back.
        std::thread::sleep(Duration::from_millis(15));
    }
    (commits, floor)
}

/// `n` readings of 100 points from `at_ms` on, as the engine task commits
/// them: a line-protocol body for the queue and a history row each.
fn readings(n: usize, at_ms: i64) -> (Vec<HistoryRow>, Vec<(QueueId, Vec<String>)>) {
    let mut h = Vec::with_capacity(n);
    let mut q = Vec::with_capacity(n);
    for i in 0..n {
        let point = format!("face{:04}.ch4", i % 100);
        let at = at_ms + (i / 100) as i64;
        q.push(format!(
            "reading,site=bench,device=gd-{:02},point={point} value=0.{:03},quality=0i {}",
            i % 100,
            i % 1000,
            at * 1_000_000
        ));
        h.push(HistoryRow {
            point,
            at_ms: at,
            value: Some(0.3),
            quality: 0,
        });
    }
    (h, vec![(QueueId::Readings, q)])
}

fn db_bytes(dir: &std::path::Path) -> u64 {
    ["riskgate.db", "riskgate.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let backlog_mb: u64 = std::env::var("BACKLOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target".into()))
        .unwrap();
    let store = Arc::new(Store::open(dir.path(), u64::MAX, u64::MAX).unwrap());

    let mut side = std::fs::File::create(dir.path().join("fsync-floor")).unwrap();
    let (idle, idle_floor) = time_alarms(&store, &mut side, SAMPLES);
    eprintln!(
        "idle: {} (bare fsync {})",
        summary(idle.clone()),
        summary(idle_floor.clone())
    );

    // The backlog: half of it past a 7-day retention, so pruning has work.
    let now = chrono::Utc::now().timestamp_millis();
    let t = Instant::now();
    let mut batch = 0i64;
    while db_bytes(dir.path()) < backlog_mb * 1_048_576 {
        let old = batch % 2 == 0;
        let at = if old { now - 10 * DAY_MS } else { now - DAY_MS } + batch * 100;
        let (h, q) = readings(5_000, at);
        store.append_readings(&h, &q, now).unwrap();
        batch += 1;
        if batch % 20 == 0 {
            store.checkpoint().unwrap();
        }
    }
    store.checkpoint().unwrap();
    let backlog = store.stats(QueueId::Readings).unwrap();
    eprintln!(
        "backlog: {} MB, {} readings queued, written in {:.0} s",
        db_bytes(dir.path()) / 1_048_576,
        backlog.depth,
        t.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let pruned = Arc::new(AtomicU64::new(0));
    let pruning = Arc::new(AtomicBool::new(true));
    let readings_took = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    {
        // Readings, as a large site commits them.
        // Their commit times bound how long an alarm can wait behind one.
        let (s, stop, took) = (store.clone(), stop.clone(), readings_took.clone());
        threads.push(std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let (h, q) = readings(1_000, chrono::Utc::now().timestamp_millis() + k);
                let t = Instant::now();
                s.append_readings(&h, &q, 0).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                took.lock().unwrap().push(ms);
                k += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    {
        // Pruning the expired half, in steps.
        let (s, n, p) = (store.clone(), pruned.clone(), pruning.clone());
        threads.push(std::thread::spawn(move || {
            let deleted = s.prune(chrono::Utc::now(), 7, 366).unwrap();
            n.store(deleted, Ordering::Relaxed);
            p.store(false, Ordering::Relaxed);
        }));
    }
    {
        // Checkpoints, as housekeeping runs them.
        let (s, stop) = (store.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(2));
                s.checkpoint().unwrap();
            }
        }));
    }
    {
        // The API and the sinks reading.
        let (s, stop) = (store.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let since = chrono::Utc::now() - chrono::Duration::hours(1);
            while !stop.load(Ordering::Relaxed) {
                s.stats(QueueId::Readings).unwrap();
                s.peek(QueueId::Readings, 0, 500).unwrap();
                s.history("face0007.ch4", since, 1_000).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // Let the load start before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let (busy, busy_floor) = time_alarms(&store, &mut side, SAMPLES);
    let still_pruning = pruning.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let (b, bf) = (summary(busy), summary(busy_floor));
    eprintln!("backlog: {b} (bare fsync {bf}; pruning still running at the end: {still_pruning})");
    for t in threads {
        t.join().unwrap();
    }

    let out = serde_json::json!({
        "what": "Store::append_events, one alarm event per commit, synchronous = FULL",
        "idle": summary(idle),
        "backlog": b,
        "bare_fsync_idle": summary(idle_floor),
        "readings_commit_1000": summary(std::mem::take(&mut *readings_took.lock().unwrap())),
        "bare_fsync_backlog": bf,
        "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "backlog_mb": backlog_mb,
        "backlog_readings_queued": backlog.depth,
        "pruning_ran_throughout": still_pruning,
        "rows_pruned": pruned.load(Ordering::Relaxed),
        "load": "readings 1,000 per 100 ms; prune in 2,000-row steps; checkpoint every 2 s; stats+peek+history every 50 ms",
        "machine": format!("{} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)),
    });
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/store_latency.json",
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
