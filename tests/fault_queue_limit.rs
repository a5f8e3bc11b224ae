//! Fault: the time-series database stays down and the readings queue
//! reaches its size limit (`[store] readings_queue_mb = 1`, the smallest the
//! validator allows; ~11,000 readings, about 11 s at 1,000 readings/s). The
//! oldest readings are dropped and counted, one `fault` alarm
//! `queue.readings.overflow` is raised once, and no alarm event is dropped.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    Mosquitto, SiteCfg, Subscriber, SubscriberOpts, Victoria, assert_schema_valid, committed,
    free_port, wait_for_async,
};
use riskgate::queue::{QueueId, Store};

const SITE: &str = "fault-qlimit";
const CAP: u64 = 1_048_576;
const OVERFLOW: &str = "queue.readings.overflow";

fn dropped() -> u64 {
    riskgate::metrics::metrics()
        .queue_dropped
        .with_label_values(&["influx"])
        .get()
}

async fn excursion(dev: &firmware_sim::DeviceHandle, store: &Store) {
    let before = store.last_seq().unwrap();
    dev.set_signal("ch4", 1.62);
    committed(store, "gd00-ch4-cut", "raised", before).await;
    committed(store, "gd00-ch4-alarm", "raised", before).await;
    dev.set_signal("ch4", 0.8);
    committed(store, "gd00-ch4-cut", "cleared", before).await;
    committed(store, "gd00-ch4-alarm", "cleared", before).await;
}

