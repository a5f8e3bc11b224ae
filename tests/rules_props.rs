//! Engine properties over random sequences of readings (good and bad),
//! device polls, acknowledgements, restarts and time passing (issue 10
//! item 12), with every event committed through the store as the gateway
//! commits it:
//! - bad quality never clears an alarm about that point;
//! - every `alarm_id` is raised once and cleared at most once, and nothing
//!   happens to an id that was never raised;
//! - `seq` stays gap-free (1, 2, 3, … in the store), across restarts.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use riskgate::model::{AlarmState, AlarmTransition, BadReason, Input, Quality, Reading, Value};
use riskgate::queue::{LoggedEvent, QueueId, Store};
use riskgate::rules::{Engine, Instance, Mono, Now};

const CONFIG: &str = r#"
[site]
id = "case"
kind = "coal_mine"
[gateway]
id = "gw-case"
data_dir = "/tmp/riskgate-rules-props-unused"
[[devices]]
id = "gd1"
protocol = "modbus_tcp"
host = "127.0.0.1"
stale_after = "2s"
offline_after = 2
  [[devices.points]]
  id = "a"
  register = "holding"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "b"
  register = "holding"
  address = 2
  type = "f32"
[[rules]]
id = "hi-a"
kind = "threshold"
point = "a"
op = ">="
value = 10
deadband = 1
on_delay = "300ms"
off_delay = "300ms"
level = 2
[[rules]]
id = "lo-b"
kind = "threshold"
point = "b"
op = "<="
value = 2
level = 3
latching = true
[[rules]]
id = "rise-a"
kind = "rate"
point = "a"
op = ">="
value = 5
window = "2s"
level = 3
[[rules]]
id = "both"
kind = "interlock"
when = "a > 5 && b < 5"
hold = "500ms"
level = 2
[[rules]]
id = "many"
kind = "escalation"
members = ["hi-a", "lo-b", "both"]
stages = [{ count = 2, count_level = 3, level = 2 }]
"#;

#[derive(Clone, Debug)]
enum Op {
    Good(usize, f64),
    Bad(usize, u8),
    Poll(bool),
    Tick(u64),
    Ack(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, -5.0..20.0f64).prop_map(|(p, v)| Op::Good(p, v)),
        2 => (0..2usize, 0..4u8).prop_map(|(p, r)| Op::Bad(p, r)),
        1 => any::<bool>().prop_map(Op::Poll),
        4 => (50..1500u64).prop_map(Op::Tick),
        1 => (0..8usize).prop_map(Op::Ack),
        1 => Just(Op::Restart),
    ]
}

/// What the test checks over a whole run.
#[derive(Default)]
struct Seen {
    raised: HashSet<String>,
    cleared: HashSet<String>,
    seq: u64,
}

impl Seen {
    fn check(&mut self, e: &Engine, store: &Store, ts: &[AlarmTransition]) {
        for t in ts {
            match t.state {
                AlarmState::Raised => assert!(
                    self.raised.insert(t.alarm_id.clone()),
                    "{} raised twice",
                    t.alarm_id
                ),
                AlarmState::Cleared => {
                    assert!(
                        self.raised.contains(&t.alarm_id),
                        "{} cleared, never raised",
                        t.alarm_id
                    );
                    assert!(
                        self.cleared.insert(t.alarm_id.clone()),
                        "{} cleared twice",
                        t.alarm_id
                    );
                    // Bad quality never clears an alarm about that point.
                    if let Some(p) = &t.point_id {
                        let q = e
                            .point_values()
                            .into_iter()
                            .find(|s| &s.id == p)
                            .map(|s| s.quality);
                        assert_eq!(
                            q,
                            Some(Quality::Good),
                            "{} cleared while {p} is bad",
                            t.alarm_id
                        );
                    }
                }
                AlarmState::Acknowledged | AlarmState::Escalated => {
                    assert!(
                        self.raised.contains(&t.alarm_id),
                        "{:?} of {}, never raised",
                        t.state,
                        t.alarm_id
                    );
                    assert!(
                        !self.cleared.contains(&t.alarm_id),
                        "{:?} of cleared {}",
                        t.state,
                        t.alarm_id
                    );
                }
            }
        }
        if ts.is_empty() {
            return;
        }
        let seqs = store
            .append_events(
                QueueId::Alarms,
                ts,
                |seq, t| LoggedEvent {
                    event_id: format!("p-{seq}"),
                    alarm_id: t.alarm_id.clone(),
                    at_ms: t.ts.timestamp_millis(),
                    body: serde_json::to_string(t).unwrap(),
                },
                &e.active_keyed(),
            )
            .unwrap();
        let want: Vec<u64> = (self.seq + 1..=self.seq + ts.len() as u64).collect();
        assert_eq!(seqs, want, "seq gap-free");
        self.seq += ts.len() as u64;
        assert_eq!(store.last_seq().unwrap(), self.seq);
    }
}

fn run(ops: &[Op]) {
    let cfg = riskgate::config::load_str(CONFIG, Path::new("props.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), u64::MAX, u64::MAX).unwrap();
    let mut e = Engine::new(&cfg);
    let mut seen = Seen::default();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap();
    let mut ms = 0u64;
    let points = ["a", "b"];
    for op in ops {
        let now = Now {
            wall: t0 + Duration::from_millis(ms),
            mono: Mono::from_millis(ms),
        };
        let reading = |p: usize, value: Option<Value>, quality: Quality| {
            Input::Readings(vec![Reading {
                point: Arc::from(points[p]),
                device: Arc::from("gd1"),
                value,
                quality,
                at: now.wall,
            }])
        };
        let out = match op {
            Op::Good(p, v) => e.handle(&reading(*p, Some(Value::Num(*v)), Quality::Good), now),
            Op::Bad(p, r) => {
                let why = match r {
                    0 => BadReason::Timeout,
                    1 => BadReason::Exception(2),
                    2 => BadReason::Decode("x".into()),
                    _ => BadReason::NoData,
                };
                e.handle(&reading(*p, None, Quality::Bad(why)), now)
            }
            Op::Poll(ok) => e.handle(
                &Input::DeviceHealth {
                    device: Arc::from("gd1"),
                    ok: *ok,
                    detail: "prop".into(),
                    at: now.wall,
                },
                now,
            ),
            Op::Tick(d) => {
                ms += d;
                let now = Now {
                    wall: t0 + Duration::from_millis(ms),
                    mono: Mono::from_millis(ms),
                };
                e.tick(now)
            }
            Op::Ack(i) => {
                let ids: Vec<String> = e
                    .active()
                    .filter(|a| a.acked_by.is_none())
                    .map(|a| a.alarm_id.clone())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                e.acknowledge(&ids[i % ids.len()], "prop", now.wall)
                    .unwrap()
            }
            Op::Restart => {
                // A restart takes time: the new engine starts a second
                // later. (An alarm_id carries its raise time to the
                // millisecond; across restarts it is unique as long as the
                // wall clock does not go back over a restart.)
                ms += 1000;
                let saved: Vec<Instance> = store.load_active().unwrap();
                assert_eq!(
                    saved.len(),
                    e.active().count(),
                    "the store holds every active alarm"
                );
                e = Engine::new(&cfg);
                e.restore(saved);
                continue;
            }
        };
        seen.check(&e, &store, &out.transitions);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn engine_invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 1..80)) {
        run(&ops);
    }
}
