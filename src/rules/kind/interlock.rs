//! `interlock`: a condition over points and other rules' alarms that must
//! not hold, e.g. `face_1301.working && !video_1301.present` (no work
//! without video). The condition language is `rules::expr`.
//!
//! An unknown result (a bad input) counts as the alarm side. The rule is
//! judged only once every point it reads has reported since start-up.

use super::{CheckCtx, PointShape, Verdict, View};
use crate::config::Rule;
use crate::config::check::Errs;
use crate::rules::expr::{self, Expr};
use crate::rules::text;

/// A parsed and type-checked condition, with the points it reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub when: Expr,
    /// Point ids `when` reads, sorted, each once.
    pub points: Vec<String>,
}

pub type Interlock = Condition;

impl Condition {
    pub fn judge(&self, rule_name: &str, view: &View<'_>) -> Option<Verdict> {
        // Before every input has reported, `unknown` would only mean "not
        // polled yet" and raise at every restart.
        if self
            .points
            .iter()
            .any(|p| !view.points.get(p).is_some_and(|x| x.reported))
        {
            return None;
        }
        let r = expr::eval(&self.when, view);
        // Unknown (a bad input) counts as the alarm side.
        let on = r != Some(false);
        let detail = match r {
            None => text::condition_unknown(rule_name),
            _ => rule_name.to_string(),
        };
        Some(Verdict {
            on,
            off: !on,
            value: None,
            threshold: None,
            detail,
            facts: None,
        })
    }
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Condition> {
    let Some(src) = &r.when else {
        e.push(
            format!("{p}.when"),
            "required: the condition, e.g. face_1301.working && !video_1301.present",
        );
        return None;
    };
    condition(src, &format!("{p}.when"), ctx, e)
}

/// Parses and type-checks a condition written at `path` (an interlock's
/// `when`, a tamper rule's `working`).
pub fn condition(src: &str, path: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Condition> {
    let when = match expr::parse(src) {
        Ok(x) => x,
        Err(m) => {
            e.push(path.to_string(), m.to_string());
            return None;
        }
    };
    let ty = |id: &str| -> Option<expr::Ty> {
        (ctx.point)(id).map(|s| match s {
            PointShape::Number => expr::Ty::Num,
            PointShape::Bool | PointShape::Text => expr::Ty::Bool,
        })
    };
    let problems = expr::check(&when, &ty, ctx.point_known, ctx.rule_exists);
    for m in &problems {
        e.push(path.to_string(), m.to_string());
    }
    if !problems.is_empty() {
        return None;
    }
    let points = expr::point_refs(&when);
    Some(Condition { when, points })
}
