//! The operator views the engine task publishes (`api::state`): points,
//! devices, active alarms and the gateway's faults, and the live stream's
//! events that carry each change.
//!
//! Cost follows what changed, not the size of the site: the point and
//! device indexes are built once here, the engine lists the points whose
//! state changed (`Engine::take_changed_points`), and only those entries
//! are rewritten in place. (Rebuilding every point's view after each input,
//! with a linear search of the config per point, was quadratic in the point
//! count and took half the CPU of a 1,000-device site.) Sorting happens
//! once, here, at start-up: the point views are kept in id order.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::api::state::{DeviceView, PointView, Shared, alarm_views};
use crate::model::{AlarmState, AlarmTransition, PointId, Quality};
use crate::rules::engine::{Engine, Instance};
use crate::rules::points::PointState;

/// Polls per second are counted over windows of about this long.
const RATE_WINDOW_MS: i64 = 5_000;

/// One device's counters behind its view.
struct DeviceTrack {
    view: DeviceView,
    /// Start of the current rate window (ms since the epoch) and the polls
    /// judged since.
    window: Option<(i64, u32)>,
    /// Listed in `Views::dirty_devices`.
    dirty: bool,
}

pub struct Views {
    /// Point id → its index in `Shared::points` (sorted by id).
    points: HashMap<PointId, usize>,
    /// Device id → its index in `Shared::devices` (config order).
    device_index: HashMap<Arc<str>, usize>,
    devices: Vec<DeviceTrack>,
    dirty_devices: Vec<usize>,
    /// Devices whose last poll was answered.
    online: usize,
    /// The active alarms last published.
    alarms: Vec<Instance>,
    /// The gateway faults last published.
    faults: Vec<String>,
}

