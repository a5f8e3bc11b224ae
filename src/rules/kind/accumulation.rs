//! `accumulation`: a point's total over a sliding window (rain in the last
//! hour) or since the start of the local day (the rain day, 08:00 to 08:00)
//! against a limit (contract 1.1 kind `accumulation`).
//!
//! The readings are amounts (`input = "increment"`: SL 651 PJ, one value of
//! a DRP series) or a running total (`"cumulative"`: PT, a tipping-bucket
//! counter; a step back is a reset). They are summed in 5-minute slots by
//! their own observation time (`slots.rs`), so a late report fills its own
//! slot. The slots are the rule's memory: the engine keeps one per rule,
//! hands it to the store through the engine task, and takes it back at
//! start-up, so a restart loses no rain.
//!
//! Bad quality is judged as over the limit (fail safe), as for thresholds.
//! The event's `detail` carries the window and the total.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::slots::{SLOT_MS, Slots};
use super::threshold::{Limit, check_point_and_limit};
use super::{CheckCtx, Verdict};
use crate::config::check::Errs;
use crate::config::{InputKind, Rule};
use crate::model::Detail;
use crate::rules::points::Points;
use crate::rules::text;

/// The longest sliding window, and the length of a day.
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

/// What the total is taken over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Span {
    /// The last `window`, a whole number of slots.
    Sliding(Duration),
    /// Since the latest local `day_start` (the rain day starts at 08:00).
    Day(NaiveTime),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Accumulation {
    pub point: String,
    pub input: InputKind,
    pub span: Span,
    pub limit: Limit,
    /// The site's zone: where the day starts.
    pub tz: Tz,
}

impl Accumulation {
    /// How far back the memory must reach: the window, or a whole day,
    /// plus the slot a window's start may cut.
    pub fn horizon(&self) -> Duration {
        let w = match self.span {
            Span::Sliding(w) => w,
            Span::Day(_) => MAX_WINDOW,
        };
        w + Duration::from_millis(SLOT_MS as u64)
    }

    /// The most slots the memory keeps: the horizon, and as many again for
    /// readings stamped ahead of the gateway's clock.
    pub fn max_slots(&self) -> usize {
        2 * (self.horizon().as_millis() as usize / SLOT_MS as usize) + 2
    }

    pub fn memory(&self) -> Slots {
        Slots::new(self.input)
    }

    /// Where the window starts at `now` (ms since the epoch): the slots
    /// ending after it count.
    pub fn start(&self, now: DateTime<Utc>) -> i64 {
        match self.span {
            Span::Sliding(w) => now.timestamp_millis() - w.as_millis() as i64,
            Span::Day(at) => day_start(self.tz, at, now).timestamp_millis(),
        }
    }

    /// `1h`, or `day@08:00`: the window as the event's `detail` names it.
    pub fn window_label(&self) -> String {
        match self.span {
            Span::Sliding(w) => humantime::format_duration(w).to_string(),
            Span::Day(at) => format!("day@{}", at.format("%H:%M")),
        }
    }

    fn what(&self) -> String {
        match self.span {
            Span::Sliding(w) => text::total_over(&humantime::format_duration(w).to_string()),
            Span::Day(at) => text::total_over(&format!("日({}起)", at.format("%H:%M"))),
        }
    }

    pub fn judge(&self, points: &Points, memory: &Slots, now: DateTime<Utc>) -> Option<Verdict> {
        let p = points.get(&self.point)?;
        if !p.reported {
            return None;
        }
        let mut facts = Detail::new();
        facts.insert("window".into(), self.window_label().into());
        if !p.quality.is_good() {
            let mut v = self.limit.bad_input(p);
            v.facts = Some(facts);
            return Some(v);
        }
        let total = memory.total(self.start(now), now.timestamp_millis());
        facts.insert("total".into(), serde_json::json!(total));
        if let Some(u) = &p.unit {
            facts.insert("unit".into(), u.clone().into());
        }
        let mut v = self.limit.judge(p, total, &self.what());
        v.facts = Some(facts);
        Some(v)
    }
}

