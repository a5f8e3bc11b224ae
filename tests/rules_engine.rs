//! Rule engine behaviour that the golden files cannot express: readings with a
//! particular bad reason (`NoData` from an MQTT source that never heard its
//! box), the action requests the engine hands out, and what one single step
//! of the engine returns. The engine is pure: these tests drive its clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use riskgate::model::{AlarmKind, AlarmState, BadReason, Input, Quality, Reading, Value};
use riskgate::rules::{Engine, Mono, Now, Output};

const HEAD: &str = r#"
[site]
id = "case"
kind = "coal_mine"
[gateway]
id = "gw-case"
data_dir = "/tmp/riskgate-rules-engine-unused"
[http]
enabled = false
"#;

fn config(body: &str) -> riskgate::config::Config {
    let text = format!("{HEAD}{body}");
    riskgate::config::load_str(&text, Path::new("rules_engine.toml"))
        .unwrap_or_else(|e| panic!("config: {e:?}"))
}

fn t(ms: u64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap() + Duration::from_millis(ms)
}

/// The engine's clock at `ms` after the test's start: wall and monotonic.
fn clock(ms: u64) -> Now {
    Now {
        wall: t(ms),
        mono: Mono::from_millis(ms),
    }
}

/// The engine's clock at wall time `wall` (the clock never stepped).
fn now(wall: DateTime<Utc>) -> Now {
    clock((wall - t(0)).num_milliseconds() as u64)
}

fn reading(
    point: &str,
    device: &str,
    value: Option<Value>,
    quality: Quality,
    at: DateTime<Utc>,
) -> Input {
    Input::Readings(vec![Reading {
        point: Arc::from(point),
        device: Arc::from(device),
        value,
        quality,
        at,
    }])
}

fn good(point: &str, device: &str, v: Value, at: DateTime<Utc>) -> Input {
    reading(point, device, Some(v), Quality::Good, at)
}

fn bad(point: &str, device: &str, why: BadReason, at: DateTime<Utc>) -> Input {
    reading(point, device, None, Quality::Bad(why), at)
}

/// (rule_id, state) of every transition.
fn events(out: &Output) -> Vec<(String, AlarmState)> {
    out.transitions
        .iter()
        .map(|t| (t.rule_id.clone(), t.state))
        .collect()
}

const VIDEO_BOX: &str = r#"
[[devices]]
id = "vb-1301"
protocol = "mqtt"
broker = "uplink"
topic = "site/video/vb-1301/status"
heartbeat = "5s"
stale_after = "1h"
  [[devices.points]]
  id = "video_1301.online"
  path = "cameras[0].online"
  type = "bool"
  [[devices.points]]
  id = "video_1301.blocked"
  path = "cameras[0].blocked"
  type = "bool"
  [[devices.points]]
  id = "video_1301.persons"
  path = "persons"
[[devices]]
id = "face-plc"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "1h"
  [[devices.points]]
  id = "face_1301.working"
  register = "coil"
  address = 0
"#;

