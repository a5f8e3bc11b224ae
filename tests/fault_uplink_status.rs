//! The county's view of the gateway itself, through the broker:
//! - after the broker comes back, the retained status a consumer finds is
//!   fresh: `online`, stamped after the recovery (not the snapshot retained
//!   before the outage);
//! - after `kill -9` (no clean stop, no `offline` published by the gateway)
//!   the broker publishes the Last Will: a retained `offline` status.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Mosquitto, Riskgate, SiteCfg, assert_schema_valid, subscribe};

fn ts(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v["ts"].as_str().expect("ts"))
        .expect("RFC 3339 ts")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retained_status_after_a_reconnect_is_fresh() {
    common::init_tracing();
    let t0 = Instant::now();
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let devs = common::gas_detectors(1).await;
    let name = "fault-status-fresh";
    let mut site = SiteCfg::new(
        name,
        &dir.path().join("data"),
        vec![devs[0].0.local_addr().port()],
    );
    // A long status interval: only the publish on (re)connect can make the
    // retained status fresh within this test.
    site.uplink = Some(format!(
        "port = {}\nplain_tcp = true\nstatus_interval = \"1h\"",
        broker.port
    ));
    let topic = format!("riskgate/v1/{name}/status");
    let running = riskgate::runtime::start(site.load(dir.path()))
        .await
        .unwrap();
    let mut first = subscribe(broker.port, &topic, "county-status-1").await;
    let mut seen = Vec::new();
    let before = first
        .wait(
            "status online",
            Duration::from_secs(20),
            &mut seen,
            |_, v| v["state"] == "online",
        )
        .await;
    drop(first);

    broker.stop();
    // Down long enough for the gateway to notice and back off at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recovery = Utc::now();
    broker.restart();
    // The broker's log starts afresh with each start.
    common::wait_for_async(
        "the gateway reconnected",
        Duration::from_secs(60),
        || async { (broker.log_count(&format!("as riskgate-{}", site.gateway)) > 0).then_some(()) },
    )
    .await;
    // The status is published right after the CONNACK; a consumer arriving
    // now gets, as its first message, the retained status: the fresh one
    // once the gateway's publish has reached the broker.
    let after = common::wait_for_async(
        "a fresh retained status",
        Duration::from_secs(20),
        || async {
            let mut late = subscribe(broker.port, &topic, "county-status-2").await;
            let m = tokio::time::timeout(Duration::from_secs(5), late.next())
                .await
                .ok()??;
            assert!(m.retain, "the first message is the retained one");
            (ts(&m.payload) > recovery).then_some(m.payload)
        },
    )
    .await;
    assert_eq!(after["state"], "online");
    assert_schema_valid("status.schema.json", &after);
    assert!(ts(&after) > ts(&before));
    running.stop().await;
    eprintln!(
        "the_retained_status_after_a_reconnect_is_fresh: before {}, after {} (recovery {recovery}); {:.1} s",
        before["ts"],
        after["ts"],
        t0.elapsed().as_secs_f64()
    );
    drop(devs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_will_arrives_after_kill_9() {
    let t0 = Instant::now();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let devs = common::gas_detectors(1).await;
    let name = "fault-status-will";
    let mut site = SiteCfg::new(
        name,
        &dir.path().join("data"),
        vec![devs[0].0.local_addr().port()],
    );
    site.uplink = Some(format!(
        "port = {}\nplain_tcp = true\nkeep_alive = \"5s\"",
        broker.port
    ));
    let topic = format!("riskgate/v1/{name}/status");
    let mut county = subscribe(broker.port, &topic, "county-will").await;
    let cfg = site.write(dir.path());
    let mut gw = Riskgate::spawn(&cfg, &dir.path().join("riskgate.log"), &[]);
    let mut seen = Vec::new();
    county
        .wait(
            "status online",
            Duration::from_secs(20),
            &mut seen,
            |_, v| v["state"] == "online",
        )
        .await;
    gw.kill9();
    let killed = Utc::now();
    // The broker notices the dead connection (at once for a closed socket,
    // at the latest after 1.5 × keep_alive) and publishes the Will.
    let will = county
        .wait(
            "the Last Will",
            Duration::from_secs(20),
            &mut seen,
            |_, v| v["state"] == "offline",
        )
        .await;
    assert_schema_valid("status.schema.json", &will);
    assert_eq!(will["gateway_id"], site.gateway.as_str());
    let mut late = subscribe(broker.port, &topic, "county-will-late").await;
    let retained = tokio::time::timeout(Duration::from_secs(5), late.next())
        .await
        .expect("a retained status")
        .expect("a message");
    assert!(retained.retain);
    assert_eq!(retained.payload["state"], "offline", "the Will is retained");
    eprintln!(
        "the_last_will_arrives_after_kill_9: Will received {:.1} s after kill -9; {:.1} s",
        (Utc::now() - killed).num_milliseconds() as f64 / 1000.0,
        t0.elapsed().as_secs_f64()
    );
    drop(devs);
}
