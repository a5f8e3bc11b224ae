//! `rate`: the change of a point's value over a time window against a
//! limit (e.g. a water level rising 0.5 m within 10 minutes).
//!
//! The change is the newest good value minus the newest good value at or
//! before the window's start (or the oldest one kept); the point table
//! keeps that history, and the store keeps it across restarts. With
//! `input = "cumulative"` the point is a counter: the change is the sum of
//! its steps, and a step back is a reset whose new value counts from 0, not
//! a fall. Bad quality is judged as over the limit.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::slots::step;
use super::threshold::{Limit, check_point_and_limit};
use super::{CheckCtx, Verdict};
use crate::config::check::Errs;
use crate::config::{InputKind, Rule};
use crate::rules::points::Points;
use crate::rules::text;

/// The longest rate window.
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub point: String,
    pub limit: Limit,
    pub window: Duration,
    /// The point is a counter (`input = "cumulative"`).
    pub counter: bool,
}

impl Rate {
    pub fn judge(&self, points: &Points, _now: DateTime<Utc>) -> Option<Verdict> {
        let p = points.get(&self.point)?;
        if !p.reported {
            return None;
        }
        if !p.quality.is_good() {
            return Some(self.limit.bad_input(p));
        }
        let h = points.history(&self.point, self.window)?;
        let (first, last) = (h.front()?, h.back()?);
        let change = if self.counter {
            h.iter()
                .zip(h.iter().skip(1))
                .map(|(a, b)| step(a.v, b.v))
                .sum()
        } else {
            last.v - first.v
        };
        let what = text::change_over(self.window);
        Some(self.limit.judge(p, change, &what))
    }
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Rate> {
    let (point, limit) = check_point_and_limit(r, p, ctx, e);
    let limit = limit?;
    let window = match &r.window {
        None => {
            e.push(
                format!("{p}.window"),
                "required for a rate rule: the time over which the change is measured",
            );
            None
        }
        Some(w) if w.0.is_zero() => {
            e.push(format!("{p}.window"), "must be greater than zero");
            None
        }
        // The engine keeps the point's good values over the window in
        // memory: a window of weeks at a fast poll is a memory leak.
        Some(w) if w.0 > MAX_WINDOW => {
            e.push(
                format!("{p}.window"),
                format!(
                    "at most {}: a longer trend belongs in the history, not in memory",
                    humantime::format_duration(MAX_WINDOW)
                ),
            );
            None
        }
        Some(w) => Some(w.0),
    };
    Some(Rate {
        point: point?,
        limit,
        window: window?,
        counter: r.input == Some(InputKind::Cumulative),
    })
}
