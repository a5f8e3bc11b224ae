//! The engine facade. A plain state machine: readings, device health,
//! ticks, acknowledgements and the runtime's own findings go in with the
//! current time; alarm transitions and action requests come out. No I/O,
//! no clock and no metrics of its own: tests drive it with scripted times
//! and get the same events every run, and the caller counts what it is
//! handed (`Output::transitions`, `Output::clears_held`).
//!
//! Readings and ticks are given `Now`: its wall time stamps events, its
//! monotonic time measures every duration (see `crate::time`).
//!
//! Rules with a memory (an accumulation rule's slots, a rate rule's
//! history) hand it out as JSON when it changed (`take_rule_state`) and
//! take it back when built (`restore_rule_state`); the engine task stores
//! it (`state.rs`).

use chrono::{DateTime, Utc};

use super::calibration;
use super::compile::{LiveRule, compile};
use super::health::{self, Devices};
use super::kind::{KindSpec, View};
use super::points::{PointState, Points};
use super::state;
use crate::config::Config;
use crate::model::{Input, Reading};
use crate::time::{Mono, Now};

use super::lifecycle::Alarms;
pub use super::lifecycle::{AckError, ActionRequest, Instance, Output};

pub struct Engine {
    rules: Vec<LiveRule>,
    points: Points,
    devices: Devices,
    alarms: Alarms,
    /// Per point, the rules whose memory its readings change.
    remembering: std::collections::HashMap<String, Vec<usize>>,
}

impl Engine {
    pub fn new(cfg: &Config) -> Engine {
        let c = compile(cfg);
        let mut remembering: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (i, r) in c.rules.iter().enumerate() {
            if let KindSpec::Accumulation(_) | KindSpec::Rate(_) = &r.spec.kind {
                for p in r.spec.kind.inputs() {
                    remembering.entry(p.clone()).or_default().push(i);
                }
            }
        }
        Engine {
            rules: c.rules,
            points: c.points,
            devices: c.devices,
            alarms: Alarms::new(cfg.tz()),
            remembering,
        }
    }

    /// The state of every rule whose memory changed since the last call,
    /// as (rule id, JSON) for the store. A rate history is handed out at
    /// most every [`state::RATE_SAVE_EVERY`] unless `all` (at shutdown).
    pub fn take_rule_state(&mut self, now: Mono, all: bool) -> Vec<(String, String)> {
        state::take(&mut self.rules, &self.points, now, all)
    }

    /// Gives back the state the store kept, before the first step. Returns
    /// the rows not taken, each with why (a rule removed, a changed input).
    pub fn restore_rule_state(&mut self, rows: Vec<(String, String)>) -> Vec<(String, String)> {
        state::restore(&mut self.rules, &mut self.points, rows)
    }

    /// Active alarms, for the status message, the API and persistence.
    pub fn active(&self) -> impl Iterator<Item = &Instance> {
        self.alarms.iter()
    }

    /// Active alarms with their keys, as the store persists them.
    pub fn active_keyed(&self) -> Vec<(String, Instance)> {
        self.alarms.keyed()
    }

    /// Puts back the alarms that were active when the gateway stopped. They
    /// are not raised again: they continue with their old `alarm_id`.
    pub fn restore(&mut self, instances: Vec<Instance>) {
        self.alarms.restore(instances);
    }

    /// Latest value and quality of every point, for the operator page,
    /// sorted by point id.
    pub fn point_values(&self) -> Vec<PointState> {
        self.points.states()
    }

    /// Latest value and quality of one point.
    pub fn point_value(&self, id: &str) -> Option<PointState> {
        self.points.state(id)
    }

    /// The points whose value or quality changed since the last call (a
    /// reading, or staleness on a tick), each once: the operator views are
    /// updated from these, not rebuilt from every point.
    pub fn take_changed_points(&mut self) -> Vec<crate::model::PointId> {
        self.points.take_changed()
    }

    pub fn handle(&mut self, input: &Input, now: Now) -> Output {
        match input {
            // A threshold crossing is stamped with the reading's time, not
            // when the engine got round to it (the contract's `ts`); its
            // delays still run on the monotonic clock.
            Input::Readings(rs) => {
                let wall = rs.iter().map(|r| r.at).max().unwrap_or(now.wall);
                self.on_readings(rs, Now { wall, ..now })
            }
            Input::DeviceHealth {
                device,
                ok,
                detail,
                at,
            } => health::device_polled(
                &mut self.devices,
                &mut self.alarms,
                &self.points,
                device,
                *ok,
                detail,
                *at,
            ),
            Input::Flood {
                device,
                flooding,
                dropped,
                at,
            } => health::device_flood(
                &self.devices,
                &mut self.alarms,
                &self.points,
                device,
                *flooding,
                *dropped,
                *at,
            ),
        }
    }

