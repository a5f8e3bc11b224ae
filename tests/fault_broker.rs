//! Fault: the county broker is down for 60 s while methane alarms are raised
//! and cleared. Nothing may be lost: the gateway keeps every event in its
//! durable queue and replays it after reconnecting.
//!
//! The witness is an independent subscriber with a persistent session
//! (clean_session = false, fixed client id, QoS 1) subscribed before the
//! outage: the broker (with persistence) keeps its session across the
//! restart and queues for it whatever the gateway replays, whenever the
//! subscriber itself gets back. Every seq from 1 to the gateway's last must
//! arrive, de-duplicated on event_id, in seq order, with no gap.

mod common;

use riskgate::queue::QueueId;
use std::time::{Duration, Instant};

use common::{
    Mosquitto, SiteCfg, Subscriber, SubscriberOpts, assert_schema_valid, committed, wait_for_async,
};

const SITE: &str = "fault-broker";
const OUTAGE: Duration = Duration::from_secs(60);

/// One methane excursion: up to 1.62 % (alarm and cut raised), back to
/// 0.8 % (both cleared), each step waited on in the durable store.
async fn excursion(dev: &firmware_sim::DeviceHandle, store: &riskgate::queue::Store) -> Vec<u64> {
    let before = store.last_seq().unwrap();
    dev.set_signal("ch4", 1.62);
    let a = committed(store, "gd00-ch4-alarm", "raised", before).await;
    let b = committed(store, "gd00-ch4-cut", "raised", before).await;
    dev.set_signal("ch4", 0.8);
    let c = committed(store, "gd00-ch4-alarm", "cleared", before).await;
    let d = committed(store, "gd00-ch4-cut", "cleared", before).await;
    vec![a, b, c, d]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_60s_while_alarms_raise_and_clear_loses_nothing() {
    common::init_tracing();
    let t0 = Instant::now();
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut devs = common::gas_detectors(1).await;
    let site = SiteCfg::new(
        SITE,
        &dir.path().join("data"),
        vec![devs[0].0.local_addr().port()],
    )
    .plain_uplink(broker.port);
    let alarm_topic = format!("riskgate/v1/{SITE}/alarm");
    let status_topic = format!("riskgate/v1/{SITE}/status");

    // The county's consumer: persistent session, subscribed before anything.
    let mut county = Subscriber::connect(SubscriberOpts {
        clean_session: false,
        ..SubscriberOpts::new(broker.port, "county-consumer-fault-broker", &alarm_topic)
    })
    .await;

    let running = riskgate::runtime::start(site.load(dir.path()))
        .await
        .unwrap();
    let store = running.shared.store.clone();
    let dev = &devs[0].1;

    // One excursion with the broker up: delivered at once.
    let before = excursion(dev, &store).await;
    county
        .until(
            "the first excursion delivered",
            Duration::from_secs(15),
            |c| before.iter().all(|s| c.alarm_seqs().contains(s)),
        )
        .await;

    // The outage: three excursions spread over 60 s.
    broker.stop();
    let down = Instant::now();
    let mut during = Vec::new();
    for k in 0..3u32 {
        tokio::time::sleep_until((down + OUTAGE * k / 3).into()).await;
        during.extend(excursion(dev, &store).await);
    }
    let queued = store.stats(QueueId::Alarms).unwrap();
    assert!(
        queued.depth >= during.len() as u64,
        "the outage's events wait in the durable queue: {queued:?}"
    );
    tokio::time::sleep_until((down + OUTAGE).into()).await;
    county.pump();
    let leaked: Vec<u64> = during
        .iter()
        .copied()
        .filter(|s| county.alarm_seqs().contains(s))
        .collect();
    assert!(
        leaked.is_empty(),
        "no broker, yet events {leaked:?} arrived?"
    );
    broker.restart();
    let back = Instant::now();

    // Everything the gateway committed reaches the county. The gateway's
    // reconnect backoff is at most 30 s.
    let last = store.last_seq().unwrap();
    county
        .until(
            &format!("every seq 1..={last} after the restart"),
            Duration::from_secs(90),
            |c| c.has_all(last),
        )
        .await;
    let replayed_in = back.elapsed();
    wait_for_async(
        "the uplink queue to empty",
        Duration::from_secs(30),
        || async { (store.stats(QueueId::Alarms).unwrap().depth == 0).then_some(()) },
    )
    .await;
    let last = store.last_seq().unwrap();
    // De-duplicated on event_id: gap-free, in seq order, each event exactly
    // as the gateway logged it.
    let got = county.every_event(last, Duration::from_secs(10)).await;
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    let logged = store.alarm_log(since, 10_000).unwrap();
    assert_eq!(logged.len() as u64, last);
    for e in &logged {
        let seq = e["seq"].as_u64().unwrap();
        assert_eq!(&got[&seq], e, "seq {seq} as delivered vs as logged");
        assert_schema_valid("alarm-event.schema.json", e);
    }
    // The outage's raised/cleared pairs: 3 excursions × 2 rules × 2 states.
    assert_eq!(during.len(), 12);
    for s in &during {
        let e = &got[s];
        let pair = got
            .values()
            .filter(|o| o["alarm_id"] == e["alarm_id"])
            .count();
        assert_eq!(
            pair, 2,
            "raised and cleared of {} both arrived",
            e["alarm_id"]
        );
    }
    let raised = during
        .iter()
        .filter(|s| got[s]["state"] == "raised")
        .count();
    let cleared = during
        .iter()
        .filter(|s| got[s]["state"] == "cleared")
        .count();
    assert_eq!((raised, cleared), (6, 6));
    let duplicates = county.alarms().len() as u64 - last;

    // The retained status is `online` again.
    let mut late = Subscriber::connect(SubscriberOpts::new(
        broker.port,
        "late-status-reader",
        &status_topic,
    ))
    .await;
    late.until("the retained status", Duration::from_secs(10), |c| {
        !c.seen.is_empty()
    })
    .await;
    let status = &late.seen[0];
    assert!(status.retain, "{status:?}");
    assert_eq!(status.payload["state"], "online", "{status:?}");
    assert_schema_valid("status.schema.json", &status.payload);

    running.stop().await;
    eprintln!(
        "fault_broker: {last} events, {} during the 60 s outage, all delivered {:.1} s after the broker came back ({duplicates} duplicates); test took {:.1} s",
        during.len(),
        replayed_in.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    devs.clear();
}
