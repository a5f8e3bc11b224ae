//! The life of an alarm instance: raised once, maybe escalated and
//! acknowledged, cleared once, with one `alarm_id` throughout.
//!
//! Invariants kept here and nowhere else:
//! - at most one active instance per key (a rule id, or `{device}.offline`,
//!   `{point}.stale`, `{point}.fault`, `{point}.action`,
//!   `queue.readings.overflow` for the built-in alarms);
//! - a condition rule raises only after its condition held for `on_delay`
//!   and clears only after its clear condition held for `off_delay`;
//! - a latching alarm clears only once acknowledged *and* its condition is
//!   gone, whichever comes last;
//! - actions are requested only for rules whose inputs were all seen good
//!   since start-up (never on "not polled yet");
//! - a condition rule's instance lives at least `MIN_ACTIVE` before it
//!   clears, so one flapping rule sends at most two events per `MIN_ACTIVE`
//!   (no event storm). Raising is never delayed: the alarm side wins, and
//!   each held clear is counted (`Output::clears_held`).
//!
//! Every delay is measured on the monotonic clock (`Now::mono`); wall time
//! (`Now::wall`) only stamps the events.

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use super::alarms::{Alarms, Instance};
use super::kind::{RuleSpec, Verdict};
use super::points::Points;
use super::text;
use crate::model::{AlarmKind, AlarmState, AlarmTransition};
use crate::time::{Mono, Now};

/// The shortest life of a condition rule's alarm instance: a condition that
/// comes and goes faster than this keeps its alarm raised instead of
/// sending a raise and a clear each time.
pub const MIN_ACTIVE: Duration = Duration::from_millis(500);

/// An action to run because an alarm was raised or cleared.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRequest {
    pub alarm_id: String,
    pub point: String,
    pub value: f64,
    pub confirm_within: Duration,
}

/// What one step of the engine produced, in order. The engine counts
/// nothing itself: the caller counts the transitions it is handed.
#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub transitions: Vec<AlarmTransition>,
    /// Actions to run before the transition at the same index is sent.
    pub actions: Vec<(usize, ActionRequest)>,
    /// Instances whose clear was held back by `MIN_ACTIVE` (each counted
    /// once): a rule flapping faster than that.
    pub clears_held: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AckError {
    #[error("no active alarm `{0}`")]
    Unknown(String),
    #[error("alarm `{0}` is already acknowledged")]
    Already(String),
}

/// One alarm to raise.
pub struct Raise<'a> {
    /// The instance key (see the module doc).
    pub key: &'a str,
    pub kind: AlarmKind,
    pub level: u8,
    pub name: &'a str,
    /// The one point the alarm is about, if it is about one.
    pub point: Option<&'a str>,
    pub value: Option<serde_json::Value>,
    pub threshold: Option<serde_json::Value>,
    pub at: DateTime<Utc>,
    pub message: String,
    pub latching: bool,
    /// Kind-specific facts (contract 1.1 `detail`).
    pub detail: Option<crate::model::Detail>,
}

impl<'a> Raise<'a> {
    /// An alarm about no point in particular, without value or threshold,
    /// that clears by itself (the built-in alarms).
    pub fn plain(
        key: &'a str,
        kind: AlarmKind,
        level: u8,
        name: &'a str,
        at: DateTime<Utc>,
        message: String,
    ) -> Self {
        Raise {
            key,
            kind,
            level,
            name,
            point: None,
            value: None,
            threshold: None,
            at,
            message,
            latching: false,
            detail: None,
        }
    }
}

/// Delay bookkeeping of one condition rule, on the monotonic clock.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// When the condition started to hold (raise after on_delay / hold).
    on_since: Option<Mono>,
    /// When the clear condition started to hold (clear after off_delay).
    off_since: Option<Mono>,
    /// When this engine raised the active instance (`None` for one restored
    /// after a restart: its life began before).
    raised: Option<Mono>,
    /// The instance's clear was held back once already (counted).
    held: bool,
    /// When it was last escalated for want of an acknowledgement.
    escalated: Option<Mono>,
}

