//! The MQTT source against a real Mosquitto: values, heartbeat (fail safe),
//! malformed payloads, broker restart. No fixed sleeps: every wait is on the
//! source's channel with a deadline.

mod common;

use std::time::Duration;

use common::Mosquitto;
use riskgate::config::{DataType, Device, DeviceKind, MqttDevice};
use riskgate::model::{BadReason, Input, Quality, Reading, Value};
use riskgate::source::mqtt::{self, json_to_value};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const GOOD: &str = r#"{"box_id":"vb-1301","cameras":[{"id":"c1","online":true,"blocked":false},{"id":"c2","online":false,"blocked":true}]}"#;
const LIMIT: Duration = Duration::from_secs(15);

fn device(id: &str, topic: &str, heartbeat: &str) -> Device<MqttDevice> {
    let d = riskgate::config::device_from_toml(&format!(
        r#"
id = "{id}"
protocol = "mqtt"
broker = "127.0.0.1:1883"
topic = "{topic}"
heartbeat = "{heartbeat}"

[[points]]
id = "{id}.c1.online"
path = "cameras[0].online"
type = "bool"

[[points]]
id = "{id}.c1.blocked"
path = "cameras[0].blocked"
type = "bool"

[[points]]
id = "{id}.c2.online"
path = "cameras[1].online"
type = "bool"

[[points]]
id = "{id}.c2.blocked"
path = "cameras[1].blocked"
type = "bool"
"#
    ))
    .unwrap();
    let DeviceKind::Mqtt(m) = &d.kind else {
        unreachable!("protocol = mqtt")
    };
    d.with_kind(m.clone())
}

struct Running {
    rx: mpsc::Receiver<Input>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(mut dev: Device<MqttDevice>, port: u16) -> Running {
        let (tx, rx) = mpsc::channel(1024);
        let stop = CancellationToken::new();
        dev.broker.connection_mut().port = port;
        let task = tokio::spawn(mqtt::run(dev, tx, stop.clone()));
        Running { rx, stop, task }
    }