/// An MQTT source that never heard its box reports its points bad with
/// `NoData` once the heartbeat has passed. That is a report, and bad: the
/// threshold rule on such a point raises (fail safe), like the interlock does.
/// Only before any report at all does the engine hold its judgement.
#[test]
fn a_source_silent_since_start_is_judged_bad() {
    let cfg = config(&format!(
        r#"{VIDEO_BOX}
[[rules]]
id = "crowd"
kind = "threshold"
point = "video_1301.persons"
op = ">="
value = 10
level = 3
[[presets]]
name = "coal-no-video"
id_prefix = "1301-"
bind = {{ working = "face_1301.working", cam_online = "video_1301.online", cam_blocked = "video_1301.blocked" }}
"#
    ));
    let mut e = Engine::new(&cfg);
    // Nothing reported yet: no judgement, however long.
    let out = e.handle(
        &good("face_1301.working", "face-plc", Value::Bool(true), t(0)),
        clock(0),
    );
    assert!(out.transitions.is_empty());
    for s in 1..=40 {
        assert!(
            e.tick(clock(s * 1000)).transitions.is_empty(),
            "nothing before the box's first report ({s} s)"
        );
    }
    // The heartbeat passed without a message: every point of the box NoData.
    let at = t(40_500);
    let mut rs = Vec::new();
    for p in [
        "video_1301.online",
        "video_1301.blocked",
        "video_1301.persons",
    ] {
        rs.push(Reading {
            point: Arc::from(p),
            device: Arc::from("vb-1301"),
            value: None,
            quality: Quality::Bad(BadReason::NoData),
            at,
        });
    }
    let out = e.handle(&Input::Readings(rs), now(at));
    assert_eq!(
        events(&out),
        vec![("crowd".to_string(), AlarmState::Raised)],
        "threshold on a NoData point: fail safe"
    );
    let raised = &out.transitions[0];
    assert_eq!(raised.value, None, "no value for a bad reading");
    assert!(raised.message.contains("数据无效"), "{}", raised.message);
    // The interlock waits its 30 s hold, then raises: no video counts as no video.
    assert!(e.tick(clock(70_000)).transitions.is_empty());
    let out = e.tick(clock(70_500));
    assert_eq!(
        events(&out),
        vec![("1301-no-video".to_string(), AlarmState::Raised)]
    );
    assert!(
        out.transitions[0].message.contains("输入数据无效"),
        "{}",
        out.transitions[0].message
    );
}

/// Before the first report nothing is judged, so an interlock with a short
/// hold does not raise at every start-up just because the first poll of one
/// of its inputs has not come back yet.
#[test]
fn no_interlock_before_every_input_reported() {
    let cfg = config(&format!(
        r#"{VIDEO_BOX}
[[rules]]
id = "1301-no-video"
kind = "interlock"
when = "face_1301.working && !(video_1301.online && !video_1301.blocked)"
hold = "1s"
level = 2
"#
    ));
    let mut e = Engine::new(&cfg);
    e.handle(
        &good("face_1301.working", "face-plc", Value::Bool(true), t(0)),
        clock(0),
    );
    for ms in (200..=3000).step_by(200) {
        assert!(
            e.tick(clock(ms)).transitions.is_empty(),
            "no alarm while the camera has not reported ({ms} ms)"
        );
    }
    let rs = vec![
        Reading {
            point: Arc::from("video_1301.online"),
            device: Arc::from("vb-1301"),
            value: Some(Value::Bool(true)),
            quality: Quality::Good,
            at: t(3100),
        },
        Reading {
            point: Arc::from("video_1301.blocked"),
            device: Arc::from("vb-1301"),
            value: Some(Value::Bool(false)),
            quality: Quality::Good,
            at: t(3100),
        },
    ];
    assert!(
        e.handle(&Input::Readings(rs), clock(3100))
            .transitions
            .is_empty()
    );
    // From now on the rule judges: offline camera, 1 s hold, raised.
    e.handle(
        &good("video_1301.online", "vb-1301", Value::Bool(false), t(4000)),
        clock(4000),
    );
    assert!(e.tick(clock(4800)).transitions.is_empty());
    assert_eq!(
        events(&e.tick(clock(5000))),
        vec![("1301-no-video".to_string(), AlarmState::Raised)]
    );
}

const DETECTOR: &str = r#"
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "1h"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "lamp"
  register = "coil"
  address = 0
  writable = true
[[rules]]
id = "ch4-lamp"
kind = "threshold"
point = "ch4"
op = ">="
value = 1.0
recovery = 1.0
level = 2
actions = [{ write = "lamp", value = 1, on_clear = 0, confirm_within = "2s" }]
"#;

