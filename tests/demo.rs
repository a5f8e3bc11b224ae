//! The README's demo command, pointed with `--broker` at a real Mosquitto:
//! within its first minute it publishes schema-valid `raised` and `cleared`
//! events with gap-free `seq`, and a retained `online` status.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Mosquitto, assert_schema_valid, subscribe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_publishes_raised_and_cleared_to_an_external_broker() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    // Subscribed (SUBACK) before the demo starts, so nothing is missed.
    let mut sub = subscribe(broker.port, "riskgate/v1/demo-coal-01/#", "demo-watch").await;
    let mut demo = Command::new(env!("CARGO_BIN_EXE_riskgate"))
        .args([
            "demo",
            "--broker",
            &broker.addr(),
            "--http",
            "127.0.0.1:0",
            "--duration",
            "80s",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("demo.log")).unwrap())
        .spawn()
        .unwrap();

    let mut alarms = Vec::new();
    let mut online = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(75);
    let done = |alarms: &Vec<serde_json::Value>| {
        ["raised", "cleared"].iter().all(|s| {
            alarms
                .iter()
                .any(|a| a["rule_id"] == "1301-t1-ch4-cut" && a["state"] == *s)
        })
    };
    while !(done(&alarms) && online.is_some()) {
        let Ok(Some(p)) = tokio::time::timeout_at(deadline, sub.next()).await else {
            panic!("no raised+cleared within 75 s; got {alarms:#?}")
        };
        let v = p.payload;
        if p.topic.ends_with("/alarm") {
            assert_schema_valid("alarm-event.schema.json", &v);
            alarms.push(v);
        } else if p.topic.ends_with("/status") && v["state"] == "online" {
            assert_schema_valid("status.schema.json", &v);
            online = Some(v);
        }
    }
    let seqs: Vec<u64> = alarms.iter().map(|a| a["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free seq from 1"
    );
    let _ = demo.kill();
    let _ = demo.wait();

    // The retained status is there for a late subscriber.
    let mut late = subscribe(broker.port, "riskgate/v1/demo-coal-01/status", "demo-late").await;
    let retained = tokio::time::timeout(Duration::from_secs(10), async {
        let p = late.next().await.expect("subscriber running");
        assert!(p.retain, "the status is retained");
        p.payload
    })
    .await
    .expect("a retained status");
    assert_schema_valid("status.schema.json", &retained);
}
