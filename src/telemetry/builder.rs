//! The telemetry builder: what to send and when, from the readings, the
//! active alarm levels and the time it is given.
//!
//! Invariants: a snapshot carries every selected point; a change report
//! carries exactly the points whose value moved past their deadband (or
//! whose quality or alarm level changed) since they were last sent, and
//! comes at most every `min_interval`; statistics close with their period
//! and each reading counts in the period of its own time (a reading late
//! across a boundary counts in the new period). No message is larger than
//! `max_bytes` or holds more than 5000 entries: longer ones are split into
//! parts sharing one `ts`.
//!
//! A point inside an operator's calibration window (标校) whose reading is
//! good and fresh is sent as `calibrating`, with its value: the county
//! sees the test gas for what it is. A bad or stale reading keeps its own
//! quality (fail safe: a dead sensor is not excused by a window), and
//! readings of their own quality (`over_range`, `device_fault`) come as
//! the engine judged them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value as J, json};

use super::stats::{Acc, number, period_start};
use super::{Kind, Message};
use crate::config::{Config, Deadband, Telemetry};
use crate::model::{Reading, Value};
use crate::sink::uplink::contract::Identity;

/// The contract's size limit of one message (and the uplink's maximum
/// packet size).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The schema's `maxItems`.
const MAX_ITEMS: usize = 5000;
/// Room kept for everything but the entries: ids are at most 64
/// characters each, so the header is well under this.
const HEADER_BYTES: usize = 512;

/// The latest reading of a point.
#[derive(Clone, Debug)]
struct Latest {
    value: Option<Value>,
    quality: &'static str,
    at: DateTime<Utc>,
}

/// What the county was last sent for a point.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    value: Option<Value>,
    quality: &'static str,
    alarm: u8,
}

struct Slot {
    id: String,
    stale_after: Duration,
    deadband: Deadband,
    latest: Option<Latest>,
    sent: Option<Sent>,
    alarm: u8,
    /// Inside a calibration window.
    calibrating: bool,
    acc: Acc,
}

pub struct Builder {
    cfg: Telemetry,
    id: Identity,
    max_bytes: usize,
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    next_snapshot: DateTime<Utc>,
    last_change: Option<DateTime<Utc>>,
    /// The open statistics period, once the first reading or tick came.
    stats_start: Option<DateTime<Utc>>,
    /// Closed periods waiting for the next `tick`.
    pending: Vec<Message>,
}

impl Builder {
    /// The builder for a site's `[telemetry]`, or None without one.
    pub fn from_config(cfg: &Config, now: DateTime<Utc>) -> Option<Builder> {
        let t = cfg.telemetry.clone()?;
        let points = cfg
            .devices
            .iter()
            .flat_map(|d| d.points())
            .map(|p| (p.id.to_string(), p.stale_after))
            .collect();
        Some(Builder::new(t, Identity::from_config(cfg), points, now))
    }

    /// A builder over `points` (id, how long a reading stays fresh); the
    /// first snapshot is due one `interval` after `now`.
    pub fn new(
        cfg: Telemetry,
        id: Identity,
        points: Vec<(String, Duration)>,
        now: DateTime<Utc>,
    ) -> Builder {
        let slots: Vec<Slot> = points
            .into_iter()
            .filter(|(p, _)| cfg.selects(p))
            .map(|(p, stale_after)| Slot {
                deadband: cfg.deadband_for(&p),
                id: p,
                stale_after,
                latest: None,
                sent: None,
                alarm: 0,
                calibrating: false,
                acc: Acc::default(),
            })
            .collect();
        let index = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        Builder {
            next_snapshot: now + cfg.interval,
            cfg,
            id,
            max_bytes: MAX_MESSAGE_BYTES,
            slots,
            index,
            last_change: None,
            stats_start: None,
            pending: Vec::new(),
        }
    }

    /// A smaller size limit (tests of the splitting).
    pub fn with_max_bytes(mut self, max: usize) -> Builder {
        self.max_bytes = max;
        self
    }

    /// How many points are sent.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes readings in: the latest per point, and the statistics.
    pub fn on_readings(&mut self, rs: &[Reading]) {
        for r in rs {
            let Some(&i) = self.index.get(&*r.point) else {
                continue;
            };
            if let Some(p) = self.cfg.stats {
                self.roll_stats(r.at, p);
            }
            let s = &mut self.slots[i];
            s.acc.add(r);
            // A late reading does not replace a newer one.
            if s.latest.as_ref().is_some_and(|l| l.at > r.at) {
                continue;
            }
            s.latest = Some(Latest {
                value: if r.quality.is_good() {
                    r.value.clone()
                } else {
                    None
                },
                quality: r.quality.label(),
                at: r.at,
            });
        }
    }

