//! The alarm engine. A plain state machine: readings, device health, ticks
//! and acknowledgements go in with the current time; alarm transitions and
//! action requests come out. No I/O, no clock of its own, so tests drive it
//! with scripted times and get the same events every run.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::expr::{self, Expr};
use crate::config::{ActionCfg, Cmp, Config, DataType, Protocol, RuleKindCfg, Stage};
use crate::model::{
    AlarmKind, AlarmState, AlarmTransition, BadReason, Input, Quality, Reading, Value, trim_float,
};

/// One alarm instance: raised once, cleared once, with one `alarm_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub alarm_id: String,
    pub rule_id: String,
    pub kind: AlarmKind,
    pub level: u8,
    pub name: String,
    pub point_id: Option<String>,
    pub value: Option<serde_json::Value>,
    pub threshold: Option<serde_json::Value>,
    pub raised_at: DateTime<Utc>,
    pub acked_by: Option<String>,
    pub acked_at: Option<DateTime<Utc>>,
    pub latching: bool,
    /// Whether the condition still holds; a latching alarm whose condition
    /// is gone waits for its acknowledgement.
    pub condition: bool,
    pub message: String,
}

/// What the engine knows of a point now. `value` is the last good value,
/// kept while the quality is bad.
#[derive(Clone, Debug, PartialEq)]
pub struct PointState {
    pub id: String,
    pub value: Option<Value>,
    pub quality: Quality,
    pub last_good: Option<DateTime<Utc>>,
}

/// An action to run because an alarm was raised or cleared.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRequest {
    pub alarm_id: String,
    pub point: String,
    pub value: f64,
    pub confirm_within: Duration,
}

/// What one step of the engine produced, in order.
#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub transitions: Vec<AlarmTransition>,
    /// Actions to run before the transition at the same index is sent.
    pub actions: Vec<(usize, ActionRequest)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AckError {
    #[error("no active alarm `{0}`")]
    Unknown(String),
    #[error("alarm `{0}` is already acknowledged")]
    Already(String),
}

#[derive(Clone, Debug)]
struct PointInfo {
    name: String,
    unit: Option<String>,
    device: String,
    value: Option<Value>,
    quality: Quality,
    last_good: Option<DateTime<Utc>>,
    /// Start of the current bad spell, for the point's fault alarm.
    stale_after: Duration,
    stale_level: u8,
    seen_good: bool,
    /// Any reading at all (good or bad) since start-up. Until then the
    /// point's source has said nothing and the rules reading it do not judge.
    reported: bool,
    is_text: bool,
}

#[derive(Clone, Debug)]
struct DeviceInfo {
    name: String,
    failures: u32,
    offline_after: u32,
    level: u8,
}

