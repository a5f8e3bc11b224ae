//! The rules' memories as the store keeps them (`rule_state`, one row per
//! rule id): an accumulation rule's slots (`kind/slots.rs`, whose serde
//! shape is the stored format) and a rate rule's history as
//! `{"samples": [[wall_ms, value], …]}`.
//!
//! The engine stays pure: it hands the changed state out as JSON when the
//! engine task asks (with the readings' commit) and takes it back when it is
//! built. A row it cannot use (a rule removed or renamed, an accumulation
//! whose `input` changed, JSON of another version) is handed back with
//! why, and the rule starts empty: a changed rule must not read a memory
//! that meant something else.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::compile::LiveRule;
use super::kind::KindSpec;
use super::kind::slots::Slots;
use super::points::Points;
use crate::time::Mono;

/// A rate history is handed to the store at most this often: it can hold
/// a day of fast polls, and a crash that loses a few samples of it loses
/// no change (the next sample spans the gap). Slots are small and go with
/// every commit: an increment lost is rain lost.
pub const RATE_SAVE_EVERY: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
struct RateState {
    samples: Vec<(i64, f64)>,
}

pub fn take(
    rules: &mut [LiveRule],
    points: &Points,
    now: Mono,
    all: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in rules.iter_mut().filter(|r| r.dirty) {
        let json = match (&r.spec.kind, &r.memory) {
            (KindSpec::Accumulation(_), Some(m)) => serde_json::to_string(m),
            (KindSpec::Rate(rate), _) => {
                if !all && r.saved_at.is_some_and(|t| now.since(t) < RATE_SAVE_EVERY) {
                    continue;
                }
                let samples = points
                    .history(&rate.point, rate.window)
                    .map(|h| h.iter().map(|s| (s.wall, s.v)).collect())
                    .unwrap_or_default();
                serde_json::to_string(&RateState { samples })
            }
            _ => continue,
        };
        r.dirty = false;
        r.saved_at = Some(now);
        // Plain numbers and maps: encoding cannot fail.
        if let Ok(j) = json {
            out.push((r.spec.id.clone(), j));
        }
    }
    out
}

pub fn restore(
    rules: &mut [LiveRule],
    points: &mut Points,
    rows: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut refused = Vec::new();
    for (key, json) in rows {
        let Some(r) = rules.iter_mut().find(|r| r.spec.id == key) else {
            refused.push((key, "no rule with this id any more".to_string()));
            continue;
        };
        let why = match &r.spec.kind {
            KindSpec::Accumulation(a) => match serde_json::from_str::<Slots>(&json) {
                Ok(s) if s.input() == a.input => {
                    r.memory = Some(s);
                    None
                }
                Ok(_) => Some("the rule's `input` changed: its slots meant something else".into()),
                Err(e) => Some(format!("not an accumulation's slots: {e}")),
            },
            KindSpec::Rate(rate) => match serde_json::from_str::<RateState>(&json) {
                Ok(s) => {
                    points.restore(&rate.point, rate.window, s.samples);
                    None
                }
                Err(e) => Some(format!("not a rate history: {e}")),
            },
            _ => Some("this rule keeps no state".into()),
        };
        if let Some(why) = why {
            refused.push((key, why));
        }
    }
    refused
}
