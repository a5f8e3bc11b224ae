//! The rule kinds, one file each. A kind file holds three things that belong
//! together: its typed settings (what validation proved about the rule as
//! written), the check that builds them from the raw `[[rules]]` entry, and
//! its one judging function.
//!
//! Adding a kind: a file here, a variant of `KindSpec` (and of the raw
//! `RuleKindCfg` name), and the arms the compiler then asks for in this file.

pub mod accumulation;
pub mod consistency;
pub mod cut_test;
pub mod escalation;
pub mod interlock;
pub mod limit;
pub mod rate;
pub mod schedule;
pub mod slots;
pub mod tamper;
pub mod threshold;
pub mod unacked;

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::alarms::Alarms;
use super::expr::Env;
use super::points::Points;
use crate::config::check::Errs;
use crate::config::{ActionCfg, Dur, InputKind, Rule, RuleKindCfg};
use crate::model::{AlarmKind, Value};

/// A rule as validation proved it: every default applied, every reference
/// resolved, nothing left for the engine to re-check.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    pub id: String,
    /// The `name` as written, or the id.
    pub name: String,
    /// 1 red … 4 blue; an escalation rule's least severe stage.
    pub level: u8,
    pub latching: bool,
    /// How long the condition must hold before the alarm is raised (an
    /// interlock's `hold` is folded in here).
    pub on_delay: Duration,
    pub off_delay: Duration,
    pub actions: Vec<ActionCfg>,
    /// Escalation of the alarm while nobody acknowledges it.
    pub escalate: Option<unacked::Unacked>,
    pub kind: KindSpec,
}

/// The closed set of rule kinds, each with only its own settings.
#[derive(Clone, Debug, PartialEq)]
pub enum KindSpec {
    Threshold(threshold::Threshold),
    Rate(rate::Rate),
    Interlock(interlock::Interlock),
    Consistency(consistency::Consistency),
    Escalation(escalation::Escalation),
    Accumulation(accumulation::Accumulation),
    Tamper(tamper::Tamper),
    CutTest(cut_test::CutTest),
}

impl KindSpec {
    /// The `kind` the rule's alarm events carry.
    pub fn alarm_kind(&self) -> AlarmKind {
        match self {
            KindSpec::Threshold(_) => AlarmKind::Threshold,
            KindSpec::Rate(_) => AlarmKind::Rate,
            KindSpec::Interlock(_) => AlarmKind::Interlock,
            KindSpec::Consistency(_) => AlarmKind::Consistency,
            KindSpec::Escalation(_) => AlarmKind::Escalation,
            KindSpec::Accumulation(_) => AlarmKind::Accumulation,
            KindSpec::Tamper(_) => AlarmKind::Tamper,
            // Judged only inside a calibration window: the window's kind.
            KindSpec::CutTest(_) => AlarmKind::Calibration,
        }
    }

    /// Points the rule reads; a reading of one of them re-judges the rule.
    pub fn inputs(&self) -> &[String] {
        match self {
            KindSpec::Threshold(t) => std::slice::from_ref(&t.point),
            KindSpec::Rate(r) => std::slice::from_ref(&r.point),
            KindSpec::Accumulation(a) => std::slice::from_ref(&a.point),
            KindSpec::Interlock(c) | KindSpec::Consistency(c) => &c.points,
            KindSpec::Tamper(t) => &t.inputs,
            KindSpec::CutTest(c) => &c.inputs,
            KindSpec::Escalation(_) => &[],
        }
    }

    /// The one point the rule's alarm is about (the event's `point_id`).
    pub fn subject(&self) -> Option<&str> {
        match self {
            KindSpec::Tamper(t) => t.subject(),
            KindSpec::CutTest(c) => Some(c.point()),
            _ => match self.inputs() {
                [one] => Some(one),
                _ => None,
            },
        }
    }

    /// The point whose good values the rule needs over a window, if any.
    pub fn history(&self) -> Option<(&str, Duration)> {
        match self {
            KindSpec::Rate(r) => Some((&r.point, r.window)),
            KindSpec::Tamper(t) => t.history(),
            _ => None,
        }
    }

    /// Judges a condition rule now. `None`: no judgement yet (an input has
    /// not reported since start-up), or a kind judged in its own pass
    /// (escalation, which counts the other rules' alarms).
    pub fn judge(&self, name: &str, view: &View<'_>, now: DateTime<Utc>) -> Option<Verdict> {
        match self {
            KindSpec::Threshold(t) => t.judge(view.points, now),
            KindSpec::Rate(r) => r.judge(view.points, now),
            KindSpec::Interlock(c) => c.judge(name, view),
            KindSpec::Consistency(c) => consistency::judge(c, name, view),
            KindSpec::Accumulation(a) => a.judge(view.points, view.memory?, now),
            KindSpec::Tamper(t) => t.judge(name, view),
            KindSpec::CutTest(c) => c.judge(name, view),
            KindSpec::Escalation(_) => None,
        }
    }
}