impl Views {
    /// Builds every view once, from the config and the engine's state, and
    /// puts them into `sh`.
    pub fn new(sh: &Shared, engine: &Engine) -> Views {
        let cfg = &sh.cfg;
        let meta: HashMap<&str, (&str, Option<&str>, &str)> = cfg
            .devices
            .iter()
            .flat_map(|d| {
                d.points()
                    .into_iter()
                    .map(move |p| (p.id, (p.name.unwrap_or(p.id), p.unit, d.id.as_str())))
            })
            .collect();
        let mut points = HashMap::new();
        let mut views = Vec::new();
        // Sorted by id: the order every reader gets.
        for s in engine.point_values() {
            let Some(&(name, unit, device)) = meta.get(s.id.as_str()) else {
                continue;
            };
            points.insert(PointId::from(s.id.as_str()), views.len());
            let mut v = PointView {
                id: s.id.clone(),
                name: name.to_string(),
                device: device.to_string(),
                unit: unit.map(str::to_string),
                value: None,
                quality: String::new(),
                last_good: None,
            };
            update_point(&mut v, s, sh);
            views.push(v);
        }
        *sh.points.write().unwrap_or_else(|p| p.into_inner()) = views;
        let devices: Vec<DeviceTrack> = cfg
            .devices
            .iter()
            .map(|d| DeviceTrack {
                view: DeviceView {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    online: None,
                    last_error: None,
                    last_error_at: None,
                    last_good_poll: None,
                    polls_per_s: None,
                },
                window: None,
                dirty: false,
            })
            .collect();
        *sh.devices.write().unwrap_or_else(|p| p.into_inner()) =
            devices.iter().map(|d| d.view.clone()).collect();
        Views {
            points,
            device_index: cfg
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| (Arc::from(d.id.as_str()), i))
                .collect(),
            devices,
            dirty_devices: Vec::new(),
            online: 0,
            alarms: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// A device's poll was judged: answered (`ok`) or not, with why.
    pub fn device_health(
        &mut self,
        sh: &Shared,
        device: &str,
        ok: bool,
        detail: &str,
        at: DateTime<Utc>,
    ) {
        let Some(&i) = self.device_index.get(device) else {
            return;
        };
        let d = &mut self.devices[i];
        if d.view.online != Some(ok) {
            if d.view.online == Some(true) {
                self.online -= 1;
            }
            if ok {
                self.online += 1;
            }
            d.view.online = Some(ok);
            sh.devices_online
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(device.to_string(), ok);
        }
        if ok {
            d.view.last_good_poll = Some(sh.id.time(at));
        } else {
            d.view.last_error = Some(detail.to_string());
            d.view.last_error_at = Some(sh.id.time(at));
        }
        let ms = at.timestamp_millis();
        d.window = match d.window {
            None => Some((ms, 0)),
            Some((start, n)) if ms - start >= RATE_WINDOW_MS => {
                let secs = (ms - start) as f64 / 1000.0;
                d.view.polls_per_s = Some(((n + 1) as f64 / secs * 100.0).round() / 100.0);
                Some((ms, 0))
            }
            Some((start, n)) => Some((start, n + 1)),
        };
        if !d.dirty {
            d.dirty = true;
            self.dirty_devices.push(i);
        }
    }

    /// Alarm transitions go to the live streams as they happen (the page
    /// beeps for a new level-1 alarm); the list follows at `publish`.
    pub fn transitions(&self, sh: &Shared, ts: &[AlarmTransition]) {
        if !sh.stream.listening() {
            return;
        }
        for t in ts {
            let state = match t.state {
                AlarmState::Raised => "raised",
                AlarmState::Escalated => "escalated",
                AlarmState::Acknowledged => "acknowledged",
                AlarmState::Cleared => "cleared",
            };
            sh.stream.send(
                "alarm",
                &json!({
                    "state": state, "alarm_id": t.alarm_id, "rule_id": t.rule_id, "kind": t.kind,
                    "level": t.level, "message": t.message, "point_id": t.point_id,
                    "value": t.value, "threshold": t.threshold, "acked_by": t.acked_by,
                    "ts": sh.id.time(t.ts),
                }),
            );
        }
    }

    /// Writes what changed since the last call into `sh` and sends it to
    /// the live streams: the changed points, the devices polled, the
    /// active alarms and the gateway's faults (when they differ).
    pub fn publish(&mut self, engine: &mut Engine, sh: &Shared) {
        let listening = sh.stream.listening();
        let changed = engine.take_changed_points();
        if !changed.is_empty() {
            let mut sent = Vec::new();
            {
                let mut views = sh.points.write().unwrap_or_else(|p| p.into_inner());
                for id in changed {
                    let (Some(&i), Some(s)) = (self.points.get(&id), engine.point_value(&id))
                    else {
                        continue;
                    };
                    update_point(&mut views[i], s, sh);
                    if listening {
                        sent.push(views[i].clone());
                    }
                }
            }
            sh.stream.send("points", &sent);
        }
        if !self.dirty_devices.is_empty() {
            let mut sent = Vec::new();
            {
                let mut views = sh.devices.write().unwrap_or_else(|p| p.into_inner());
                for i in std::mem::take(&mut self.dirty_devices) {
                    let d = &mut self.devices[i];
                    d.dirty = false;
                    views[i].clone_from(&d.view);
                    if listening {
                        sent.push(d.view.clone());
                    }
                }
            }
            sh.stream.send("devices", &sent);
        }
        self.publish_alarms(engine, sh);
    }

    fn publish_alarms(&mut self, engine: &Engine, sh: &Shared) {
        let mut faults: Vec<String> = Vec::new();
        let mut same = true;
        let mut n = 0;
        for (i, a) in engine.active().enumerate() {
            same &= self.alarms.get(i) == Some(a);
            n += 1;
            if crate::rules::health::is_gateway_fault(&a.rule_id) {
                faults.push(a.rule_id.clone());
            }
        }
        faults.sort();
        {
            let mut c = sh.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.active_alarms = n as u64;
            c.devices_online = self.online as u64;
            c.faults.clone_from(&faults);
        }
        if faults != self.faults {
            // The retained status carries the gateway's health: sent now,
            // not at the next status interval (it needs no store).
            self.faults = faults;
            sh.status_wake.notify_one();
            let health = if self.faults.is_empty() {
                "ok"
            } else {
                "degraded"
            };
            sh.stream
                .send("status", &json!({"health": health, "faults": self.faults}));
        }
        if same && n == self.alarms.len() {
            return;
        }
        self.alarms = engine.active().cloned().collect();
        sh.stream.send("alarms", &alarm_views(&sh.id, &self.alarms));
        sh.alarms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clone_from(&self.alarms);
    }
}

/// A point's view from its state: the value only while it is good.
fn update_point(v: &mut PointView, s: PointState, sh: &Shared) {
    v.value = if s.quality == Quality::Good {
        s.value
    } else {
        None
    };
    let label = s.label;
    if v.quality != label {
        label.clone_into(&mut v.quality);
    }
    v.last_good = s.last_good.map(|t| sh.id.time(t));
}