/// Actions: requested with the raise (before the event goes out), `on_clear`
/// with the clear; never when the rule's input has not been seen good since
/// start-up (the alarm is raised all the same).
#[test]
fn actions_go_with_the_transition_and_never_on_unknown_inputs() {
    let cfg = config(DETECTOR);
    let mut e = Engine::new(&cfg);
    // Bad from the very first poll: raised (fail safe) but no action.
    let out = e.handle(&bad("ch4", "gd1", BadReason::Timeout, t(0)), clock(0));
    assert_eq!(
        events(&out),
        vec![("ch4-lamp".to_string(), AlarmState::Raised)]
    );
    assert!(
        out.actions.is_empty(),
        "no write on an input never seen good: {:?}",
        out.actions
    );
    // Good and low: cleared.
    let out = e.handle(&good("ch4", "gd1", Value::Num(0.3), t(1000)), clock(1000));
    assert_eq!(
        events(&out),
        vec![("ch4-lamp".to_string(), AlarmState::Cleared)]
    );
    // Over the limit with a known input: the write goes with the raise.
    let out = e.handle(&good("ch4", "gd1", Value::Num(1.2), t(2000)), clock(2000));
    assert_eq!(
        events(&out),
        vec![("ch4-lamp".to_string(), AlarmState::Raised)]
    );
    assert_eq!(out.actions.len(), 1);
    let (idx, a) = &out.actions[0];
    assert_eq!(*idx, 0, "attached to the raised transition");
    assert_eq!((a.point.as_str(), a.value), ("lamp", 1.0));
    assert_eq!(a.confirm_within, Duration::from_secs(2));
    assert_eq!(a.alarm_id, out.transitions[0].alarm_id);
    // Back below: on_clear is written with the clear.
    let out = e.handle(&good("ch4", "gd1", Value::Num(0.5), t(3000)), clock(3000));
    assert_eq!(
        events(&out),
        vec![("ch4-lamp".to_string(), AlarmState::Cleared)]
    );
    assert_eq!(out.actions.len(), 1);
    assert_eq!(
        (out.actions[0].1.point.as_str(), out.actions[0].1.value),
        ("lamp", 0.0)
    );
    // Once seen good, a later bad reading is the alarm side *with* the action.
    let out = e.handle(
        &bad("ch4", "gd1", BadReason::Exception(4), t(4000)),
        clock(4000),
    );
    let raised: Vec<_> = out
        .transitions
        .iter()
        .filter(|t| t.rule_id == "ch4-lamp")
        .collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(
        out.actions.len(),
        1,
        "the input was seen good: the write goes out"
    );
}

/// One step of the engine settles escalation rules that count other
/// escalation rules, even when the outer rule is listed first.
#[test]
fn nested_escalation_settles_in_one_step() {
    let cfg = config(
        r#"
[[devices]]
id = "dam"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "1h"
  [[devices.points]]
  id = "a1"
  register = "holding"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "a2"
  register = "holding"
  address = 2
  type = "f32"
[[rules]]
id = "site"
kind = "escalation"
members = ["item-a"]
stages = [{ count = 1, count_level = 2, level = 1 }]
[[rules]]
id = "item-a"
kind = "escalation"
members = ["a1-hi", "a2-hi"]
stages = [{ count = 2, count_level = 3, level = 2 }]
[[rules]]
id = "a1-hi"
kind = "threshold"
point = "a1"
op = ">="
value = 10.0
level = 3
[[rules]]
id = "a2-hi"
kind = "threshold"
point = "a2"
op = ">="
value = 10.0
level = 3
"#,
    );
    let mut e = Engine::new(&cfg);
    let both = |v: f64, at| {
        Input::Readings(
            ["a1", "a2"]
                .iter()
                .map(|p| Reading {
                    point: Arc::from(*p),
                    device: Arc::from("dam"),
                    value: Some(Value::Num(v)),
                    quality: Quality::Good,
                    at,
                })
                .collect(),
        )
    };
    assert!(e.handle(&both(5.0, t(0)), clock(0)).transitions.is_empty());
    let out = e.handle(&both(11.0, t(1000)), clock(1000));
    let ev = events(&out);
    assert_eq!(
        ev,
        vec![
            ("a1-hi".to_string(), AlarmState::Raised),
            ("a2-hi".to_string(), AlarmState::Raised),
            ("item-a".to_string(), AlarmState::Raised),
            ("site".to_string(), AlarmState::Raised),
        ],
        "the outer rule follows in the same step"
    );
    assert_eq!(out.transitions[3].level, 1);
    let out = e.handle(&both(5.0, t(2000)), clock(2000));
    assert_eq!(
        events(&out),
        vec![
            ("a1-hi".to_string(), AlarmState::Cleared),
            ("a2-hi".to_string(), AlarmState::Cleared),
            ("item-a".to_string(), AlarmState::Cleared),
            ("site".to_string(), AlarmState::Cleared),
        ]
    );
}

