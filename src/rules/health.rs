//! Every built-in alarm: the ones no rule in the file asks for, because a
//! gateway that cannot see must say so (fail safe).
//!
//! - `{device}.offline`: `offline_after` consecutive failed polls; cleared
//!   by the first good poll.
//! - `{point}.stale`: no good reading for the point's `stale_after`.
//! - `{point}.fault`: the device answers, but with an exception or data
//!   that does not decode, a value outside the sensor's range, or its own
//!   fault bits set (`rules::quality`). Timeouts are the device's offline
//!   alarm.
//! - `{point}.tamper`: a tamper point (an SL 651 station's cabinet door)
//!   reads `true`; cleared by a good `false`. A bad reading changes
//!   nothing: the point's stale or fault alarm speaks for it.
//! - `{point}.action`: a rule's write to the point failed or was not
//!   confirmed by its read-back (reported by the runtime that writes).
//! - `{device}.flood`: a device that pushes its data (MQTT) sends more
//!   than its `max_rate`; the excess is dropped at the source. Raised once
//!   at the start of the flood, cleared once it has been calm a while
//!   (`source::flood`).
//! - `queue.readings.overflow`: the readings queue on disk is full and the
//!   oldest readings are dropped (reported by the runtime that commits);
//!   `queue.telemetry.overflow` likewise for the county's real-time data.
//! - [`GatewayFault`]s: an output of the gateway itself cannot work until
//!   someone acts (e.g. InfluxDB refuses the token); reported by the sink
//!   through the runtime, raised on the first failure and cleared by the
//!   first success.
//! - `store.write`: the store refuses writes (disk full, I/O error); the
//!   runtime keeps readings and events in memory, bounded, and retries.
//!
//! The gateway's own faults (as opposed to a device's or a point's) are the
//! keys [`is_gateway_fault`] names; while one is active the status says
//! `health: "degraded"` and `/health` answers 503.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::lifecycle::{Alarms, Output, Raise};
use super::points::Points;
use super::text;
use crate::model::{AlarmKind, BadReason, Quality};

/// The key of the readings-queue overflow alarm.
pub const QUEUE_OVERFLOW_KEY: &str = "queue.readings.overflow";
/// The key of the telemetry-queue overflow alarm.
pub const TELEMETRY_OVERFLOW_KEY: &str = "queue.telemetry.overflow";
/// The key of the store fault alarm.
pub const STORE_WRITE_KEY: &str = "store.write";
/// Level of the store fault: red, alarms may not reach the county.
const STORE_WRITE_LEVEL: u8 = 1;

/// Namespaces of the gateway's own fault alarms: the store, its queues and
/// the sinks. Device and point alarms are named after a device or point id
/// followed by `.offline`, `.stale`, `.fault`, `.action` or `.flood`.
const GATEWAY_FAULT_PREFIXES: [&str; 5] = ["store.", "queue.", "influx.", "uplink.", "task."];

/// Whether `rule_id` is a fault of the gateway itself (store, queue, sink,
/// task), which makes the gateway's health `degraded`.
pub fn is_gateway_fault(rule_id: &str) -> bool {
    GATEWAY_FAULT_PREFIXES
        .iter()
        .any(|p| rule_id.starts_with(p))
        && ![
            ".offline", ".stale", ".fault", ".action", ".flood", ".tamper",
        ]
        .iter()
        .any(|s| rule_id.ends_with(s))
}

/// Level of the queue overflow alarm: yellow, data is lost but no alarm.
const QUEUE_OVERFLOW_LEVEL: u8 = 3;
/// Level of a failed action: orange, a safety output may not have moved.
const ACTION_FAILED_LEVEL: u8 = 2;
/// Level of a flood: yellow. The device's readings are thinned to its
/// `max_rate`, so its points stay live and its alarms judged, but it needs
/// looking at (firmware, a loop in a box's configuration).
const FLOOD_LEVEL: u8 = 3;

#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    /// Consecutive failed polls.
    pub failures: u32,
    pub offline_after: u32,
    pub level: u8,
}

pub type Devices = HashMap<String, DeviceInfo>;

