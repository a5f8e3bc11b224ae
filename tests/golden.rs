//! Golden rule scenarios: each folder under `tests/testcases/` holds a
//! `config.toml`, an `inputs.toml` (values, qualities, device health,
//! acknowledgements and restarts at times) and an `expected.toml` (the exact
//! event stream). The engine is pure, so the runner drives its clock itself
//! in 100 ms steps: the same run every time, no real waiting.
//!
//! `inputs.toml`:
//! ```toml
//! end = "60s"                       # run the clock to here
//! [[step]]
//! at = "1s"
//! values = { "ch4.face" = 1.2, "video.ok" = true }
//! bad = ["cam.online"]              # bad quality (timeout)
//! health = { "gd1" = false }        # a failed poll of device gd1
//! ack = { rule = "r1", by = "张三" }  # acknowledge the active alarm of rule r1
//! restart = true                    # persist active alarms, start a new engine
//! ```
//! `expected.toml`: `[[event]] at = "1s", rule = "r1", state = "raised", level = 2`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use riskgate::model::{AlarmState, BadReason, Input, Quality, Reading, Value};
use riskgate::rules::{Engine, Mono, Now};

#[derive(serde::Deserialize)]
struct Inputs {
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
    bad: Vec<String>,
    #[serde(default)]
    health: HashMap<String, bool>,
    #[serde(default)]
    ack: Option<Ack>,
    #[serde(default)]
    restart: bool,
}

#[derive(serde::Deserialize)]
struct Ack {
    rule: String,
    by: String,
}

#[derive(serde::Deserialize)]
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
    let inputs: Inputs =
        toml::from_str(&std::fs::read_to_string(dir.join("inputs.toml")).unwrap()).unwrap();
    let devices: HashMap<String, String> = cfg
        .devices
        .iter()
        .flat_map(|d| {
            d.points()
                .into_iter()
                .map(move |p| (p.id.to_string(), d.id.clone()))
        })
        .collect();
    let mut engine = Engine::new(&cfg);
    let mut steps: Vec<(u64, &Step)> = inputs.step.iter().map(|s| (ms(&s.at), s)).collect();
    steps.sort_by_key(|s| s.0);
    let end = ms(&inputs.end);
    let mut events = Vec::new();
    // alarm ids seen per rule, to check that a restart does not re-raise
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut record =
        |out: riskgate::rules::Output, now_ms: u64, ids: &mut HashMap<String, String>| {
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
                });
            }
        };
    let mut now_ms = 0u64;
    let mut next = 0usize;
    while now_ms <= end {
        let now = t0() + Duration::from_millis(now_ms);
        let clock = Now {
            wall: now,
            mono: Mono::from_millis(now_ms),
        };
        while next < steps.len() && steps[next].0 <= now_ms {
            let s = steps[next].1;
            if s.restart {
                let saved: Vec<_> = engine.active().cloned().collect();
                engine = Engine::new(&cfg);
                engine.restore(saved);
            }
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
                    at: now,
                });
            }
            for k in &s.bad {
                let dev = devices.get(k).unwrap_or_else(|| panic!("no point {k}"));
                readings.push(Reading {
                    point: Arc::from(k.as_str()),
                    device: Arc::from(dev.as_str()),
                    value: None,
                    quality: Quality::Bad(BadReason::Timeout),
                    at: now,
                });
            }
            if !readings.is_empty() {
                let out = engine.handle(&Input::Readings(readings), clock);
                record(out, now_ms, &mut ids);
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
                record(out, now_ms, &mut ids);
            }
            if let Some(a) = &s.ack {
                let id = engine
                    .active()
                    .find(|i| i.rule_id == a.rule)
                    .map(|i| i.alarm_id.clone())
                    .unwrap_or_else(|| panic!("no active alarm of {}", a.rule));
                let out = engine.acknowledge(&id, &a.by, now).unwrap();
                record(out, now_ms, &mut ids);
            }
            next += 1;
        }
        let out = engine.tick(clock);
        record(out, now_ms, &mut ids);
        now_ms += 100;
    }
    events
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
            toml::from_str(&std::fs::read_to_string(dir.join("expected.toml")).unwrap()).unwrap();
        if got != expected.event {
            let show = |v: &[Event]| {
                v.iter()
                    .map(|e| format!("  {} {} {} L{}", e.at, e.rule, e.state, e.level))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
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
