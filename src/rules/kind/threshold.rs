//! `threshold`: a point's value against a limit, with a recovery value or
//! deadband so that a value hovering at the limit does not flap.
//!
//! Bad quality is judged as over the limit (fail safe). The rate kind
//! judges a change the same way and shares `Limit`.

use chrono::{DateTime, Utc};

use super::{CheckCtx, PointShape, Verdict, need_point};
use crate::config::check::Errs;
use crate::config::{Cmp, Rule, RuleKindCfg};
use crate::rules::points::{PointInfo, Points};
use crate::rules::text;

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub point: String,
    pub limit: Limit,
}

/// A comparison with its way back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub op: Cmp,
    pub value: f64,
    /// The value the judged number must come back past to clear: the
    /// `recovery`, `value ∓ deadband`, or the value itself.
    pub clear_at: f64,
}

impl Limit {
    /// The verdict on a point whose quality is bad: over the limit.
    pub fn bad_input(&self, p: &PointInfo) -> Verdict {
        Verdict {
            on: true,
            off: false,
            value: None,
            threshold: Some(serde_json::json!(self.value)),
            detail: text::bad_input_as_over(&p.name, p.quality.label()),
        }
    }

    /// The verdict on the number `x` judged for point `p`; `what` says what
    /// the number is (empty for the value itself).
    pub fn judge(&self, p: &PointInfo, x: f64, what: &str) -> Verdict {
        let on = self.op.holds(x, self.value);
        let high = self.op.is_high();
        let off = if high {
            x < self.clear_at
        } else {
            x > self.clear_at
        };
        // A clear message shows the recovery value it passed.
        let (sym, limit) = match (off, high) {
            (true, true) => ("<", self.clear_at),
            (true, false) => (">", self.clear_at),
            (false, _) => (self.op.symbol(), self.value),
        };
        let unit = p.unit.as_deref().unwrap_or_default();
        Verdict {
            on,
            off,
            value: Some(serde_json::json!(x)),
            threshold: Some(serde_json::json!(self.value)),
            detail: text::limit(&p.name, what, x, unit, sym, limit),
        }
    }
}

impl Threshold {
    pub fn judge(&self, points: &Points, _now: DateTime<Utc>) -> Option<Verdict> {
        let p = points.get(&self.point)?;
        // Nothing reported since start-up: no judgement yet. A source that
        // did report, even `NoData` (an MQTT box silent since start), is
        // judged: bad is the alarm side.
        if !p.reported {
            return None;
        }
        if !p.quality.is_good() {
            return Some(self.limit.bad_input(p));
        }
        let x = p.value.as_ref().and_then(|v| v.as_f64())?;
        Some(self.limit.judge(p, x, ""))
    }
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Threshold> {
    let (point, limit) = check_point_and_limit(r, p, ctx, e);
    let limit = limit?;
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
        if shape != PointShape::Number && r.kind == RuleKindCfg::Rate {
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
    let Some(v) = r.value else {
        e.push(format!("{p}.value"), "required: the threshold");
        return (point, None);
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