    /// The next input, or `None` after `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Input> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Reads inputs until one satisfies `pred`; returns it and everything
    /// seen before it. Panics after `limit`.
    async fn input_until(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Input) -> bool,
    ) -> (Input, Vec<Input>) {
        let end = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(i) if pred(&i) => return (i, seen),
                Some(i) => seen.push(i),
                None => panic!("timed out after {limit:?} waiting for {what}; saw {seen:#?}"),
            }
        }
    }

    /// Like `input_until`, for a `Readings` batch.
    async fn readings_until(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&[Reading]) -> bool,
    ) -> (Vec<Reading>, Vec<Input>) {
        let (i, seen) = self
            .input_until(what, limit, |i| matches!(i, Input::Readings(r) if pred(r)))
            .await;
        let Input::Readings(r) = i else {
            unreachable!()
        };
        (r, seen)
    }

    /// Publishes `payload` every 200 ms until a `Readings` batch satisfies
    /// `pred` (the source may not be subscribed yet, or be reconnecting).
    /// Returns the batch and every input seen before it.
    async fn publish_until(
        &mut self,
        pubr: &AsyncClient,
        topic: &str,
        payload: &str,
        what: &str,
        pred: impl Fn(&[Reading]) -> bool,
    ) -> (Vec<Reading>, Vec<Input>) {
        let end = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        loop {
            let _ = pubr
                .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
                .await;
            let round = Instant::now() + Duration::from_millis(200);
            while Instant::now() < round {
                match self
                    .next(round.saturating_duration_since(Instant::now()))
                    .await
                {
                    Some(Input::Readings(r)) if pred(&r) => return (r, seen),
                    Some(i) => seen.push(i),
                    None => {}
                }
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; saw {seen:#?}"
            );
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("source stops promptly on shutdown")
            .unwrap();
    }
}

/// A test publisher with its own event loop (reconnects on its own).
fn publisher(port: u16) -> AsyncClient {
    let mut o = MqttOptions::new(
        format!("test-pub-{:08x}", rand::random::<u32>()),
        "127.0.0.1",
        port,
    );
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(8 * 1024 * 1024, 8 * 1024 * 1024);
    let (c, mut el) = AsyncClient::new(o, 100);
    tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                // Reconnect pacing of the test publisher, not synchronisation.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    c
}

fn value_of(r: &[Reading], point: &str) -> Option<Value> {
    let x = r
        .iter()
        .find(|x| &*x.point == point)
        .unwrap_or_else(|| panic!("no reading for {point}"));
    if x.quality.is_good() {
        x.value.clone()
    } else {
        None
    }
}

fn all_good(r: &[Reading]) -> bool {
    !r.is_empty() && r.iter().all(|x| x.quality.is_good())
}

fn all_bad(r: &[Reading], reason: &BadReason) -> bool {
    !r.is_empty()
        && r.iter()
            .all(|x| x.quality == Quality::Bad(reason.clone()) && x.value.is_none())
}

fn malformed(id: &str) -> u64 {
    riskgate::metrics::metrics()
        .malformed_payloads
        .with_label_values(&[id])
        .get()
}

#[tokio::test]
async fn good_payload_maps_camera_points() {
    let broker = Mosquitto::start();
    let id = "vb-good";
    let topic = "site/vb/1301/status";
    let mut src = Running::start(device(id, "site/vb/+/status", "5s"), broker.port);
    let pubr = publisher(broker.port);
    let before = chrono::Utc::now();
    let (r, _) = src
        .publish_until(&pubr, topic, GOOD, "good readings", all_good)
        .await;
    assert_eq!(r.len(), 4);
    assert_eq!(value_of(&r, "vb-good.c1.online"), Some(Value::Bool(true)));
    assert_eq!(value_of(&r, "vb-good.c1.blocked"), Some(Value::Bool(false)));
    assert_eq!(value_of(&r, "vb-good.c2.online"), Some(Value::Bool(false)));
    assert_eq!(value_of(&r, "vb-good.c2.blocked"), Some(Value::Bool(true)));
    for x in &r {
        assert_eq!(&*x.device, id);
        assert!(
            x.at >= before && x.at <= chrono::Utc::now(),
            "timestamp is the arrival time"
        );
    }
    // The readings are followed by a health ok.
    match src.next(Duration::from_secs(5)).await {
        Some(Input::DeviceHealth {
            device, ok: true, ..
        }) => assert_eq!(&*device, id),
        other => panic!("expected health ok after the readings, got {other:?}"),
    }
    src.stop().await;
}

#[tokio::test]
async fn quiet_box_turns_points_bad_and_back() {
    let broker = Mosquitto::start();
    let id = "vb-quiet";
    let topic = "site/vb/quiet";
    let hb = Duration::from_millis(500);
    let margin = Duration::from_millis(700);
    // Timing by the readings' own stamps (the source's clock when it made
    // them), not by when this test got round to reading the channel: a
    // slow test thread on a loaded machine changes neither bound.
    let since = |later: chrono::DateTime<chrono::Utc>, earlier: chrono::DateTime<chrono::Utc>| {
        (later - earlier).to_std().unwrap()
    };
    let started = chrono::Utc::now();
    let mut src = Running::start(device(id, topic, "500ms"), broker.port);

    // Nothing ever arrived: NoData, within the heartbeat.
    let (r, _) = src
        .readings_until("no-data readings", LIMIT, |r| {
            all_bad(r, &BadReason::NoData)
        })
        .await;
    let first = since(r[0].at, started);
    assert!(
        first >= hb - Duration::from_millis(50),
        "not before the heartbeat: {first:?}"
    );
    assert!(first <= hb + margin, "no-data only after {first:?}");
    match src.next(Duration::from_secs(1)).await {
        Some(Input::DeviceHealth {
            ok: false, detail, ..
        }) => assert_eq!(detail, "no message within heartbeat"),
        other => panic!("expected health not ok, got {other:?}"),
    }

    let pubr = publisher(broker.port);
    let (g, _) = src
        .publish_until(&pubr, topic, GOOD, "good readings", all_good)
        .await;

    // Quiet: the points turn bad (Timeout) within heartbeat + margin of the
    // last good message (publish_until may have left one more in flight).
    let mut last_good = g[0].at;
    let end = Instant::now() + LIMIT;
    let timed_out = loop {
        match src
            .next(end.saturating_duration_since(Instant::now()))
            .await
        {
            Some(Input::Readings(r)) if all_good(&r) => last_good = r[0].at,
            Some(Input::Readings(r)) if all_bad(&r, &BadReason::Timeout) => {
                let quiet = since(r[0].at, last_good);
                assert!(
                    quiet >= hb - Duration::from_millis(50),
                    "bad after only {quiet:?}"
                );
                assert!(quiet <= hb + margin, "bad only after {quiet:?}");
                break r[0].at;
            }
            Some(Input::DeviceHealth { ok: true, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    match src.next(Duration::from_secs(1)).await {
        Some(Input::DeviceHealth {
            ok: false, detail, ..
        }) => assert_eq!(detail, "no message within heartbeat"),
        other => panic!("expected health not ok, got {other:?}"),
    }

    // Still quiet: re-sent every heartbeat.
    let (r, _) = src
        .readings_until("repeated timeout readings", LIMIT, |r| {
            all_bad(r, &BadReason::Timeout)
        })
        .await;
    let again = since(r[0].at, timed_out);
    assert!(
        again >= hb - Duration::from_millis(100),
        "re-sent after only {again:?}"
    );
    assert!(again <= hb + margin, "re-sent only after {again:?}");

    // Back: good again.
    let (r, _) = src
        .publish_until(&pubr, topic, GOOD, "good readings again", all_good)
        .await;
    assert_eq!(value_of(&r, "vb-quiet.c2.blocked"), Some(Value::Bool(true)));
    src.stop().await;
}

#[tokio::test]
async fn malformed_payloads_are_counted_and_the_source_goes_on() {
    let broker = Mosquitto::start();
    let id = "vb-malformed";
    let topic = "site/vb/malformed";
    let mut src = Running::start(device(id, topic, "10s"), broker.port);
    let pubr = publisher(broker.port);
    src.publish_until(&pubr, topic, GOOD, "first good readings", all_good)
        .await;
    // Drain what the repeated publishes may have left behind.
    while src.next(Duration::from_millis(300)).await.is_some() {}

    let base = malformed(id);
    let bad_payloads = [
        "this is not json {".to_string(),
        r#"{"box_id":"vb-1301","cameras":[]}"#.to_string(),
        r#"{"box_id":"vb-1301","cameras":[{"online":"yes","blocked":false},{"online":false,"blocked":true}]}"#.to_string(),
        // Oversized: counted and dropped by the source.
        format!(r#"{{"pad":"{}"}}"#, "x".repeat(300 * 1024)),
        // Larger than the client's packet limit: breaks the connection,
        // counted, the source reconnects.
        format!(r#"{{"pad":"{}"}}"#, "x".repeat(3 * 1024 * 1024)),
    ];
    for p in &bad_payloads[..4] {
        pubr.publish(topic, QoS::AtLeastOnce, false, p.as_bytes().to_vec())
            .await
            .unwrap();
    }
    pubr.publish(topic, QoS::AtLeastOnce, false, GOOD.as_bytes().to_vec())
        .await
        .unwrap();
    // The good one arrives after the bad ones (same connection, QoS 1, in order).
    let (r, before) = src
        .readings_until("good readings after garbage", LIMIT, all_good)
        .await;
    assert_eq!(
        value_of(&r, "vb-malformed.c1.online"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        malformed(id) - base,
        4,
        "not json, missing path, wrong type, oversized: one each"
    );

    let batches: Vec<&Vec<Reading>> = before
        .iter()
        .filter_map(|i| match i {
            Input::Readings(r) => Some(r),
            _ => None,
        })
        .collect();
    // Not JSON and oversized: no readings. Missing path: all four bad.
    // Wrong type: c1.online bad, the other three good.
    assert_eq!(batches.len(), 2, "{before:#?}");
    assert!(
        batches[0]
            .iter()
            .all(|x| matches!(&x.quality, Quality::Bad(BadReason::Decode(_))) && x.value.is_none())
    );
    let wrong = batches[1];
    let c1 = wrong
        .iter()
        .find(|x| &*x.point == "vb-malformed.c1.online")
        .unwrap();
    match &c1.quality {
        Quality::Bad(BadReason::Decode(d)) => assert!(d.contains("cameras[0].online"), "{d}"),
        q => panic!("expected decode error, got {q:?}"),
    }
    assert_eq!(
        value_of(wrong, "vb-malformed.c2.blocked"),
        Some(Value::Bool(true))
    );
    assert_eq!(
        value_of(wrong, "vb-malformed.c1.blocked"),
        Some(Value::Bool(false))
    );

    // A packet too big even for the client: the connection breaks, the
    // source counts it, reconnects, re-subscribes and goes on.
    let base = malformed(id);
    pubr.publish(
        topic,
        QoS::AtLeastOnce,
        false,
        bad_payloads[4].as_bytes().to_vec(),
    )
    .await
    .unwrap();
    let (health, _) = src
        .input_until("health not ok after the connection broke", LIMIT, |i| {
            matches!(i, Input::DeviceHealth { ok: false, .. })
        })
        .await;
    let Input::DeviceHealth { detail, .. } = health else {
        unreachable!()
    };
    assert!(detail.contains("limit"), "{detail}");
    src.publish_until(
        &pubr,
        topic,
        GOOD,
        "good readings after the reconnect",
        all_good,
    )
    .await;
    assert_eq!(
        malformed(id) - base,
        1,
        "the packet over the client limit is counted once"
    );
    src.stop().await;
}

#[tokio::test]
async fn broker_restart_resubscribes_and_readings_resume() {
    let mut broker = Mosquitto::start();
    let id = "vb-restart";
    let topic = "site/vb/restart";
    let mut src = Running::start(device(id, topic, "10s"), broker.port);
    let pubr = publisher(broker.port);
    src.publish_until(
        &pubr,
        topic,
        GOOD,
        "good readings before the restart",
        all_good,
    )
    .await;

    broker.restart();
    // The broker forgot the clean session's subscription: readings only come
    // back if the source re-subscribed after reconnecting.
    let (r, seen) = src
        .publish_until(
            &pubr,
            topic,
            GOOD,
            "good readings after the restart",
            all_good,
        )
        .await;
    assert_eq!(
        value_of(&r, "vb-restart.c2.online"),
        Some(Value::Bool(false))
    );
    assert!(
        seen.iter().any(|i| matches!(i, Input::DeviceHealth { ok: false, detail, .. } if detail.contains("mqtt broker"))),
        "the disconnect is reported as health not ok: {seen:#?}"
    );
    src.stop().await;
}

#[tokio::test]
async fn retained_message_is_not_taken_as_live() {
    // The box said something once, retained, and went quiet. A (re)starting
    // gateway gets that message from the broker on subscribe: it must not
    // make the points good.
    let broker = Mosquitto::start();
    let id = "vb-retained";
    let topic = "site/vb/retained";
    let pubr = publisher(broker.port);
    pubr.publish(topic, QoS::AtLeastOnce, true, GOOD.as_bytes().to_vec())
        .await
        .unwrap();
    // A second subscriber proves the broker holds the retained message before
    // the source starts.
    let mut check = common::subscribe(broker.port, topic, "test-retained-check").await;
    // Retained if it was stored before the subscription, live (retain flag
    // cleared) if not: either way the broker has it now.
    tokio::time::timeout(LIMIT, check.next())
        .await
        .expect("the broker holds the retained message");

    let mut src = Running::start(device(id, topic, "500ms"), broker.port);
    let (i, _) = src
        .input_until("first readings", LIMIT, |i| matches!(i, Input::Readings(_)))
        .await;
    let Input::Readings(r) = i else {
        unreachable!()
    };
    assert!(
        all_bad(&r, &BadReason::NoData),
        "the retained message was taken as live: {r:#?}"
    );
    // A live message is taken.
    src.publish_until(
        &pubr,
        topic,
        GOOD,
        "good readings from a live message",
        all_good,
    )
    .await;
    src.stop().await;
}

#[tokio::test]
async fn unreachable_broker_means_no_data_and_health_not_ok() {
    // Nothing listens on this port.
    let port = common::free_port();
    let id = "vb-nobroker";
    let hb = Duration::from_millis(300);
    let mut src = Running::start(device(id, "site/vb/none", "300ms"), port);
    let (health, _) = src
        .input_until("a connection error", Duration::from_secs(5), |i| matches!(i, Input::DeviceHealth { ok: false, detail, .. } if detail.contains("mqtt broker")))
        .await;
    let Input::DeviceHealth { device, at, .. } = health else {
        unreachable!()
    };
    assert_eq!(&*device, id);
    // Fail safe: the points go bad (never received anything: NoData), and
    // stay bad, re-sent every heartbeat, while the source keeps retrying.
    // (Spacing by the readings' own stamps: a slow test thread neither
    // shortens nor stretches it.)
    let mut prev = at;
    for _ in 0..3 {
        let (r, _) = src
            .readings_until("no-data readings", LIMIT, |r| {
                all_bad(r, &BadReason::NoData)
            })
            .await;
        assert_eq!(r.len(), 4);
        let gap = (r[0].at - prev).to_std().unwrap_or_default();
        assert!(gap <= hb * 3, "no-data only {gap:?} after the last");
        prev = r[0].at;
    }
    src.stop().await;
}

#[test]
fn json_to_value_bool() {
    let b = Some(DataType::Bool);
    assert_eq!(
        json_to_value(&json!(true), b, 1.0, 0.0),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        json_to_value(&json!(false), b, 1.0, 0.0),
        Ok(Value::Bool(false))
    );
    assert_eq!(json_to_value(&json!(1), b, 1.0, 0.0), Ok(Value::Bool(true)));
    assert_eq!(
        json_to_value(&json!(0), b, 1.0, 0.0),
        Ok(Value::Bool(false))
    );
    assert_eq!(
        json_to_value(&json!(0.0), b, 1.0, 0.0),
        Ok(Value::Bool(false))
    );
    // Scale/offset do not apply to bools.
    assert_eq!(
        json_to_value(&json!(1), b, 10.0, 5.0),
        Ok(Value::Bool(true))
    );
    for bad in [
        json!(2),
        json!(-1),
        json!(0.5),
        json!("true"),
        json!("1"),
        json!(null),
        json!([true]),
        json!({"v": true}),
    ] {
        assert!(
            json_to_value(&bad, b, 1.0, 0.0).is_err(),
            "{bad} is not a bool"
        );
    }
}

#[test]
fn json_to_value_numbers_text_and_untyped() {
    for t in [
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::U64,
        DataType::I64,
        DataType::F32,
        DataType::F64,
    ] {
        assert_eq!(
            json_to_value(&json!(42), Some(t), 0.1, 1.0),
            Ok(Value::Num(42.0 * 0.1 + 1.0)),
            "{t:?}"
        );
        assert_eq!(
            json_to_value(&json!(-0.5), Some(t), 1.0, 0.0),
            Ok(Value::Num(-0.5)),
            "{t:?}"
        );
        assert!(
            json_to_value(&json!("42"), Some(t), 1.0, 0.0).is_err(),
            "{t:?}: a string is not a number"
        );
        assert!(
            json_to_value(&json!(true), Some(t), 1.0, 0.0).is_err(),
            "{t:?}: a bool is not a number"
        );
        assert!(
            json_to_value(&json!(null), Some(t), 1.0, 0.0).is_err(),
            "{t:?}: null is not a number"
        );
    }
    // Out of range after scale.
    assert!(json_to_value(&json!(1e308), Some(DataType::F64), 1e10, 0.0).is_err());

    let a = Some(DataType::Ascii);
    assert_eq!(
        json_to_value(&json!("c2 offline"), a, 1.0, 0.0),
        Ok(Value::Text("c2 offline".into()))
    );
    assert!(json_to_value(&json!(7), a, 1.0, 0.0).is_err());

    // No type: as it comes.
    assert_eq!(
        json_to_value(&json!(true), None, 2.0, 1.0),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        json_to_value(&json!(0.42), None, 2.0, 1.0),
        Ok(Value::Num(0.42 * 2.0 + 1.0))
    );
    assert_eq!(
        json_to_value(&json!("vb-1301"), None, 1.0, 0.0),
        Ok(Value::Text("vb-1301".into()))
    );
    assert!(json_to_value(&json!(null), None, 1.0, 0.0).is_err());
    assert!(json_to_value(&json!([1, 2]), None, 1.0, 0.0).is_err());
    assert!(json_to_value(&json!({"a": 1}), None, 1.0, 0.0).is_err());
}
