//! Rainfall totals (issue 12 item 4): the accumulation memory under any
//! sequence of readings, and a rate rule's history with counter resets that
//! survives a restart through a real store.
//!
//! Properties of the slots (`rules::kind::slots`):
//! - a running total's windowed totals are never negative, whatever the
//!   readings (out of order, negative, NaN, in one slot or many);
//! - read in order, or one reading per 5-minute slot in any order, a
//!   running total with resets gives exactly the sum of its increments;
//! - amounts give the sum of the amounts, each observation time once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use riskgate::config::InputKind;
use riskgate::model::{AlarmState, Input, Quality, Reading, Value};
use riskgate::queue::Store;
use riskgate::rules::kind::slots::{SLOT_MS, Slots};
use riskgate::rules::{Engine, Mono, Now};

const MIN: i64 = 60_000;

/// A counter built from increments, resetting (to the increment, counted
/// from 0) where `reset` says and the reset shows as a step back.
fn counter(incs: &[(f64, bool)], start: f64) -> (Vec<f64>, f64) {
    let mut c = vec![start];
    let mut sum = 0.0;
    for &(inc, reset) in incs {
        let last = *c.last().expect("non-empty");
        let next = if reset && inc < last { inc } else { last + inc };
        c.push(next);
        sum += inc;
    }
    (c, sum)
}

fn everything(s: &Slots) -> f64 {
    s.total(i64::MIN / 4, i64::MAX / 4)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + b.abs())
}

proptest! {
    #[test]
    fn in_order_totals_equal_the_increments_through_resets(
        incs in prop::collection::vec((0u32..500, any::<bool>()), 1..120),
        gaps in prop::collection::vec(1i64..(20 * MIN), 120),
        start in 0u32..100_000,
    ) {
        let incs: Vec<(f64, bool)> = incs.iter().map(|(i, r)| (*i as f64 / 10.0, *r)).collect();
        let (values, sum) = counter(&incs, start as f64 / 10.0);
        let mut s = Slots::new(InputKind::Cumulative);
        let mut t = 0i64;
        for (k, v) in values.iter().enumerate() {
            s.add((t, *v), 100_000);
            t += gaps[k % gaps.len()];
        }
        prop_assert!(close(everything(&s), sum), "{} != {sum}", everything(&s));
    }

    #[test]
    fn one_reading_per_slot_in_any_order_gives_the_same_total(
        incs in prop::collection::vec((0u32..500, any::<bool>()), 1..60),
        order in any::<u64>(),
    ) {
        let incs: Vec<(f64, bool)> = incs.iter().map(|(i, r)| (*i as f64 / 10.0, *r)).collect();
        let (values, sum) = counter(&incs, 50.0);
        let mut arrivals: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(k, v)| (k as i64 * SLOT_MS + 1_000, *v))
            .collect();
        // a permutation from the seed
        let mut seed = order;
        for i in (1..arrivals.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            arrivals.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let mut s = Slots::new(InputKind::Cumulative);
        for a in arrivals {
            s.add(a, 100_000);
        }
        prop_assert!(close(everything(&s), sum), "{} != {sum}", everything(&s));
    }

    #[test]
    fn windowed_totals_are_never_negative(
        readings in prop::collection::vec((0i64..(48 * 60), -100.0..1000.0f64), 1..200),
        windows in prop::collection::vec((0i64..(48 * 60), 1i64..(24 * 60)), 1..20),
        input in prop_oneof![Just(InputKind::Cumulative), Just(InputKind::Increment)],
    ) {
        let mut s = Slots::new(input);
        for (i, (t, v)) in readings.iter().enumerate() {
            let v = if i % 17 == 3 { f64::NAN } else { *v };
            s.add((t * MIN, v), 1_000);
            if i % 25 == 24 {
                s.prune(t * MIN - 24 * 60 * MIN);
            }
            for (now, w) in &windows {
                let total = s.total((now - w) * MIN, now * MIN);
                prop_assert!(total >= 0.0, "{total}");
            }
        }
    }

    #[test]
    fn amounts_count_once_per_observation_time(
        amounts in prop::collection::vec((0i64..(6 * 60), 0u32..300), 1..100),
    ) {
        let mut s = Slots::new(InputKind::Increment);
        let mut last = std::collections::BTreeMap::new();
        for (t, a) in &amounts {
            s.add((t * MIN, *a as f64 / 10.0), 1_000);
            // a second report of the same moment replaces the first
            last.insert(*t, *a as f64 / 10.0);
        }
        let sum: f64 = last.values().sum();
        prop_assert!(close(everything(&s), sum), "{} != {sum}", everything(&s));
    }
}

