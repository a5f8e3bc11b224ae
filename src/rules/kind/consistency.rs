//! `consistency`: a condition like an interlock's that says two sources
//! disagree (e.g. the methane of the face and of the return airway), so the
//! events say `kind = "consistency"` and the operator looks at a sensor,
//! not at the work. Settings, check and judgement are the interlock's.

use super::interlock::{self, Condition};
use super::{CheckCtx, Verdict, View};
use crate::config::Rule;
use crate::config::check::Errs;

pub type Consistency = Condition;

pub fn judge(c: &Consistency, rule_name: &str, view: &View<'_>) -> Option<Verdict> {
    c.judge(rule_name, view)
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Consistency> {
    interlock::check(r, p, ctx, e)
}
