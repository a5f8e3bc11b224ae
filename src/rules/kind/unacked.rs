//! The `escalate` option of any rule (值班值守): an alarm nobody
//! acknowledged within `after` is escalated, one level up or to a named
//! level, and optionally once more `again_after` later. Here the typed
//! settings and their check; the stepping is `rules::unacked`.

use std::time::Duration;

use crate::config::check::Errs;
use crate::config::{EscalateCfg, EscalateTo};

/// Where an unacknowledged alarm goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// One level more severe each time (a red alarm stays red: the event
    /// still goes out, so the next person on duty is told).
    Up,
    Level(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unacked {
    pub after: Duration,
    pub to: Target,
    /// A second escalation this long after the first, if given.
    pub again_after: Option<Duration>,
}

impl Unacked {
    /// The level after one more escalation of an alarm at `level`.
    pub fn next_level(&self, level: u8) -> u8 {
        match self.to {
            Target::Up => level.saturating_sub(1).max(1),
            Target::Level(l) => l.min(level),
        }
    }
}

/// Checks `escalate` of a rule at level `level` (path `p`).
pub fn check(c: &EscalateCfg, level: u8, p: &str, e: &mut Errs) -> Option<Unacked> {
    let p = format!("{p}.escalate");
    let before = e.len();
    let positive = |d: Option<crate::config::Dur>, f: &str, e: &mut Errs| match d {
        Some(d) if d.0.is_zero() => {
            e.push(format!("{p}.{f}"), "must be greater than zero");
            None
        }
        Some(d) if d.0.as_secs() > 7 * 86_400 => {
            e.push(
                format!("{p}.{f}"),
                "longer than a week: probably a unit mistake",
            );
            None
        }
        d => d.map(|d| d.0),
    };
    let after = positive(c.after, "after", e);
    if c.after.is_none() {
        e.push(
            format!("{p}.after"),
            "required: how long an alarm may stay unacknowledged, e.g. \"10m\"",
        );
    }
    let again_after = positive(c.again_after, "again_after", e);
    let to = match &c.to {
        None => Target::Up,
        Some(EscalateTo::Word(w)) if w == "up" => Target::Up,
        Some(EscalateTo::Word(w)) => {
            e.push(
                format!("{p}.to"),
                format!("`{w}`: \"up\" or a level 1 (red) to 4 (blue)"),
            );
            Target::Up
        }
        Some(EscalateTo::Level(l)) if !(1..=4).contains(l) => {
            e.push(
                format!("{p}.to"),
                format!("{l} is not a level; levels are 1 (red) to 4 (blue)"),
            );
            Target::Up
        }
        Some(EscalateTo::Level(l)) if (1..=4).contains(&level) && *l >= level => {
            e.push(
                format!("{p}.to"),
                format!("level {l} is not more severe than the rule's level {level}"),
            );
            Target::Up
        }
        Some(EscalateTo::Level(l)) => Target::Level(*l),
    };
    if e.len() != before {
        return None;
    }
    Some(Unacked {
        after: after?,
        to,
        again_after,
    })
}