const RATE: &str = r#"
[site]
id = "case"
kind = "reservoir"
[gateway]
id = "gw-case"
data_dir = "/tmp/riskgate-rules-rain-unused"
[[devices]]
id = "st1"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "6h"
  [[devices.points]]
  id = "rain.total"
  register = "holding"
  address = 0
  type = "f32"
  unit = "mm"
[[rules]]
id = "rain-1h"
kind = "rate"
point = "rain.total"
input = "cumulative"
op = ">="
value = 30
window = "1h"
level = 3
"#;

fn reading(v: f64, at: DateTime<Utc>) -> Input {
    Input::Readings(vec![Reading {
        point: Arc::from("rain.total"),
        device: Arc::from("st1"),
        value: Some(Value::Num(v)),
        quality: Quality::Good,
        at,
    }])
}

/// Issue 12 item 4: a rate rule's history is stored with the readings and
/// comes back after a restart, placed by its age on the new run's
/// monotonic clock (which starts again at 0); a counter reset after the
/// restart counts from 0.
#[test]
fn a_rate_history_survives_a_restart_and_a_counter_reset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = riskgate::config::load_str(RATE, std::path::Path::new("rate.toml")).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 7, 15, 2, 0, 0).unwrap();
    let at = |m: i64| t0 + chrono::Duration::minutes(m);
    let run_now = |wall: DateTime<Utc>, mono_min: u64| Now {
        wall,
        mono: Mono::from_origin(Duration::from_secs(mono_min * 60)),
    };

    {
        let store = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
        let mut e = Engine::new(&cfg);
        for (m, v) in [(0, 100.0), (10, 110.0), (20, 120.0)] {
            let out = e.handle(&reading(v, at(m)), run_now(at(m), m as u64));
            assert!(out.transitions.is_empty(), "{out:?}");
        }
        // The engine task stores the state with the readings; at shutdown
        // everything, however recent its last save.
        let states = e.take_rule_state(Mono::from_millis(20 * 60_000), true);
        assert_eq!(states.len(), 1, "{states:?}");
        store
            .save_rule_state(&states, at(20).timestamp_millis())
            .unwrap();
        assert!(
            e.take_rule_state(Mono::from_millis(20 * 60_000), true)
                .is_empty()
        );
    }

    // A new process: the monotonic clock starts at 0 again.
    let store = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
    let mut e = Engine::new(&cfg);
    let refused = e.restore_rule_state(store.load_rule_state().unwrap());
    assert!(refused.is_empty(), "{refused:?}");
    // The counter was reset while the gateway was down: 5 mm since.
    let out = e.handle(&reading(5.0, at(30)), run_now(at(30), 0));
    assert!(out.transitions.is_empty(), "10 + 10 + 5 = 25 mm: {out:?}");
    let out = e.handle(&reading(12.0, at(35)), run_now(at(35), 5));
    let raised: Vec<_> = out
        .transitions
        .iter()
        .filter(|t| t.state == AlarmState::Raised)
        .collect();
    assert_eq!(raised.len(), 1, "{out:?}");
    assert_eq!(raised[0].value, Some(serde_json::json!(32.0)));
    // The window slides on the restored samples' ages: at 81 min (the new
    // run's 51 min) the samples of 0 and 10 min are out: 120 → 5 → 12 → 12
    // is 12 mm.
    let out = e.handle(&reading(12.0, at(81)), run_now(at(81), 51));
    assert!(
        out.transitions
            .iter()
            .any(|t| t.state == AlarmState::Cleared),
        "{out:?}"
    );
}

/// A stored state no rule can use is handed back with why: the rule starts
/// empty rather than reading slots that meant something else.
#[test]
fn state_of_a_changed_rule_is_refused() {
    let cfg = riskgate::config::load_str(
        &RATE
            .replace("kind = \"rate\"", "kind = \"accumulation\"")
            .replace("input = \"cumulative\"", "input = \"increment\""),
        std::path::Path::new("acc.toml"),
    )
    .unwrap();
    let mut e = Engine::new(&cfg);
    let refused = e.restore_rule_state(vec![
        (
            "rain-1h".into(),
            r#"{"input":"cumulative","base":null,"slots":[]}"#.into(),
        ),
        ("gone".into(), "{}".into()),
    ]);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].1.contains("`input` changed"), "{refused:?}");
    assert!(refused[1].1.contains("no rule"), "{refused:?}");
}
