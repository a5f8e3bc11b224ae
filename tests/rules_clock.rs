//! The engine's durations run on the monotonic clock: a wall-clock step
//! (NTP correcting a box that booted with a wrong RTC, a technician setting
//! the time) neither raises nor clears anything early, and does not hold
//! back a stale or on-delay alarm. Wall time only stamps the events.
//!
//! Each test drives the engine's two clocks itself: monotonic time advances
//! in 100 ms ticks, and the wall clock jumps by −1 h or +1 h part-way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use riskgate::model::{AlarmState, Input, Quality, Reading, Value};
use riskgate::rules::{Engine, Mono, Now};

const CONFIG: &str = r#"
[site]
id = "case"
kind = "coal_mine"
[gateway]
id = "gw-case"
data_dir = "/tmp/riskgate-rules-clock-unused"
[http]
enabled = false
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "10s"
  [[devices.points]]
  id = "wind"
  register = "holding"
  address = 0
  type = "f32"
[[rules]]
id = "wind-low"
kind = "threshold"
point = "wind"
op = "<"
value = 0.25
deadband = 0.05
on_delay = "5s"
off_delay = "3s"
level = 2
"#;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap()
}

/// One scripted run: `values` are (monotonic ms, wind) readings, the wall
/// clock is stepped by `step` at monotonic `step_at` ms. Returns (monotonic
/// ms, rule, state) of every event until `end` ms.
fn run(
    values: &[(u64, f64)],
    step_at: u64,
    step: chrono::Duration,
    end: u64,
) -> Vec<(u64, String, AlarmState)> {
    let cfg = riskgate::config::load_str(CONFIG, Path::new("rules_clock.toml")).unwrap();
    let mut e = Engine::new(&cfg);
    let mut events = Vec::new();
    let mut mono = 0u64;
    while mono <= end {
        let wall = t0()
            + Duration::from_millis(mono)
            + if mono >= step_at {
                step
            } else {
                chrono::Duration::zero()
            };
        let now = Now {
            wall,
            mono: Mono::from_millis(mono),
        };
        let mut outs = Vec::new();
        for (_, v) in values.iter().filter(|(at, _)| *at == mono) {
            let r = Reading {
                point: Arc::from("wind"),
                device: Arc::from("gd1"),
                value: Some(Value::Num(*v)),
                quality: Quality::Good,
                at: wall,
            };
            outs.push(e.handle(&Input::Readings(vec![r]), now));
        }
        outs.push(e.tick(now));
        for out in outs {
            for t in out.transitions {
                // Events are stamped with the (stepped) wall clock.
                assert_eq!(t.ts, wall, "{} stamped with wall time", t.rule_id);
                events.push((mono, t.rule_id, t.state));
            }
        }
        mono += 100;
    }
    events
}

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

/// A point that stops reporting goes stale `stale_after` (10 s) after its
/// last good reading by the monotonic clock, whichever way the wall clock
/// jumps meanwhile: not an hour late (−1 h), not at once (+1 h).
#[test]
fn stale_alarm_on_time_across_wall_clock_steps() {
    for step in [hours(-1), hours(1)] {
        let ev = run(&[(0, 0.5)], 2_000, step, 16_000);
        assert_eq!(
            ev,
            vec![
                (10_100, "wind.stale".to_string(), AlarmState::Raised),
                // A stale input is the alarm side: the rule's 5 s on-delay
                // runs from there.
                (15_100, "wind-low".to_string(), AlarmState::Raised),
            ],
            "step {step}: stale 10 s after the last reading",
        );
    }
}

/// The on-delay (5 s) and off-delay (3 s) hold across a wall-clock step in
/// either direction: raised 5 s after the value went low, cleared 3 s after
/// it recovered, nothing earlier and nothing later.
#[test]
fn on_and_off_delays_on_time_across_wall_clock_steps() {
    // Low from 1 s (step at 3 s, inside the on-delay); recovered from 9 s
    // (readings every second keep the point fresh).
    let mut values: Vec<(u64, f64)> = (0..=20).map(|s| (s * 1000, 0.5)).collect();
    for v in values
        .iter_mut()
        .filter(|(at, _)| (1_000..9_000).contains(at))
    {
        v.1 = 0.1;
    }
    for step in [hours(-1), hours(1)] {
        let ev = run(&values, 3_000, step, 20_000);
        assert_eq!(
            ev,
            vec![
                (6_000, "wind-low".to_string(), AlarmState::Raised),
                (12_000, "wind-low".to_string(), AlarmState::Cleared),
            ],
            "step {step} inside the on-delay"
        );
        // The same with the step inside the off-delay.
        let ev = run(&values, 10_000, step, 20_000);
        assert_eq!(
            ev,
            vec![
                (6_000, "wind-low".to_string(), AlarmState::Raised),
                (12_000, "wind-low".to_string(), AlarmState::Cleared),
            ],
            "step {step} inside the off-delay"
        );
    }
}

/// One rule whose condition flips at every reading cannot send an event
/// storm: its instance lives at least the engine's minimum alarm life, and
/// the held clears are counted.
#[test]
fn a_flapping_rule_sends_no_event_storm() {
    let cfg = riskgate::config::load_str(
        &CONFIG.replace("on_delay = \"5s\"\noff_delay = \"3s\"\n", ""),
        Path::new("rules_clock.toml"),
    )
    .unwrap();
    let mut e = Engine::new(&cfg);
    let (mut events, mut held) = (0usize, 0u64);
    // 10 s of readings every 10 ms, alternating low and high.
    for i in 0..1_000u64 {
        let ms = i * 10;
        let now = Now {
            wall: t0() + Duration::from_millis(ms),
            mono: Mono::from_millis(ms),
        };
        let v = if i % 2 == 0 { 0.1 } else { 0.5 };
        let r = Reading {
            point: Arc::from("wind"),
            device: Arc::from("gd1"),
            value: Some(Value::Num(v)),
            quality: Quality::Good,
            at: now.wall,
        };
        for out in [e.handle(&Input::Readings(vec![r]), now), e.tick(now)] {
            events += out.transitions.len();
            held += out.clears_held;
        }
    }
    let min = riskgate::rules::lifecycle::MIN_ACTIVE.as_millis() as usize;
    // Without the minimum life: 1000 events. With it: one raise and one
    // clear per MIN_ACTIVE at most.
    assert!(
        events <= 2 * (10_000 / min + 1),
        "{events} events in 10 s from one rule"
    );
    assert!(events >= 2, "the rule still raises and clears: {events}");
    // Every instance had its clear held once (the last one is still active).
    assert_eq!(
        held as usize,
        events.div_ceil(2),
        "each held clear counted once"
    );
}
