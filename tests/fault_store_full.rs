//! Fault: the store refuses writes (a full disk, made with SQLite's
//! `max_page_count` through `Store::cap_pages`, so no root or tmpfs is
//! needed). The gateway says so at once — the `store.write` fault in the
//! retained status (`health: "degraded"`), `/health` 503 — keeps readings
//! in its bounded memory buffer and the alarm events in order, and once
//! space is freed stores and sends them: the `store.write` alarm (level 1)
//! and the methane alarms raised during the outage arrive in `seq` order,
//! schema-valid, and no reading is lost (the outage is shorter than the
//! buffer; any reading beyond it would be counted).

mod common;

use std::time::Duration;

use common::{
    Mosquitto, SiteCfg, Subscriber, SubscriberOpts, assert_schema_valid, committed, free_port,
    http_get, wait_for_async,
};

const SITE: &str = "fault-storefull";

fn lost() -> u64 {
    riskgate::metrics::metrics()
        .unstored_dropped
        .with_label_values(&["readings"])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_is_loud_keeps_readings_and_alarms_and_sends_them_once_freed() {
    common::init_tracing();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let devs = common::gas_detectors(2).await;
    let mut site = SiteCfg::new(
        SITE,
        &dir.path().join("data"),
        devs.iter().map(|d| d.0.local_addr().port()).collect(),
    )
    .plain_uplink(broker.port);
    // The database is down: readings pile up in the queue and need pages.
    site.influx_url = Some(format!("http://127.0.0.1:{}", free_port()));
    let points = site.points();
    let mut county = Subscriber::connect(SubscriberOpts::new(
        broker.port,
        "county-fault-storefull",
        &format!("riskgate/v1/{SITE}/+"),
    ))
    .await;

    let running = riskgate::runtime::start(site.load(dir.path()))
        .await
        .unwrap();
    let store = running.shared.store.clone();
    let http = running.http_addr.unwrap();
    let health = || http_get(&format!("http://{http}/health")).unwrap();
    wait_for_async("readings committed", Duration::from_secs(10), || async {
        (store.depth(riskgate::queue::QueueId::Readings) > 20).then_some(())
    })
    .await;
    assert_eq!(health().0, 200);
    let seq0 = store.last_seq().unwrap();

    // The disk is full.
    store.cap_pages(Some(0)).unwrap();
    let full_at = chrono::Utc::now().timestamp_millis();
    let mut seen = Vec::new();
    let status = county
        .wait(
            "a degraded status",
            Duration::from_secs(10),
            &mut seen,
            |t, p| t.ends_with("/status") && p["health"] == "degraded",
        )
        .await;
    assert_schema_valid("status.schema.json", &status);
    assert_eq!(status["faults"], serde_json::json!(["store.write"]));
    let (code, body) = health();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("store.write"), "{body}");

    // Methane excursions while the store is full. Small alarm rows still
    // fit in the pages' free room for a while (a nearly full disk); soon
    // they do not, and the events wait in memory, in order, unsent (an
    // event has no seq until it is stored).
    let active = |id: &str| {
        running
            .shared
            .alarms
            .read()
            .unwrap()
            .iter()
            .any(|a| a.rule_id == id)
    };
    let held = || {
        riskgate::metrics::metrics()
            .unstored
            .with_label_values(&["events"])
            .get()
    };
    let mut excursions = 0;
    while held() == 0 {
        assert!(excursions < 20, "alarm commits never refused");
        excursions += 1;
        devs[0].1.set_signal("ch4", 1.62);
        wait_for_async("methane raised", Duration::from_secs(10), || async {
            active("gd00-ch4-cut").then_some(())
        })
        .await;
        devs[0].1.set_signal("ch4", 0.8);
        wait_for_async("methane cleared", Duration::from_secs(10), || async {
            (!active("gd00-ch4-cut")).then_some(())
        })
        .await;
    }
    let stuck = store.last_seq().unwrap();
    devs[0].1.set_signal("ch4", 1.62);
    wait_for_async("methane raised", Duration::from_secs(10), || async {
        active("gd00-ch4-alarm").then_some(())
    })
    .await;
    assert_eq!(
        store.last_seq().unwrap(),
        stuck,
        "nothing stored while full"
    );
    assert_eq!(health().0, 503);

    // Readings keep coming and are held in memory meanwhile.
    let held_readings = || {
        riskgate::metrics::metrics()
            .unstored
            .with_label_values(&["readings"])
            .get()
    };
    let held_at_free = wait_for_async("300 readings held", Duration::from_secs(20), || async {
        let n = held_readings();
        (n >= 300).then_some(n)
    })
    .await;

    // Space is freed.
    store.cap_pages(None).unwrap();
    let freed_at = chrono::Utc::now().timestamp_millis();
    let raised = committed(&store, "gd00-ch4-alarm", "raised", stuck).await;
    let fault = committed(&store, "store.write", "raised", seq0).await;
    let cleared = committed(&store, "store.write", "cleared", fault).await;
    let status = county
        .wait(
            "an ok status again",
            Duration::from_secs(15),
            &mut seen,
            |t, p| t.ends_with("/status") && p["health"] == "ok",
        )
        .await;
    assert_schema_valid("status.schema.json", &status);
    assert_eq!(health().0, 200);
    let last = store.last_seq().unwrap();
    let got = county.every_event(last, Duration::from_secs(20)).await;
    for e in got.values() {
        assert_schema_valid("alarm-event.schema.json", e);
    }
    let f = &got[&fault];
    assert_eq!(
        (f["level"].as_u64(), f["kind"].as_str()),
        (Some(1), Some("fault"))
    );
    assert!(
        got[&raised]["ts"].as_str() < got[&cleared]["ts"].as_str(),
        "the methane alarm was made during the outage"
    );
    running.stop().await;

    // Readings: those made while the store was full were kept and stored
    // once it had room; none lost (the buffer was never exceeded).
    assert_eq!(lost(), 0);
    let accepted = common::accepted_readings(&store, &points);
    // Readings are held from the first refused commit, at most one commit
    // interval (100 ms) before the cap; the last count seen before freeing
    // is a lower bound of what was held.
    let during = accepted
        .values()
        .flatten()
        .filter(|t| **t >= full_at - 200 && **t < freed_at)
        .count();
    assert!(
        during as i64 >= held_at_free,
        "readings of the outage stored afterwards: {during}, held {held_at_free}"
    );
    eprintln!(
        "fault_store_full: store full for {} ms; {held_at_free} readings held in memory, {during} of that time stored after; \
         {excursions} excursions until alarm commits were refused (seq stuck at {stuck}); \
         events seq {}..={last} in order, store.write raised at seq {fault}, cleared at {cleared}",
        freed_at - full_at,
        seq0 + 1
    );
    drop(devs);
}
