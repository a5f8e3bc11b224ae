//! Fault: the readings queue overflows its cap (`[store] readings_queue_mb =
//! 1`, the time-series database down) **while the county broker is down
//! too**, so the alarm queue holds every event raised meanwhile (with the
//! broker up it never holds more than a few rows, and the cap could drop
//! them unseen). Methane alarms are raised and cleared before, during and
//! after the overflow. When the broker comes back every alarm event arrives,
//! in seq order, gap-free, none dropped; the readings dropped at the cap are
//! the only loss, and they are counted.
//!
//! Its own test binary: the drop counter is process-wide.

mod common;

use std::time::Duration;

use common::{
    Mosquitto, SiteCfg, Subscriber, SubscriberOpts, assert_schema_valid, committed, free_port,
    wait_for_async,
};
use riskgate::queue::{QueueId, Store};

const SITE: &str = "fault-qlimit-nobroker";
const CAP: u64 = 1_048_576;
const OVERFLOW: &str = "queue.readings.overflow";

fn dropped() -> u64 {
    riskgate::metrics::metrics()
        .queue_dropped
        .with_label_values(&["influx"])
        .get()
}

/// Raises and clears both methane rules; returns the four seqs.
async fn excursion(dev: &firmware_sim::DeviceHandle, store: &Store) -> Vec<u64> {
    let before = store.last_seq().unwrap();
    dev.set_signal("ch4", 1.62);
    let mut s = vec![
        committed(store, "gd00-ch4-cut", "raised", before).await,
        committed(store, "gd00-ch4-alarm", "raised", before).await,
    ];
    dev.set_signal("ch4", 0.8);
    s.push(committed(store, "gd00-ch4-cut", "cleared", before).await);
    s.push(committed(store, "gd00-ch4-alarm", "cleared", before).await);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alarm_dropped_at_the_readings_cap_while_the_broker_is_down() {
    common::init_tracing();
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let devs = common::gas_detectors(10).await;
    let mut site = SiteCfg::new(
        SITE,
        &dir.path().join("data"),
        devs.iter().map(|d| d.0.local_addr().port()).collect(),
    )
    .plain_uplink(broker.port);
    site.poll = "50ms".into();
    // Nothing listens there: the database is down for the whole test.
    site.influx_url = Some(format!("http://127.0.0.1:{}", free_port()));
    site.store = "readings_queue_mb = 1".into();
    let points = site.points();
    // A persistent session: the broker keeps it across its restart.
    let mut county = Subscriber::connect(SubscriberOpts {
        clean_session: false,
        ..SubscriberOpts::new(
            broker.port,
            "county-fault-qlimit-nobroker",
            &format!("riskgate/v1/{SITE}/alarm"),
        )
    })
    .await;

    let running = riskgate::runtime::start(site.load(dir.path()))
        .await
        .unwrap();
    let store = running.shared.store.clone();
    let dev = &devs[0].1;

    // Broker up: one excursion delivered.
    let first = excursion(dev, &store).await;
    county
        .until("the first excursion", Duration::from_secs(20), |c| {
            first.iter().all(|s| c.alarm_seqs().contains(s))
        })
        .await;
    assert_eq!(dropped(), 0, "nothing dropped before the cap");

    // Broker down, then the readings queue fills and overflows, with alarms
    // raised and cleared before, at and after the first drop.
    broker.stop();
    let delivered_before = store.last_seq().unwrap();
    let mut queued = excursion(dev, &store).await;
    let first_drop = wait_for_async(
        "the first readings dropped",
        Duration::from_secs(90),
        || async {
            let d = dropped();
            (d > 0).then_some(d)
        },
    )
    .await;
    queued.extend(excursion(dev, &store).await);
    wait_for_async(
        "5,000 more readings dropped",
        Duration::from_secs(60),
        || async { (dropped() >= first_drop + 5_000).then_some(()) },
    )
    .await;
    queued.extend(excursion(dev, &store).await);
    // Every event since the broker went away is still queued, the overflow
    // alarm's raise among them; the readings queue holds its cap.
    let overflow_seq = committed(&store, OVERFLOW, "raised", delivered_before).await;
    let last = store.last_seq().unwrap();
    let alarms = store.stats(QueueId::Alarms).unwrap();
    assert!(
        alarms.depth >= last - delivered_before,
        "every event since the broker stopped is queued: {alarms:?}, seqs {}..={last}",
        delivered_before + 1
    );
    // the methane events and the overflow raise, at least
    assert!(alarms.depth > queued.len() as u64);
    let readings = store.stats(QueueId::Readings).unwrap();
    assert!(
        readings.bytes <= CAP,
        "the readings cap holds: {readings:?}"
    );

    // The broker comes back: every alarm event arrives, in seq order (first
    // arrivals), gap-free, as logged.
    broker.restart();
    let got = county.every_event(last, Duration::from_secs(60)).await;
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    let logged = store.alarm_log(since, 100_000).unwrap();
    for e in logged.iter().filter(|e| e["seq"].as_u64().unwrap() <= last) {
        assert_eq!(&got[&e["seq"].as_u64().unwrap()], e, "as logged");
        assert_schema_valid("alarm-event.schema.json", e);
    }
    for s in &queued {
        assert!(got.contains_key(s), "methane event {s} delivered");
    }
    let methane = got
        .values()
        .filter(|e| e["rule_id"].as_str().unwrap().starts_with("gd00-ch4-"))
        .count();
    assert_eq!(methane, 16, "4 excursions × 2 rules × raised/cleared");
    let overflow: Vec<_> = got.values().filter(|e| e["rule_id"] == OVERFLOW).collect();
    assert_eq!(overflow.len(), 1, "one overflow event: {overflow:#?}");
    assert_eq!(overflow[0]["seq"].as_u64(), Some(overflow_seq));
    wait_for_async("the alarm queue empty", Duration::from_secs(20), || async {
        (store.stats(QueueId::Alarms).unwrap().depth == 0).then_some(())
    })
    .await;
    running.stop().await;

    // The readings: the only loss, and counted. Every accepted reading is
    // still queued or was dropped (and counted).
    let readings = store.stats(QueueId::Readings).unwrap();
    assert!(readings.bytes <= CAP, "{readings:?}");
    let accepted = common::accepted_readings(&store, &points);
    let n_accepted = accepted.values().map(Vec::len).sum::<usize>() as u64;
    assert_eq!(
        n_accepted,
        readings.depth + dropped(),
        "accepted = queued + dropped (counted)"
    );
    assert!(dropped() >= first_drop + 5_000);
    eprintln!(
        "fault_queue_limit_broker_down: {} alarm events queued with the broker down, all {last} delivered gap-free; \
         {n_accepted} readings accepted, {} dropped (counted), {} queued",
        last - delivered_before,
        dropped(),
        readings.depth
    );
    drop(devs);
}
