//! Fault: an action whose target never answers does not hold other events
//! back. A rule writes a lamp on a Modbus TCP device that accepts the
//! connection and stays silent (its read-back cannot come for 30 s). While
//! that write is in flight, the methane rules of another detector raise, one
//! of them is acknowledged by the county, and both clear. Each of those events
//! is committed (seq, alarm log, queue) while the write is still pending;
//! then `kill -9`. After the restart the alarm log and the county hold them
//! all, in seq order, gap-free, the action's event listing its write as
//! `pending` (the contract allows it; its outcome would follow as the
//! target's `{point}.action` alarm).
//!
//! Before the change, the event with the action waited in memory for its
//! read-back and every later event waited behind it: nothing after the
//! action's raise was committed before the kill.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Mosquitto, Riskgate, SiteCfg, Subscriber, SubscriberOpts, assert_schema_valid};
use riskgate::queue::Store;
use serde_json::Value as J;

const SITE: &str = "fault-action-pending";

fn open(data: &Path) -> Store {
    Store::open(data, u64::MAX, u64::MAX).unwrap()
}

fn all_events(data: &Path) -> Vec<J> {
    let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
    open(data).alarm_log(since, 100_000).unwrap()
}

/// The committed event of `rule` in `state` with a seq above `after`.
async fn committed(data: &Path, rule: &str, state: &str, after: u64) -> J {
    let seq = common::committed(&open(data), rule, state, after).await;
    all_events(data)
        .into_iter()
        .find(|e| e["seq"] == seq)
        .unwrap()
}