/// (point, ms) of a queued line: `reading,site=…,device=…,point=P value=…,quality=0i NS`.
fn parse(line: &str) -> (String, i64) {
    let point = line
        .split("point=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let ns: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    (point, ns.div_euclid(1_000_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_readings_queue_drops_the_oldest_counts_them_and_keeps_every_alarm() {
    common::init_tracing();
    let t0 = Instant::now();
    let broker = Mosquitto::start();
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
    let influx_port = free_port();
    site.influx_url = Some(format!("http://127.0.0.1:{influx_port}"));
    site.store = "readings_queue_mb = 1".into();
    let points = site.points();
    let mut county = Subscriber::connect(SubscriberOpts::new(
        broker.port,
        "county-fault-qlimit",
        &format!("riskgate/v1/{SITE}/alarm"),
    ))
    .await;

    let running = riskgate::runtime::start(site.load(dir.path()))
        .await
        .unwrap();
    let store = running.shared.store.clone();
    let dev = &devs[0].1;

    excursion(dev, &store).await;
    assert_eq!(dropped(), 0, "nothing dropped before the limit");
    let first = wait_for_async(
        "the first readings dropped",
        Duration::from_secs(60),
        || async {
            let d = dropped();
            (d > 0).then_some(d)
        },
    )
    .await;
    let full_after = t0.elapsed();
    // Alarms while the queue overflows, and the overflow going on for a while
    // (a drop at almost every commit).
    excursion(dev, &store).await;
    wait_for_async(
        "5,000 more readings dropped",
        Duration::from_secs(30),
        || async { (dropped() >= first + 5_000).then_some(()) },
    )
    .await;
    excursion(dev, &store).await;
    let queued = store.stats(QueueId::Readings).unwrap();
    assert!(queued.bytes <= CAP, "the queue holds its limit: {queued:?}");
    running.stop().await;

    // Counted: every accepted reading is either still queued or dropped.
    let queued = store.stats(QueueId::Readings).unwrap();
    assert!(
        queued.bytes <= CAP && queued.bytes > CAP - 2_000,
        "{queued:?}"
    );
    let accepted = common::accepted_readings(&store, &points);
    let n_accepted = accepted.values().map(Vec::len).sum::<usize>() as u64;
    assert_eq!(
        n_accepted,
        queued.depth + dropped(),
        "accepted = queued + dropped (counted)"
    );
    assert_eq!(store.rejected_count().unwrap(), 0);

    // The oldest were dropped: what is left is the newest readings.
    let left: BTreeSet<(String, i64)> = store
        .peek(QueueId::Readings, 0, usize::MAX >> 1)
        .unwrap()
        .iter()
        .map(|r| parse(&r.body))
        .collect();
    assert_eq!(left.len() as u64, queued.depth);
    let all: BTreeSet<(String, i64)> = accepted
        .iter()
        .flat_map(|(p, ts)| ts.iter().map(move |t| (p.clone(), *t)))
        .collect();
    assert!(left.is_subset(&all), "queued lines are accepted readings");
    let newest_dropped = all.difference(&left).map(|r| r.1).max().unwrap();
    let oldest_left = left.iter().map(|r| r.1).min().unwrap();
    let newest = all.iter().map(|r| r.1).max().unwrap();
    assert!(
        newest_dropped <= oldest_left + 1_000,
        "dropped oldest first: newest dropped {newest_dropped}, oldest kept {oldest_left}"
    );
    assert!(
        left.iter().any(|r| r.1 == newest),
        "the newest reading is kept"
    );

    // One overflow alarm, raised once; every alarm event delivered.
    let last = store.last_seq().unwrap();
    let got = county.every_event(last, Duration::from_secs(20)).await;
    assert_eq!(
        store.stats(QueueId::Alarms).unwrap().depth,
        0,
        "no alarm event left behind"
    );
    let overflow: Vec<_> = got.values().filter(|e| e["rule_id"] == OVERFLOW).collect();
    assert_eq!(overflow.len(), 1, "one overflow event: {overflow:#?}");
    assert_eq!(overflow[0]["state"], "raised");
    assert_eq!(overflow[0]["kind"], "fault");
    let methane = got
        .values()
        .filter(|e| e["rule_id"].as_str().unwrap().starts_with("gd00-ch4-"))
        .count();
    assert_eq!(methane, 12, "3 excursions × 2 rules × raised/cleared");
    let phase1 = last;
    let n_dropped1 = dropped();

    // The database comes back and the gateway starts again: the overflow
    // alarm (restored as active) clears once readings are no longer
    // dropped, and what the queue kept is delivered.
    let vm = Victoria::start_on(influx_port);
    drop(store);
    let running = riskgate::runtime::start(site.load(dir.path()))
        .await
        .unwrap();
    let store = running.shared.store.clone();
    let cleared = committed(&store, OVERFLOW, "cleared", phase1).await;
    wait_for_async(
        "the kept readings delivered",
        Duration::from_secs(60),
        || async { (store.stats(QueueId::Readings).unwrap().depth < 500).then_some(()) },
    )
    .await;
    running.stop().await;
    assert_eq!(store.stats(QueueId::Readings).unwrap().depth, 0);
    let last = store.last_seq().unwrap();
    let got = county.every_event(last, Duration::from_secs(20)).await;
    let overflow: Vec<_> = got.values().filter(|e| e["rule_id"] == OVERFLOW).collect();
    assert_eq!(
        overflow.len(),
        2,
        "raised once, cleared once: {overflow:#?}"
    );
    assert_eq!(overflow[1]["state"], "cleared");
    assert_eq!(overflow[1]["seq"].as_u64().unwrap(), cleared);
    assert_eq!(overflow[0]["alarm_id"], overflow[1]["alarm_id"]);
    for e in got.values() {
        assert_schema_valid("alarm-event.schema.json", e);
    }

    // Readings: nothing in the database that was not accepted; every reading
    // accepted after the restart is there; of those kept in the queue at the
    // stop, at most the ones dropped right after the restart (before the
    // sink made room) are missing.
    let dropped2 = dropped() - n_dropped1;
    let after: BTreeSet<(String, i64)> = common::accepted_readings(&store, &points)
        .into_iter()
        .flat_map(|(p, ts)| ts.into_iter().map(move |t| (p.clone(), t)))
        .filter(|r| !all.contains(r))
        .collect();
    let n_after = after.len();
    let db = wait_for_async(
        "the readings in VictoriaMetrics",
        Duration::from_secs(30),
        || {
            let (vm, after) = (&vm, &after);
            async move {
                let mut db = BTreeSet::new();
                for (labels, ts) in
                    vm.export_series(&format!(r#"{{__name__="reading_quality",site="{SITE}"}}"#))
                {
                    db.extend(ts.into_iter().map(|t| (labels["point"].clone(), t)));
                }
                after.is_subset(&db).then_some(db)
            }
        },
    )
    .await;
    let phantom: Vec<_> = db
        .iter()
        .filter(|r| !all.contains(*r) && !after.contains(*r))
        .take(5)
        .collect();
    assert!(
        phantom.is_empty(),
        "readings that were never accepted: {phantom:?}"
    );
    let kept_missing = left.difference(&db).count() as u64;
    assert!(
        kept_missing <= dropped2,
        "{kept_missing} kept readings missing, {dropped2} dropped after the restart"
    );
    let dropped_before: BTreeSet<_> = all.difference(&left).collect();
    assert!(
        db.iter().all(|r| !dropped_before.contains(r)),
        "dropped readings are gone for good"
    );

    eprintln!(
        "fault_queue_limit: queue full {:.1} s after the start; {n_accepted} readings accepted, {n_dropped1} dropped (counted), \
         {} queued ({} bytes); {phase1} alarm events all delivered, one overflow alarm; after the database came back: \
         overflow cleared (seq {cleared}), {} kept readings delivered, {kept_missing} of them dropped at the restart ({dropped2} drops), \
         {n_after} new readings all delivered; test took {:.1} s",
        full_after.as_secs_f64(),
        queued.depth,
        queued.bytes,
        queued.depth - kept_missing,
        t0.elapsed().as_secs_f64()
    );
    drop(devs);
}
