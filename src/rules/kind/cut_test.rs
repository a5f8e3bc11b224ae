//! `cut_test`: the power-cut test of a calibration (标校断电测试). While an
//! operator's calibration window is open on a methane point and the test
//! gas reads at or above the cut value, the certified monitoring system
//! must show its power cut (the `cut` state point true) within `within`
//! (2 s: AQ 6201-2019 4.7.5, as cited in standards-research.md §1).
//!
//! The rule is judged only inside a window: outside one its condition is
//! false. It raises (kind `calibration`, the window's) when the test gas
//! has been over the cut value for `within` without the cut: a failed cut
//! test. The result, passed or failed, with the time the cut took, is also
//! noted on the window and goes out with its `cleared` event (the engine's
//! `calibration` module keeps that record).
//!
//! A bad cut point counts as not cut (the alarm side); a bad methane
//! reading decides nothing (the point's own alarm speaks for it).

use std::time::Duration;

use super::{CheckCtx, PointShape, Verdict, View, need_point};
use crate::config::Rule;
use crate::config::check::Errs;
use crate::rules::text;

/// The cut's time when `within` is not given: AQ 6201-2019 4.7.5.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq)]
pub struct CutTest {
    /// The methane point calibrated, then the cut state point.
    pub inputs: [String; 2],
    /// The cut value (断电值) the test gas is compared with.
    pub value: f64,
    pub within: Duration,
}

impl CutTest {
    pub fn point(&self) -> &str {
        &self.inputs[0]
    }

    pub fn cut(&self) -> &str {
        &self.inputs[1]
    }

    pub fn judge(&self, name: &str, view: &View<'_>) -> Option<Verdict> {
        let p = view.points.get(self.point())?;
        if !p.reported || !view.points.get(self.cut())?.reported {
            return None;
        }
        let w = humantime::format_duration(self.within).to_string();
        let mut facts = crate::model::Detail::new();
        facts.insert("cut_value".into(), serde_json::json!(self.value));
        facts.insert("within".into(), serde_json::json!(w));
        facts.insert("cut_point".into(), serde_json::json!(self.cut()));
        let outside = Verdict {
            on: false,
            off: true,
            value: None,
            threshold: Some(serde_json::json!(self.value)),
            detail: name.to_string(),
            facts: Some(facts.clone()),
        };
        if p.calibration.is_none() {
            return Some(outside);
        }
        let Some(x) = view
            .points
            .good_value(self.point())
            .and_then(|v| v.as_f64())
        else {
            return Some(Verdict {
                on: false,
                off: false,
                ..outside
            });
        };
        let cut = view
            .points
            .good_value(self.cut())
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let on = x >= self.value && !cut;
        facts.insert(
            "cut_test".into(),
            serde_json::json!(if on { "failed" } else { "pending" }),
        );
        Some(Verdict {
            on,
            off: !on,
            value: Some(serde_json::json!(x)),
            threshold: Some(serde_json::json!(self.value)),
            detail: text::cut_test_failed(&p.name, x, self.cut(), &w),
            facts: Some(facts),
        })
    }
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<CutTest> {
    let before = e.len();
    match need_point(r, p, ctx, e) {
        Some(PointShape::Number) | None => {}
        Some(_) => e.push(format!("{p}.point"), "the calibrated point must be numeric"),
    }
    let cut = match &r.cut {
        None => {
            e.push(
                format!("{p}.cut"),
                "required: the certified system's power-cut state point (true when cut)",
            );
            None
        }
        Some(c) => {
            match (ctx.point)(c) {
                Some(PointShape::Bool) => {}
                Some(_) => e.push(format!("{p}.cut"), format!("point `{c}` is not a bit")),
                None if !(ctx.point_known)(c) => {
                    e.push(format!("{p}.cut"), format!("no point `{c}` in any device"))
                }
                None => {}
            }
            Some(c.clone())
        }
    };
    let value = match r.value {
        None => {
            e.push(format!("{p}.value"), "required: the cut value (断电值)");
            None
        }
        Some(v) if !v.is_finite() => {
            e.push(format!("{p}.value"), "must be a finite number");
            None
        }
        Some(v) => Some(v),
    };
    let within = match r.within {
        None => DEFAULT_WITHIN,
        Some(w) if w.0.is_zero() || w.0 > Duration::from_secs(60) => {
            e.push(
                format!("{p}.within"),
                "between 0 and 60 s: the certified system cuts within 2 s",
            );
            DEFAULT_WITHIN
        }
        Some(w) => w.0,
    };
    for (f, given) in [
        ("op", r.op.is_some()),
        ("on_delay", r.on_delay.is_some()),
        ("recovery", r.recovery.is_some()),
        ("deadband", r.deadband.is_some()),
    ] {
        if given {
            e.push(
                format!("{p}.{f}"),
                "a cut test compares with `value` (≥) and waits `within`",
            );
        }
    }
    if e.len() != before {
        return None;
    }
    Some(CutTest {
        inputs: [r.point.clone()?, cut?],
        value: value?,
        within,
    })
}