/// Delay bookkeeping shared by every condition-based rule.
#[derive(Clone, Debug, Default)]
struct Timing {
    /// When the condition started to hold (raise after on_delay / hold).
    on_since: Option<DateTime<Utc>>,
    /// When the clear condition started to hold (clear after off_delay).
    off_since: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
enum Check {
    Threshold {
        point: String,
        op: Cmp,
        value: f64,
        clear_at: f64,
    },
    Rate {
        point: String,
        op: Cmp,
        value: f64,
        clear_at: f64,
        window: Duration,
        history: VecDeque<(DateTime<Utc>, f64)>,
    },
    Condition {
        expr: Expr,
        points: Vec<String>,
    },
    Escalation {
        members: Vec<String>,
        stages: Vec<Stage>,
    },
}

#[derive(Clone, Debug)]
struct RuleRt {
    id: String,
    kind: AlarmKind,
    level: u8,
    name: String,
    latching: bool,
    on_delay: Duration,
    off_delay: Duration,
    check: Check,
    actions: Vec<ActionCfg>,
    timing: Timing,
}

impl RuleRt {
    fn inputs(&self) -> Vec<String> {
        match &self.check {
            Check::Threshold { point, .. } | Check::Rate { point, .. } => vec![point.clone()],
            Check::Condition { points, .. } => points.clone(),
            Check::Escalation { .. } => Vec::new(),
        }
    }
}

pub struct Engine {
    tz: chrono_tz::Tz,
    rules: Vec<RuleRt>,
    points: HashMap<String, PointInfo>,
    devices: HashMap<String, DeviceInfo>,
    /// Active instances by key: the rule id, or `{device}.offline`,
    /// `{point}.stale`, `{point}.fault` for the built-in health alarms.
    active: BTreeMap<String, Instance>,
    /// Writable points by id, for action requests.
    writable: HashSet<String>,
}

fn dur(d: &Option<crate::config::Dur>) -> Duration {
    d.map(|d| d.0).unwrap_or_default()
}

impl Engine {
    pub fn new(cfg: &Config) -> Engine {
        let mut points = HashMap::new();
        let mut devices = HashMap::new();
        let mut writable = HashSet::new();
        for d in &cfg.devices {
            devices.insert(
                d.id.clone(),
                DeviceInfo {
                    name: d.name.clone().unwrap_or_else(|| d.id.clone()),
                    failures: 0,
                    offline_after: d.offline_after,
                    level: d.offline_level,
                },
            );
            for p in &d.points {
                let interval = p
                    .group
                    .as_ref()
                    .and_then(|g| d.groups.iter().find(|x| &x.id == g))
                    .map(|g| g.interval.0)
                    .unwrap_or(d.poll_interval.0);
                let default_stale = match d.protocol {
                    Protocol::Mqtt => dur(&d.heartbeat) * 2,
                    _ => interval * 3 + d.timeout.0 * (d.retries + 1),
                };
                if p.writable {
                    writable.insert(p.id.clone());
                }
                points.insert(
                    p.id.clone(),
                    PointInfo {
                        name: p.name.clone().unwrap_or_else(|| p.id.clone()),
                        unit: p.unit.clone(),
                        device: d.id.clone(),
                        value: None,
                        quality: Quality::Bad(BadReason::NoData),
                        last_good: None,
                        stale_after: d.stale_after.map(|s| s.0).unwrap_or(default_stale),
                        stale_level: d.stale_level,
                        seen_good: false,
                        reported: false,
                        is_text: p.data_type == Some(DataType::Ascii),
                    },
                );
            }
        }
        let rules = cfg
            .rules
            .iter()
            .map(|r| {
                let clear_at = |op: Cmp, v: f64| match (r.recovery, r.deadband) {
                    (Some(rv), _) => rv,
                    (None, Some(db)) => {
                        if op.is_high() {
                            v - db
                        } else {
                            v + db
                        }
                    }
                    (None, None) => v,
                };
                let (kind, check) = match r.kind {
                    RuleKindCfg::Threshold => {
                        let (op, v) = (r.op.unwrap_or(Cmp::Ge), r.value.unwrap_or(0.0));
                        (
                            AlarmKind::Threshold,
                            Check::Threshold {
                                point: r.point.clone().unwrap_or_default(),
                                op,
                                value: v,
                                clear_at: clear_at(op, v),
                            },
                        )
                    }
                    RuleKindCfg::Rate => {
                        let (op, v) = (r.op.unwrap_or(Cmp::Ge), r.value.unwrap_or(0.0));
                        (
                            AlarmKind::Rate,
                            Check::Rate {
                                point: r.point.clone().unwrap_or_default(),
                                op,
                                value: v,
                                clear_at: clear_at(op, v),
                                window: dur(&r.window),
                                history: VecDeque::new(),
                            },
                        )
                    }
                    RuleKindCfg::Interlock | RuleKindCfg::Consistency => {
                        let e = expr::parse(r.when.as_deref().unwrap_or("false"))
                            .unwrap_or(Expr::Bool(false));
                        let pts = expr::point_refs(&e);
                        let k = if r.kind == RuleKindCfg::Interlock {
                            AlarmKind::Interlock
                        } else {
                            AlarmKind::Consistency
                        };
                        (
                            k,
                            Check::Condition {
                                expr: e,
                                points: pts,
                            },
                        )
                    }
                    RuleKindCfg::Escalation => (
                        AlarmKind::Threshold,
                        Check::Escalation {
                            members: r.members.clone(),
                            stages: r.stages.clone(),
                        },
                    ),
                };
                let on_delay = match r.kind {
                    RuleKindCfg::Interlock | RuleKindCfg::Consistency => {
                        dur(&r.hold).max(dur(&r.on_delay))
                    }
                    _ => dur(&r.on_delay),
                };
                RuleRt {
                    id: r.id.clone(),
                    kind,
                    level: if r.kind == RuleKindCfg::Escalation {
                        r.stages.first().map(|s| s.level).unwrap_or(4)
                    } else {
                        r.level
                    },
                    name: r.name.clone().unwrap_or_else(|| r.id.clone()),
                    latching: r.latching,
                    on_delay,
                    off_delay: dur(&r.off_delay),
                    check,
                    actions: r.actions.clone(),
                    timing: Timing::default(),
                }
            })
            .collect();
        Engine {
            tz: cfg.tz(),
            rules,
            points,
            devices,
            active: BTreeMap::new(),
            writable,
        }
    }