/// What a condition rule says at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The alarm condition holds.
    pub on: bool,
    /// The clear condition holds (past the recovery value, or the
    /// condition false). Neither may hold: inside the deadband.
    pub off: bool,
    pub value: Option<serde_json::Value>,
    pub threshold: Option<serde_json::Value>,
    /// The part of the message that says what was seen.
    pub detail: String,
    /// Kind-specific facts for the event's `detail` (contract 1.1).
    pub facts: Option<crate::model::Detail>,
}

/// What a rule may read: the point table and the active alarms.
pub struct View<'a> {
    pub points: &'a Points,
    pub alarms: &'a Alarms,
    /// The judged rule's own memory (an accumulation rule's slots).
    pub memory: Option<&'a slots::Slots>,
    /// The moment judged, on the monotonic clock (a window's span).
    pub mono: crate::time::Mono,
    /// Whether a device is offline now (its failed polls reached
    /// `offline_after`).
    pub offline: &'a dyn Fn(&str) -> bool,
}

impl Env for View<'_> {
    fn point(&self, id: &str) -> Option<Value> {
        self.points.good_value(id)
    }
    fn active(&self, rule_id: &str) -> bool {
        self.alarms.contains(rule_id)
    }
}

/// What a point is, as far as a rule check cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointShape {
    Number,
    Bool,
    Text,
}

/// What a rule check may ask of the rest of the config.
pub struct CheckCtx<'a> {
    /// The shape of a point of a device that parsed; `None` otherwise.
    pub point: &'a dyn Fn(&str) -> Option<PointShape>,
    /// Whether a point id exists at all, also in a device that failed to
    /// parse (its own errors are reported; this rule's need not be).
    pub point_known: &'a dyn Fn(&str) -> bool,
    pub rule_exists: &'a dyn Fn(&str) -> bool,
    pub device_known: &'a dyn Fn(&str) -> bool,
    /// The site's zone: calendars and days are the site's.
    pub tz: chrono_tz::Tz,
}

/// Checks one raw rule (path `p`, e.g. `rules[3]`) and, when it has no
/// error, returns it typed. Every problem goes to `e`.
pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<RuleSpec> {
    let before = e.len();
    if r.kind != RuleKindCfg::Escalation && !(1..=4).contains(&r.level) {
        let m = if r.level == 0 {
            "required: 1 (red) to 4 (blue)".to_string()
        } else {
            format!("{} is not a level; levels are 1 (red) to 4 (blue)", r.level)
        };
        e.push(format!("{p}.level"), m);
    }
    let kind = match r.kind {
        RuleKindCfg::Threshold => threshold::check(r, p, ctx, e).map(KindSpec::Threshold),
        RuleKindCfg::Rate => rate::check(r, p, ctx, e).map(KindSpec::Rate),
        RuleKindCfg::Interlock => interlock::check(r, p, ctx, e).map(KindSpec::Interlock),
        RuleKindCfg::Consistency => consistency::check(r, p, ctx, e).map(KindSpec::Consistency),
        RuleKindCfg::Escalation => escalation::check(r, p, ctx, e).map(KindSpec::Escalation),
        RuleKindCfg::Accumulation => accumulation::check(r, p, ctx, e).map(KindSpec::Accumulation),
        RuleKindCfg::Tamper => tamper::check(r, p, ctx, e).map(KindSpec::Tamper),
        RuleKindCfg::CutTest => cut_test::check(r, p, ctx, e).map(KindSpec::CutTest),
    };
    let escalate = match (&r.escalate, r.kind) {
        (Some(_), RuleKindCfg::Escalation) => {
            e.push(
                format!("{p}.escalate"),
                "an escalation rule escalates by its stages",
            );
            None
        }
        (Some(c), _) => unacked::check(c, r.level, p, e),
        (None, _) => None,
    };
    refuse_foreign_fields(r, p, e);
    for (f, d) in [
        ("on_delay", &r.on_delay),
        ("off_delay", &r.off_delay),
        ("hold", &r.hold),
    ] {
        if let Some(d) = d
            && d.0.as_secs() > 86_400
        {
            e.push(
                format!("{p}.{f}"),
                "longer than a day: probably a unit mistake",
            );
        }
    }
    let kind = kind.filter(|_| e.len() == before)?;
    let level = match &kind {
        KindSpec::Escalation(x) => x.first_level(),
        _ => r.level,
    };
    let on_delay = match &kind {
        // `hold` is the interlock's word for the on-delay; the longer wins.
        KindSpec::Interlock(_) | KindSpec::Consistency(_) => dur(r.hold).max(dur(r.on_delay)),
        // The cut must show within `within`: the failure waits that long.
        KindSpec::CutTest(c) => c.within,
        _ => dur(r.on_delay),
    };
    Some(RuleSpec {
        id: r.id.clone(),
        name: r.name.clone().unwrap_or_else(|| r.id.clone()),
        level,
        latching: r.latching,
        on_delay,
        off_delay: dur(r.off_delay),
        actions: r.actions.clone(),
        escalate,
        kind,
    })
}