impl Alarms {
    /// Raises a new instance; returns its `alarm_id`.
    pub fn raise(&mut self, r: Raise<'_>, points: &Points, out: &mut Output) -> String {
        let mut id_at = r.at;
        if let Some(prev) = self.last_id_at.get(r.key)
            && id_at.timestamp_millis() <= prev.timestamp_millis()
        {
            id_at = *prev + chrono::Duration::milliseconds(1);
        }
        self.last_id_at.insert(r.key.to_string(), id_at);
        let ts = id_at
            .with_timezone(&self.tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        let inst = Instance {
            alarm_id: format!("{}@{ts}", r.key),
            rule_id: r.key.to_string(),
            kind: r.kind,
            level: r.level,
            name: r.name.to_string(),
            point_id: r.point.map(String::from),
            value: r.value,
            threshold: r.threshold,
            raised_at: r.at,
            acked_by: None,
            acked_at: None,
            latching: r.latching,
            condition: true,
            message: r.message,
            detail: r.detail,
            escalations: 0,
            escalated_at: None,
        };
        out.transitions
            .push(transition(&inst, AlarmState::Raised, r.at, points));
        let id = inst.alarm_id.clone();
        self.active.insert(r.key.to_string(), inst);
        id
    }

    /// Clears the instance under `key`, if one is active. `value`, when
    /// given, replaces the value the alarm was raised with.
    pub fn clear(
        &mut self,
        key: &str,
        at: DateTime<Utc>,
        value: Option<serde_json::Value>,
        message: String,
        points: &Points,
        out: &mut Output,
    ) {
        if let Some(mut inst) = self.active.remove(key) {
            inst.message = message;
            if value.is_some() {
                inst.value = value;
            }
            out.transitions
                .push(transition(&inst, AlarmState::Cleared, at, points));
        }
    }

    /// Raises (`on`) or clears a built-in alarm whose condition is known as
    /// a plain fact; nothing happens when it is already in that state.
    pub fn set(&mut self, on: bool, r: Raise<'_>, points: &Points, out: &mut Output) {
        match (on, self.contains(r.key)) {
            (true, false) => {
                self.raise(r, points, out);
            }
            (false, true) => self.clear(r.key, r.at, None, r.message, points, out),
            _ => {}
        }
    }

    /// Acknowledges an active alarm. A latching alarm whose condition is
    /// gone clears right after its acknowledgement.
    pub fn acknowledge(
        &mut self,
        alarm_id: &str,
        by: &str,
        at: DateTime<Utc>,
        points: &Points,
    ) -> Result<Output, AckError> {
        let key = self
            .active
            .iter()
            .find(|(_, a)| a.alarm_id == alarm_id)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| AckError::Unknown(alarm_id.to_string()))?;
        let inst = self.active.get_mut(&key).expect("found above");
        if inst.acked_by.is_some() {
            return Err(AckError::Already(alarm_id.to_string()));
        }
        inst.acked_by = Some(by.to_string());
        inst.acked_at = Some(at);
        let mut out = Output::default();
        let mut t = transition(inst, AlarmState::Acknowledged, at, points);
        t.message = text::acknowledged(&inst.name, by);
        out.transitions.push(t);
        if inst.latching && !inst.condition {
            let msg = text::cleared_after_ack(&inst.name);
            self.clear(&key, at, None, msg, points, &mut out);
        }
        Ok(out)
    }

