//! Flood protection (issue 10 item 11) on a real Mosquitto and the whole
//! gateway in-process: one MQTT device floods its topic (about 2,000
//! messages a second against a `max_rate` of 20) while another keeps
//! publishing ten a second. The calm device loses nothing, the flooding one
//! raises one `{device}.flood` alarm, cleared once it is quiet again, and
//! the dropped messages are counted per device.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Mosquitto;
use common::wait::wait_for_async;
use rumqttc::{AsyncClient, MqttOptions, QoS};

const FLOOD_RATE: u32 = 20;
const CALM_MESSAGES: u32 = 60;

fn config(data: &std::path::Path, broker: u16) -> String {
    format!(
        r#"
[site]
id = "flood-site"
kind = "coal_mine"
[gateway]
id = "gw-flood"
data_dir = "{data}"
[http]
enabled = false
[store]
commit_interval = "100ms"

[[devices]]
id = "vb-flood"
protocol = "mqtt"
broker = "127.0.0.1:{broker}"
topic = "site/vb-flood"
heartbeat = "5s"
max_rate = {FLOOD_RATE}
  [[devices.points]]
  id = "flood.v"
  path = "v"
  type = "f64"

[[devices]]
id = "gd-calm"
protocol = "mqtt"
broker = "127.0.0.1:{broker}"
topic = "site/gd-calm"
heartbeat = "5s"
  [[devices.points]]
  id = "calm.v"
  path = "v"
  type = "f64"
"#,
        data = data.display()
    )
}

/// A publisher with its event loop driven in the background.
async fn publisher(port: u16, id: &str) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let task = tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    (client, task)
}

fn alarm_log(store: &riskgate::queue::Store) -> Vec<serde_json::Value> {
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    store.alarm_log(since, 100_000).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_device_is_limited_counted_and_alarmed_once_and_starves_no_one() {
    common::init_tracing();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("riskgate.toml");
    std::fs::write(&path, config(&dir.path().join("data"), broker.port)).unwrap();
    let cfg = riskgate::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
    let running = riskgate::runtime::start(cfg).await.unwrap();
    let store = running.shared.store.clone();
    let dropped = || {
        riskgate::metrics::metrics()
            .flood_dropped
            .with_label_values(&["vb-flood"])
            .get()
    };
    let dropped_before = dropped();

    // The sources subscribe after connecting: wait until a message of each
    // device gets through before counting.
    let (calm, _calm_el) = publisher(broker.port, "test-calm").await;
    let (flood, _flood_el) = publisher(broker.port, "test-flood").await;
    wait_for_async("both sources subscribed", Duration::from_secs(20), || {
        let (calm, flood, store) = (calm.clone(), flood.clone(), store.clone());
        async move {
            calm.publish("site/gd-calm", QoS::AtLeastOnce, false, r#"{"v":0}"#)
                .await
                .unwrap();
            flood
                .publish("site/vb-flood", QoS::AtLeastOnce, false, r#"{"v":0}"#)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
            let seen = |p: &str| !store.history(p, since, 10).unwrap().is_empty();
            (seen("calm.v") && seen("flood.v")).then_some(())
        }
    })
    .await;

    // The flood: about 2,000 messages a second until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = {
        let (flood, stop) = (flood.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                for _ in 0..20 {
                    sent += 1;
                    let body = format!(r#"{{"v":{sent}}}"#);
                    flood
                        .publish("site/vb-flood", QoS::AtMostOnce, false, body)
                        .await
                        .unwrap();
                }
            }
            sent
        })
    };

    // Meanwhile the calm device: 1, 2, 3 … ten a second, until the end
    // (a device that stopped would rightly go stale).
    let calm_stop = Arc::new(AtomicBool::new(false));
    let calm_task = {
        let (calm, stop) = (calm.clone(), calm_stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                calm.publish(
                    "site/gd-calm",
                    QoS::AtLeastOnce,
                    false,
                    format!(r#"{{"v":{n}}}"#),
                )
                .await
                .unwrap();
            }
            n
        })
    };
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    let calm_values = || {
        let store = store.clone();
        move || -> std::collections::BTreeSet<u32> {
            store
                .history("calm.v", since, 1_000_000)
                .unwrap()
                .iter()
                .filter_map(|r| r.value.map(|v| v as u32))
                .collect()
        }
    };
    // The flood lasts until the calm device has had CALM_MESSAGES through.
    wait_for_async(
        "calm messages during the flood",
        Duration::from_secs(60),
        || {
            let values = calm_values();
            async move { (values().len() as u32 > CALM_MESSAGES).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooding.await.unwrap();

    // The flood was limited and counted.
    let flood_dropped = dropped() - dropped_before;
    assert!(
        flood_dropped > 0,
        "nothing counted of {sent} flood messages"
    );
    let flood_stored = store.history("flood.v", since, 1_000_000).unwrap().len() as u64;
    assert!(
        flood_stored < sent / 4,
        "{flood_stored} of {sent} flood messages got through a limit of {FLOOD_RATE}/s"
    );

    // One raise, then one clear once the device has been quiet a while.
    common::history::committed(&store, "vb-flood.flood", "raised", 0).await;
    wait_for_async("the flood alarm cleared", Duration::from_secs(40), || {
        let store = store.clone();
        async move {
            alarm_log(&store)
                .iter()
                .any(|e| e["rule_id"] == "vb-flood.flood" && e["state"] == "cleared")
                .then_some(())
        }
    })
    .await;
    // Every calm message, from before, during and after the flood, is
    // committed.
    calm_stop.store(true, Ordering::Relaxed);
    let calm_sent = calm_task.await.unwrap();
    wait_for_async(
        "every calm message committed",
        Duration::from_secs(30),
        || {
            let values = calm_values();
            async move { (1..=calm_sent).all(|n| values().contains(&n)).then_some(()) }
        },
    )
    .await;
    let log = alarm_log(&store);
    let flood_events: Vec<_> = log
        .iter()
        .filter(|e| e["rule_id"] == "vb-flood.flood")
        .map(|e| (e["state"].as_str().unwrap().to_string(), e["kind"].clone()))
        .collect();
    assert_eq!(
        flood_events,
        vec![
            ("raised".to_string(), serde_json::json!("fault")),
            ("cleared".to_string(), serde_json::json!("fault")),
        ],
        "one alarm for the whole flood"
    );
    // The calm device never looked unwell.
    let calm_alarms: Vec<_> = log
        .iter()
        .filter(|e| {
            e["rule_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("gd-calm") || r.starts_with("calm."))
        })
        .collect();
    assert!(calm_alarms.is_empty(), "{calm_alarms:#?}");
    running.stop().await;
}