/// A Modbus TCP "device" that accepts connections and never answers: the
/// sockets are kept open (the requests sit in their buffers) until dropped.
async fn silent_device() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_committed_while_an_action_waits_and_survive_kill_9() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let devs = common::gas_detectors(2).await;
    let (gd00, gd01) = (&devs[0].1, &devs[1].1);
    let (silent_port, silent) = silent_device().await;
    let site = SiteCfg::new(
        SITE,
        &data,
        devs.iter().map(|d| d.0.local_addr().port()).collect(),
    )
    .plain_uplink(broker.port);
    // The lamp's device answers nothing and its requests wait 20 s each;
    // the write is confirmed within 30 s or fails: far beyond this test's
    // events, so it is still in flight at the kill.
    let text = format!(
        r#"{}
[[devices]]
id = "lamp-box"
protocol = "modbus_tcp"
host = "127.0.0.1"
port = {silent_port}
poll_interval = "1s"
timeout = "20s"
retries = 0
  [[devices.points]]
  id = "lamp.silent"
  register = "coil"
  address = 0
  writable = true

[[rules]]
id = "gd01-ch4-lamp"
kind = "threshold"
name = "gd01 甲烷报警, 声光报警器"
point = "ch4.gd01"
op = ">="
value = 1.0
recovery = 1.0
level = 2
actions = [{{ write = "lamp.silent", value = 1, on_clear = 0, confirm_within = "30s" }}]
"#,
        site.toml()
    );
    let cfg = dir.path().join("site.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("riskgate.log");

    let mut county = Subscriber::connect(SubscriberOpts {
        clean_session: false,
        ..SubscriberOpts::new(
            broker.port,
            "county-consumer-fault-action",
            &format!("riskgate/v1/{SITE}/alarm"),
        )
    })
    .await;
    let mut gw = Riskgate::spawn(&cfg, &log, &[]);
    // Both detectors read good before anything is raised (the action only
    // runs on an input seen good).
    for p in ["ch4.gd00", "ch4.gd01"] {
        common::wait_for_async(
            &format!("{p} good in the history"),
            Duration::from_secs(20),
            || async {
                let since = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(0).unwrap();
                open(&data)
                    .history(p, since, 10)
                    .ok()
                    .filter(|rows| rows.iter().any(|r| r.value.is_some()))
                    .map(|_| ())
            },
        )
        .await;
    }
    let start = open(&data).last_seq().unwrap();

    // The rule with the action raises: committed at once, its write pending.
    gd01.set_signal("ch4", 1.2);
    let lamp = committed(&data, "gd01-ch4-lamp", "raised", start).await;
    let act = &lamp["actions"][0];
    assert_eq!(act["result"], "pending", "{lamp}");
    assert_eq!(act["target"], "lamp.silent", "{lamp}");

    // Meanwhile another rule raises, is acknowledged by the county, and
    // clears: each event committed while the write still waits.
    let after = lamp["seq"].as_u64().unwrap();
    gd00.set_signal("ch4", 1.62);
    let raised = committed(&data, "gd00-ch4-alarm", "raised", after).await;
    committed(&data, "gd00-ch4-cut", "raised", after).await;
    let ack = serde_json::json!({
        "alarm_id": raised["alarm_id"],
        "by": "county-operator",
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    let mut opts = rumqttc::MqttOptions::new("county-operator-console", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (console, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let console_loop = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    console
        .publish(
            format!("riskgate/v1/{SITE}/ack"),
            rumqttc::QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&ack).unwrap(),
        )
        .await
        .unwrap();
    let acked = committed(&data, "gd00-ch4-alarm", "acknowledged", after).await;
    assert_eq!(acked["acked_by"], "county-operator");
    gd00.set_signal("ch4", 0.8);
    committed(&data, "gd00-ch4-alarm", "cleared", after).await;
    committed(&data, "gd00-ch4-cut", "cleared", after).await;

    // The write has not ended: no outcome noted, no failure alarm yet, so
    // none of the events above waited for it.
    let before_kill = all_events(&data);
    assert!(
        before_kill
            .iter()
            .all(|e| e["rule_id"] != "lamp.silent.action"),
        "the write is still in flight"
    );
    let noted = before_kill
        .iter()
        .find(|e| e["seq"] == lamp["seq"])
        .unwrap();
    assert_eq!(noted["actions"][0]["result"], "pending", "{noted}");

    // kill -9 while the write is in flight.
    gw.kill9();
    let k = open(&data).last_seq().unwrap();
    let mut gw = Riskgate::spawn(&cfg, &log, &[]);

    // After the restart: every event is in the log, in seq order, gap-free,
    // each as it was before the kill.
    let logged = all_events(&data);
    let seqs: Vec<u64> = logged.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs[..k as usize], (1..=k).collect::<Vec<_>>()[..]);
    for e in &before_kill {
        assert_eq!(&logged[e["seq"].as_u64().unwrap() as usize - 1], e);
        assert_schema_valid("alarm-event.schema.json", e);
    }
    let story: Vec<(String, String)> = logged[start as usize..k as usize]
        .iter()
        .map(|e| {
            (
                e["rule_id"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("gd01-ch4-lamp", "raised"),
        ("gd00-ch4-alarm", "raised"),
        ("gd00-ch4-cut", "raised"),
        ("gd00-ch4-alarm", "acknowledged"),
        ("gd00-ch4-alarm", "cleared"),
        ("gd00-ch4-cut", "cleared"),
    ] {
        assert!(
            story.iter().any(|(r, s)| (r.as_str(), s.as_str()) == want),
            "{want:?} in {story:?}"
        );
    }
    assert_eq!(story[0], ("gd01-ch4-lamp".into(), "raised".into()));

    // And the county has every one of them: de-duplicated on event_id, first
    // arrivals in seq order, 1..=k with no gap, each as logged.
    county
        .until(
            &format!("every seq 1..={k}"),
            Duration::from_secs(30),
            |c| c.has_all(k),
        )
        .await;
    let got = common::dedupe_alarms(&county.alarms());
    for e in &before_kill {
        assert_eq!(&got[&e["seq"].as_u64().unwrap()], e);
    }

    let status = gw.terminate();
    assert!(status.success(), "riskgate stopped cleanly: {status:?}");
    console_loop.abort();
    silent.abort();
    drop(devs);
}