    /// The delay and latch machine of one condition rule, fed with the
    /// rule's verdict at `now`.
    pub fn apply(
        &mut self,
        rule: &RuleSpec,
        timing: &mut Timing,
        v: Verdict,
        points: &Points,
        now: Now,
        out: &mut Output,
    ) {
        let key = rule.id.as_str();
        if !self.contains(key) {
            if !v.on {
                timing.on_since = None;
                return;
            }
            let since = *timing.on_since.get_or_insert(now.mono);
            if now.mono.since(since) < rule.on_delay {
                return;
            }
            *timing = Timing {
                raised: Some(now.mono),
                ..Timing::default()
            };
            let inputs = rule.kind.inputs();
            let point = rule.kind.subject();
            // Never act on a rule whose inputs have not been seen good since
            // start-up: the alarm is raised, the output left untouched.
            let inputs_known = inputs
                .iter()
                .all(|p| points.get(p).is_some_and(|x| x.seen_good));
            // Inside a calibration window the alarm goes out as the
            // window's (contract 1.1 `calibration`), and moves nothing.
            let by = inputs
                .iter()
                .find_map(|p| points.get(p)?.calibration.as_ref())
                .map(|w| w.by.clone());
            let (kind, message, mut facts) = match &by {
                Some(_) => (
                    AlarmKind::Calibration,
                    text::during_calibration(&v.detail),
                    v.facts,
                ),
                None => (rule.kind.alarm_kind(), v.detail, v.facts),
            };
            if let Some(by) = &by {
                facts
                    .get_or_insert_with(Default::default)
                    .insert("calibration_by".into(), serde_json::json!(by));
            }
            let idx = out.transitions.len();
            let alarm_id = self.raise(
                Raise {
                    key,
                    kind,
                    level: rule.level,
                    name: &rule.name,
                    point,
                    value: v.value,
                    threshold: v.threshold,
                    at: now.wall,
                    message,
                    latching: rule.latching,
                    detail: facts,
                },
                points,
                out,
            );
            if inputs_known && by.is_none() {
                let writable = |p: &str| points.get(p).is_some_and(|x| x.writable);
                for a in rule.actions.iter().filter(|a| writable(&a.write)) {
                    out.actions.push((
                        idx,
                        ActionRequest {
                            alarm_id: alarm_id.clone(),
                            point: a.write.clone(),
                            value: a.value,
                            confirm_within: a.confirm_within.0,
                        },
                    ));
                }
            }
            return;
        }
        // Active: does it clear? The facts follow the judgement, so the
        // clear (or an acknowledgement) carries the latest ones.
        if let (Some(inst), Some(f)) = (self.active.get_mut(key), &v.facts) {
            let by = inst
                .detail
                .as_ref()
                .and_then(|d| d.get("calibration_by"))
                .cloned();
            let mut f = f.clone();
            if let Some(by) = by {
                f.insert("calibration_by".into(), by);
            }
            inst.detail = Some(f);
        }
        if !v.off {
            timing.off_since = None;
            if let Some(inst) = self.active.get_mut(key) {
                inst.condition = true;
            }
            return;
        }
        let since = *timing.off_since.get_or_insert(now.mono);
        if now.mono.since(since) < rule.off_delay {
            return;
        }
        // Too young to clear: stays raised (the alarm side) until MIN_ACTIVE
        // has passed; a later tick clears it if the condition is still gone.
        if timing
            .raised
            .is_some_and(|r| now.mono.since(r) < MIN_ACTIVE)
        {
            if !timing.held {
                timing.held = true;
                out.clears_held += 1;
            }
            return;
        }
        *timing = Timing::default();
        let inst = self.active.get_mut(key).expect("checked active above");
        inst.condition = false;
        if inst.latching && inst.acked_by.is_none() {
            return; // stays until acknowledged
        }
        let idx = out.transitions.len();
        let alarm_id = inst.alarm_id.clone();
        let msg = text::recovered(&rule.name, &v.detail);
        self.clear(key, now.wall, v.value, msg, points, out);
        for a in rule.actions.iter() {
            let Some(value) = a.on_clear else { continue };
            out.actions.push((
                idx,
                ActionRequest {
                    alarm_id: alarm_id.clone(),
                    point: a.write.clone(),
                    value,
                    confirm_within: a.confirm_within.0,
                },
            ));
        }
    }