    /// Marks readings over range or under a device fault (`[[quality]]`);
    /// the engine task calls it before storing and sending them.
    pub fn qualify(&self, readings: &mut [Reading]) {
        super::quality::qualify(&self.points, readings);
    }

    pub fn on_readings(&mut self, readings: &[Reading], now: Now) -> Output {
        let mut out = Output::default();
        let mut touched = std::collections::HashSet::new();
        self.points.settle(now.wall, now.mono);
        let mut readings = readings.to_vec();
        super::quality::qualify(&self.points, &mut readings);
        for r in &readings {
            if !self.points.apply(r, now.mono) {
                continue;
            }
            touched.insert(r.point.clone());
            self.remember(r);
            health::point_quality(&mut self.alarms, &self.points, &r.point, r.at, &mut out);
            health::point_tamper(&mut self.alarms, &self.points, &r.point, r.at, &mut out);
        }
        for i in 0..self.rules.len() {
            if self.rules[i]
                .spec
                .kind
                .inputs()
                .iter()
                .any(|p| touched.contains(p.as_str()))
            {
                self.evaluate(i, now, &mut out);
            }
        }
        calibration::cut_tests(&mut self.alarms, &mut self.points, &self.rules, now);
        self.evaluate_escalations(now.wall, &mut out);
        out
    }

    /// Opens a calibration window on `point` for `length`, by `by`: the
    /// point reads `calibrating` and its rules' alarms go out as
    /// `calibration` events until the window closes by itself.
    pub fn calibrate(
        &mut self,
        point: &str,
        length: std::time::Duration,
        by: &str,
        now: Now,
    ) -> Result<Output, calibration::CalibrateError> {
        calibration::open(&mut self.alarms, &mut self.points, point, length, by, now)
    }

    /// The open calibration windows.
    pub fn calibrations(&self) -> Vec<calibration::CalibrationView> {
        calibration::list(&self.points)
    }

    /// Changes whenever `calibrations` would answer differently.
    pub fn calibrations_version(&self) -> u64 {
        self.points.calibrations_version()
    }

    /// A good reading goes into the memory of the rules that keep one: an
    /// accumulation rule's slot of its observation time, a rate history
    /// (kept by the point table, only marked here for the store).
    fn remember(&mut self, r: &Reading) {
        let Some(rules) = self.remembering.get(&*r.point) else {
            return;
        };
        let Some(v) = r.value.as_ref().and_then(|v| v.as_f64()) else {
            return;
        };
        if !r.quality.is_good() {
            return;
        }
        for &i in rules {
            let rule = &mut self.rules[i];
            match (&rule.spec.kind, &mut rule.memory) {
                (KindSpec::Accumulation(a), Some(m)) => {
                    rule.dirty |= m.add((r.at.timestamp_millis(), v), a.max_slots());
                }
                _ => rule.dirty = true,
            }
        }
    }

    /// Time passes: on-delays, holds, off-delays and staleness are checked.
    pub fn tick(&mut self, now: Now) -> Output {
        let mut out = Output::default();
        self.points.settle(now.wall, now.mono);
        // Slots no window reaches any more go; only here, on the clock's
        // time, so a reading stamped in the future cannot prune the present.
        for rule in &mut self.rules {
            if let (KindSpec::Accumulation(a), Some(m)) = (&rule.spec.kind, &mut rule.memory) {
                m.prune(now.wall.timestamp_millis() - a.horizon().as_millis() as i64);
            }
        }
        calibration::settle(
            &mut self.alarms,
            &mut self.points,
            &mut self.rules,
            now,
            &mut out,
        );
        // Every point only when one may have turned too old since the last
        // look (or some were): a site with nothing stale pays nothing here
        // per tick, however many points it has.
        if self.points.stale_sweep_due(now.mono) {
            let mut seen = false;
            for id in self.points.ids().iter() {
                if self.points.check_stale(id, now.mono) {
                    seen = true;
                    health::point_quality(&mut self.alarms, &self.points, id, now.wall, &mut out);
                }
            }
            self.points.stale_swept(now.mono, seen);
        }
        for i in 0..self.rules.len() {
            if !matches!(self.rules[i].spec.kind, KindSpec::Escalation(_)) {
                self.evaluate(i, now, &mut out);
                let rule = &mut self.rules[i];
                self.alarms
                    .unacked(&rule.spec, &mut rule.timing, &self.points, now, &mut out);
            }
        }
        calibration::cut_tests(&mut self.alarms, &mut self.points, &self.rules, now);
        self.evaluate_escalations(now.wall, &mut out);
        out
    }

