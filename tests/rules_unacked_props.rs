//! Properties of the two new state machines of issue 14 over random
//! sequences of readings, acknowledgements, calibration windows and time:
//!
//! unacknowledged escalation (`escalate`):
//! - an instance is escalated at most twice (`again_after` given), never
//!   after it was acknowledged, never before `after` (then `again_after`)
//!   has passed, and its level never steps down;
//!
//! calibration windows:
//! - an alarm raised while its point is calibrating has kind
//!   `calibration`, one raised outside a window never has;
//! - the window's own instance is raised once per open and cleared at the
//!   window's end (never left behind), and no `calibration` instance is
//!   active one tick after the windows closed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use riskgate::model::{AlarmKind, AlarmState, Input, Quality, Reading, Value};
use riskgate::rules::{Engine, Mono, Now};

const CONFIG: &str = r#"
[site]
id = "case"
kind = "chemical"
[gateway]
id = "gw-case"
data_dir = "/tmp/riskgate-unacked-props-unused"
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "1h"
  [[devices.points]]
  id = "a"
  register = "holding"
  address = 0
  type = "f32"
[[rules]]
id = "hi-a"
kind = "threshold"
point = "a"
op = ">="
value = 10
deadband = 1
level = 4
escalate = { after = "2s", to = "up", again_after = "1s" }
"#;

#[derive(Clone, Debug)]
enum Step {
    Value(f64),
    Ack,
    Calibrate(u64),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0.0f64..20.0).prop_map(Step::Value),
        1 => Just(Step::Ack),
        1 => (1u64..6).prop_map(Step::Calibrate),
        3 => (1u64..30).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn escalation_and_calibration_keep_their_promises(steps in proptest::collection::vec(step(), 1..60)) {
        let cfg = riskgate::config::load_str(CONFIG, Path::new("props.toml")).unwrap();
        let mut engine = Engine::new(&cfg);
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap();
        let mut ms = 0u64;
        let now = |ms: u64| Now { wall: t0 + Duration::from_millis(ms), mono: Mono::from_millis(ms) };
        // per alarm_id: raised at, level, escalations, acked, last escalation
        let mut inst: HashMap<String, (u64, u8, u8, bool, u64)> = HashMap::new();
        let mut calibrating_until: Option<u64> = None;
        let mut check = |out: riskgate::rules::Output, at: u64, cal: Option<u64>| -> Result<(), TestCaseError> {
            for t in out.transitions {
                let open = cal.is_some_and(|u| at < u);
                match (t.rule_id.as_str(), t.state) {
                    ("hi-a", AlarmState::Raised) => {
                        prop_assert_eq!(t.kind == AlarmKind::Calibration, open, "{:?}", t);
                        inst.insert(t.alarm_id.clone(), (at, t.level, 0, false, at));
                    }
                    ("hi-a", AlarmState::Escalated) => {
                        let e = inst.get_mut(&t.alarm_id).expect("escalated after raise");
                        prop_assert!(!e.3, "escalated after its acknowledgement");
                        let wait = if e.2 == 0 { 2000 } else { 1000 };
                        prop_assert!(at >= e.4 + wait, "escalated early: {} < {} + {}", at, e.4, wait);
                        prop_assert!(t.level <= e.1, "stepped down {} -> {}", e.1, t.level);
                        e.1 = t.level;
                        e.2 += 1;
                        e.4 = at;
                        prop_assert!(e.2 <= 2, "escalated {} times", e.2);
                    }
                    ("hi-a", AlarmState::Acknowledged) => {
                        inst.get_mut(&t.alarm_id).expect("acked after raise").3 = true;
                    }
                    ("a.calibration", AlarmState::Raised) => prop_assert!(open),
                    ("a.calibration", AlarmState::Cleared) => {
                        prop_assert_eq!(cal, Some(at), "the window clears at its end");
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        let reading = |v: f64, at| Reading {
            point: Arc::from("a"),
            device: Arc::from("gd1"),
            value: Some(Value::Num(v)),
            quality: Quality::Good,
            at,
        };
        for s in steps {
            match s {
                Step::Value(v) => {
                    let out = engine.handle(&Input::Readings(vec![reading(v, now(ms).wall)]), now(ms));
                    check(out, ms, calibrating_until)?;
                }
                Step::Ack => {
                    let id = engine.active().find(|i| i.rule_id == "hi-a").map(|i| i.alarm_id.clone());
                    if let Some(id) = id
                        && let Ok(out) = engine.acknowledge(&id, "p", now(ms).wall)
                    {
                        check(out, ms, calibrating_until)?;
                    }
                }
                Step::Calibrate(secs) => {
                    match engine.calibrate("a", Duration::from_secs(secs), "p", now(ms)) {
                        Ok(out) => {
                            prop_assert!(calibrating_until.is_none_or(|u| ms >= u));
                            // Ticks run every 100 ms: the window closes at the
                            // first tick at or after its end.
                            calibrating_until = Some((ms + secs * 1000).div_ceil(100) * 100);
                            check(out, ms, calibrating_until)?;
                        }
                        Err(_) => prop_assert!(calibrating_until.is_some_and(|u| ms < u)),
                    }
                }
                Step::Wait(n) => {
                    for _ in 0..n {
                        ms += 100;
                        let out = engine.tick(now(ms));
                        check(out, ms, calibrating_until)?;
                        if calibrating_until.is_some_and(|u| ms > u) {
                            prop_assert!(engine.active().all(|i| i.kind != AlarmKind::Calibration));
                        }
                    }
                }
            }
        }
    }
}