/// The latest local `at` at or before `now`.
pub fn day_start(tz: Tz, at: NaiveTime, now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    for day in [
        local,
        local - chrono::Days::new(1),
        local - chrono::Days::new(2),
    ] {
        // A start inside a daylight-saving gap does not exist that day:
        // the first moment after it is taken.
        let t = tz
            .from_local_datetime(&day.and_time(at))
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(day.and_time(at) + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc));
        if let Some(t) = t.filter(|t| *t <= now) {
            return t;
        }
    }
    now - chrono::Duration::days(1)
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Accumulation> {
    let (point, limit) = check_point_and_limit(r, p, ctx, e);
    let input = match r.input {
        Some(i) => Some(i),
        None => {
            e.push(
                format!("{p}.input"),
                "required for an accumulation rule: \"increment\" (each reading is an amount, \
                 e.g. SL 651 PJ or a DRP value) or \"cumulative\" (a running total, e.g. PT)",
            );
            None
        }
    };
    let span = match (&r.window, &r.day_start) {
        (Some(_), Some(_)) => {
            e.push(
                format!("{p}.day_start"),
                "give window (sliding) or day_start (the day's total), not both",
            );
            None
        }
        (None, None) => {
            e.push(
                format!("{p}.window"),
                "required: a sliding window such as \"1h\", or day_start = \"08:00\" for the rain day",
            );
            None
        }
        (Some(w), None) => check_window(w.0, p, e).map(Span::Sliding),
        (None, Some(d)) => check_day_start(d, p, e).map(Span::Day),
    };
    Some(Accumulation {
        point: point?,
        input: input?,
        span: span?,
        limit: limit?,
        tz: ctx.tz,
    })
}

fn check_window(w: Duration, p: &str, e: &mut Errs) -> Option<Duration> {
    let slot = Duration::from_millis(SLOT_MS as u64);
    if w < slot || w > MAX_WINDOW || !w.as_millis().is_multiple_of(slot.as_millis()) {
        e.push(
            format!("{p}.window"),
            format!(
                "`{}`: a whole number of 5 minutes from 5m to 24h (rain is kept in 5-minute slots)",
                humantime::format_duration(w)
            ),
        );
        return None;
    }
    Some(w)
}

fn check_day_start(s: &str, p: &str, e: &mut Errs) -> Option<NaiveTime> {
    match NaiveTime::parse_from_str(s, "%H:%M") {
        Ok(t) if t.minute() % 5 == 0 => Some(t),
        Ok(_) => {
            e.push(
                format!("{p}.day_start"),
                format!("`{s}`: on a 5-minute boundary (rain is kept in 5-minute slots)"),
            );
            None
        }
        Err(_) => {
            e.push(
                format!("{p}.day_start"),
                format!("`{s}` is not a time of day HH:MM, e.g. \"08:00\""),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rain day runs from 08:00 to 08:00 in the site's zone: at 07:59
    /// Shanghai time it started the day before, at 08:00 it starts anew.
    #[test]
    fn the_rain_day_starts_at_eight_local() {
        let tz = chrono_tz::Asia::Shanghai;
        let eight = NaiveTime::from_hms_opt(8, 0, 0).unwrap();
        let local = |d, h, m| {
            tz.with_ymd_and_hms(2026, 7, d, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(day_start(tz, eight, local(15, 7, 59)), local(14, 8, 0));
        assert_eq!(day_start(tz, eight, local(15, 8, 0)), local(15, 8, 0));
        assert_eq!(day_start(tz, eight, local(15, 23, 0)), local(15, 8, 0));
        // 08:00 in Shanghai is 00:00 UTC
        assert_eq!(local(15, 8, 0).format("%H:%M").to_string(), "00:00");
    }
}
