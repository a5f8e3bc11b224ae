//! One point's statistics over one period: min / max / mean of the good
//! numeric readings, how many readings came and how many were bad.

use chrono::{DateTime, Utc};
use serde_json::{Value as J, json};

use crate::model::Reading;
use crate::sink::uplink::contract::Identity;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Acc {
    min: f64,
    max: f64,
    sum: f64,
    /// Good readings with a number (bools count as 0/1, text does not).
    good: u64,
    count: u64,
    bad: u64,
}

impl Acc {
    pub fn add(&mut self, r: &Reading) {
        self.count += 1;
        if !r.quality.is_good() {
            self.bad += 1;
            return;
        }
        if let Some(v) = r.value.as_ref().and_then(|v| v.as_f64()) {
            if self.good == 0 {
                (self.min, self.max) = (v, v);
            } else {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
            }
            self.sum += v;
            self.good += 1;
        }
    }

    /// The contract's `stats` entry; min/max/mean null without a good
    /// numeric reading.
    pub fn entry(&self, id: &Identity, point: &str, start: DateTime<Utc>) -> J {
        let num = |x: f64| {
            if self.good == 0 { J::Null } else { number(x) }
        };
        json!({
            "id": point,
            "start": id.time(start),
            "min": num(self.min),
            "max": num(self.max),
            "mean": num(if self.good == 0 { 0.0 } else { self.sum / self.good as f64 }),
            "count": self.count,
            "bad": self.bad,
        })
    }
}

/// The start of the period that holds `t` (periods are aligned to the
/// epoch, so 5-minute periods start at :00, :05, … of the clock).
pub(super) fn period_start(t: DateTime<Utc>, period_ms: i64) -> DateTime<Utc> {
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(period_ms)).unwrap_or(t)
}

/// A number in its shortest form: a value that came from a 32-bit float
/// register is written as that float's shortest decimal (`0.3`, not
/// `0.30000001192092896`), which loses nothing the device sent and saves
/// about 12 bytes a point.
pub(super) fn number(x: f64) -> J {
    let f = x as f32;
    let x = if f as f64 == x && f.is_finite() {
        f.to_string().parse::<f64>().unwrap_or(x)
    } else {
        x
    };
    serde_json::Number::from_f64(x).map_or(J::Null, J::Number)
}