/// One poll of `device` succeeded (`ok`) or failed with `detail`.
pub fn device_polled(
    devices: &mut Devices,
    alarms: &mut Alarms,
    points: &Points,
    device: &str,
    ok: bool,
    detail: &str,
    at: DateTime<Utc>,
) -> Output {
    let mut out = Output::default();
    let Some(d) = devices.get_mut(device) else {
        return out;
    };
    let key = format!("{device}.offline");
    if ok {
        d.failures = 0;
        alarms.clear(
            &key,
            at,
            None,
            text::online_again(&d.name),
            points,
            &mut out,
        );
    } else {
        d.failures = d.failures.saturating_add(1);
        if d.failures >= d.offline_after && !alarms.contains(&key) {
            let name = text::offline_name(&d.name);
            let msg = text::offline(&d.name, detail);
            let r = Raise::plain(&key, AlarmKind::Offline, d.level, &name, at, msg);
            alarms.raise(r, points, &mut out);
        }
    }
    out
}

/// `device` floods (`true`: raises `{device}.flood`, once) or is calm
/// again (`false`: clears it); `dropped` messages in this flood so far.
pub fn device_flood(
    devices: &Devices,
    alarms: &mut Alarms,
    points: &Points,
    device: &str,
    flooding: bool,
    dropped: u64,
    at: DateTime<Utc>,
) -> Output {
    let mut out = Output::default();
    let shown = devices.get(device).map_or(device, |d| d.name.as_str());
    let key = format!("{device}.flood");
    let name = text::flood_name(shown);
    let msg = if flooding {
        text::flood(shown, dropped)
    } else {
        text::flood_over(shown, dropped)
    };
    let r = Raise::plain(&key, AlarmKind::Fault, FLOOD_LEVEL, &name, at, msg);
    alarms.set(flooding, r, points, &mut out);
    out
}

/// Stale and fault alarms of one point after its quality changed (a
/// reading, or time passing).
pub fn point_quality(
    alarms: &mut Alarms,
    points: &Points,
    id: &str,
    at: DateTime<Utc>,
    out: &mut Output,
) {
    let Some(p) = points.get(id) else { return };
    let stale_key = format!("{id}.stale");
    let fault_key = format!("{id}.fault");
    match &p.quality {
        Quality::Bad(BadReason::Stale) if !alarms.contains(&stale_key) => {
            let name = text::stale_name(&p.name);
            let r = Raise {
                point: Some(id),
                ..Raise::plain(
                    &stale_key,
                    AlarmKind::Stale,
                    p.health_level,
                    &name,
                    at,
                    text::stale(&p.name),
                )
            };
            alarms.raise(r, points, out);
        }
        Quality::Bad(
            why @ (BadReason::Exception(_)
            | BadReason::Decode(_)
            | BadReason::OverRange
            | BadReason::DeviceFault),
        ) if !alarms.contains(&fault_key) => {
            let name = text::fault_name(&p.name);
            let r = Raise {
                point: Some(id),
                ..Raise::plain(
                    &fault_key,
                    AlarmKind::Fault,
                    p.health_level,
                    &name,
                    at,
                    text::fault(&p.name, why),
                )
            };
            alarms.raise(r, points, out);
        }
        Quality::Good => {
            for k in [stale_key, fault_key] {
                alarms.clear(&k, at, None, text::data_recovered(&p.name), points, out);
            }
        }
        _ => {}
    }
}

/// Level of a tamper alarm: orange, someone is at the station's cabinet.
const TAMPER_LEVEL: u8 = 2;

/// The tamper alarm of a tamper point after a reading.
pub fn point_tamper(
    alarms: &mut Alarms,
    points: &Points,
    id: &str,
    at: DateTime<Utc>,
    out: &mut Output,
) {
    let Some(p) = points.get(id).filter(|p| p.tamper) else {
        return;
    };
    let Some(open) = points.good_value(id).and_then(|v| v.as_bool()) else {
        return;
    };
    let key = format!("{id}.tamper");
    let name = text::tamper_name(&p.name);
    let msg = if open {
        text::tamper(&p.name)
    } else {
        text::tamper_over(&p.name)
    };
    let r = Raise {
        point: Some(id),
        ..Raise::plain(&key, AlarmKind::Tamper, TAMPER_LEVEL, &name, at, msg)
    };
    alarms.set(open, r, points, out);
}

/// A rule's write to `point` failed (`Some(why)`) or works again (`None`).
pub fn action_outcome(
    alarms: &mut Alarms,
    points: &Points,
    point: &str,
    failure: Option<&str>,
    at: DateTime<Utc>,
) -> Output {
    let mut out = Output::default();
    let key = format!("{point}.action");
    let name = text::action_failed_name(point);
    let msg = match failure {
        Some(why) => text::action_failed(point, why),
        None => text::action_recovered(point),
    };
    let r = Raise::plain(&key, AlarmKind::Fault, ACTION_FAILED_LEVEL, &name, at, msg);
    alarms.set(failure.is_some(), r, points, &mut out);
    out
}

