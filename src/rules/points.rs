//! The point table: what the engine knows of every configured point now.
//!
//! Invariants: `value` is the last *good* value and is kept while the
//! quality is bad (the operator page shows it, greyed); `reported` turns true
//! with the first reading of any quality and never back, and until then no
//! rule reading the point judges (an unpolled point is not an alarm at every
//! restart). Rate rules read their window of good values from here, one
//! history per (point, window), pruned as each value arrives.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{BadReason, Quality, Reading, Value};

/// What the engine knows of a point now, for the operator page.
#[derive(Clone, Debug, PartialEq)]
pub struct PointState {
    pub id: String,
    pub value: Option<Value>,
    pub quality: Quality,
    pub last_good: Option<DateTime<Utc>>,
}

/// One configured point with its current state.
#[derive(Clone, Debug)]
pub struct PointInfo {
    pub name: String,
    pub unit: Option<String>,
    pub device: String,
    pub value: Option<Value>,
    pub quality: Quality,
    pub last_good: Option<DateTime<Utc>>,
    /// No good reading for this long turns the quality `Stale`.
    pub stale_after: Duration,
    /// Level of the point's stale and fault alarms.
    pub health_level: u8,
    /// A good reading since start-up: actions run only on such inputs.
    pub seen_good: bool,
    /// Any reading at all (good or bad) since start-up.
    pub reported: bool,
    pub is_text: bool,
    pub writable: bool,
}

impl PointInfo {
    /// A configured point before its first reading: no data, bad.
    pub fn new(name: String, unit: Option<String>, device: String, stale_after: Duration) -> Self {
        PointInfo {
            name,
            unit,
            device,
            value: None,
            quality: Quality::Bad(BadReason::NoData),
            last_good: None,
            stale_after,
            health_level: 2,
            seen_good: false,
            reported: false,
            is_text: false,
            writable: false,
        }
    }
}

/// Good values of one point over one rate window, oldest first.
pub type History = VecDeque<(DateTime<Utc>, f64)>;

#[derive(Debug, Default)]
pub struct Points {
    map: HashMap<String, PointInfo>,
    /// Per point, one history per distinct rate window reading it.
    histories: HashMap<String, Vec<(Duration, History)>>,
}

impl Points {
    pub fn insert(&mut self, id: String, info: PointInfo) {
        self.map.insert(id, info);
    }

    /// A rate rule reads `point` over `window`: keep that history.
    pub fn keep_history(&mut self, point: &str, window: Duration) {
        let hs = self.histories.entry(point.to_string()).or_default();
        if !hs.iter().any(|(w, _)| *w == window) {
            hs.push((window, History::new()));
        }
    }

    pub fn get(&self, id: &str) -> Option<&PointInfo> {
        self.map.get(id)
    }

    /// Point ids in order, so one tick raises its stale alarms in the same
    /// order every run.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn history(&self, point: &str, window: Duration) -> Option<&History> {
        self.histories
            .get(point)?
            .iter()
            .find(|(w, _)| *w == window)
            .map(|(_, h)| h)
    }

    /// Takes one reading in. Returns false for a point not in the table.
    pub fn apply(&mut self, r: &Reading) -> bool {
        let Some(p) = self.map.get_mut(&*r.point) else {
            return false;
        };
        p.quality = r.quality.clone();
        p.reported = true;
        if r.quality.is_good() {
            p.value = r.value.clone();
            p.last_good = Some(r.at);
            p.seen_good = true;
        }
        if let (true, Some(v), Some(hs)) = (
            r.quality.is_good(),
            r.value.as_ref().and_then(|v| v.as_f64()),
            self.histories.get_mut(&*r.point),
        ) {
            for (window, h) in hs {
                h.push_back((r.at, v));
                // Keep the newest value at or before the window's start, so
                // the change is measured over the whole window.
                let start = r.at - chrono::Duration::from_std(*window).unwrap_or_default();
                while h.len() > 2 && h[1].0 <= start {
                    h.pop_front();
                }
            }
        }
        true
    }

    /// Turns a good point stale when its last good value is too old.
    /// Returns whether the point is stale now (just turned, or still).
    pub fn check_stale(&mut self, id: &str, now: DateTime<Utc>) -> bool {
        let Some(p) = self.map.get_mut(id) else {
            return false;
        };
        let too_old = p.last_good.is_some_and(|t| {
            now - t > chrono::Duration::from_std(p.stale_after).unwrap_or_default()
        });
        if too_old && p.quality.is_good() {
            p.quality = Quality::Bad(BadReason::Stale);
        }
        too_old || matches!(p.quality, Quality::Bad(BadReason::Stale))
    }

    /// Latest value and quality of every point, sorted by point id.
    pub fn states(&self) -> Vec<PointState> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(k, p)| PointState {
                id: k.clone(),
                value: p.value.clone(),
                quality: p.quality.clone(),
                last_good: p.last_good,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The good value of a point; `None` while its quality is bad.
    pub fn good_value(&self, id: &str) -> Option<Value> {
        let p = self.map.get(id)?;
        if p.quality.is_good() {
            p.value.clone()
        } else {
            None
        }
    }
}