    /// A rule's write to `point` failed (`Some(why)`: raises the point's
    /// action alarm) or was confirmed again (`None`: clears it).
    pub fn action_outcome(
        &mut self,
        point: &str,
        failure: Option<&str>,
        now: DateTime<Utc>,
    ) -> Output {
        health::action_outcome(&mut self.alarms, &self.points, point, failure, now)
    }

    /// A commit of readings dropped `dropped` of the oldest queued
    /// readings (raises the overflow alarm); zero clears it.
    pub fn readings_dropped(&mut self, dropped: u64, now: DateTime<Utc>) -> Output {
        health::readings_dropped(&mut self.alarms, &self.points, dropped, now)
    }

    /// Queueing telemetry dropped `dropped` of the oldest messages (raises
    /// the telemetry overflow alarm); zero clears it.
    pub fn telemetry_dropped(&mut self, dropped: u64, now: DateTime<Utc>) -> Output {
        health::telemetry_dropped(&mut self.alarms, &self.points, dropped, now)
    }

    /// A gateway fault (an output that cannot work until someone acts) is
    /// present (`Some(why)`: raises its alarm) or gone (`None`: clears it).
    pub fn gateway_fault(
        &mut self,
        fault: health::GatewayFault,
        failure: Option<&str>,
        now: DateTime<Utc>,
    ) -> Output {
        health::gateway_fault(&mut self.alarms, &self.points, fault, failure, now)
    }

    /// The store refuses writes (`Some(why)`: raises `store.write`) or
    /// works again (`None`: clears it).
    pub fn store_write(&mut self, failure: Option<&str>, now: DateTime<Utc>) -> Output {
        health::store_write(&mut self.alarms, &self.points, failure, now)
    }

    /// Acknowledges an active alarm. A latching alarm whose condition is gone
    /// clears right after its acknowledgement.
    pub fn acknowledge(
        &mut self,
        alarm_id: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Output, AckError> {
        let mut out = self.alarms.acknowledge(alarm_id, by, at, &self.points)?;
        self.evaluate_escalations(at, &mut out);
        Ok(out)
    }

    /// Whether the point has text values (used by the API to render).
    pub fn is_text(&self, point: &str) -> bool {
        self.points.get(point).is_some_and(|p| p.is_text)
    }

    pub fn device_of(&self, point: &str) -> Option<&str> {
        self.points.get(point).map(|p| p.device.as_str())
    }

    /// Judges rule `i` at `now` and runs its verdict through the lifecycle.
    fn evaluate(&mut self, i: usize, now: Now, out: &mut Output) {
        let rule = &mut self.rules[i];
        let devices = &self.devices;
        let offline = |d: &str| {
            devices
                .get(d)
                .is_some_and(|x| x.failures >= x.offline_after)
        };
        let view = View {
            points: &self.points,
            alarms: &self.alarms,
            memory: rule.memory.as_ref(),
            mono: now.mono,
            offline: &offline,
        };
        let Some(v) = rule.spec.kind.judge(&rule.spec.name, &view, now.wall) else {
            return;
        };
        self.alarms
            .apply(&rule.spec, &mut rule.timing, v, &self.points, now, out);
    }

    /// Escalation rules may count other escalation rules: passes repeat
    /// until nothing changes (validation rejects cycles), so an outer rule
    /// follows its members in the same step, whatever their order.
    fn evaluate_escalations(&mut self, now: DateTime<Utc>, out: &mut Output) {
        for _ in 0..=self.rules.len() {
            let before = out.transitions.len();
            for rule in &self.rules {
                let KindSpec::Escalation(e) = &rule.spec.kind else {
                    continue;
                };
                let (reached, subjects) = e.judge(&self.alarms);
                self.alarms
                    .escalate(&rule.spec, reached, subjects, &self.points, now, out);
            }
            if out.transitions.len() == before {
                break;
            }
        }
    }
}
