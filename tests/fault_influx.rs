//! Fault: the time-series database (VictoriaMetrics, InfluxDB line protocol)
//! is down for 60 s under about 1,000 readings/s. Every reading the gateway
//! accepted (committed to its store) must be in the database afterwards:
//! compared exactly, point by point and timestamp by timestamp, against the
//! gateway's local history.

mod common;

use riskgate::queue::QueueId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{SiteCfg, Victoria, wait_for_async};

const SITE: &str = "fault-influx";
const OUTAGE: Duration = Duration::from_secs(60);
/// 10 detectors × 5 points every 50 ms: 1,000 readings/s if polling keeps up.
const DEVICES: usize = 10;
const POLL: &str = "50ms";

fn readings_total() -> u64 {
    let m = riskgate::metrics::metrics();
    (0..DEVICES)
        .map(|i| m.readings.with_label_values(&[&format!("gd-{i:02}")]).get())
        .sum()
}

/// The database's reading timestamps per point: (distinct, raw sample count).
fn in_database(vm: &Victoria) -> (BTreeMap<String, BTreeSet<i64>>, usize) {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut raw = 0;
    for (labels, ts) in
        vm.export_series(&format!(r#"{{__name__="reading_quality",site="{SITE}"}}"#))
    {
        raw += ts.len();
        out.entry(labels["point"].clone()).or_default().extend(ts);
    }
    (out, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_60s_under_1000_readings_per_second_loses_no_reading() {
    common::init_tracing();
    let t0 = Instant::now();
    let mut vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let devs = common::gas_detectors(DEVICES).await;
    let mut site = SiteCfg::new(
        SITE,
        &dir.path().join("data"),
        devs.iter().map(|d| d.0.local_addr().port()).collect(),
    );
    site.poll = POLL.into();
    site.influx_url = Some(vm.url());
    let points = site.points();

    let running = riskgate::runtime::start(site.load(dir.path()))
        .await
        .unwrap();
    let store = running.shared.store.clone();
    let delivered = || {
        riskgate::metrics::metrics()
            .delivered
            .with_label_values(&["influx"])
            .get()
    };
    wait_for_async(
        "first readings delivered",
        Duration::from_secs(20),
        || async { (delivered() > 1000).then_some(()) },
    )
    .await;

    // The outage.
    vm.stop();
    let down = Instant::now();
    let n_down = readings_total();
    tokio::time::sleep_until((down + OUTAGE).into()).await;
    let n_up = readings_total();
    let rate = (n_up - n_down) as f64 / down.elapsed().as_secs_f64();
    let backlog = store.stats(QueueId::Readings).unwrap();
    assert!(
        backlog.depth as f64 >= 0.9 * (n_up - n_down) as f64,
        "the outage's readings wait in the durable queue: {backlog:?}, {} read",
        n_up - n_down
    );
    vm.restart();
    let back = Instant::now();

    // The backlog drains (reconnect backoff ≤ 30 s, then 5,000 rows a POST).
    wait_for_async(
        "the readings queue to drain",
        Duration::from_secs(120),
        || async { (store.stats(QueueId::Readings).unwrap().depth < 1000).then_some(()) },
    )
    .await;
    let drained_in = back.elapsed();
    running.stop().await;
    let left = store.stats(QueueId::Readings).unwrap();
    assert_eq!(
        left.depth, 0,
        "a clean stop flushes the rest to a reachable database"
    );

    // Accepted: every committed reading in the local history, and the same
    // number the gateway counted.
    let accepted = common::accepted_readings(&store, &points);
    let n_accepted: usize = accepted.values().map(Vec::len).sum();
    assert_eq!(
        n_accepted as u64,
        readings_total(),
        "every reading handed to the engine was committed"
    );
    for (p, ts) in &accepted {
        let distinct: BTreeSet<_> = ts.iter().collect();
        assert_eq!(
            distinct.len(),
            ts.len(),
            "{p}: one reading per timestamp (ms) in the history"
        );
    }

    // In the database: exactly those, no fewer, no more (duplicates of an
    // at-least-once retry collapse on their timestamp).
    let (db, raw) = wait_for_async(
        "every accepted reading in VictoriaMetrics",
        Duration::from_secs(30),
        || {
            let vm = &vm;
            async move {
                let (db, raw) = in_database(vm);
                let n: usize = db.values().map(BTreeSet::len).sum();
                (n >= n_accepted).then_some((db, raw))
            }
        },
    )
    .await;
    assert_eq!(
        db.keys().collect::<Vec<_>>(),
        accepted.keys().collect::<Vec<_>>(),
        "the same points"
    );
    for (p, ts) in &accepted {
        let want: BTreeSet<i64> = ts.iter().copied().collect();
        let got = &db[p];
        let missing: Vec<_> = want.difference(got).take(10).collect();
        let extra: Vec<_> = got.difference(&want).take(10).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{p}: missing {missing:?}, extra {extra:?} (first 10)"
        );
    }
    let n_db: usize = db.values().map(BTreeSet::len).sum();
    assert_eq!(n_db, n_accepted);

    eprintln!(
        "fault_influx: {:.0} readings/s during the outage ({} read in {:.1} s, {} queued); {} accepted in all, \
         all {} in the database ({} raw samples), backlog drained {:.1} s after the database came back; test took {:.1} s",
        rate,
        n_up - n_down,
        OUTAGE.as_secs_f64(),
        backlog.depth,
        n_accepted,
        n_db,
        raw,
        drained_in.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    drop(devs);
}