/// Contract 1.1: an escalation rule's alarm says `kind = "escalation"`; its
/// members keep their own kind.
#[test]
fn escalation_events_carry_their_own_kind() {
    let cfg = config(
        r#"
[[devices]]
id = "dam"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "1h"
  [[devices.points]]
  id = "a1"
  register = "holding"
  address = 0
  type = "f32"
[[rules]]
id = "item-a"
kind = "escalation"
members = ["a1-hi"]
stages = [{ count = 1, count_level = 3, level = 2 }]
[[rules]]
id = "a1-hi"
kind = "threshold"
point = "a1"
op = ">="
value = 10.0
level = 3
"#,
    );
    let mut e = Engine::new(&cfg);
    let out = e.handle(&good("a1", "dam", Value::Num(11.0), t(0)), clock(0));
    let kinds: Vec<(&str, AlarmKind)> = out
        .transitions
        .iter()
        .map(|t| (t.rule_id.as_str(), t.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a1-hi", AlarmKind::Threshold),
            ("item-a", AlarmKind::Escalation)
        ]
    );
    let json = serde_json::to_value(&out.transitions[1]).unwrap();
    assert_eq!(json["kind"], "escalation");
}

/// Acknowledgement errors name the alarm; a latching alarm whose condition
/// is gone clears right after its acknowledgement, in the same output.
#[test]
fn acknowledgement_of_latching_alarms() {
    let cfg = config(
        r#"
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "1h"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"
[[rules]]
id = "ch4-latched"
kind = "threshold"
point = "ch4"
op = ">="
value = 1.0
level = 2
latching = true
"#,
    );
    let mut e = Engine::new(&cfg);
    e.handle(&good("ch4", "gd1", Value::Num(0.3), t(0)), clock(0));
    let out = e.handle(&good("ch4", "gd1", Value::Num(1.2), t(1000)), clock(1000));
    let id = out.transitions[0].alarm_id.clone();
    assert!(id.starts_with("ch4-latched@"), "{id}");
    // Condition gone: latched, still active.
    assert!(
        e.handle(&good("ch4", "gd1", Value::Num(0.3), t(2000)), clock(2000))
            .transitions
            .is_empty()
    );
    let inst = e.active().find(|i| i.alarm_id == id).expect("latched");
    assert!(!inst.condition);
    let err = e.acknowledge("nope", "张三", t(3000)).unwrap_err();
    assert_eq!(err.to_string(), "no active alarm `nope`");
    let out = e.acknowledge(&id, "张三", t(3000)).unwrap();
    assert_eq!(
        events(&out),
        vec![
            ("ch4-latched".to_string(), AlarmState::Acknowledged),
            ("ch4-latched".to_string(), AlarmState::Cleared),
        ]
    );
    assert_eq!(out.transitions[0].acked_by.as_deref(), Some("张三"));
    assert!(out.transitions.iter().all(|t| t.alarm_id == id));
    assert!(
        e.acknowledge(&id, "李四", t(4000)).is_err(),
        "cleared: nothing to acknowledge"
    );
}
