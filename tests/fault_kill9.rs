//! Fault: `kill -9` of the riskgate process while both backlogs are full
//! (county broker and time-series database down, alarm events and readings
//! queued). After restarting riskgate and then the services: every alarm
//! event arrives (exactly once per event_id after de-duplication), `seq`
//! continues across the restart without a gap and without reuse, and every
//! reading accepted before the kill is in the database.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Mosquitto, Riskgate, SiteCfg, Subscriber, SubscriberOpts, Victoria, assert_schema_valid,
    wait_for_async,
};
use riskgate::queue::{QueueId, Store};

const SITE: &str = "fault-kill9";

fn open(data: &Path) -> Store {
    Store::open(data, u64::MAX, u64::MAX).unwrap()
}

fn all_events(store: &Store) -> Vec<serde_json::Value> {
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    store.alarm_log(since, 100_000).unwrap()
}

/// Waits until the alarm log holds an event of `rule` in `state` with a
/// seq above `after`; returns it.
async fn committed(data: &Path, rule: &str, state: &str, after: u64) -> serde_json::Value {
    wait_for_async(
        &format!("{rule} {state} committed"),
        Duration::from_secs(15),
        || async {
            all_events(&open(data)).into_iter().find(|e| {
                e["rule_id"] == rule && e["state"] == state && e["seq"].as_u64().unwrap() > after
            })
        },
    )
    .await
}

async fn raise(dev: &firmware_sim::DeviceHandle, data: &Path) -> Vec<serde_json::Value> {
    let before = open(data).last_seq().unwrap();
    dev.set_signal("ch4", 1.62);
    vec![
        committed(data, "gd00-ch4-alarm", "raised", before).await,
        committed(data, "gd00-ch4-cut", "raised", before).await,
    ]
}

async fn clear(dev: &firmware_sim::DeviceHandle, data: &Path) -> Vec<serde_json::Value> {
    let before = open(data).last_seq().unwrap();
    dev.set_signal("ch4", 0.8);
    vec![
        committed(data, "gd00-ch4-alarm", "cleared", before).await,
        committed(data, "gd00-ch4-cut", "cleared", before).await,
    ]
}

/// The events' seqs, sorted.
fn seqs(events: &[serde_json::Value]) -> Vec<u64> {
    let mut s: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    s.sort();
    s
}

