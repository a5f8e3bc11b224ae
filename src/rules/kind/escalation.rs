//! `escalation`: counts the active alarms of member rules and raises one
//! instance at the most severe stage met (GB 50863-2013 §5.5.4: several
//! points in warning make the monitored item more severe).
//!
//! The subjects counted are distinct points (a point with several active
//! bands counts once, at its most severe) or, for an alarm without a point,
//! the member rule. Acknowledged member alarms still count. Members may be
//! escalation rules themselves; the engine repeats its passes until nothing
//! changes, and validation refuses cycles.

use std::collections::HashMap;

use super::CheckCtx;
use crate::config::check::Errs;
use crate::config::{Rule, Stage};
use crate::rules::alarms::Alarms;

#[derive(Clone, Debug, PartialEq)]
pub struct Escalation {
    pub members: Vec<String>,
    /// Least severe first; never empty, levels strictly more severe.
    pub stages: Vec<Stage>,
}

impl Escalation {
    /// The level of the first stage: the rule's level when raised.
    pub fn first_level(&self) -> u8 {
        self.stages.first().map(|s| s.level).unwrap_or(4)
    }

    /// The most severe stage met now, and how many subjects are counted.
    pub fn judge(&self, alarms: &Alarms) -> (Option<u8>, usize) {
        let mut worst: HashMap<&str, u8> = HashMap::new();
        for inst in alarms.iter().filter(|a| self.members.contains(&a.rule_id)) {
            let subject = inst.point_id.as_deref().unwrap_or(&inst.rule_id);
            let e = worst.entry(subject).or_insert(inst.level);
            *e = (*e).min(inst.level);
        }
        let reached = self
            .stages
            .iter()
            .filter(|s| worst.values().filter(|&&l| l <= s.count_level).count() as u32 >= s.count)
            .map(|s| s.level)
            .min();
        (reached, worst.len())
    }
}

pub fn check(r: &Rule, p: &str, ctx: &CheckCtx<'_>, e: &mut Errs) -> Option<Escalation> {
    let before = e.len();
    if r.members.is_empty() {
        e.push(
            format!("{p}.members"),
            "an escalation rule counts the alarms of these rule ids; none given",
        );
    }
    for (k, m) in r.members.iter().enumerate() {
        if !(ctx.rule_exists)(m) {
            e.push(format!("{p}.members[{k}]"), format!("no rule `{m}`"));
        }
    }
    if r.level != 0 {
        e.push(
            format!("{p}.level"),
            "an escalation rule takes its levels from `stages`",
        );
    }
    if r.stages.is_empty() {
        e.push(
            format!("{p}.stages"),
            "required: e.g. [{ count = 4, count_level = 4, level = 3 }]",
        );
    }
    for (k, s) in r.stages.iter().enumerate() {
        if s.count == 0 {
            e.push(format!("{p}.stages[{k}].count"), "must be at least 1");
        }
        if !(1..=4).contains(&s.count_level) {
            e.push(format!("{p}.stages[{k}].count_level"), "must be 1-4");
        }
        if !(1..=4).contains(&s.level) {
            e.push(format!("{p}.stages[{k}].level"), "must be 1-4");
        }
        if k > 0 && s.level >= r.stages[k - 1].level {
            e.push(
                format!("{p}.stages[{k}].level"),
                "stages go from less to more severe: each level must be below the one before",
            );
        }
    }
    (e.len() == before).then(|| Escalation {
        members: r.members.clone(),
        stages: r.stages.clone(),
    })
}