/// A commit of readings dropped `dropped` of the oldest queued readings;
/// zero clears the alarm (the queue has room again).
pub fn readings_dropped(
    alarms: &mut Alarms,
    points: &Points,
    dropped: u64,
    at: DateTime<Utc>,
) -> Output {
    let msg = if dropped > 0 {
        text::queue_dropping(dropped)
    } else {
        text::QUEUE_RECOVERED.to_string()
    };
    let name = text::QUEUE_FULL_NAME;
    overflow(
        alarms,
        points,
        QUEUE_OVERFLOW_KEY,
        name,
        dropped > 0,
        msg,
        at,
    )
}

/// Queueing telemetry dropped `dropped` of the oldest queued messages;
/// zero clears the alarm. Same level as the readings queue's: data is
/// lost (the county sees the `tseq` gap), no alarm is.
pub fn telemetry_dropped(
    alarms: &mut Alarms,
    points: &Points,
    dropped: u64,
    at: DateTime<Utc>,
) -> Output {
    let msg = if dropped > 0 {
        text::telemetry_dropping(dropped)
    } else {
        text::TELEMETRY_RECOVERED.to_string()
    };
    let name = text::TELEMETRY_FULL_NAME;
    overflow(
        alarms,
        points,
        TELEMETRY_OVERFLOW_KEY,
        name,
        dropped > 0,
        msg,
        at,
    )
}

/// A queue's overflow alarm: raised once while it drops, cleared by the
/// first write that drops nothing.
fn overflow(
    alarms: &mut Alarms,
    points: &Points,
    key: &str,
    name: &str,
    dropping: bool,
    msg: String,
    at: DateTime<Utc>,
) -> Output {
    let mut out = Output::default();
    let r = Raise::plain(key, AlarmKind::Fault, QUEUE_OVERFLOW_LEVEL, name, at, msg);
    alarms.set(dropping, r, points, &mut out);
    out
}

/// A fault of the gateway's own outputs that does not heal by retrying:
/// the data waits in its queue, but a person must act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayFault {
    /// InfluxDB answers 401 or 403: the token is wrong, expired or lacks
    /// write permission on the bucket.
    InfluxAuth,
    /// InfluxDB answers 404: the org or bucket does not exist.
    InfluxBucket,
}

impl GatewayFault {
    pub fn key(self) -> &'static str {
        match self {
            GatewayFault::InfluxAuth => "influx.auth",
            GatewayFault::InfluxBucket => "influx.bucket",
        }
    }

    /// Orange (2) for the InfluxDB faults: readings stop reaching the
    /// time-series database and will be dropped once the readings queue is
    /// full, and it needs a person (a new token, a bucket), but alarms still
    /// go to the county and nothing is lost yet, so not red (1).
    pub fn level(self) -> u8 {
        match self {
            GatewayFault::InfluxAuth | GatewayFault::InfluxBucket => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            GatewayFault::InfluxAuth => "InfluxDB 拒绝令牌",
            GatewayFault::InfluxBucket => "InfluxDB 组织或桶不存在",
        }
    }
}

/// `fault` is present (`Some(why)`: raised once) or gone (`None`: cleared).
pub fn gateway_fault(
    alarms: &mut Alarms,
    points: &Points,
    fault: GatewayFault,
    failure: Option<&str>,
    at: DateTime<Utc>,
) -> Output {
    let mut out = Output::default();
    let msg = match failure {
        Some(why) => text::gateway_fault(fault.name(), why),
        None => text::gateway_recovered(fault.name()),
    };
    let r = Raise::plain(
        fault.key(),
        AlarmKind::Fault,
        fault.level(),
        fault.name(),
        at,
        msg,
    );
    alarms.set(failure.is_some(), r, points, &mut out);
    out
}

/// The store refuses writes (`Some(why)`: raises `store.write`) or works
/// again (`None`: clears it).
pub fn store_write(
    alarms: &mut Alarms,
    points: &Points,
    failure: Option<&str>,
    at: DateTime<Utc>,
) -> Output {
    let mut out = Output::default();
    let msg = match failure {
        Some(why) => text::store_write_failed(why),
        None => text::STORE_WRITE_RECOVERED.to_string(),
    };
    let r = Raise::plain(
        STORE_WRITE_KEY,
        AlarmKind::Fault,
        STORE_WRITE_LEVEL,
        text::STORE_WRITE_NAME,
        at,
        msg,
    );
    alarms.set(failure.is_some(), r, points, &mut out);
    out
}