    /// Active alarms, for the status message, the API and persistence.
    pub fn active(&self) -> impl Iterator<Item = &Instance> {
        self.active.values()
    }

    /// Active alarms with their keys, as the store persists them.
    pub fn active_keyed(&self) -> Vec<(String, Instance)> {
        self.active
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Puts back the alarms that were active when the gateway stopped. They
    /// are not raised again: they continue with their old `alarm_id`.
    pub fn restore(&mut self, instances: Vec<Instance>) {
        for i in instances {
            self.active.insert(i.rule_id.clone(), i);
        }
    }

    /// Latest value and quality of every point, for the operator page,
    /// sorted by point id.
    pub fn point_values(&self) -> Vec<PointState> {
        let mut v: Vec<_> = self
            .points
            .iter()
            .map(|(k, p)| PointState {
                id: k.clone(),
                value: p.value.clone(),
                quality: p.quality.clone(),
                last_good: p.last_good,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn handle(&mut self, input: &Input, now: DateTime<Utc>) -> Output {
        match input {
            // A threshold crossing happens at the reading's time, not when
            // the engine got round to it (the contract's `ts`).
            Input::Readings(rs) => {
                self.on_readings(rs, rs.iter().map(|r| r.at).max().unwrap_or(now))
            }
            Input::DeviceHealth {
                device,
                ok,
                detail,
                at,
            } => self.on_health(device, *ok, detail, *at),
        }
    }

    pub fn on_readings(&mut self, readings: &[Reading], now: DateTime<Utc>) -> Output {
        let mut out = Output::default();
        let mut touched = HashSet::new();
        for r in readings {
            let Some(p) = self.points.get_mut(&*r.point) else {
                continue;
            };
            p.quality = r.quality.clone();
            p.reported = true;
            if r.quality.is_good() {
                p.value = r.value.clone();
                p.last_good = Some(r.at);
                p.seen_good = true;
            }
            touched.insert(r.point.to_string());
            self.health_of_point(&r.point, r.at, &mut out);
            // Rate rules keep their own history of good values.
            if let (true, Some(v)) = (
                r.quality.is_good(),
                r.value.as_ref().and_then(|v| v.as_f64()),
            ) {
                for rule in &mut self.rules {
                    if let Check::Rate {
                        point,
                        history,
                        window,
                        ..
                    } = &mut rule.check
                        && **point == *r.point
                    {
                        history.push_back((r.at, v));
                        while history.len() > 2
                            && history[1].0
                                <= r.at - chrono::Duration::from_std(*window).unwrap_or_default()
                        {
                            history.pop_front();
                        }
                    }
                }
            }
        }
        for i in 0..self.rules.len() {
            if self.rules[i].inputs().iter().any(|p| touched.contains(p)) {
                self.evaluate(i, now, &mut out);
            }
        }
        self.evaluate_escalations(now, &mut out);
        out
    }

    /// Time passes: on-delays, holds, off-delays and staleness are checked.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Output {
        let mut out = Output::default();
        let ids: Vec<String> = self.points.keys().cloned().collect();
        for id in ids {
            let p = &self.points[&id];
            let stale = match p.last_good {
                Some(t) => now - t > chrono::Duration::from_std(p.stale_after).unwrap_or_default(),
                None => false,
            };
            if stale && p.quality.is_good() {
                let p = self.points.get_mut(&id).unwrap();
                p.quality = Quality::Bad(BadReason::Stale);
            }
            if stale || matches!(self.points[&id].quality, Quality::Bad(BadReason::Stale)) {
                self.health_of_point(&id, now, &mut out);
            }
        }
        for i in 0..self.rules.len() {
            if !matches!(self.rules[i].check, Check::Escalation { .. }) {
                self.evaluate(i, now, &mut out);
            }
        }
        self.evaluate_escalations(now, &mut out);
        out
    }

    fn on_health(&mut self, device: &str, ok: bool, detail: &str, at: DateTime<Utc>) -> Output {
        let mut out = Output::default();
        let Some(d) = self.devices.get_mut(device) else {
            return out;
        };
        let key = format!("{device}.offline");
        if ok {
            d.failures = 0;
            if self.active.contains_key(&key) {
                let msg = format!("{} 通信恢复", d.name);
                self.clear(&key, at, None, msg, &mut out);
            }
        } else {
            d.failures = d.failures.saturating_add(1);
            if d.failures >= d.offline_after && !self.active.contains_key(&key) {
                let (name, level) = (d.name.clone(), d.level);
                let msg = format!("{name} 通信中断: {detail}");
                self.raise(
                    &key,
                    AlarmKind::Offline,
                    level,
                    &format!("{name} 通信中断"),
                    None,
                    None,
                    None,
                    at,
                    msg,
                    false,
                    &mut out,
                );
            }
        }
        out
    }

    /// Stale and fault alarms of one point. A point that goes stale, or
    /// whose device answers but with an exception or undecodable data, has
    /// its own alarm; timeouts are covered by the device's offline alarm.
    fn health_of_point(&mut self, id: &str, at: DateTime<Utc>, out: &mut Output) {
        let p = &self.points[id];
        let (name, level) = (p.name.clone(), p.stale_level);
        let stale_key = format!("{id}.stale");
        let fault_key = format!("{id}.fault");
        match &p.quality {
            Quality::Bad(BadReason::Stale) if !self.active.contains_key(&stale_key) => {
                let msg = format!("{name} 数据超时未更新");
                self.raise(
                    &stale_key,
                    AlarmKind::Stale,
                    level,
                    &format!("{name} 数据过期"),
                    Some(id),
                    None,
                    None,
                    at,
                    msg,
                    false,
                    out,
                );
            }
            Quality::Bad(r @ (BadReason::Exception(_) | BadReason::Decode(_)))
                if !self.active.contains_key(&fault_key) =>
            {
                let msg = format!("{name} 数据无效: {r}");
                self.raise(
                    &fault_key,
                    AlarmKind::Fault,
                    level,
                    &format!("{name} 数据无效"),
                    Some(id),
                    None,
                    None,
                    at,
                    msg,
                    false,
                    out,
                );
            }
            Quality::Good => {
                for k in [stale_key, fault_key] {
                    if self.active.contains_key(&k) {
                        self.clear(&k, at, None, format!("{name} 数据恢复"), out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Evaluates rule `i` against the current point values at `now`.
    fn evaluate(&mut self, i: usize, now: DateTime<Utc>, out: &mut Output) {
        // (condition holds, clear condition holds, value, threshold, message part)
        let (on, off, value, threshold, detail) = {
            let rule = &self.rules[i];
            match &rule.check {
                Check::Threshold {
                    point,
                    op,
                    value,
                    clear_at,
                }
                | Check::Rate {
                    point,
                    op,
                    value,
                    clear_at,
                    ..
                } => {
                    let Some(p) = self.points.get(point) else {
                        return;
                    };
                    // Nothing reported since start-up: no judgement yet. A
                    // source that did report, even `NoData` (an MQTT box
                    // silent since start), is judged: bad is the alarm side.
                    if !p.reported {
                        return;
                    }
                    let threshold = Some(serde_json::json!(value));
                    if !p.quality.is_good() {
                        // Bad quality is the unsafe state (fail safe).
                        let d = format!("{} 数据无效 ({}), 按超限处理", p.name, p.quality.label());
                        (true, false, None, threshold, d)
                    } else {
                        // The number judged: the value, or its change over the window.
                        let (x, what) = match &rule.check {
                            Check::Rate {
                                window, history, ..
                            } => match (history.front(), history.back()) {
                                (Some(first), Some(last)) => (
                                    last.1 - first.1,
                                    format!("{} 内变化 ", humantime::format_duration(*window)),
                                ),
                                _ => return,
                            },
                            _ => match p.value.as_ref().and_then(|v| v.as_f64()) {
                                Some(v) => (v, String::new()),
                                None => return,
                            },
                        };
                        let on = op.holds(x, *value);
                        let off = if op.is_high() {
                            x < *clear_at
                        } else {
                            x > *clear_at
                        };
                        // A clear message shows the recovery value it passed.
                        let (sym, limit) = match (off, op.is_high()) {
                            (true, true) => ("<", *clear_at),
                            (true, false) => (">", *clear_at),
                            (false, _) => (op.symbol(), *value),
                        };
                        let unit = p.unit.as_deref().unwrap_or_default();
                        let d = format!("{} {what}{} {unit} {sym} {}", p.name, num(x), num(limit));
                        (on, off, Some(serde_json::json!(x)), threshold, d)
                    }
                }
                Check::Condition { expr, points } => {
                    // Judged once every point it reads has reported (good or
                    // bad) since start-up: before that, `unknown` would only
                    // mean "not polled yet" and raise at every restart.
                    if points
                        .iter()
                        .any(|p| !self.points.get(p).is_some_and(|x| x.reported))
                    {
                        return;
                    }
                    let env = EnvView {
                        points: &self.points,
                        active: &self.active,
                    };
                    let r = expr::eval(expr, &env);
                    // Unknown (a bad input) counts as the alarm side.
                    let on = r != Some(false);
                    let d = match r {
                        None => format!("{} (输入数据无效, 按条件成立处理)", rule.name),
                        _ => rule.name.clone(),
                    };
                    (on, !on, None, None, d)
                }
                Check::Escalation { .. } => return,
            }
        };
        self.apply(i, on, off, value, threshold, detail, now, out);
    }

    /// The delay logic common to every condition rule.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        i: usize,
        on: bool,
        off: bool,
        value: Option<serde_json::Value>,
        threshold: Option<serde_json::Value>,
        detail: String,
        now: DateTime<Utc>,
        out: &mut Output,
    ) {
        let key = self.rules[i].id.clone();
        let active = self.active.contains_key(&key);
        let rule = &mut self.rules[i];
        if !active {
            if on {
                let since = *rule.timing.on_since.get_or_insert(now);
                if now - since >= chrono::Duration::from_std(rule.on_delay).unwrap_or_default() {
                    rule.timing = Timing::default();
                    let (kind, level, name, latching) =
                        (rule.kind, rule.level, rule.name.clone(), rule.latching);
                    let point = rule
                        .inputs()
                        .first()
                        .cloned()
                        .filter(|_| rule.inputs().len() == 1);
                    let actions = rule.actions.clone();
                    let inputs_known = rule
                        .inputs()
                        .iter()
                        .all(|p| self.points.get(p).is_some_and(|x| x.seen_good));
                    let msg = detail.clone();
                    let idx = out.transitions.len();
                    self.raise(
                        &key,
                        kind,
                        level,
                        &name,
                        point.as_deref(),
                        value,
                        threshold,
                        now,
                        msg,
                        latching,
                        out,
                    );
                    let alarm_id = self.active[&key].alarm_id.clone();
                    // Never act on a rule whose inputs have not been seen good
                    // since start-up: the alarm is raised, the output untouched.
                    if inputs_known {
                        for a in actions.iter().filter(|a| self.writable.contains(&a.write)) {
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
                }
            } else {
                rule.timing.on_since = None;
            }
            return;
        }
        // Active: does it clear?
        if !off {
            rule.timing.off_since = None;
            if let Some(inst) = self.active.get_mut(&key) {
                inst.condition = true;
            }
            return;
        }
        let since = *rule.timing.off_since.get_or_insert(now);
        if now - since < chrono::Duration::from_std(rule.off_delay).unwrap_or_default() {
            return;
        }
        rule.timing = Timing::default();
        let actions: Vec<ActionCfg> = rule
            .actions
            .iter()
            .filter(|a| a.on_clear.is_some())
            .cloned()
            .collect();
        let name = rule.name.clone();
        let inst = self.active.get_mut(&key).unwrap();
        inst.condition = false;
        if inst.latching && inst.acked_by.is_none() {
            return; // stays until acknowledged
        }
        let idx = out.transitions.len();
        let alarm_id = inst.alarm_id.clone();
        self.clear(&key, now, value, format!("{name} 恢复: {detail}"), out);
        for a in actions {
            out.actions.push((
                idx,
                ActionRequest {
                    alarm_id: alarm_id.clone(),
                    point: a.write.clone(),
                    value: a.on_clear.unwrap_or_default(),
                    confirm_within: a.confirm_within.0,
                },
            ));
        }
    }

    /// Escalation rules may count other escalation rules: passes repeat
    /// until nothing changes (validation rejects cycles), so an outer rule
    /// follows its members in the same step, whatever their order.
    fn evaluate_escalations(&mut self, now: DateTime<Utc>, out: &mut Output) {
        for _ in 0..=self.rules.len() {
            let before = out.transitions.len();
            self.escalation_pass(now, out);
            if out.transitions.len() == before {
                break;
            }
        }
    }

    fn escalation_pass(&mut self, now: DateTime<Utc>, out: &mut Output) {
        for i in 0..self.rules.len() {
            let Check::Escalation { members, stages } = &self.rules[i].check else {
                continue;
            };
            // Distinct subjects (points, or rules without a point) at their most severe level.
            let mut worst: HashMap<String, u8> = HashMap::new();
            for inst in self
                .active
                .values()
                .filter(|a| members.contains(&a.rule_id))
            {
                let subject = inst
                    .point_id
                    .clone()
                    .unwrap_or_else(|| inst.rule_id.clone());
                let e = worst.entry(subject).or_insert(inst.level);
                *e = (*e).min(inst.level);
            }
            let reached = stages
                .iter()
                .filter(|s| {
                    worst.values().filter(|&&l| l <= s.count_level).count() as u32 >= s.count
                })
                .map(|s| s.level)
                .min();
            let key = self.rules[i].id.clone();
            let name = self.rules[i].name.clone();
            let counts = format!("{} 个测点在预警", worst.len());
            match (reached, self.active.get(&key).map(|a| a.level)) {
                (Some(level), None) => {
                    let msg = format!("{name}: {counts}");
                    self.raise(
                        &key,
                        AlarmKind::Threshold,
                        level,
                        &name,
                        None,
                        None,
                        None,
                        now,
                        msg,
                        false,
                        out,
                    );
                }
                (Some(level), Some(cur)) if level < cur => {
                    let inst = self.active.get_mut(&key).unwrap();
                    inst.level = level;
                    inst.message = format!("{name}: {counts}, 升级");
                    let t = self.transition(&self.active[&key], AlarmState::Escalated, now);
                    out.transitions.push(t);
                }
                (None, Some(_)) => {
                    self.clear(&key, now, None, format!("{name}: 恢复"), out);
                }
                _ => {}
            }
        }
    }

    /// Raises (`on = true`) or clears an alarm that the runtime detects
    /// itself: a failed action, the readings queue overflowing.
    #[allow(clippy::too_many_arguments)]
    pub fn external(
        &mut self,
        key: &str,
        kind: AlarmKind,
        level: u8,
        name: &str,
        on: bool,
        message: String,
        now: DateTime<Utc>,
    ) -> Output {
        let mut out = Output::default();
        match (on, self.active.contains_key(key)) {
            (true, false) => self.raise(
                key, kind, level, name, None, None, None, now, message, false, &mut out,
            ),
            (false, true) => self.clear(key, now, None, message, &mut out),
            _ => {}
        }
        out
    }

    /// Acknowledges an active alarm. A latching alarm whose condition is gone
    /// clears right after its acknowledgement.
    pub fn acknowledge(
        &mut self,
        alarm_id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Output, AckError> {
        let key = self
            .active
            .iter()
            .find(|(_, a)| a.alarm_id == alarm_id)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| AckError::Unknown(alarm_id.to_string()))?;
        let inst = self.active.get_mut(&key).unwrap();
        if inst.acked_by.is_some() {
            return Err(AckError::Already(alarm_id.to_string()));
        }
        inst.acked_by = Some(by.to_string());
        inst.acked_at = Some(at);
        let mut out = Output::default();
        let mut t = self.transition(&self.active[&key], AlarmState::Acknowledged, at);
        t.message = format!("{} 已由 {by} 确认", self.active[&key].name);
        out.transitions.push(t);
        let inst = &self.active[&key];
        if inst.latching && !inst.condition {
            let name = inst.name.clone();
            self.clear(&key, at, None, format!("{name} 确认后解除"), &mut out);
        }
        self.evaluate_escalations(at, &mut out);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        key: &str,
        kind: AlarmKind,
        level: u8,
        name: &str,
        point: Option<&str>,
        value: Option<serde_json::Value>,
        threshold: Option<serde_json::Value>,
        at: DateTime<Utc>,
        message: String,
        latching: bool,
        out: &mut Output,
    ) {
        let ts = at
            .with_timezone(&self.tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        let inst = Instance {
            alarm_id: format!("{key}@{ts}"),
            rule_id: key.to_string(),
            kind,
            level,
            name: name.to_string(),
            point_id: point.map(String::from),
            value,
            threshold,
            raised_at: at,
            acked_by: None,
            acked_at: None,
            latching,
            condition: true,
            message,
        };
        let t = self.transition(&inst, AlarmState::Raised, at);
        self.active.insert(key.to_string(), inst);
        crate::metrics::metrics()
            .alarm_events
            .with_label_values(&[kind_str(kind), "raised"])
            .inc();
        out.transitions.push(t);
    }

    fn clear(
        &mut self,
        key: &str,
        at: DateTime<Utc>,
        value: Option<serde_json::Value>,
        message: String,
        out: &mut Output,
    ) {
        if let Some(mut inst) = self.active.remove(key) {
            inst.message = message;
            if value.is_some() {
                inst.value = value;
            }
            crate::metrics::metrics()
                .alarm_events
                .with_label_values(&[kind_str(inst.kind), "cleared"])
                .inc();
            out.transitions
                .push(self.transition(&inst, AlarmState::Cleared, at));
        }
    }

    fn transition(&self, inst: &Instance, state: AlarmState, ts: DateTime<Utc>) -> AlarmTransition {
        let p = inst.point_id.as_ref().and_then(|id| self.points.get(id));
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
        }
    }

    /// Whether every point has text values only (used by the API to render).
    pub fn is_text(&self, point: &str) -> bool {
        self.points.get(point).is_some_and(|p| p.is_text)
    }

    pub fn device_of(&self, point: &str) -> Option<&str> {
        self.points.get(point).map(|p| p.device.as_str())
    }
}

/// A number in a message: at least one decimal, at most three (`1.0`,
/// `1.62`, `0.125`), as operators read set points.
fn num(v: f64) -> String {
    let t = trim_float(v);
    if t.contains('.') { t } else { format!("{t}.0") }
}

fn kind_str(k: AlarmKind) -> &'static str {
    match k {
        AlarmKind::Threshold => "threshold",
        AlarmKind::Rate => "rate",
        AlarmKind::Interlock => "interlock",
        AlarmKind::Offline => "offline",
        AlarmKind::Stale => "stale",
        AlarmKind::Fault => "fault",
        AlarmKind::Consistency => "consistency",
    }
}

struct EnvView<'a> {
    points: &'a HashMap<String, PointInfo>,
    active: &'a BTreeMap<String, Instance>,
}

impl expr::Env for EnvView<'_> {
    fn point(&self, id: &str) -> Option<Value> {
        let p = self.points.get(id)?;
        if p.quality.is_good() {
            p.value.clone()
        } else {
            None
        }
    }
    fn active(&self, rule_id: &str) -> bool {
        self.active.contains_key(rule_id)
    }
}
