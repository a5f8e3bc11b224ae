//! Golden rule scenarios: each folder under `tests/testcases/` holds a
//! `config.toml`, an `inputs.toml` (values, qualities, device health,
//! acknowledgements and restarts at times) and an `expected.toml` (the exact
//! event stream). The engine is pure, so the runner drives its clock itself
//! in 100 ms steps: the same run every time, no real waiting.
//!
//! `inputs.toml`:
//! ```toml
//! start = "2026-07-15T07:30:00+08:00"  # optional: the wall time at 0 s
//! end = "60s"                       # run the clock to here
//! [[step]]
//! at = "1s"
//! values = { "ch4.face" = 1.2, "video.ok" = true }
//! bad = ["cam.online"]              # bad quality (timeout)
//! # or with the reason: bad = { "ch4" = "exception" }  (timeout, exception,
//! # decode, transport, stale, no_data)
//! health = { "gd1" = false }        # a failed poll of device gd1
//! ack = { rule = "r1", by = "张三" }  # acknowledge the active alarm of rule r1
//! calibrate = { point = "ch4", for = "60s", by = "王工" }  # open a window
//! restart = true                    # a new engine with the active alarms
//!                                   # and rule state the store (src/queue) kept
//! observed = "20m"                  # the readings' own time (a late report),
//!                                   # when it is not `at`
//! ```
//! `expected.toml`: `[[event]] at = "1s", rule = "r1", state = "raised", level = 2`,
//! optionally with `kind = "fault"`, `value = 1.7`, `acked_by = "张三"`,
//! `quality = "calibrating"` and `detail = { check = "frozen" }` (each
//! compared when given; `detail` names a subset of the event's facts).
//! Both files refuse unknown keys.
//!
//! Every event goes through the store as the gateway commits it (its `seq`
//! and the active alarms in one transaction), and so does the rules' state
//! (rain slots, rate histories); a restart reads both back from there, not
//! from memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use riskgate::model::{AlarmState, AlarmTransition, BadReason, Input, Quality, Reading, Value};
use riskgate::queue::{LoggedEvent, QueueId, Store};
use riskgate::rules::{Engine, Instance, Mono, Now};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    #[serde(default)]
    start: Option<String>,
    end: String,
    #[serde(default)]
    step: Vec<Step>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at: String,
    #[serde(default)]
    values: toml::Table,
    #[serde(default)]
    bad: Bad,
    #[serde(default)]
    health: HashMap<String, bool>,
    #[serde(default)]
    ack: Option<Ack>,
    #[serde(default)]
    calibrate: Option<Calibrate>,
    #[serde(default)]
    restart: bool,
    #[serde(default)]
    observed: Option<String>,
}

/// Points with bad quality: a list (timeout) or each with its reason.
#[derive(serde::Deserialize, Default)]
#[serde(untagged)]
enum Bad {
    #[default]
    None,
    Timeout(Vec<String>),
    Why(std::collections::BTreeMap<String, String>),
}