/// The database's reading timestamps per point.
fn in_database(vm: &Victoria) -> BTreeMap<String, BTreeSet<i64>> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (labels, ts) in
        vm.export_series(&format!(r#"{{__name__="reading_quality",site="{SITE}"}}"#))
    {
        out.entry(labels["point"].clone()).or_default().extend(ts);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_both_backlogs_loses_nothing_and_reuses_no_seq() {
    let t0 = Instant::now();
    let mut broker = Mosquitto::start();
    let mut vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let devs = common::gas_detectors(4).await;
    let dev = &devs[0].1;
    let mut site = SiteCfg::new(
        SITE,
        &data,
        devs.iter().map(|d| d.0.local_addr().port()).collect(),
    )
    .plain_uplink(broker.port);
    site.influx_url = Some(vm.url());
    site.poll = "50ms".into();
    let points = site.points();
    let cfg = site.write(dir.path());
    let log = dir.path().join("riskgate.log");

    let mut county = Subscriber::connect(SubscriberOpts {
        clean_session: false,
        ..SubscriberOpts::new(
            broker.port,
            "county-consumer-fault-kill9",
            &format!("riskgate/v1/{SITE}/alarm"),
        )
    })
    .await;
    let mut gw = Riskgate::spawn(&cfg, &log, &[]);

    // Everything up: one excursion delivered, readings flowing.
    let mut first = raise(dev, &data).await;
    first.extend(clear(dev, &data).await);
    let first = seqs(&first);
    county
        .until("the first excursion", Duration::from_secs(20), |c| {
            first.iter().all(|s| c.alarm_seqs().contains(s))
        })
        .await;
    wait_for_async(
        "readings in VictoriaMetrics",
        Duration::from_secs(20),
        || {
            let vm = &vm;
            async move { (!in_database(vm).is_empty()).then_some(()) }
        },
    )
    .await;

    // Both services down; a full excursion and a raise queue up, with readings.
    broker.stop();
    vm.stop();
    let mut queued = raise(dev, &data).await;
    queued.extend(clear(dev, &data).await);
    let still_raised = raise(dev, &data).await;
    queued.extend(still_raised.iter().cloned());
    wait_for_async("a readings backlog", Duration::from_secs(20), || async {
        (open(&data).stats(QueueId::Readings).unwrap().depth >= 2_000).then_some(())
    })
    .await;

    // kill -9 in the middle of it.
    gw.kill9();
    let store = open(&data);
    let k = store.last_seq().unwrap();
    let before_kill = all_events(&store);
    assert_eq!(
        seqs(&before_kill),
        (1..=k).collect::<Vec<_>>(),
        "the alarm log before the kill"
    );
    let uplink_backlog = store.stats(QueueId::Alarms).unwrap();
    let influx_backlog = store.stats(QueueId::Readings).unwrap();
    assert!(
        uplink_backlog.depth >= queued.len() as u64,
        "alarm events queued at the kill: {uplink_backlog:?}"
    );
    assert!(
        influx_backlog.depth >= 2_000,
        "readings queued at the kill: {influx_backlog:?}"
    );
    let accepted_before = common::accepted_readings(&store, &points);
    let n_before: usize = accepted_before.values().map(Vec::len).sum();
    drop(store);

    // riskgate again, the services still down: the raised alarms were
    // restored, so going back under the recovery value clears them, with
    // the next seqs; then one more excursion.
    let mut gw = Riskgate::spawn(&cfg, &log, &[]);
    let cleared = clear(dev, &data).await;
    assert_eq!(
        seqs(&cleared),
        vec![k + 1, k + 2],
        "seq continues right after the last one before the kill"
    );
    for (c, r) in cleared.iter().zip(&still_raised) {
        assert_eq!(
            c["alarm_id"], r["alarm_id"],
            "the alarm raised before the kill is the one cleared after it"
        );
    }
    let mut after = raise(dev, &data).await;
    after.extend(clear(dev, &data).await);
    assert_eq!(seqs(&after), vec![k + 3, k + 4, k + 5, k + 6]);

    // The services come back.
    broker.restart();
    vm.restart();
    let back = Instant::now();
    let last = open(&data).last_seq().unwrap();
    county
        .until(
            &format!("every seq 1..={last}"),
            Duration::from_secs(90),
            |c| c.has_all(last),
        )
        .await;
    let alarms_in = back.elapsed();
    wait_for_async(
        "every reading accepted before the kill in the database",
        Duration::from_secs(90),
        || {
            let (vm, accepted_before) = (&vm, &accepted_before);
            async move {
                let db = in_database(vm);
                accepted_before
                    .iter()
                    .all(|(p, ts)| {
                        db.get(p)
                            .is_some_and(|got| ts.iter().all(|t| got.contains(t)))
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let readings_in = back.elapsed();
    wait_for_async("both queues drained", Duration::from_secs(60), || async {
        let s = open(&data);
        (s.stats(QueueId::Alarms).unwrap().depth == 0
            && s.stats(QueueId::Readings).unwrap().depth < 500)
            .then_some(())
    })
    .await;

    // A clean stop flushes the rest; then compare everything.
    assert!(gw.alive(), "riskgate still running");
    let pid = gw.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for_async(
        "riskgate to exit after SIGTERM",
        Duration::from_secs(20),
        || {
            let alive = gw.alive();
            async move { (!alive).then_some(()) }
        },
    )
    .await;
    let store = open(&data);
    assert_eq!(store.stats(QueueId::Readings).unwrap().depth, 0);
    let last = store.last_seq().unwrap();
    // Alarm events: de-duplicated on event_id, gap-free 1..=last, exactly as
    // logged; the ones before the kill unchanged (no seq reused).
    let got = county.every_event(last, Duration::from_secs(10)).await;
    let logged = all_events(&store);
    assert_eq!(seqs(&logged), (1..=last).collect::<Vec<_>>());
    for e in &logged {
        assert_eq!(&got[&e["seq"].as_u64().unwrap()], e);
        assert_schema_valid("alarm-event.schema.json", e);
    }
    for e in &before_kill {
        assert_eq!(
            &got[&e["seq"].as_u64().unwrap()],
            e,
            "an event from before the kill, unchanged"
        );
    }
    let ids: BTreeSet<&str> = got
        .values()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, last, "one event_id per seq");

    // Readings: every one accepted, before or after the kill, exactly once.
    // (The last batch, written during the stop, may need a moment to become
    // searchable.)
    let accepted = common::accepted_readings(&store, &points);
    let n_all: usize = accepted.values().map(Vec::len).sum();
    let db = wait_for_async(
        "every accepted reading in VictoriaMetrics",
        Duration::from_secs(30),
        || {
            let vm = &vm;
            async move {
                let db = in_database(vm);
                (db.values().map(BTreeSet::len).sum::<usize>() >= n_all).then_some(db)
            }
        },
    )
    .await;
    for (p, ts) in &accepted {
        let want: BTreeSet<i64> = ts.iter().copied().collect();
        assert_eq!(want.len(), ts.len(), "{p}: unique timestamps");
        let got = db.get(p).cloned().unwrap_or_default();
        let missing: Vec<_> = want.difference(&got).take(10).collect();
        let extra: Vec<_> = got.difference(&want).take(10).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{p}: missing {missing:?}, extra {extra:?}"
        );
    }
    eprintln!(
        "fault_kill9: killed with {} alarm events and {} readings queued ({} accepted so far); seq {k} before the kill, \
         {last} in all; alarms delivered {:.1} s and pre-kill readings {:.1} s after the services came back; \
         {n_all} readings in all; test took {:.1} s",
        uplink_backlog.depth,
        influx_backlog.depth,
        n_before,
        alarms_in.as_secs_f64(),
        readings_in.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    drop(devs);
}
