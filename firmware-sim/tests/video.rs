//! The MQTT video box against a minimal broker stand-in.

mod common;

use std::time::Duration;

use common::*;
use firmware_sim::{Scenario, VideoBox, VideoBoxConfig};
use serde_json::Value;

fn parse(p: &[u8]) -> Option<Value> {
    serde_json::from_slice(p).ok()
}

#[tokio::test]
async fn video_box_publishes_status_and_obeys_switches() {
    let mut broker = FakeBroker::start().await;
    let mut cfg = VideoBoxConfig::new("127.0.0.1", broker.addr.port(), "vb-1301", 3);
    cfg.heartbeat = Duration::from_millis(200);
    cfg.scenario = Scenario::constant(&[("cam1.person", 1.0), ("cam3.online", 0.0)]);
    let mut vb = VideoBox::start(cfg);
    assert_eq!(vb.topic(), "site/video/vb-1301/status");

    let (topic, payload) = broker.next(IO_TIMEOUT).await;
    assert_eq!(topic, "site/video/vb-1301/status");
    let v = parse(&payload).expect("json");
    assert_eq!(v["box_id"], "vb-1301");
    humantime::parse_rfc3339(v["ts"].as_str().unwrap()).expect("RFC3339 ts");
    let cams = v["cameras"].as_array().unwrap();
    assert_eq!(cams.len(), 3);
    assert_eq!(
        cams[0],
        serde_json::json!({"id": "cam-1301-1", "online": true, "blocked": false, "person": true})
    );
    assert_eq!(cams[1]["person"], false);
    assert_eq!(cams[2]["online"], false);

    // heartbeats keep coming
    broker.next(IO_TIMEOUT).await;

    // pin camera 2: offline + blocked
    vb.set_camera(2, false, true);
    let mut found = false;
    for _ in 0..50 {
        let (_, p) = broker.next(IO_TIMEOUT).await;
        let v = parse(&p).unwrap();
        if v["cameras"][1]["online"] == false && v["cameras"][1]["blocked"] == true {
            found = true;
            break;
        }
    }
    assert!(found);

    // malformed: garbage and JSON missing fields, alternately
    vb.set_malformed(true);
    let (mut garbage, mut missing) = (false, false);
    for _ in 0..50 {
        let (_, p) = broker.next(IO_TIMEOUT).await;
        match parse(&p) {
            None => garbage = true,
            Some(v) if v.get("ts").is_none() && v["cameras"][0].get("online").is_none() => {
                missing = true
            }
            Some(_) => {}
        }
        if garbage && missing {
            break;
        }
    }
    assert!(garbage && missing);
    vb.set_malformed(false);

    // quiet: nothing is published any more
    vb.set_quiet(true);
    let count = vb.published();
    let t0 = std::time::Instant::now();
    wait_until("several heartbeats", IO_TIMEOUT, || {
        t0.elapsed() > Duration::from_millis(800)
    })
    .await;
    assert_eq!(vb.published(), count, "published while quiet");
    while broker.rx.try_recv().is_ok() {}
    vb.set_quiet(false);
    let (_, p) = broker.next(IO_TIMEOUT).await;
    assert!(parse(&p).is_some());

    vb.stop().await;
    vb.stop().await;
}

#[tokio::test]
async fn video_box_custom_topic_and_reconnect() {
    // start the box before the broker exists on that port: it keeps retrying
    let probe = tokio::net::TcpListener::bind(localhost0()).await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut cfg = VideoBoxConfig::new("127.0.0.1", port, "vb-7", 1);
    cfg.topic = Some("mine/7/video".into());
    cfg.heartbeat = Duration::from_millis(100);
    let mut vb = VideoBox::start(cfg);
    assert_eq!(vb.camera_id(1), "cam-7-1");
    // the broker appears later; the box must connect by itself
    let t0 = std::time::Instant::now();
    let mut broker = loop {
        let b = FakeBroker::start_on(port).await;
        if let Some(b) = b {
            break b;
        }
        assert!(t0.elapsed() < IO_TIMEOUT, "cannot bind port {port} again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (topic, p) = broker.next(Duration::from_secs(10)).await;
    assert_eq!(topic, "mine/7/video");
    assert_eq!(parse(&p).unwrap()["cameras"][0]["id"], "cam-7-1");
    assert!(vb.is_connected());
    vb.stop().await;
}