impl Bad {
    fn points(&self) -> Vec<(String, BadReason)> {
        match self {
            Bad::None => Vec::new(),
            Bad::Timeout(v) => v.iter().map(|p| (p.clone(), BadReason::Timeout)).collect(),
            Bad::Why(m) => m
                .iter()
                .map(|(p, why)| {
                    let r = match why.as_str() {
                        "timeout" => BadReason::Timeout,
                        "exception" => BadReason::Exception(2),
                        "decode" => BadReason::Decode("scripted".into()),
                        "transport" => BadReason::Transport("scripted".into()),
                        "stale" => BadReason::Stale,
                        "no_data" => BadReason::NoData,
                        other => panic!("bad reason `{other}` for {p}"),
                    };
                    (p.clone(), r)
                })
                .collect(),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    rule: String,
    by: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Calibrate {
    point: String,
    #[serde(rename = "for")]
    length: String,
    by: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    #[serde(default)]
    event: Vec<Event>,
}

#[derive(serde::Deserialize, Debug, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
struct Event {
    at: String,
    rule: String,
    state: String,
    level: u8,
    /// Compared only when the expected file gives it.
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    value: Option<toml::Value>,
    #[serde(default)]
    acked_by: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    /// The facts named here must be in the event's `detail`, equal.
    #[serde(default)]
    detail: Option<toml::Table>,
}

impl Event {
    /// Whether the event `got` is what this expected event says: time,
    /// rule, state and level always; kind, value and acked_by when given.
    fn matches(&self, got: &Event) -> bool {
        let num = |v: &toml::Value| match v {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            toml::Value::Boolean(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        };
        (&self.at, &self.rule, &self.state, self.level)
            == (&got.at, &got.rule, &got.state, got.level)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| got.kind.as_ref() == Some(k))
            && self
                .acked_by
                .as_ref()
                .is_none_or(|a| got.acked_by.as_ref() == Some(a))
            && self
                .quality
                .as_ref()
                .is_none_or(|q| got.quality.as_ref() == Some(q))
            && self.detail.as_ref().is_none_or(|want| {
                let have = got.detail.clone().unwrap_or_default();
                want.iter().all(|(k, v)| match (v, have.get(k)) {
                    (toml::Value::Float(_) | toml::Value::Integer(_), Some(h)) => num(v)
                        .zip(num(h))
                        .is_some_and(|(a, b)| (a - b).abs() < 1e-9),
                    (v, h) => Some(v) == h,
                })
            })
            && self.value.as_ref().is_none_or(|v| {
                got.value
                    .as_ref()
                    .and_then(num)
                    .zip(num(v))
                    .is_some_and(|(g, e)| (g - e).abs() < 1e-9)
            })
    }

    fn show(&self) -> String {
        let mut s = format!("  {} {} {} L{}", self.at, self.rule, self.state, self.level);
        if let Some(k) = &self.kind {
            s += &format!(" kind={k}");
        }
        if let Some(v) = &self.value {
            s += &format!(" value={v}");
        }
        if let Some(a) = &self.acked_by {
            s += &format!(" acked_by={a}");
        }
        if let Some(q) = &self.quality {
            s += &format!(" quality={q}");
        }
        if let Some(d) = &self.detail {
            s += &format!(" detail={d}");
        }
        s
    }
}

fn ms(s: &str) -> u64 {
    humantime::parse_duration(s).unwrap().as_millis() as u64
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap()
}

fn state(s: AlarmState) -> &'static str {
    match s {
        AlarmState::Raised => "raised",
        AlarmState::Escalated => "escalated",
        AlarmState::Acknowledged => "acknowledged",
        AlarmState::Cleared => "cleared",
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Runs one case and returns the events as (at, rule, state, level).
fn run_case(dir: &Path) -> Vec<Event> {
    let cfg = riskgate::config::load(&dir.join("config.toml"))
        .unwrap_or_else(|e| panic!("{}: {e:?}", dir.display()));
    let inputs: Inputs = toml::from_str(&std::fs::read_to_string(dir.join("inputs.toml")).unwrap())
        .unwrap_or_else(|e| panic!("{}/inputs.toml: {e}", dir.display()));
    let devices: HashMap<String, String> = cfg
        .devices
        .iter()
        .flat_map(|d| {
            d.points()
                .into_iter()
                .map(move |p| (p.id.to_string(), d.id.clone()))
        })
        .collect();
    // The gateway's store: events are committed as the runtime commits
    // them, and a restart reads the active alarms back from it.
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path(), u64::MAX, u64::MAX).unwrap();
    let t0 = match &inputs.start {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{}: start: {e}", dir.display()))
            .with_timezone(&Utc),
        None => t0(),
    };
    let mut engine = Engine::new(&cfg);
    let mut steps: Vec<(u64, &Step)> = inputs.step.iter().map(|s| (ms(&s.at), s)).collect();
    steps.sort_by_key(|s| s.0);
    let end = ms(&inputs.end);
    let mut events = Vec::new();
    // alarm ids seen per rule, to check that a restart does not re-raise
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut record = |out: riskgate::rules::Output,
                      engine: &Engine,
                      now_ms: u64,
                      ids: &mut HashMap<String, String>| {
        commit(&store, &out.transitions, engine);
        for t in out.transitions {
            if t.state == AlarmState::Raised {
                ids.insert(t.rule_id.clone(), t.alarm_id.clone());
            } else {
                assert_eq!(
                    ids.get(&t.rule_id),
                    Some(&t.alarm_id),
                    "{}: one alarm_id per instance",
                    dir.display()
                );
            }
            events.push(Event {
                at: fmt_ms(now_ms),
                rule: t.rule_id,
                state: state(t.state).into(),
                level: t.level,
                kind: Some(t.kind.as_str().to_string()),
                value: t.value.as_ref().and_then(|v| match v {
                    serde_json::Value::Number(n) => n.as_f64().map(toml::Value::Float),
                    serde_json::Value::Bool(b) => Some(toml::Value::Boolean(*b)),
                    _ => None,
                }),
                acked_by: t.acked_by,
                quality: t.quality,
                detail: t.detail.map(|d| {
                    d.into_iter()
                        .filter_map(|(k, v)| {
                            let v = match v {
                                serde_json::Value::String(s) => toml::Value::String(s),
                                serde_json::Value::Bool(b) => toml::Value::Boolean(b),
                                serde_json::Value::Number(n) => toml::Value::Float(n.as_f64()?),
                                _ => return None,
                            };
                            Some((k, v))
                        })
                        .collect()
                }),
            });
        }
    };
    let mut now_ms = 0u64;
    let mut next = 0usize;
    while now_ms <= end {
        let now = t0 + Duration::from_millis(now_ms);
        let clock = Now {
            wall: now,
            mono: Mono::from_millis(now_ms),
        };
        while next < steps.len() && steps[next].0 <= now_ms {
            let s = steps[next].1;
            if s.restart {
                // What the store kept, as `runtime::start` reads it.
                let saved: Vec<Instance> = store.load_active().unwrap();
                let before: Vec<Instance> = engine.active().cloned().collect();
                assert_eq!(
                    saved.len(),
                    before.len(),
                    "{}: the store kept every active alarm",
                    dir.display()
                );
                engine = Engine::new(&cfg);
                engine.restore(saved);
                let refused = engine.restore_rule_state(store.load_rule_state().unwrap());
                assert!(refused.is_empty(), "{}: {refused:?}", dir.display());
            }
            let observed = s
                .observed
                .as_deref()
                .map_or(now, |o| t0 + Duration::from_millis(ms(o)));
            let mut readings = Vec::new();
            for (k, v) in &s.values {
                let value = match v {
                    toml::Value::Boolean(b) => Value::Bool(*b),
                    toml::Value::Integer(i) => Value::Num(*i as f64),
                    toml::Value::Float(f) => Value::Num(*f),
                    other => panic!("value {other:?}"),
                };
                let dev = devices.get(k).unwrap_or_else(|| panic!("no point {k}"));
                readings.push(Reading {
                    point: Arc::from(k.as_str()),
                    device: Arc::from(dev.as_str()),
                    value: Some(value),
                    quality: Quality::Good,
                    at: observed,
                });
            }
            for (k, why) in s.bad.points() {
                let dev = devices.get(&k).unwrap_or_else(|| panic!("no point {k}"));
                readings.push(Reading {
                    point: Arc::from(k.as_str()),
                    device: Arc::from(dev.as_str()),
                    value: None,
                    quality: Quality::Bad(why),
                    at: observed,
                });
            }
            if !readings.is_empty() {
                let out = engine.handle(&Input::Readings(readings), clock);
                record(out, &engine, now_ms, &mut ids);
            }
            let mut health: Vec<_> = s.health.iter().collect();
            health.sort();
            for (d, ok) in health {
                let out = engine.handle(
                    &Input::DeviceHealth {
                        device: Arc::from(d.as_str()),
                        ok: *ok,
                        detail: "scripted".into(),
                        at: now,
                    },
                    clock,
                );
                record(out, &engine, now_ms, &mut ids);
            }
            if let Some(c) = &s.calibrate {
                let length = Duration::from_millis(ms(&c.length));
                let out = engine
                    .calibrate(&c.point, length, &c.by, clock)
                    .unwrap_or_else(|e| panic!("{}: calibrate: {e}", dir.display()));
                record(out, &engine, now_ms, &mut ids);
            }
            if let Some(a) = &s.ack {
                let id = engine
                    .active()
                    .find(|i| i.rule_id == a.rule)
                    .map(|i| i.alarm_id.clone())
                    .unwrap_or_else(|| panic!("no active alarm of {}", a.rule));
                let out = engine.acknowledge(&id, &a.by, now).unwrap();
                record(out, &engine, now_ms, &mut ids);
            }
            next += 1;
        }
        let out = engine.tick(clock);
        record(out, &engine, now_ms, &mut ids);
        // The rules' state as the engine task stores it with the readings.
        let states = engine.take_rule_state(clock.mono, true);
        store
            .save_rule_state(&states, now.timestamp_millis())
            .unwrap();
        now_ms += 100;
    }
    assert_eq!(
        store.last_seq().unwrap(),
        events.len() as u64,
        "{}: one seq per event in the store",
        dir.display()
    );
    events
}

/// Commits one step's events and the active alarms, as the outbox does.
fn commit(store: &Store, events: &[AlarmTransition], engine: &Engine) {
    if events.is_empty() {
        return;
    }
    store
        .append_events(
            QueueId::Alarms,
            events,
            |seq, t| LoggedEvent {
                event_id: format!("golden-{seq}"),
                alarm_id: t.alarm_id.clone(),
                at_ms: t.ts.timestamp_millis(),
                body: serde_json::to_string(t).unwrap(),
            },
            &engine.active_keyed(),
        )
        .unwrap();
}

#[test]
fn golden_rule_scenarios() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testcases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "expected the golden cases under {}",
        root.display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let got = run_case(dir);
        let expected: Expected =
            toml::from_str(&std::fs::read_to_string(dir.join("expected.toml")).unwrap())
                .unwrap_or_else(|e| panic!("{}/expected.toml: {e}", dir.display()));
        let same = got.len() == expected.event.len()
            && expected.event.iter().zip(&got).all(|(e, g)| e.matches(g));
        if !same {
            let show = |v: &[Event]| v.iter().map(Event::show).collect::<Vec<_>>().join("\n");
            failures.push(format!(
                "{}:\nexpected:\n{}\ngot:\n{}",
                dir.file_name().unwrap().to_string_lossy(),
                show(&expected.event),
                show(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}
