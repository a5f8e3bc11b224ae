//! `threshold`: a point's value against a limit, with a recovery value or
//! deadband so that a value hovering at the limit does not flap.
//!
//! Bad quality is judged as over the limit (fail safe). The rate and
//! accumulation kinds judge a change or a total the same way and share
//! `Limit`. A threshold may take its limit from a calendar (`schedule.rs`).

use chrono::{DateTime, Utc};

pub use super::limit::Limit;
use super::schedule::{self, Schedule};
use super::{CheckCtx, PointShape, Verdict, need_point};
use crate::config::check::Errs;
use crate::config::{Rule, RuleKindCfg};
use crate::rules::points::Points;
use crate::rules::text;

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub point: String,
    /// The limit; with a schedule, the one outside its periods.
    pub limit: Limit,
    pub schedule: Option<Schedule>,
}

impl Threshold {
    pub fn judge(&self, points: &Points, now: DateTime<Utc>) -> Option<Verdict> {
        let Some(s) = &self.schedule else {
            return judge_with(&self.limit, points, &self.point);
        };
        // The limit of the site's day at the judged moment; the message
        // and `detail` name the period.
        let (limit, period) = s.at(now);
        let mut v = judge_with(limit, points, &self.point)?;
        if let Some(name) = period {
            v.detail = text::in_period(&v.detail, name);
        }
        let mut f = crate::model::Detail::new();
        f.insert(
            "period".into(),
            serde_json::json!(period.unwrap_or("otherwise")),
        );
        v.facts = Some(f);
        Some(v)
    }
}

fn judge_with(limit: &Limit, points: &Points, point: &str) -> Option<Verdict> {
    let p = points.get(point)?;
    // Nothing reported since start-up: no judgement yet. A source that
    // did report, even `NoData` (an MQTT box silent since start), is
    // judged: bad is the alarm side.
    if !p.reported {
        return None;
    }
    if !p.quality.is_good() {
        return Some(limit.bad_input(p));
    }
    let x = p.value.as_ref().and_then(|v| v.as_f64())?;
    Some(limit.judge(p, x, ""))
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Threshold> {
    let (point, limit) = check_point_and_limit(r, p, ctx, e);
    let limit = limit?;
    let schedule = match &r.schedule {
        Some(periods) => {
            if r.recovery.is_some() {
                e.push(
                    format!("{p}.recovery"),
                    "a schedule takes `deadband` (applied to each period's value), not `recovery`",
                );
            }
            Some(schedule::check(periods, p, limit, r.deadband, ctx.tz, e)?)
        }
        None => None,
    };
    if let Some(rv) = r.recovery {
        let v = limit.value;
        let safe_side = if limit.op.is_high() { rv <= v } else { rv >= v };
        if !safe_side {
            e.push(
                format!("{p}.recovery"),
                format!(
                    "{rv} is on the alarm side of {} {v}: the alarm could never clear",
                    limit.op.symbol()
                ),
            );
        }
    }
    Some(Threshold {
        point: point?,
        limit,
        schedule,
    })
}

/// The part threshold and rate rules share: the point, `op`, `value`,
/// `recovery` or `deadband`. The limit is `None` when `op` or `value` is
/// missing, which ends the rule's check.
pub(super) fn check_point_and_limit(
    r: &Rule,
    p: &str,
    ctx: &CheckCtx<'_>,
    e: &mut Errs,
) -> (Option<String>, Option<Limit>) {
    if let Some(shape) = need_point(r, p, ctx, e) {
        let id = r.point.as_deref().unwrap_or_default();
        if shape != PointShape::Number
            && matches!(r.kind, RuleKindCfg::Rate | RuleKindCfg::Accumulation)
        {
            e.push(format!("{p}.point"), format!("point `{id}` is not numeric"));
        }
        if shape == PointShape::Text {
            e.push(
                format!("{p}.point"),
                format!("point `{id}` is text; thresholds need a number or bool"),
            );
        }
    }
    let point = r.point.clone();
    let Some(op) = r.op else {
        e.push(
            format!("{p}.op"),
            "required: one of \">=\", \">\", \"<=\", \"<\"",
        );
        return (point, None);
    };
    // With a schedule, `otherwise` is the limit outside its periods (the
    // threshold check builds the periods); `value` and `schedule` exclude
    // each other.
    let v = match (r.value, &r.schedule, r.otherwise) {
        (Some(v), None, None) => v,
        (None, Some(_), Some(o)) => o,
        (Some(_), Some(_), _) => {
            e.push(format!("{p}.value"), "give value or schedule, not both");
            return (point, None);
        }
        (None, Some(_), None) => {
            e.push(
                format!("{p}.otherwise"),
                "required with a schedule: the limit outside its periods",
            );
            return (point, None);
        }
        (_, None, Some(_)) => {
            e.push(
                format!("{p}.otherwise"),
                "only with a schedule; a fixed limit is `value`",
            );
            return (point, None);
        }
        (None, None, None) => {
            e.push(format!("{p}.value"), "required: the threshold");
            return (point, None);
        }
    };
    if !v.is_finite() {
        e.push(format!("{p}.value"), "must be a finite number");
    }
    if r.recovery.is_some() && r.deadband.is_some() {
        e.push(
            format!("{p}.deadband"),
            "give recovery or deadband, not both",
        );
    }
    if let Some(d) = r.deadband
        && !(d.is_finite() && d >= 0.0)
    {
        e.push(format!("{p}.deadband"), "must be zero or positive");
    }
    let clear_at = match (r.recovery, r.deadband) {
        (Some(rv), _) => rv,
        (None, Some(db)) if op.is_high() => v - db,
        (None, Some(db)) => v + db,
        (None, None) => v,
    };
    (
        point,
        Some(Limit {
            op,
            value: v,
            clear_at,
        }),
    )
}