    /// The active alarms as (point, level): each point's most severe
    /// (lowest) level, 0 for none.
    pub fn set_alarms<'a>(&mut self, active: impl IntoIterator<Item = (&'a str, u8)>) {
        for s in &mut self.slots {
            s.alarm = 0;
        }
        for (p, level) in active {
            if let Some(&i) = self.index.get(p) {
                let a = &mut self.slots[i].alarm;
                if *a == 0 || level < *a {
                    *a = level;
                }
            }
        }
    }

    /// The points inside a calibration window now (every other point is
    /// not): a good, fresh reading of theirs is sent as `calibrating`.
    pub fn set_calibrating<'a>(&mut self, points: impl IntoIterator<Item = &'a str>) {
        for s in &mut self.slots {
            s.calibrating = false;
        }
        for p in points {
            if let Some(&i) = self.index.get(p) {
                self.slots[i].calibrating = true;
            }
        }
    }

    /// The messages due at `now`, in the order they are to be sent:
    /// closed statistics, a snapshot when its time has come, then a change
    /// report.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Message> {
        if let Some(p) = self.cfg.stats {
            self.roll_stats(now, p);
        }
        let mut out = std::mem::take(&mut self.pending);
        if now >= self.next_snapshot {
            let items: Vec<J> = (0..self.slots.len())
                .map(|i| self.send_point(i, now))
                .collect();
            out.extend(self.split(Kind::Snapshot, now, items));
            // Keep the cadence; after a stall, the next one interval on.
            self.next_snapshot += self.cfg.interval;
            if self.next_snapshot <= now {
                self.next_snapshot = now + self.cfg.interval;
            }
        }
        let change_due = self.last_change.is_none_or(|t| {
            now - t >= chrono::Duration::from_std(self.cfg.min_interval).unwrap_or_default()
        });
        if change_due {
            let moved: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.moved(i, now))
                .collect();
            if !moved.is_empty() {
                let items = moved.into_iter().map(|i| self.send_point(i, now)).collect();
                out.extend(self.split(Kind::Change, now, items));
                self.last_change = Some(now);
            }
        }
        out
    }

    /// The quality a point has at `now`: its reading's, or `stale` when its
    /// good reading is older than its `stale_after`, or `calibrating` when
    /// it is good and fresh inside a calibration window.
    fn quality(s: &Slot, now: DateTime<Utc>) -> &'static str {
        match &s.latest {
            None => "no_data",
            Some(l)
                if l.quality == "good"
                    && (now - l.at).to_std().unwrap_or_default() > s.stale_after =>
            {
                "stale"
            }
            Some(l) if l.quality == "good" && s.calibrating => "calibrating",
            Some(l) => l.quality,
        }
    }

    fn current(&self, i: usize, now: DateTime<Utc>) -> Sent {
        let s = &self.slots[i];
        Sent {
            value: s.latest.as_ref().and_then(|l| l.value.clone()),
            quality: Self::quality(s, now),
            alarm: s.alarm,
        }
    }

    /// Whether point `i` moved since it was last sent.
    fn moved(&self, i: usize, now: DateTime<Utc>) -> bool {
        let s = &self.slots[i];
        let cur = self.current(i, now);
        let Some(sent) = &s.sent else {
            return s.latest.is_some();
        };
        if sent.quality != cur.quality || sent.alarm != cur.alarm {
            return true;
        }
        match (&sent.value, &cur.value) {
            (Some(Value::Num(a)), Some(Value::Num(b))) => s.deadband.exceeded(*a, *b),
            (a, b) => a != b,
        }
    }

    /// Point `i`'s entry, noted as sent.
    fn send_point(&mut self, i: usize, now: DateTime<Utc>) -> J {
        let cur = self.current(i, now);
        let s = &self.slots[i];
        let mut e = json!({
            "id": s.id,
            "v": cur.value.as_ref().map_or(J::Null, value),
            "q": cur.quality,
            "alarm": cur.alarm,
        });
        if let Some(l) = &s.latest {
            e["t"] = json!(self.id.time(l.at));
        }
        self.slots[i].sent = Some(cur);
        e
    }

    /// Closes the statistics period if `t` is past it.
    fn roll_stats(&mut self, t: DateTime<Utc>, period: Duration) {
        let p_ms = period.as_millis().max(1) as i64;
        let start = period_start(t, p_ms);
        let Some(open) = self.stats_start else {
            self.stats_start = Some(start);
            return;
        };
        if start <= open {
            return;
        }
        let items: Vec<J> = self
            .slots
            .iter_mut()
            .map(|s| {
                let e = s.acc.entry(&self.id, &s.id, open);
                s.acc = Acc::default();
                e
            })
            .collect();
        let end = open + chrono::Duration::milliseconds(p_ms);
        let msgs = self.split(Kind::Stats5m, end, items);
        self.pending.extend(msgs);
        self.stats_start = Some(start);
    }

    /// One message, or parts of at most `max_bytes` and 5000 entries.
    fn split(&self, kind: Kind, ts: DateTime<Utc>, items: Vec<J>) -> Vec<Message> {
        let budget = self.max_bytes.saturating_sub(HEADER_BYTES).max(1);
        let mut groups: Vec<Vec<J>> = vec![Vec::new()];
        let mut size = 0;
        for it in items {
            // The entry and its comma.
            let n = it.to_string().len() + 1;
            let g = groups.last_mut().expect("a group");
            if !g.is_empty() && (size + n > budget || g.len() >= MAX_ITEMS) {
                groups.push(Vec::new());
                size = 0;
            }
            size += n;
            groups.last_mut().expect("a group").push(it);
        }
        let parts = groups.len();
        groups
            .into_iter()
            .enumerate()
            .map(|(i, items)| Message {
                kind,
                ts,
                part: (parts > 1).then_some((i + 1, parts)),
                items,
            })
            .collect()
    }
}

/// A value as the contract's JSON: numbers, booleans, text.
fn value(v: &Value) -> J {
    match v {
        Value::Num(x) => number(*x),
        Value::Bool(b) => J::Bool(*b),
        Value::Text(t) => J::String(t.clone()),
    }
}

#[cfg(test)]
mod tests;