    /// Escalates the rule's active alarm when nobody acknowledged it in
    /// time (the rule's `escalate` option): once after `after`, once more
    /// `again_after` later if given. An acknowledgement stops it. A
    /// restored instance (raised before a restart) counts its time from
    /// its wall times, the only ones that survived.
    pub fn unacked(
        &mut self,
        rule: &RuleSpec,
        timing: &mut Timing,
        points: &Points,
        now: Now,
        out: &mut Output,
    ) {
        let Some(u) = &rule.escalate else { return };
        let Some(inst) = self.active.get_mut(rule.id.as_str()) else {
            return;
        };
        if inst.acked_by.is_some() {
            return;
        }
        let wait = match (inst.escalations, u.again_after) {
            (0, _) => u.after,
            (1, Some(again)) => again,
            _ => return,
        };
        let elapsed = match timing.escalated.or(timing.raised) {
            Some(m) => now.mono.since(m),
            None => (now.wall - inst.escalated_at.unwrap_or(inst.raised_at))
                .to_std()
                .unwrap_or_default(),
        };
        if elapsed < wait {
            return;
        }
        inst.escalations += 1;
        inst.escalated_at = Some(now.wall);
        timing.escalated = Some(now.mono);
        inst.level = u.next_level(inst.level);
        let waited = humantime::format_duration(wait).to_string();
        let mut t = transition(inst, AlarmState::Escalated, now.wall, points);
        t.message = text::unacked_escalated(&inst.message, &waited, inst.escalations);
        let mut d = t.detail.take().unwrap_or_default();
        d.insert("unacknowledged_for".into(), serde_json::json!(waited));
        d.insert("escalations".into(), serde_json::json!(inst.escalations));
        t.detail = Some(d);
        out.transitions.push(t);
    }

    /// The one instance of an escalation rule follows the most severe stage
    /// `reached`: raised at the first, escalated (never stepped down) while
    /// active, cleared when no stage is met.
    pub fn escalate(
        &mut self,
        rule: &RuleSpec,
        reached: Option<u8>,
        subjects: usize,
        points: &Points,
        now: DateTime<Utc>,
        out: &mut Output,
    ) {
        let key = rule.id.as_str();
        let counts = text::escalation_count(subjects);
        match (reached, self.active.get(key).map(|a| a.level)) {
            (Some(level), None) => {
                let msg = text::escalation_raised(&rule.name, &counts);
                let r = Raise::plain(key, rule.kind.alarm_kind(), level, &rule.name, now, msg);
                self.raise(r, points, out);
            }
            (Some(level), Some(cur)) if level < cur => {
                let inst = self.active.get_mut(key).expect("matched Some above");
                inst.level = level;
                inst.message = text::escalation_stepped_up(&rule.name, &counts);
                out.transitions
                    .push(transition(inst, AlarmState::Escalated, now, points));
            }
            (None, Some(_)) => {
                let msg = text::escalation_cleared(&rule.name);
                self.clear(key, now, None, msg, points, out);
            }
            _ => {}
        }
    }
}

fn transition(
    inst: &Instance,
    state: AlarmState,
    ts: DateTime<Utc>,
    points: &Points,
) -> AlarmTransition {
    let p = inst.point_id.as_deref().and_then(|id| points.get(id));
    AlarmTransition {
        alarm_id: inst.alarm_id.clone(),
        rule_id: inst.rule_id.clone(),
        kind: inst.kind,
        level: inst.level,
        state,
        point_id: inst.point_id.clone(),
        point_name: p.map(|p| p.name.clone()),
        value: inst.value.clone(),
        unit: p.and_then(|p| p.unit.clone()),
        threshold: inst.threshold.clone(),
        message: inst.message.clone(),
        raised_at: inst.raised_at,
        ts,
        acked_by: inst.acked_by.clone(),
        actions: Vec::new(),
        detail: inst.detail.clone(),
        quality: p.map(|p| p.quality_label().to_string()),
    }
}
