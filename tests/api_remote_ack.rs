//! The county's acknowledgements (`{prefix}/{site}/ack`) against a real
//! Mosquitto: a retained one is ignored, a bad `by` is refused, a latching
//! alarm is not released from afar (`remote_ack_clears_latching` off by
//! default), a non-latching one is acknowledged; each one tried is in the
//! audit log with source `remote`.

mod common;

use std::time::Duration;

use common::{Mosquitto, SiteCfg, gas_detectors, wait_for_async};
use serde_json::{Value as J, json};

const LIMIT: Duration = Duration::from_secs(20);

const LATCHING: &str = r#"
[[rules]]
id = "ch4-latched"
kind = "threshold"
name = "甲烷超限 (须确认)"
point = "ch4.gd00"
op = ">="
value = 1.0
recovery = 1.0
level = 2
latching = true
"#;

async fn get(url: &str) -> J {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_acknowledgements_follow_the_policy_and_are_audited() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let devs = gas_detectors(1).await;
    // No users, loopback: reads are open to this test.
    let text = SiteCfg::new(
        "remote-ack",
        &dir.path().join("data"),
        vec![devs[0].0.local_addr().port()],
    )
    .plain_uplink(broker.port)
    .toml()
        + LATCHING;
    let p = dir.path().join("site.toml");
    std::fs::write(&p, &text).unwrap();
    let cfg = riskgate::config::load(&p).unwrap_or_else(|e| panic!("{e:?}"));

    // A retained acknowledgement left on the broker from before: the
    // gateway gets it (retain flag set) when it subscribes. On the broker
    // once a subscriber of our own sees it.
    let mut opts = rumqttc::MqttOptions::new("county-console", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (county, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let county_loop = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let topic = "riskgate/v1/remote-ack/ack";
    county
        .publish(
            topic,
            rumqttc::QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&json!({"alarm_id": "from-before", "by": "retained-console"}))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut check = common::subscribe(broker.port, topic, "retained-check").await;
    tokio::time::timeout(LIMIT, check.next())
        .await
        .expect("the retained acknowledgement on the broker");
    let gw = riskgate::runtime::start(cfg).await.unwrap();
    let api = format!("http://{}", gw.http_addr.unwrap());

    devs[0].1.set_signal("ch4", 1.62);
    let alarms = wait_for_async("the latching and a plain alarm", LIMIT, || {
        let api = api.clone();
        async move {
            let v = get(&format!("{api}/api/alarms")).await;
            let a = v.as_array()?.clone();
            (a.iter().any(|x| x["latching"] == true) && a.iter().any(|x| x["latching"] == false))
                .then_some(a)
        }
    })
    .await;
    let id_of = |latching: bool| {
        alarms.iter().find(|a| a["latching"] == latching).unwrap()["alarm_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (latched, plain) = (id_of(true), id_of(false));

    for (alarm, by) in [
        (&plain, ""),
        (&plain, "bell\u{7}"),
        (&plain, &"x".repeat(65)),
        (&latched, "county-operator"),
        (&plain, "county-operator"),
    ] {
        let body = serde_json::to_vec(&json!({"alarm_id": alarm, "by": by})).unwrap();
        county
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
    }

    // Five rows: the retained message is no acknowledgement sent now and
    // leaves none.
    let rows = wait_for_async("five remote audit rows", LIMIT, || {
        let dir = dir.path().join("data");
        async move {
            let s = riskgate::queue::Store::open(&dir, u64::MAX, u64::MAX).ok()?;
            let rows = s.audit_log(0, 100).ok()?;
            (rows.len() >= 5).then_some(rows)
        }
    })
    .await;
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for r in &rows {
        assert_eq!(r.source, riskgate::queue::AuditSource::Remote);
        assert_eq!(r.address, format!("127.0.0.1:{}", broker.port));
    }
    // Written off the engine task, so not necessarily in arrival order.
    let refused_by = rows
        .iter()
        .filter(|r| r.result.starts_with("refused: `by`"))
        .count();
    assert_eq!(refused_by, 3, "{rows:#?}");
    assert!(
        rows.iter()
            .any(|r| r.alarm_id == latched && r.result.contains("latching")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.alarm_id == plain && r.actor == "county-operator" && r.result == "ok"),
        "{rows:#?}"
    );
    let v = get(&format!("{api}/api/alarms")).await;
    let by = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|a| a["alarm_id"] == id)
            .unwrap()["acked_by"]
            .clone()
    };
    assert_eq!(by(&latched), J::Null, "the latch is released on site only");
    assert_eq!(by(&plain), "county-operator");
    let m = reqwest::get(format!("{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("riskgate_remote_acks_ignored_total{reason=\"retained\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("riskgate_remote_acks_ignored_total{reason=\"bad_by\"} 3"),
        "{m}"
    );

    county_loop.abort();
    gw.stop().await;
    drop(devs);
}
