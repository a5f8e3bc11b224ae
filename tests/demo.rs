//! The README's demo command, pointed with `--broker` at a real Mosquitto:
//! within its first minute it publishes schema-valid `raised` and `cleared`
//! events with gap-free `seq`, and a retained `online` status.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Mosquitto, assert_schema_valid};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_publishes_raised_and_cleared_to_an_external_broker() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = MqttOptions::new("demo-watch", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = AsyncClient::new(opts, 100);
    client
        .subscribe("riskgate/v1/demo-coal-01/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Wait for the SUBACK before starting the demo, so nothing is missed.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = el.poll().await.unwrap() {
            break;
        }
    }
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
        let Ok(ev) = tokio::time::timeout_at(deadline, el.poll()).await else {
            panic!("no raised+cleared within 75 s; got {alarms:#?}")
        };
        let ev = ev.unwrap();
        if let Event::Incoming(Packet::Publish(p)) = ev {
            let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            if p.topic.ends_with("/alarm") {
                assert_schema_valid("alarm-event.schema.json", &v);
                alarms.push(v);
            } else if p.topic.ends_with("/status") && v["state"] == "online" {
                assert_schema_valid("status.schema.json", &v);
                online = Some(v);
            }
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
    let mut opts = MqttOptions::new("demo-late", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (late, mut el2) = AsyncClient::new(opts, 10);
    late.subscribe("riskgate/v1/demo-coal-01/status", QoS::AtLeastOnce)
        .await
        .unwrap();
    let retained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = el2.poll().await.unwrap() {
                assert!(p.retain, "the status is retained");
                break serde_json::from_slice::<serde_json::Value>(&p.payload).unwrap();
            }
        }
    })
    .await
    .expect("a retained status");
    assert_schema_valid("status.schema.json", &retained);
}