/// Fields of another kind are refused rather than ignored: a schedule on
/// a rate rule would otherwise look like it works.
fn refuse_foreign_fields(r: &Rule, p: &str, e: &mut Errs) {
    let k = r.kind;
    if k != RuleKindCfg::Tamper {
        tamper::refuse_on_other_kinds(r, p, e);
        if r.within.is_some() && k != RuleKindCfg::CutTest {
            e.push(
                format!("{p}.within"),
                "only tamper (test_gas) and cut_test rules take this field",
            );
        }
    }
    if k != RuleKindCfg::CutTest && r.cut.is_some() {
        e.push(format!("{p}.cut"), "only a cut_test rule takes this field");
    }
    if k != RuleKindCfg::Threshold {
        for (f, given) in [
            ("schedule", r.schedule.is_some()),
            ("otherwise", r.otherwise.is_some()),
        ] {
            if given {
                e.push(format!("{p}.{f}"), "only a threshold rule takes a schedule");
            }
        }
    }
    if k != RuleKindCfg::Accumulation && r.day_start.is_some() {
        e.push(
            format!("{p}.day_start"),
            "only an accumulation rule has a day",
        );
    }
    match (k, r.input) {
        (RuleKindCfg::Accumulation, _) | (_, None) => {}
        (RuleKindCfg::Rate, Some(InputKind::Cumulative)) => {}
        (RuleKindCfg::Rate, Some(InputKind::Increment)) => e.push(
            format!("{p}.input"),
            "a total of amounts is an accumulation rule; a rate rule takes \"cumulative\" (a counter whose step back is a reset) or nothing",
        ),
        (_, Some(_)) => e.push(
            format!("{p}.input"),
            "only accumulation and rate rules read amounts or running totals",
        ),
    }
}

fn dur(d: Option<Dur>) -> Duration {
    d.map(|d| d.0).unwrap_or_default()
}

/// The point a threshold or rate rule reads, checked; its shape when known.
fn need_point(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<PointShape> {
    match &r.point {
        None => {
            e.push(
                format!("{p}.point"),
                format!("required for a {:?} rule", r.kind).to_lowercase(),
            );
            None
        }
        Some(id) => {
            let shape = (ctx.point)(id);
            if shape.is_none() && !(ctx.point_known)(id) {
                e.push(
                    format!("{p}.point"),
                    format!("no point `{id}` in any device"),
                );
            }
            shape
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::Cmp;
    use crate::rules::expr::Expr;

    fn specs(rules: &str) -> Vec<RuleSpec> {
        let text = format!(
            r#"
[site]
id = "s"
kind = "coal_mine"
[gateway]
id = "g"
[[devices]]
id = "d"
protocol = "modbus_tcp"
host = "127.0.0.1"
  [[devices.points]]
  id = "ch4"
  register = "holding"
  address = 0
  type = "f32"
  [[devices.points]]
  id = "run"
  register = "coil"
  address = 0
{rules}"#
        );
        crate::config::load_str(&text, Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("{e:?}"))
            .rule_specs
    }

    /// Validation applies every default once; the engine reads the result.
    #[test]
    fn specs_carry_what_validation_proved() {
        let s = specs(
            r#"
[[rules]]
id = "hi"
kind = "threshold"
point = "ch4"
op = ">="
value = 1.5
deadband = 0.25
level = 2
[[rules]]
id = "lock"
kind = "interlock"
when = "run && ch4 >= 1.0"
hold = "5s"
on_delay = "2s"
level = 1
[[rules]]
id = "up"
kind = "escalation"
members = ["hi", "lock"]
stages = [{ count = 2, count_level = 2, level = 3 }, { count = 2, count_level = 1, level = 1 }]
"#,
        );
        assert_eq!(s.len(), 3);
        let KindSpec::Threshold(t) = &s[0].kind else {
            panic!("{:?}", s[0].kind)
        };
        assert_eq!(
            (t.limit.op, t.limit.value, t.limit.clear_at),
            (Cmp::Ge, 1.5, 1.25)
        );
        assert_eq!(s[0].name, "hi", "the id stands in for a missing name");

        let KindSpec::Interlock(c) = &s[1].kind else {
            panic!("{:?}", s[1].kind)
        };
        assert!(matches!(c.when, Expr::And(..)), "{:?}", c.when);
        assert_eq!(c.points, ["ch4", "run"]);
        assert_eq!(s[1].on_delay, Duration::from_secs(5), "hold folded in");

        assert_eq!(s[2].level, 3, "escalation level from its first stage");
        assert_eq!(s[2].kind.alarm_kind(), AlarmKind::Escalation);
    }
}
